//! What configures one network's NAT ([`NatConfig`], with its IPv6 side [`Ipv6Config`]),
//! what it reports ([`NatStats`], [`NatCounters`]) and how its runtime API fails
//! ([`NatError`]).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::dns;

/// The IPv6 side of a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Config {
    /// The gateway's IPv6 address (containers' default IPv6 route).
    pub gateway_ip: Ipv6Addr,
    /// The network's IPv6 subnet address and prefix length.
    pub subnet: (Ipv6Addr, u8),
}

impl Ipv6Config {
    pub(crate) fn in_subnet(&self, ip: Ipv6Addr) -> bool {
        let (net, len) = self.subnet;
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(len.min(128)))
        };
        u128::from(ip) & mask == u128::from(net) & mask
    }
}

/// How the gateway translates for one network.
#[derive(Clone, Debug)]
pub struct NatConfig {
    /// The gateway address (containers' default route).
    pub gateway_ip: Ipv4Addr,
    /// The gateway MAC.
    pub gateway_mac: [u8; 6],
    /// The network's subnet address and prefix length.
    pub subnet: (Ipv4Addr, u8),
    /// Link MTU of the network (both families; at least 1280 when `ipv6` is set).
    pub mtu: u32,
    /// The network's IPv6 side, if it has one (None: IPv6 frames are dropped).
    pub ipv6: Option<Ipv6Config>,
    /// No translation at all: containers reach only each other and the gateway.
    pub internal: bool,
    /// Connections to the gateway address go to the host's 127.0.0.1 (to ::1 for the IPv6
    /// gateway address).
    pub host_loopback: bool,
    /// Most TCP+UDP+ICMP flows at once (default 4096).
    pub max_flows: usize,
    /// Most flows one container may hold (default a quarter of `max_flows`).
    pub max_flows_per_endpoint: usize,
    /// An established TCP flow idle this long is reset (default 2 h).
    pub tcp_idle_timeout: Duration,
    /// A TCP flow the container closed but the far side did not, idle this long, is reset
    /// (conntrack's FIN-wait, default 120 s).
    pub fin_timeout: Duration,
    /// A TCP flow the far side closed but the container did not, idle this long, is reset
    /// (conntrack's close-wait, default 60 s).
    pub close_wait_timeout: Duration,
    /// Idle time after which a UDP or ICMP flow is forgotten (default 60 s).
    pub udp_timeout: Duration,
    /// How long an outbound TCP dial may take before the container is told "unreachable"
    /// (default 10 s).
    pub connect_timeout: Duration,
    /// Largest receive buffer (container → far side) a TCP flow grows to (default 4 MiB;
    /// flows start at 4 KiB, see `tcp/buffers.rs`). Measured at MTU 65520 with fixed
    /// buffers, 1 MiB gave 9.2 Gbit/s with 133 retransmits, 4 MiB 14.2 Gbit/s with 12.
    pub tcp_rx_buffer: usize,
    /// Largest send buffer (far side → container) a TCP flow grows to (default 1 MiB).
    pub tcp_tx_buffer: usize,
    /// Bytes all TCP flow buffers of the network may hold together (default 256 MiB); a flow
    /// that cannot get its first 8 KiB is refused, one that cannot grow keeps what it has.
    pub nat_memory: usize,
    /// Upstream resolvers of the DNS responder.
    pub dns: dns::DnsConfig,
    /// The IPv4 address the DNS responder listens on (UDP and TCP port 53). None (the
    /// default): the gateway address. Another address (slirp4netns's net+3) is served *only*
    /// there: port 53 of the gateway is then an ordinary gateway port (the host's loopback
    /// with `host_loopback`, closed otherwise), and every other port of the DNS address is
    /// closed (ICMP port unreachable, TCP reset). The gateway must also answer ARP and ping
    /// for it ([`crate::Gateway::with_alias_v4`]).
    pub dns_ip: Option<Ipv4Addr>,
    /// The IPv6 address the DNS responder listens on, as `dns_ip` (None: the IPv6 gateway
    /// address; ignored without `ipv6`; [`crate::Gateway::with_alias_v6`] answers its NDP).
    pub dns_ip6: Option<Ipv6Addr>,
    /// Whether the DNS responder runs (default true). Off (slirp4netns's `--disable-dns`):
    /// port 53 of the DNS address gets ICMP port unreachable (TCP: a reset) like its other
    /// ports; when that address is the gateway's, it is an ordinary gateway port.
    pub dns_enabled: bool,
    /// Single-container networks only (never a shared network): the source MAC of every
    /// frame the NAT receives becomes the default neighbour ([`crate::Nat::set_default_neighbor`]),
    /// so a container whose MAC was not known up front, or that took its address by DHCP
    /// or SLAAC, gets its traffic. Default false.
    pub learn_neighbor: bool,
    /// The local IPv4 address the host sockets of outgoing IPv4 flows (TCP, UDP, ping) are
    /// bound to (slirp4netns's `--outbound-addr`); None (the default): the kernel chooses.
    /// A flow whose socket cannot be bound is refused like any failed dial.
    pub outbound_ip: Option<Ipv4Addr>,
    /// The same for IPv6 flows (`--outbound-addr6`).
    pub outbound_ip6: Option<Ipv6Addr>,
}

