//! The overlay side of a network: the endpoints that live on other hosts, behind VXLAN.
//!
//! Model: a network that spans hosts has one extra port, [`OVERLAY`], with role
//! [`PortRole::Overlay`](crate::PortRole::Overlay). Every remote endpoint's MAC is pinned to
//! it, so known unicast to a remote container is [`Verdict::Unicast(OVERLAY)`](crate::Verdict)
//! and the caller asks [`Network::remote_vtep`](crate::Network::remote_vtep) which host (VTEP)
//! to send it to. The store (not learning) says which MAC, IPv4 and IPv6 address live behind
//! which VTEP; a frame arriving from a VTEP is accepted only when its inner identity is an
//! endpoint the store places on that very VTEP
//! ([`Network::forward_from_vtep`](crate::Network::forward_from_vtep)), with the same
//! anti-spoofing rules a local container port gets.
//!
//! Non-obvious choices:
//! * The gateway is per host. Frames between the gateway and the overlay port are dropped
//!   both ways ([`DropReason::Isolation`](crate::DropReason::Isolation)), a flood from the
//!   gateway never reaches the overlay, and a flood from the overlay never reaches the gateway:
//!   each host's containers talk to their own host's gateway.
//! * A flood from the overlay reaches local containers only (never the overlay again), so a
//!   broadcast is replicated once by its sender to every flood VTEP and never echoed back.
//! * Remote endpoints count as containers for icc: with `icc = false` nothing crosses between
//!   a local container and the overlay.
//! * ARP suppression: an ARP request from a local container for a remote endpoint's IPv4
//!   address (or a Neighbor Solicitation for its IPv6 address) goes to the gateway only, which
//!   answers it from the same table (see `nat::Gateway::set_remote_neighbors`); it never
//!   crosses hosts.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use foldhash::fast::RandomState;

use crate::{Mac, PortId};

/// The overlay (VXLAN) port of a network that spans hosts.
pub const OVERLAY: PortId = PortId(u32::MAX);

/// An endpoint on another host, as the cluster store places it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteEndpoint {
    /// Its MAC address.
    pub mac: Mac,
    /// Its IPv4 address.
    pub ip: Ipv4Addr,
    /// Its IPv6 address, on a dual-stack network.
    pub ip6: Option<Ipv6Addr>,
    /// The VTEP (host advertise address and VXLAN port) it lives behind.
    pub vtep: SocketAddr,
}

/// The remote endpoints of one network, by MAC and by address.
#[derive(Debug, Default)]
pub(crate) struct Remotes {
    pub(crate) by_mac: HashMap<Mac, RemoteEndpoint, RandomState>,
    pub(crate) by_ipv4: HashMap<Ipv4Addr, Mac, RandomState>,
    pub(crate) by_ipv6: HashMap<Ipv6Addr, Mac, RandomState>,
}

impl Remotes {
    pub(crate) fn clear(&mut self) {
        self.by_mac.clear();
        self.by_ipv4.clear();
        self.by_ipv6.clear();
    }

    pub(crate) fn insert(&mut self, ep: RemoteEndpoint) {
        self.by_ipv4.insert(ep.ip, ep.mac);
        if let Some(ip6) = ep.ip6 {
            self.by_ipv6.insert(ip6, ep.mac);
        }
        self.by_mac.insert(ep.mac, ep);
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.by_mac.is_empty()
    }
}
