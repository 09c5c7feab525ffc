//! What the plugin takes from netavark's JSON, checked before the daemon is asked: the
//! network options (`podman network create -o`), the subnets (one per family), the network
//! name, and the port mappings expanded into vswitchd's publish specs.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use super::plugin::PluginError;
use super::types::{Network, PortMapping, Subnet};

/// The network options this plugin understands (`podman network create -o KEY=VALUE`).
pub const OPTIONS: &[&str] = &["socket", "icc", "internal", "mtu", "host_loopback"];

/// The network options, checked.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    /// The daemon's API socket.
    pub socket: PathBuf,
    /// Traffic between containers.
    pub icc: Option<bool>,
    /// No NAT.
    pub internal: bool,
    /// Link MTU.
    pub mtu: Option<u32>,
    /// The gateway reaches the host's loopback.
    pub host_loopback: Option<bool>,
}

/// Reads the network's options (`podman network create -o`).
///
/// # Errors
/// [`PluginError::Invalid`] for an unknown option or a bad value.
pub fn options(net: &Network) -> Result<Options, PluginError> {
    let empty = HashMap::new();
    let opts = net.options.as_ref().unwrap_or(&empty);
    if let Some(unknown) = opts.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
        return Err(PluginError::Invalid(format!(
            "unknown option {unknown:.64?} for driver {} (known: {})",
            net.driver,
            OPTIONS.join(", ")
        )));
    }
    let flag = |key: &str| -> Result<Option<bool>, PluginError> {
        match opts.get(key).map(String::as_str) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(PluginError::Invalid(format!(
                "invalid option {key}={other:.64?}: must be true or false"
            ))),
        }
    };
    let mtu = match opts.get("mtu") {
        None => None,
        Some(m) => Some(m.parse::<u32>().map_err(|_| {
            PluginError::Invalid(format!("invalid option mtu={m:.64?}: not a number"))
        })?),
    };
    let socket = match opts.get("socket") {
        Some(s) if !s.is_empty() => PathBuf::from(s),
        Some(_) => return Err(PluginError::Invalid("option socket is empty".into())),
        None => default_socket(),
    };
    Ok(Options {
        socket,
        icc: flag("icc")?,
        internal: flag("internal")?.unwrap_or(false),
        mtu,
        host_loopback: flag("host_loopback")?,
    })
}

/// `vswitchctl`'s default, except inside a user namespace (rootless podman's), where the
/// user's own daemon listens in `$XDG_RUNTIME_DIR`.
pub fn default_socket() -> PathBuf {
    // The initial user namespace maps every uid to itself: "0 0 4294967295".
    let initial = std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
        .unwrap_or(true);
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !initial && !d.is_empty() => PathBuf::from(d).join("vswitchd.sock"),
        _ => crate::paths::socket(),
    }
}

/// The network name doubles as the vswitchd network name and URL path segment, so it
/// follows the daemon's own rule.
pub fn check_name(name: &str) -> Result<(), PluginError> {
    crate::daemon::inputs::validate_name("network name", name)
        .map_err(|e| PluginError::Invalid(e.to_string()))
}

/// The address if it is IPv4.
pub fn v4_only(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    }
}

/// The address if it is IPv6.
pub fn v6_only(ip: IpAddr) -> Option<Ipv6Addr> {
    match ip {
        IpAddr::V6(v6) => Some(v6),
        IpAddr::V4(_) => None,
    }
}

/// At most one subnet per family, each gateway of its subnet's family, no lease ranges.
pub fn split_subnets(subnets: &[Subnet]) -> Result<(Option<Subnet>, Option<Subnet>), PluginError> {
    let (mut v4, mut v6) = (None, None);
    for s in subnets {
        if s.lease_range
            .as_ref()
            .is_some_and(|r| r.start_ip.is_some() || r.end_ip.is_some())
        {
            return Err(PluginError::Invalid(format!(
                "subnet {}: lease ranges are not supported by this plugin",
                s.subnet
            )));
        }
        if let Some(gw) = s.gateway
            && gw.is_ipv4() != s.subnet.addr().is_ipv4()
        {
            return Err(PluginError::Invalid(format!(
                "gateway {gw} is not of the family of subnet {}",
                s.subnet
            )));
        }
        let slot = if s.subnet.addr().is_ipv4() {
            &mut v4
        } else {
            &mut v6
        };
        if slot.is_some() {
            return Err(PluginError::Invalid(format!(
                "subnet {}: vswitchd serves at most one IPv4 and one IPv6 subnet per network",
                s.subnet
            )));
        }
        *slot = Some(s.clone());
    }
    Ok((v4, v6))
}

