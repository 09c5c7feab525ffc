//! The gateway of one network: the virtual router address containers use as their default
//! route, and the NAT behind it.
//!
//! The switch hands this crate every Ethernet frame addressed to the gateway (unicast to
//! its MAC, or broadcast/multicast). [`Gateway`] provides the gateway's own services: ARP for
//! its address (`arp.rs`), Neighbor Discovery for its IPv6 addresses (`ndp.rs`) and replies to
//! pings and ping6s sent to it (`icmp.rs`); opt-in, for a network serving one
//! self-configuring container (the slirp4netns drop-in), aliases answered like its address,
//! a DHCPv4 server (`dhcp.rs`) and Router Advertisements (`ra.rs`). [`Nat`] translates the
//! rest, replacing iptables MASQUERADE and DNAT without privileges: TCP is terminated in
//! smoltcp and re-originated from host sockets (`tcp.rs`), UDP and ICMP echo go through
//! per-flow host sockets (`udp.rs`, `ping.rs`), and published ports carry host connections
//! into containers with the real client address. `dns.rs` answers container names on the
//! gateway address (over TCP through `tcp/local.rs`) and `dns_relay.rs` relays other queries
//! upstream. `ctx.rs` is what every protocol owner shares (quotas, destination policy, the
//! packets the gateway writes itself); `flow.rs` the generation-checked flow table.
//! `device.rs` adapts smoltcp to TAP frames with virtio-net offloads.
//!
//! Both families: a network may have an IPv6 side ([`Ipv6Config`]); the NAT then translates
//! IPv6 TCP, UDP and ICMPv6 echo (NAT66) to host sockets of that family under IPv4's rules,
//! serves DNS on the gateway's IPv6 address, and carries published ports bound on IPv6
//! addresses to the container's IPv6 address. The gateway's own NDP and ping6 answers are
//! `Gateway`'s.
#![forbid(unsafe_code)]

mod arp;
mod config;
mod ctx;
mod device;
mod dhcp;
mod dns;
mod dns_relay;
mod engine;
pub mod flow;
mod gateway;
mod icmp;
mod ndp;
mod ping;
mod publish;
mod ra;
mod tcp;
pub mod timer;
mod udp;

pub use device::Sink;
pub use dhcp::{DhcpConfig, MAX_POOL, OFFER_HOLD};
pub use dns::{DnsConfig, DnsView, HOST_NAME, Zone, answer_query};
pub use engine::{Ipv6Config, Nat, NatConfig, NatCounters, NatError, NatStats};
pub use flow::{FlowInfo, FlowProtocol};
pub use gateway::{Gateway, GatewayCounters};
pub use publish::{PortMapping, Protocol, Publish};
pub use ra::{INITIAL_ADVERTS, INITIAL_INTERVAL, RaConfig};
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests6;
