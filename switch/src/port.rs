//! Ports: what sits behind them ([`PortRole`]) and where frames go ([`Port`]).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::Mac;

pub mod mem;

/// What sits behind a port; decides which anti-spoofing rules apply.
#[derive(Clone, Copy, Debug)]
pub enum PortRole {
    /// The network's own gateway: trusted, no filters.
    Gateway,
    /// A container endpoint bound to one MAC, one IPv4 address and, on a dual-stack
    /// network, one IPv6 address.
    Container {
        /// The only Ethernet source (and ARP sender hardware address, and ND link-layer
        /// address option) allowed.
        mac: Mac,
        /// The only IPv4 source (and ARP sender protocol address) allowed.
        ipv4: Ipv4Addr,
        /// The leased IPv6 address. With `Some`, IPv6 sources must be this address or the
        /// link-local address derived from `mac` (`::` only for DAD and MLD reports), and
        /// Neighbor Discovery is inspected; with `None` IPv6 gets only the MAC check and the
        /// RA guard.
        ipv6: Option<Ipv6Addr>,
    },
    /// A trunk carrying many MACs. Learns freely, no anti-spoofing.
    Uplink,
    /// The VXLAN side of a network that spans hosts ([`crate::OVERLAY`]): the endpoints
    /// behind it come from the cluster store, not from learning; see [`crate::overlay`].
    Overlay,
}

impl PortRole {
    /// Whether this is a [`PortRole::Container`] port.
    #[inline]
    pub fn is_container(&self) -> bool {
        matches!(self, PortRole::Container { .. })
    }

    /// Whether container endpoints sit behind this port (a local container, or the overlay's
    /// remote ones): what icc=false keeps apart.
    #[inline]
    pub fn is_endpoint(&self) -> bool {
        matches!(self, PortRole::Container { .. } | PortRole::Overlay)
    }
}

/// A frame sink: where the caller writes a frame the switch chose to deliver.
pub trait Port {
    /// Transmits one whole Ethernet frame (no virtio header).
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;
}
