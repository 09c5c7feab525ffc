//! Published ports: what a user asks for ([`PortMapping`], `[HOSTIP:]HOSTPORT:PORT[/tcp|udp]`,
//! also the API's and the state file's type) and what the NAT serves ([`Publish`]: the
//! mapping and the container's address). How they are carried is in `tcp/accept.rs` and
//! `udp.rs`.

use std::net::{Ipv4Addr, SocketAddrV4};

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
    /// Host address listened on (default 0.0.0.0).
    pub host_ip: Ipv4Addr,
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
        write!(
            f,
            "{}:{}:{}/{}",
            self.host_ip, self.host_port, self.container_port, self.protocol
        )
    }
}

impl std::str::FromStr for PortMapping {
    type Err = String;

    /// Parses `[HOSTIP:]HOSTPORT:PORT[/tcp|udp]`.
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
        let parts: Vec<&str> = ports.split(':').collect();
        let (ip, hp, cp) = match parts.as_slice() {
            [hp, cp] => (Ipv4Addr::UNSPECIFIED, *hp, *cp),
            [ip, hp, cp] => (
                ip.parse()
                    .map_err(|_| bad(&format!("{ip:?} is not an IPv4 address")))?,
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

/// A published port and where it leads: the mapping, and the container's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Publish {
    /// What is published.
    pub mapping: PortMapping,
    /// The container's address.
    pub container_ip: Ipv4Addr,
}

impl Publish {
    /// The host address and port listened on.
    pub fn host(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.mapping.host_ip, self.mapping.host_port)
    }

    /// The container's side.
    pub fn container(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.container_ip, self.mapping.container_port)
    }
}
