//! slirp4netns's command line, as its callers write it: GNU getopt forms (`-r3`, `-r 3`,
//! `--ready-fd=3`, `--ready-fd 3`, bundled `-c6`, options after the positional arguments),
//! checked into a [`Plan`] with one line per bad input. clap parses the same forms.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;
use std::path::PathBuf;

use clap::Parser;
use ipnet::Ipv4Net;

/// The first line of `--version`; callers look for `slirp4netns version`.
pub const VERSION: &str = concat!(
    "slirp4netns version 1.2.0+vswitchd.",
    env!("CARGO_PKG_VERSION")
);

/// `--help`: slirp4netns's usage, with every flag podman, rootlesskit and dockerd-rootless.sh
/// probe for, and what the drop-in does differently.
pub const USAGE: &str = "\
Usage: slirp4netns [OPTION]... PID|PATH [TAPNAME]
User-mode networking for unprivileged network namespaces, served by vswitchd's NAT
(vswitchd invoked as slirp4netns: a drop-in for slirp4netns 1.2).

-c, --configure          bring up the interface (lo up; TAPNAME up with the MTU, MAC,
                         address net+100 and a default route via net+2)
-e, --exit-fd=FD         specify the FD for terminating slirp4netns (exit 0 when it
                         is closed)
-r, --ready-fd=FD        specify the FD to write to when the network is configured
                         (\"1\" is written, then FD is closed)
-m, --mtu=MTU            specify MTU (default=65520, 68..65520)
--cidr=CIDR              specify network address CIDR (default=10.0.2.0/24, prefix 1..25)
--disable-host-loopback  prohibit connecting to 127.0.0.1:* on the host namespace
                         (by default net+2 reaches the host's 127.0.0.1)
--netns-type=TYPE        specify network namespace type ([path|pid], default=pid)
--userns-path=PATH       specify user namespace path
-a, --api-socket=PATH    specify API socket path (add_hostfwd, list_hostfwd,
                         remove_hostfwd)
-6, --enable-ipv6        enable IPv6: fd00::/64 by router advertisement, gateway fd00::2,
                         DNS fd00::3
--enable-sandbox         create a new mount namespace (and drop all caps except
                         CAP_NET_BIND_SERVICE if running as the root); vswitchd: no
                         file-system access (Landlock) and a seccomp filter once running
--enable-seccomp         enable seccomp to limit syscalls; vswitchd: a filter that refuses
                         execve, ptrace, mount, namespace and module calls
--outbound-addr=IPv4|IFACE   outbound IPv4 address (or the interface's) of NAT flows
--outbound-addr6=IPv6|IFACE  outbound IPv6 address (or the interface's); needs -6
--disable-dns            disable the built-in DNS server at net+3
--macaddress=MAC         specify the MAC address of the TAP (only valid with -c)
--target-type=TYPE       specify the target type ([netns], default=netns; bess is not
                         supported)
-h, --help               show this help and exit
-v, --version            show version and exit

Addresses (slirp4netns's): gateway and host net+2, DNS net+3, DHCP net+15..net+30,
recommended IP net+100. Published ports through the API socket; a connection from the
host's loopback appears in the namespace as coming from net+2.";

/// The raw flags, as clap sees them.
#[derive(Parser, Debug)]
#[command(
    name = "slirp4netns",
    disable_help_flag = true,
    disable_version_flag = true,
    override_usage = "slirp4netns [OPTION]... PID|PATH [TAPNAME]"
)]
struct Raw {
    #[arg(short = 'c', long = "configure")]
    configure: bool,
    #[arg(
        short = 'e',
        long = "exit-fd",
        value_name = "FD",
        allow_hyphen_values = true
    )]
    exit_fd: Option<i64>,
    #[arg(
        short = 'r',
        long = "ready-fd",
        value_name = "FD",
        allow_hyphen_values = true
    )]
    ready_fd: Option<i64>,
    #[arg(
        short = 'm',
        long = "mtu",
        value_name = "MTU",
        allow_hyphen_values = true
    )]
    mtu: Option<i64>,
    #[arg(long = "cidr", value_name = "CIDR")]
    cidr: Option<String>,
    #[arg(long = "disable-host-loopback", alias = "no-host-loopback")]
    disable_host_loopback: bool,
    #[arg(long = "netns-type", value_name = "TYPE")]
    netns_type: Option<String>,
    #[arg(long = "userns-path", value_name = "PATH")]
    userns_path: Option<PathBuf>,
    #[arg(short = 'a', long = "api-socket", value_name = "PATH")]
    api_socket: Option<PathBuf>,
    #[arg(short = '6', long = "enable-ipv6")]
    enable_ipv6: bool,
    #[arg(long = "enable-sandbox", alias = "create-sandbox")]
    enable_sandbox: bool,
    #[arg(long = "enable-seccomp")]
    enable_seccomp: bool,
    #[arg(long = "outbound-addr", value_name = "IPv4|IFACE")]
    outbound_addr: Option<String>,
    #[arg(long = "outbound-addr6", value_name = "IPv6|IFACE")]
    outbound_addr6: Option<String>,
    #[arg(long = "disable-dns")]
    disable_dns: bool,
    #[arg(long = "macaddress", value_name = "MAC")]
    macaddress: Option<String>,
    #[arg(long = "target-type", value_name = "TYPE")]
    target_type: Option<String>,
    #[arg(short = 'h', long = "help")]
    help: bool,
    #[arg(short = 'v', long = "version")]
    version: bool,
    /// PID|PATH [TAPNAME]
    #[arg(value_name = "PID|PATH [TAPNAME]", num_args = 0..)]
    positional: Vec<String>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// `--help`.
    Help,
    /// `--version`.
    Version,
    /// Serve a namespace.
    Serve(Box<Plan>),
}