impl NatConfig {
    /// The defaults for a network.
    pub fn new(
        gateway_ip: Ipv4Addr,
        gateway_mac: [u8; 6],
        subnet: (Ipv4Addr, u8),
        mtu: u32,
    ) -> Self {
        Self {
            gateway_ip,
            gateway_mac,
            subnet,
            mtu,
            ipv6: None,
            internal: false,
            host_loopback: false,
            max_flows: 4096,
            max_flows_per_endpoint: 1024,
            tcp_idle_timeout: Duration::from_secs(7200),
            fin_timeout: Duration::from_secs(120),
            close_wait_timeout: Duration::from_secs(60),
            udp_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            tcp_rx_buffer: 4 << 20,
            tcp_tx_buffer: 1 << 20,
            nat_memory: 256 << 20,
            dns: dns::DnsConfig::default(),
            dns_ip: None,
            dns_ip6: None,
            dns_enabled: true,
            learn_neighbor: false,
            outbound_ip: None,
            outbound_ip6: None,
        }
    }

    /// Where the DNS responder listens on IPv4.
    pub(crate) fn dns_addr(&self) -> Ipv4Addr {
        self.dns_ip.unwrap_or(self.gateway_ip)
    }

    /// Where the DNS responder listens on IPv6 (None without `ipv6`).
    pub(crate) fn dns_addr6(&self) -> Option<Ipv6Addr> {
        self.ipv6.map(|v6| self.dns_ip6.unwrap_or(v6.gateway_ip))
    }

    /// Whether `ip` is the DNS responder's address of its family (whether or not it runs).
    pub(crate) fn is_dns(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => v4 == self.dns_addr(),
            IpAddr::V6(v6) => self.dns_addr6() == Some(v6),
        }
    }

    /// Whether UDP or TCP to `ip` port 53 is the DNS responder's.
    pub(crate) fn serves_dns(&self, ip: IpAddr) -> bool {
        self.dns_enabled && self.is_dns(ip)
    }

    /// The DNS responder's address of `ip`'s family (IPv6 without `ipv6`: unspecified).
    pub(crate) fn dns_for(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => IpAddr::V4(self.dns_addr()),
            IpAddr::V6(_) => IpAddr::V6(self.dns_addr6().unwrap_or(Ipv6Addr::UNSPECIFIED)),
        }
    }

    /// Whether `ip` is one of the network's own service addresses: the gateway, or the DNS
    /// address when it is another one.
    pub(crate) fn is_service(&self, ip: IpAddr) -> bool {
        self.is_gateway(ip) || self.is_dns(ip)
    }

    /// Whether `ip` is the DNS address and not the gateway's: nothing but DNS is served there.
    pub(crate) fn is_dns_only(&self, ip: IpAddr) -> bool {
        self.is_dns(ip) && !self.is_gateway(ip)
    }

    /// The local address outgoing flows to `target`'s family are bound to, if configured.
    pub(crate) fn outbound_for(&self, target: IpAddr) -> Option<IpAddr> {
        match target {
            IpAddr::V4(_) => self.outbound_ip.map(IpAddr::V4),
            IpAddr::V6(_) => self.outbound_ip6.map(IpAddr::V6),
        }
    }

    pub(crate) fn in_subnet(&self, ip: Ipv4Addr) -> bool {
        let (net, len) = self.subnet;
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        u32::from(ip) & mask == u32::from(net) & mask
    }

    /// Whether `ip` is in the subnet of its family (an IPv6 address never is without `ipv6`).
    pub(crate) fn in_subnet_ip(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.in_subnet(v4),
            IpAddr::V6(v6) => self.ipv6.is_some_and(|c| c.in_subnet(v6)),
        }
    }

    /// Whether `ip` is a gateway address (of either family).
    pub(crate) fn is_gateway(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => v4 == self.gateway_ip,
            IpAddr::V6(v6) => self.ipv6.is_some_and(|c| c.gateway_ip == v6),
        }
    }

    /// The gateway address of `ip`'s family (IPv6 without `ipv6`: the unspecified address).
    pub(crate) fn gateway_for(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => IpAddr::V4(self.gateway_ip),
            IpAddr::V6(_) => IpAddr::V6(self.ipv6.map_or(Ipv6Addr::UNSPECIFIED, |c| c.gateway_ip)),
        }
    }
}

