//! The learning Ethernet switch at the heart of vswitchd.
//!
//! One [`Network`] is one switching domain (the Docker "bridge network"): a set of
//! ports, a MAC table and a policy. Each container network namespace is attached
//! through a TAP device whose frames arrive at [`Network::forward`], which returns a
//! [`Verdict`]; the caller then writes the frame to the chosen port (or to every
//! port [`Network::for_each_flood_target`] names). This crate only decides; it never
//! touches a file descriptor on the forwarding path.
//!
//! # Guarantees
//!
//! * **Isolation.** A frame never leaves its network: a `Network` only knows its
//!   own ports, and every verdict names one of them (or floods to them). Networks
//!   share nothing.
//! * **Inter-container communication (icc).** With `icc = false`, a container can
//!   talk to the gateway but not to another container: container-to-container
//!   unicast is dropped ([`DropReason::Isolation`]) and a container's flood reaches
//!   only [`GATEWAY`]. The gateway still reaches everyone.
//! * **Anti-spoofing.** A [`PortRole::Container`] port is bound to one MAC, one IPv4
//!   address and (on a dual-stack network) one IPv6 address plus the link-local address
//!   derived from its MAC; frames claiming another identity are dropped, and so are
//!   Neighbor Discovery messages claiming another's address or MAC.
//! * **Bounded, allocation-free forwarding.** [`Network::forward`] and
//!   [`Network::for_each_flood_target`] never allocate, take no locks, do no I/O and
//!   read no clock (time is a [`Tick`] passed in). The MAC table is allocated up
//!   front for its capacity and refuses new entries when full.
//!
//! # Forwarding rules
//!
//! 1. A frame shorter than an Ethernet header (14 bytes) is dropped as
//!    [`DropReason::Runt`].
//! 2. Frames entering on a **Container** port `{mac, ipv4, ipv6}` are filtered:
//!    * the Ethernet source must be `mac` (else [`DropReason::SpoofedMac`]);
//!    * EtherType 0x8100 / 0x88a8 (802.1Q / 802.1ad) → [`DropReason::VlanTagged`];
//!    * ARP (0x0806): the sender hardware address must be `mac`
//!      ([`DropReason::SpoofedMac`]) and the sender protocol address must be `ipv4`
//!      or `0.0.0.0` — an ARP probe ([`DropReason::SpoofedIp`]); an ARP body
//!      shorter than 28 bytes is a [`DropReason::Runt`];
//!    * IPv4 (0x0800): the source address must be `ipv4` ([`DropReason::SpoofedIp`]);
//!      a header shorter than 20 bytes is a [`DropReason::Runt`];
//!    * IPv6 (0x86dd): RA guard — Router Advertisements and Redirects (ICMPv6 134, 137)
//!      are dropped ([`DropReason::RaGuard`]), also behind extension headers and whatever
//!      their source; a header chain that cannot be followed to its upper layer within the
//!      frame, or a header that is not IPv6, is [`DropReason::Malformed`] (a truncated fixed
//!      header is a [`DropReason::Runt`]). With `ipv6: None` (an IPv4-only network) that is
//!      all. With `ipv6: Some(addr)`:
//!      - the source must be `addr`, the link-local address derived from `mac`
//!        ([`MacAddr::link_local_ipv6`]: `fe80::/64` + modified EUI-64), or `::` for a
//!        Neighbor Solicitation (DAD, RFC 4862) or an MLD/MLDv2 report (ICMPv6 131, 143;
//!        RFC 3590) only ([`DropReason::SpoofedIp`]);
//!      - a Neighbor Advertisement (136) must announce one of those two addresses, and a DAD
//!        Neighbor Solicitation (from `::`) may only probe one of them
//!        ([`DropReason::SpoofedIp`]);
//!      - every Source/Target Link-Layer Address option (types 1, 2) of a Router
//!        Solicitation, Neighbor Solicitation or Advertisement must carry `mac`
//!        ([`DropReason::SpoofedMac`]);
//!      - such an ND message shorter than its fixed part, with an option of length 0 or
//!        past the IPv6 payload, or in a fragment (RFC 6980) is [`DropReason::Malformed`];
//!    * every other EtherType: only the MAC check applies.
//!
//!    **Gateway** and **Uplink** ports are trusted: no filters.
//! 3. The source MAC is learned on the ingress port (unless it is a group address).
//!    A container's own MAC is pinned to its port when the port is added, so frames
//!    from containers need no table write; learning never moves a pinned MAC. A full
//!    table learns nothing new (those destinations flood) until entries age out.
//! 4. Destination: a group address (I/G bit set: broadcast, multicast — IPv6 multicast
//!    such as 33:33:ff:…, the solicited-node groups NDP uses) floods within the network. A
//!    known unicast MAC on the ingress port itself is a [`DropReason::Hairpin`]; with
//!    `icc = false` and both ends Container ports it is a [`DropReason::Isolation`];
//!    otherwise it is [`Verdict::Unicast`]. An unknown unicast MAC floods.
//! 5. With `icc = false` a flood from a Container reaches only [`GATEWAY`]; a flood
//!    from the gateway (or an uplink) reaches every other port. Known unicast from a
//!    Container to an Uplink is not isolated (only Container↔Container is).
//! 6. Every frame is counted as received on its ingress port, and every drop
//!    increments that port's `drops[reason]` ([`PortCounters`]).
//!
//! # What it does not do
//!
//! The switch does not parse beyond the fixed offsets listed above, the IPv6 header chain
//! and the Neighbor Discovery fields named there: no IPv4 options, checksums or fragments,
//! no ICMPv6 checksum, hop limit or code checks, no ARP hardware/protocol type validation, no VLANs (tagged frames from containers
//! are dropped, trunk frames pass untouched), no STP. Frames are plain Ethernet
//! without a virtio-net header; the caller strips it. Frames are never modified.
#![forbid(unsafe_code)]

mod counters;
mod guard;
mod mac;
mod mac_table;
mod nd_guard;
mod network;
pub mod overlay;
pub mod port;
mod ra_guard;
mod summary;
pub mod vnet;

pub use mac::{InvalidMac, MacAddr};

use std::fmt;

pub use counters::{DropReason, PortCounters};
pub use mac_table::{Learned, MacTable};
pub use network::{Network, NetworkConfig, Verdict};
pub use overlay::{OVERLAY, RemoteEndpoint};
pub use port::mem::MemPort;
pub use port::{Port, PortRole};
pub use summary::FrameSummary;

/// Identifies a port within one network; assigned by the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u32);

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The gateway's port in every network.
pub const GATEWAY: PortId = PortId(0);

/// A 48-bit Ethernet MAC address.
pub type Mac = [u8; 6];

/// Coarse time in seconds, supplied by the caller.
pub type Tick = u64;

/// The broadcast MAC address `ff:ff:ff:ff:ff:ff`.
pub const BROADCAST: Mac = [0xff; 6];

/// Why a change to a network or its MAC table was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SwitchError {
    /// A port with this id is already attached.
    #[error("port {0} already exists")]
    PortExists(PortId),
    /// The MAC is already pinned to another port.
    #[error("MAC {} is already in use on port {port}", MacAddr(*.mac))]
    MacInUse {
        /// The contested address.
        mac: Mac,
        /// The port it is pinned to.
        port: PortId,
    },
    /// The MAC table is full of pinned entries; nothing can be evicted.
    #[error("MAC table is full")]
    MacTableFull,
}