/// Which namespace to serve and how, checked.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The network namespace file (`/proc/PID/ns/net` or the PATH given).
    pub netns: PathBuf,
    /// The user namespace to join first, if any.
    pub userns: Option<PathBuf>,
    /// The TAP's name.
    pub tapname: String,
    /// `-c`.
    pub configure: bool,
    /// `--exit-fd`.
    pub exit_fd: Option<RawFd>,
    /// `--ready-fd`.
    pub ready_fd: Option<RawFd>,
    /// Link MTU.
    pub mtu: u32,
    /// The virtual network.
    pub cidr: Ipv4Net,
    /// net+2 reaches the host's 127.0.0.1.
    pub host_loopback: bool,
    /// `--api-socket`.
    pub api_socket: Option<PathBuf>,
    /// `--enable-ipv6`.
    pub ipv6: bool,
    /// `--enable-sandbox`.
    pub sandbox: bool,
    /// `--enable-seccomp`.
    pub seccomp: bool,
    /// Outbound IPv4 source of NAT flows.
    pub outbound4: Option<Ipv4Addr>,
    /// Outbound IPv6 source of NAT flows.
    pub outbound6: Option<Ipv6Addr>,
    /// `--disable-dns`.
    pub dns: bool,
    /// `--macaddress` (with `-c`).
    pub mac: Option<[u8; 6]>,
}

/// The default network, as slirp4netns's.
pub const DEFAULT_CIDR: &str = "10.0.2.0/24";
/// The default MTU (what podman and rootlesskit pass).
pub const DEFAULT_MTU: u32 = 65520;

impl Plan {
    /// net+`n` (n small; the prefix is at most /25, so net+100 fits).
    pub fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.cidr.network()).wrapping_add(n))
    }
    /// The gateway (and host), net+2.
    pub fn gateway(&self) -> Ipv4Addr {
        self.host(2)
    }
    /// The DNS address, net+3.
    pub fn dns_ip(&self) -> Ipv4Addr {
        self.host(3)
    }
    /// The recommended (and `-c`) address, net+100.
    pub fn guest(&self) -> Ipv4Addr {
        self.host(100)
    }
}