/// What the NAT has done and holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatStats {
    /// Live TCP flows (outbound and published).
    pub tcp_flows: usize,
    /// Live UDP flows (outbound and published).
    pub udp_flows: usize,
    /// Live ICMP echo flows.
    pub icmp_flows: usize,
    /// The flow limit.
    pub max_flows: usize,
    /// Bytes the TCP flows' buffers hold now.
    pub buffer_bytes: usize,
    /// The buffer budget.
    pub buffer_limit: usize,
    /// Cumulative counters.
    pub counters: NatCounters,
}

/// Cumulative NAT counters (in the API as they are here, field names in PascalCase).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "PascalCase", default)
)]
pub struct NatCounters {
    /// TCP flows established with the far side.
    pub tcp_opened: u64,
    /// Outbound dials refused by the far side (container got RST).
    pub tcp_refused: u64,
    /// Outbound dials that failed otherwise (container got ICMP unreachable).
    pub tcp_unreachable: u64,
    /// UDP flows created.
    pub udp_flows: u64,
    /// ICMP echo requests forwarded.
    pub icmp_echoes: u64,
    /// New flows refused because the table was full.
    pub refused_limit: u64,
    /// New flows refused because their container held its whole quota (flows, pending dials
    /// or DNS-over-TCP connections).
    pub refused_endpoint_quota: u64,
    /// Packets refused because their destination is the daemon itself or a reserved address
    /// (loopback, 0.0.0.0/8, multicast, broadcast, 240/4; over IPv6 ::, ::1, multicast,
    /// link-local, site-local and the IPv4-mapped/compatible/translated forms).
    pub forbidden_destination: u64,
    /// DNS queries answered by the gateway itself (names, aliases, PTR, NXDOMAIN for single
    /// labels, REFUSED on internal networks, FORMERR).
    pub dns_local: u64,
    /// DNS queries relayed to an upstream resolver.
    pub dns_relayed: u64,
    /// DNS queries that would have been relayed, refused because too many were in flight.
    pub dns_refused: u64,
    /// Relayed DNS queries no upstream answered (the container got SERVFAIL).
    pub dns_servfail: u64,
    /// DNS packets dropped unanswered (no readable header, or a response rather than a query).
    pub dns_dropped: u64,
    /// New TCP flows refused because the network's buffer budget was spent.
    pub refused_memory: u64,
    /// Flows removed after their idle timeout (UDP, ICMP, and TCP by the aging rules).
    pub expired: u64,
    /// Packets dropped because the network is internal.
    pub internal_drops: u64,
    /// Bytes from containers written straight from their frames to host sockets (TCP direct
    /// receive, `tcp/direct.rs`); the rest passed through smoltcp's receive buffers.
    pub tcp_direct_bytes: u64,
}

/// Errors of the runtime API.
#[derive(Debug, thiserror::Error)]
pub enum NatError {
    /// The host address/port is already published on this network.
    #[error("{0} is already published")]
    AlreadyPublished(String),
    /// The network is internal.
    #[error("network is internal: no published ports")]
    Internal,
    /// The published port cannot be served on this network: its host and container
    /// addresses differ in family, or it is IPv6 and the network has no IPv6 side.
    #[error("{0}")]
    Family(String),
    /// An OS error.
    #[error("{0}")]
    Io(#[from] io::Error),
}
