//! Checking and interpreting what users type: names, driver options, namespace references.
//! Every refusal names the value and the rule.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use netns_helper::NsId;

use crate::error::Error;

/// Checks a network or container name: 1–64 of `[A-Za-z0-9_.-]`, starting alphanumeric.
pub(crate) fn validate_name(what: &str, name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid {what} {name:?}: use 1-64 of [A-Za-z0-9_.-], starting with a letter or digit"
        )))
    }
}

/// An interface name for inside a container: 1-15 of `[A-Za-z0-9_.-]` (the kernel's limit
/// is 15 bytes), not `.` or `..`.
pub(crate) fn check_ifname(ifname: &str) -> Result<(), Error> {
    let ok = (1..=15).contains(&ifname.len())
        && ifname != "."
        && ifname != ".."
        && ifname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid interface name {ifname:.64?}: use 1-15 of [A-Za-z0-9_.-], not . or .."
        )))
    }
}

/// Checks a link MTU: 68..=65520.
pub(crate) fn check_mtu(mtu: u32) -> Result<u32, Error> {
    if (68..=65520).contains(&mtu) {
        Ok(mtu)
    } else {
        Err(Error::Invalid(format!(
            "invalid MTU {mtu}: must be 68..=65520"
        )))
    }
}

/// Checks that a MAC address may be given to a container (unicast).
pub(crate) fn check_mac(mac: ipam::MacAddr) -> Result<ipam::MacAddr, Error> {
    if mac.is_unicast() {
        Ok(mac)
    } else {
        Err(Error::Invalid(format!("MAC address {mac} is multicast")))
    }
}

/// Parses and checks a MAC address typed by the user.
pub(crate) fn parse_mac(text: &str) -> Result<ipam::MacAddr, Error> {
    text.parse::<ipam::MacAddr>()
        .map_err(|e| Error::Invalid(e.to_string()))
        .and_then(check_mac)
}

/// Driver options of a network, typed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NetworkOptions {
    pub icc: bool,
    pub mtu: Option<u32>,
    pub host_loopback: bool,
}

/// Reads `icc`, `mtu` and `host_loopback` from driver options (short or Docker spelling).
pub(crate) fn parse_options(options: &BTreeMap<String, String>) -> Result<NetworkOptions, Error> {
    let mut out = NetworkOptions {
        icc: true,
        mtu: None,
        host_loopback: false,
    };
    let boolean = |k: &str, v: &str| {
        v.parse::<bool>().map_err(|_| {
            Error::Invalid(format!(
                "invalid value {v:?} for option {k}: use true or false"
            ))
        })
    };
    for (k, v) in options {
        match k.as_str() {
            "icc" | "com.docker.network.bridge.enable_icc" => out.icc = boolean(k, v)?,
            "host_loopback" => out.host_loopback = boolean(k, v)?,
            "mtu" | "com.docker.network.driver.mtu" => {
                out.mtu = Some(v.parse().map_err(|_| {
                    Error::Invalid(format!(
                        "invalid value {v:?} for option {k}: expected a number"
                    ))
                })?);
            }
            _ => {
                return Err(Error::Invalid(format!(
                    "unknown network option {k} (known: icc, mtu, host_loopback)"
                )));
            }
        }
    }
    Ok(out)
}

/// Turns a PID or a path into the namespace file to attach.
pub(super) fn resolve_netns(container: &str) -> Result<PathBuf, Error> {
    let path = if !container.is_empty() && container.bytes().all(|b| b.is_ascii_digit()) {
        let p = PathBuf::from(format!("/proc/{container}/ns/net"));
        if !Path::new(&format!("/proc/{container}")).exists() {
            return Err(Error::NotFound(format!("no process with PID {container}")));
        }
        p
    } else {
        PathBuf::from(container)
    };
    if !path.is_absolute() {
        return Err(Error::Invalid(format!(
            "network namespace {container:?} must be a PID or an absolute path"
        )));
    }
    Ok(path)
}

/// The (dev, inode) of a namespace file, checked to be reachable by the daemon.
pub(super) fn ns_identity(path: &Path) -> Result<NsId, Error> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(NsId {
            dev: m.dev(),
            ino: m.ino(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound(format!(
            "network namespace {} does not exist",
            path.display()
        ))),
        Err(e) => Err(Error::Invalid(format!(
            "cannot read network namespace {}: {e}",
            path.display()
        ))),
    }
}

pub(super) fn default_endpoint_name(netns: &Path) -> String {
    let comps: Vec<_> = netns.components().collect();
    // /proc/PID/ns/net → pid-PID
    if netns.starts_with("/proc")
        && let Some(pid) = comps.get(2)
    {
        return format!("pid-{}", pid.as_os_str().to_string_lossy());
    }
    netns
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// 64 hex digits from the kernel's random source.
pub(super) fn random_id() -> String {
    random_bytes::<32>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Bytes from the kernel's random source.
pub(super) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    bytes
}

/// The subnets of `vswitchd --network NAME=V4CIDR[,V6CIDR]`: at most one per family, the
/// IPv6 one making the network dual stack. Returns them as text, sorted by family.
pub(crate) fn split_network_subnets(
    spec: Option<&str>,
) -> Result<(Option<String>, Option<String>), String> {
    let (mut v4, mut v6) = (None, None);
    for part in spec.into_iter().flat_map(|s| s.split(',')) {
        let part = part.trim();
        if part.is_empty() {
            return Err(format!("empty subnet in {:?}", spec.unwrap_or_default()));
        }
        let slot = if part.contains(':') { &mut v6 } else { &mut v4 };
        if slot.replace(part.to_string()).is_some() {
            return Err(format!(
                "{part}: give at most one IPv4 and one IPv6 subnet (NAME=V4CIDR,V6CIDR)"
            ));
        }
    }
    Ok((v4, v6))
}

/// The resolvers names are relayed to: `given` (`--dns`), or else the nameservers of
/// /etc/resolv.conf (either family; relaying to an IPv6 resolver goes out over IPv6), on
/// port 53. None is logged once: names other than containers' then get SERVFAIL.
pub fn upstreams(given: &[std::net::IpAddr]) -> Vec<std::net::SocketAddr> {
    let from_file;
    let ips: &[std::net::IpAddr] = if given.is_empty() {
        from_file = std::fs::read_to_string("/etc/resolv.conf")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .filter_map(|ip| ip.trim().parse().ok())
            .collect::<Vec<std::net::IpAddr>>();
        &from_file
    } else {
        given
    };
    let all: Vec<std::net::SocketAddr> = ips
        .iter()
        .map(|ip| std::net::SocketAddr::new(*ip, 53))
        .collect();
    if all.is_empty() {
        tracing::warn!("no upstream DNS resolver: names other than containers' get SERVFAIL");
    }
    all
}