/// Parses slirp4netns's arguments (without argv[0]).
///
/// # Errors
/// One line naming the bad input.
pub fn parse<I, T>(args: I) -> Result<Invocation, String>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let argv = std::iter::once(std::ffi::OsString::from("slirp4netns"))
        .chain(args.into_iter().map(Into::into));
    let raw = Raw::try_parse_from(argv).map_err(|e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("bad arguments").to_string();
        first.trim_start_matches("error: ").to_string()
    })?;
    if raw.help {
        return Ok(Invocation::Help);
    }
    if raw.version {
        return Ok(Invocation::Version);
    }
    plan(raw).map(|p| Invocation::Serve(Box::new(p)))
}

fn plan(raw: Raw) -> Result<Plan, String> {
    match raw.target_type.as_deref() {
        None | Some("netns") => {}
        Some("bess") => {
            return Err("--target-type=bess is not supported by the vswitchd drop-in".into());
        }
        Some(other) => return Err(format!("unknown target type: {other}")),
    }
    let (target, tapname) = match raw.positional.as_slice() {
        [] => return Err("missing PID|PATH (see --help)".into()),
        [t] => (t.clone(), "tap0".to_string()),
        [t, tap] => (t.clone(), tap.clone()),
        [_, _, extra, ..] => return Err(format!("too many arguments: {extra}")),
    };
    check_ifname(&tapname)?;
    let netns_type = raw.netns_type.as_deref().unwrap_or("pid");
    let (netns, userns) = match netns_type {
        "pid" => {
            let pid: u32 = target
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("PID must be a positive integer: {target:?}"))?;
            let userns = raw
                .userns_path
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("/proc/{pid}/ns/user")));
            (PathBuf::from(format!("/proc/{pid}/ns/net")), Some(userns))
        }
        "path" => (PathBuf::from(&target), raw.userns_path.clone()),
        "tapfd" => {
            return Err("--netns-type=tapfd is not supported by the vswitchd drop-in".into());
        }
        other => {
            return Err(format!(
                "unknown netns type: {other} (expected pid or path)"
            ));
        }
    };
    if let Some(u) = &raw.userns_path
        && !u.exists()
    {
        return Err(format!("userns path doesn't exist: {}", u.display()));
    }
    let mtu = match raw.mtu {
        None => DEFAULT_MTU,
        Some(m) if (68..=65520).contains(&m) => m as u32,
        Some(m) => return Err(format!("MTU must be between 68 and 65520: {m}")),
    };
    if raw.enable_ipv6 && mtu < 1280 {
        return Err(format!(
            "MTU must be at least 1280 with --enable-ipv6: {mtu}"
        ));
    }
    let cidr = parse_cidr(raw.cidr.as_deref().unwrap_or(DEFAULT_CIDR))?;
    let exit_fd = raw.exit_fd.map(|fd| check_fd("exit-fd", fd)).transpose()?;
    let ready_fd = raw
        .ready_fd
        .map(|fd| check_fd("ready-fd", fd))
        .transpose()?;
    if let Some(p) = &raw.api_socket {
        // sun_path holds 108 bytes with the terminating NUL.
        if p.as_os_str().len() >= 108 {
            return Err(format!("API socket path too long: {}", p.display()));
        }
        if p.as_os_str().is_empty() {
            return Err("API socket path is empty".into());
        }
    }
    let mac = match &raw.macaddress {
        None => None,
        Some(_) if !raw.configure => {
            return Err("--macaddress can only be used with -c (--configure)".into());
        }
        Some(m) => Some(parse_mac(m)?),
    };
    let outbound4 = raw.outbound_addr.as_deref().map(outbound_v4).transpose()?;
    let outbound6 = match raw.outbound_addr6.as_deref() {
        None => None,
        Some(_) if !raw.enable_ipv6 => {
            return Err("--outbound-addr6 needs --enable-ipv6".into());
        }
        Some(s) => Some(outbound_v6(s)?),
    };
    Ok(Plan {
        netns,
        userns,
        tapname,
        configure: raw.configure,
        exit_fd,
        ready_fd,
        mtu,
        cidr,
        host_loopback: !raw.disable_host_loopback,
        api_socket: raw.api_socket,
        ipv6: raw.enable_ipv6,
        sandbox: raw.enable_sandbox,
        seccomp: raw.enable_seccomp,
        outbound4,
        outbound6,
        dns: !raw.disable_dns,
        mac,
    })
}

