//! Published ports: what a user asks for ([`PortMapping`], `[HOSTIP:]HOSTPORT:PORT[/tcp|udp]`,
//! also the API's and the state file's type) and what the NAT serves ([`Publish`]: the
//! mapping and the container's address). How they are carried is in `tcp/accept.rs` and
//! `udp.rs`. Either family: the host address of a mapping may be IPv6 (`[::]:8080:80`), and
//! a [`Publish`] never mixes families (an IPv6 host address leads to the container's IPv6
//! address).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Transport protocol of a published port (in the API as `"tcp"` or `"udp"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// A published port: `[HOSTIP:]HOSTPORT:PORT[/tcp|udp]` on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "PascalCase")
)]
pub struct PortMapping {
    /// Host address listened on (default 0.0.0.0), either family.
    pub host_ip: IpAddr,
    /// Host port.
    pub host_port: u16,
    /// The container's port.
    pub container_port: u16,
    /// Transport protocol.
    pub protocol: Protocol,
}

/// Transport protocol of a mapping (the NAT's own type).
impl std::fmt::Display for PortMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.host_ip {
            IpAddr::V4(ip) => write!(f, "{ip}:")?,
            IpAddr::V6(ip) => write!(f, "[{ip}]:")?,
        }
        write!(
            f,
            "{}:{}/{}",
            self.host_port, self.container_port, self.protocol
        )
    }
}

impl PortMapping {
    /// Whether the host side is an IPv6 address (the mapping then leads to the container's
    /// IPv6 address).
    pub fn is_ipv6(&self) -> bool {
        self.host_ip.is_ipv6()
    }
}

impl std::str::FromStr for PortMapping {
    type Err = String;

    /// Parses `[HOSTIP:]HOSTPORT:PORT[/tcp|udp]`; an IPv6 HOSTIP is written in brackets
    /// (`[::1]:8080:80`).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("invalid port mapping {s:?}: {why} (expected [HOSTIP:]HOSTPORT:PORT[/tcp|udp])")
        };
        let (ports, proto) = match s.rsplit_once('/') {
            Some((p, "tcp")) => (p, Protocol::Tcp),
            Some((p, "udp")) => (p, Protocol::Udp),
            Some((_, other)) => return Err(bad(&format!("unknown protocol {other:?}"))),
            None => (s, Protocol::Tcp),
        };
        let (ip, ports): (IpAddr, &str) = match ports.strip_prefix('[') {
            Some(rest) => {
                let Some((ip, ports)) = rest.split_once("]:") else {
                    return Err(bad("an IPv6 address must be followed by ]:"));
                };
                let ip: std::net::Ipv6Addr = ip
                    .parse()
                    .map_err(|_| bad(&format!("{ip:?} is not an IPv6 address")))?;
                (ip.into(), ports)
            }
            None => (Ipv4Addr::UNSPECIFIED.into(), ports),
        };
        let parts: Vec<&str> = ports.split(':').collect();
        let (ip, hp, cp) = match parts.as_slice() {
            [hp, cp] => (ip, *hp, *cp),
            [host, hp, cp] if ip.is_ipv4() => (
                IpAddr::V4(host.parse().map_err(|_| {
                    bad(&format!(
                        "{host:?} is not an IPv4 address (write IPv6 ones in brackets)"
                    ))
                })?),
                *hp,
                *cp,
            ),
            _ => return Err(bad("wrong number of fields")),
        };
        let port = |p: &str| match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(bad(&format!("{p:?} is not a port (1-65535)"))),
        };
        Ok(PortMapping {
            host_ip: ip,
            host_port: port(hp)?,
            container_port: port(cp)?,
            protocol: proto,
        })
    }
}

/// A published port and where it leads: the mapping, and the container's address (of the
/// host address's family; `Nat::add_publish` refuses a mix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Publish {
    /// What is published.
    pub mapping: PortMapping,
    /// The container's address.
    pub container_ip: IpAddr,
}

impl Publish {
    /// The host address and port listened on.
    pub fn host(&self) -> SocketAddr {
        SocketAddr::new(self.mapping.host_ip, self.mapping.host_port)
    }

    /// The container's side.
    pub fn container(&self) -> SocketAddr {
        SocketAddr::new(self.container_ip, self.mapping.container_port)
    }

    /// Whether this is an IPv6 publish (host and container sides both IPv6).
    pub fn is_ipv6(&self) -> bool {
        self.container_ip.is_ipv6()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_host_addresses_are_written_in_brackets() {
        let m: PortMapping = "[::1]:8080:80/udp".parse().expect("parses");
        assert_eq!(m.host_ip, IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
        assert_eq!((m.host_port, m.container_port), (8080, 80));
        assert!(m.is_ipv6());
        assert_eq!(m.to_string(), "[::1]:8080:80/udp");
        assert_eq!(m.to_string().parse::<PortMapping>(), Ok(m), "round trip");
        let v4: PortMapping = "127.0.0.1:8080:80".parse().expect("parses");
        assert!(!v4.is_ipv6());
        for bad in [
            "::1:8080:80",
            "[::1:8080:80",
            "[nope]:1:2",
            "[::1]:1",
            "[127.0.0.1]:1:2",
        ] {
            assert!(bad.parse::<PortMapping>().is_err(), "{bad} refused");
        }
    }
}