/// Expands netavark's port mappings into vswitchd's `[HOSTIP:]HOSTPORT:PORT/PROTO` specs:
/// `range` consecutive ports, each protocol of the comma-separated list.
///
/// # Errors
/// [`PluginError::Invalid`] for a bad host address, protocol (vswitchd has no SCTP), a zero
/// port or a range that runs past 65535.
pub fn publish_specs(mappings: &[PortMapping]) -> Result<Vec<String>, PluginError> {
    let mut specs = Vec::new();
    for pm in mappings {
        let bad = |why: String| {
            PluginError::Invalid(format!(
                "port mapping {}:{}:{}/{} range {}: {why}",
                pm.host_ip, pm.host_port, pm.container_port, pm.protocol, pm.range
            ))
        };
        let host_ip: IpAddr = match pm.host_ip.as_str() {
            "" => Ipv4Addr::UNSPECIFIED.into(),
            ip => ip
                .parse()
                .map_err(|_| bad(format!("{ip:.64?} is not an IP address")))?,
        };
        let mut protocols = Vec::new();
        for p in pm.protocol.split(',').map(str::trim) {
            protocols.push(match p {
                "tcp" | "" => crate::api::types::Protocol::Tcp,
                "udp" => crate::api::types::Protocol::Udp,
                other => return Err(bad(format!("protocol {other:.16?} is not supported"))),
            });
        }
        if pm.host_port == 0 || pm.container_port == 0 {
            return Err(bad("port 0".into()));
        }
        let range = pm.range.max(1);
        let last = |first: u16| first.checked_add(range - 1);
        if last(pm.host_port).is_none() || last(pm.container_port).is_none() {
            return Err(bad("the range runs past port 65535".into()));
        }
        for i in 0..range {
            for &protocol in &protocols {
                let m = crate::api::types::PortMapping {
                    host_ip,
                    host_port: pm.host_port + i,
                    container_port: pm.container_port + i,
                    protocol,
                };
                specs.push(m.to_string());
            }
        }
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(host_ip: &str, host: u16, ctr: u16, proto: &str, range: u16) -> PortMapping {
        PortMapping {
            container_port: ctr,
            host_ip: host_ip.into(),
            host_port: host,
            protocol: proto.into(),
            range,
        }
    }

    #[test]
    fn port_ranges_and_protocol_lists_expand() {
        let specs = publish_specs(&[
            pm("", 8080, 80, "tcp", 1),
            pm("127.0.0.1", 9000, 90, "tcp,udp", 3),
            pm("::1", 7000, 70, "udp", 0),
        ])
        .unwrap();
        assert_eq!(
            specs,
            [
                "0.0.0.0:8080:80/tcp",
                "127.0.0.1:9000:90/tcp",
                "127.0.0.1:9000:90/udp",
                "127.0.0.1:9001:91/tcp",
                "127.0.0.1:9001:91/udp",
                "127.0.0.1:9002:92/tcp",
                "127.0.0.1:9002:92/udp",
                "[::1]:7000:70/udp",
            ]
        );
        for (bad, why) in [
            (pm("", 8080, 80, "sctp", 1), "protocol \"sctp\""),
            (pm("x", 8080, 80, "tcp", 1), "not an IP address"),
            (pm("", 65535, 80, "tcp", 2), "past port 65535"),
            (pm("", 0, 80, "tcp", 1), "port 0"),
        ] {
            let e = publish_specs(&[bad]).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }

    fn network(options: &[(&str, &str)]) -> Network {
        Network {
            created: None,
            dns_enabled: true,
            driver: "vswitch".into(),
            id: "0".repeat(64),
            internal: false,
            ipv6_enabled: false,
            name: "n1".into(),
            network_interface: None,
            options: Some(
                options
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ipam_options: None,
            subnets: None,
            routes: None,
            network_dns_servers: None,
            labels: None,
        }
    }

    #[test]
    fn options_are_checked() {
        let o = options(&network(&[
            ("socket", "/x.sock"),
            ("icc", "false"),
            ("mtu", "9000"),
            ("internal", "true"),
        ]))
        .unwrap();
        assert_eq!(o.socket, PathBuf::from("/x.sock"));
        assert_eq!((o.icc, o.mtu, o.internal), (Some(false), Some(9000), true));
        for (opts, why) in [
            (&[("icc", "no")][..], "icc=\"no\": must be true or false"),
            (&[("mtu", "big")][..], "mtu=\"big\": not a number"),
            (&[("color", "red")][..], "unknown option \"color\""),
        ] {
            let e = options(&network(opts)).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn subnets_one_per_family() {
        let s = |net: &str, gw: Option<&str>| Subnet {
            gateway: gw.map(|g| g.parse().unwrap()),
            lease_range: None,
            subnet: net.parse().unwrap(),
        };
        let (v4, v6) = split_subnets(&[s("fd00:1::/64", None), s("10.1.0.0/24", None)]).unwrap();
        assert_eq!(v4.unwrap().subnet.to_string(), "10.1.0.0/24");
        assert_eq!(v6.unwrap().subnet.to_string(), "fd00:1::/64");
        let e = split_subnets(&[s("10.1.0.0/24", None), s("10.2.0.0/24", None)]).unwrap_err();
        assert!(e.to_string().contains("at most one IPv4"), "{e}");
        let e = split_subnets(&[s("10.1.0.0/24", Some("fd00::1"))]).unwrap_err();
        assert!(e.to_string().contains("not of the family"), "{e}");
    }
}