/// slirp4netns's rule: IPv4, prefix 1..25, the network address itself.
fn parse_cidr(s: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = s
        .parse()
        .map_err(|_| format!("invalid CIDR {s:?}: expected an IPv4 network such as 10.0.2.0/24"))?;
    if !(1..=25).contains(&net.prefix_len()) {
        return Err(format!(
            "invalid CIDR {s:?}: the prefix length must be 1..25"
        ));
    }
    if net.addr() != net.network() {
        return Err(format!(
            "invalid CIDR {s:?}: not a network address (did you mean {}?)",
            net.trunc()
        ));
    }
    Ok(net)
}

fn check_fd(what: &str, fd: i64) -> Result<RawFd, String> {
    let fd = RawFd::try_from(fd)
        .ok()
        .filter(|fd| *fd >= 0)
        .ok_or_else(|| format!("{what} must be a non-negative integer: {fd}"))?;
    // SAFETY: F_GETFD only reads the descriptor table entry.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(format!("{what} {fd} is not an open file descriptor"));
    }
    Ok(fd)
}

/// The API's interface-name rule (`crate::daemon::inputs::check_ifname`), with the drop-in's
/// wording.
fn check_ifname(name: &str) -> Result<(), String> {
    crate::daemon::inputs::check_ifname(name).map_err(|_| {
        format!("invalid TAPNAME {name:?}: 1-15 characters of [A-Za-z0-9_.-], not . or ..")
    })
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad =
        || format!("invalid MAC address {s:?}: expected six hex octets such as 02:00:00:00:00:01");
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next().ok_or_else(bad)?;
        if p.len() != 2 {
            return Err(bad());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    if mac[0] & 1 == 1 {
        return Err(format!("invalid MAC address {s:?}: a multicast address"));
    }
    if mac == [0; 6] {
        return Err(format!("invalid MAC address {s:?}: all zeros"));
    }
    Ok(mac)
}

/// An IPv4 address, or the first IPv4 address of the interface of that name.
fn outbound_v4(s: &str) -> Result<Ipv4Addr, String> {
    if let Ok(ip) = s.parse() {
        return Ok(ip);
    }
    interface_addrs(s)?
        .into_iter()
        .find_map(|a| match a {
            std::net::IpAddr::V4(v4) => Some(v4),
            std::net::IpAddr::V6(_) => None,
        })
        .ok_or_else(|| format!("--outbound-addr: interface {s} has no IPv4 address"))
}

/// An IPv6 address, or the first global IPv6 address of the interface of that name.
fn outbound_v6(s: &str) -> Result<Ipv6Addr, String> {
    if let Ok(ip) = s.parse() {
        return Ok(ip);
    }
    interface_addrs(s)?
        .into_iter()
        .find_map(|a| match a {
            std::net::IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 != 0xfe80 => Some(v6),
            _ => None,
        })
        .ok_or_else(|| format!("--outbound-addr6: interface {s} has no global IPv6 address"))
}

fn interface_addrs(name: &str) -> Result<Vec<std::net::IpAddr>, String> {
    let addrs =
        nix::ifaddrs::getifaddrs().map_err(|e| format!("cannot list interfaces: {}", e.desc()))?;
    let mut found = false;
    let mut out = Vec::new();
    for a in addrs.filter(|a| a.interface_name == name) {
        found = true;
        let Some(addr) = a.address else { continue };
        if let Some(v4) = addr.as_sockaddr_in() {
            out.push(std::net::IpAddr::V4(v4.ip()));
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            out.push(std::net::IpAddr::V6(v6.ip()));
        }
    }
    if !found {
        return Err(format!(
            "{name:?} is neither an IP address nor an interface"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
