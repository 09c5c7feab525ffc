//! The overlay side of a network's data path: frames the switch sends to
//! [`OVERLAY`](switch::OVERLAY) leave as VXLAN datagrams to the VTEP of their destination (or,
//! flooded, to every flood VTEP: head-end replication); datagrams of this network's VNI come
//! from the host's reader thread through a ring ([`OverlayRx`]) and enter the switch through
//! [`Network::forward_from_vtep`](switch::Network::forward_from_vtep), which checks them
//! against the store.
//!
//! Encapsulation (see [`crate::overlay::wire`]): a plain frame is sent as plain RFC 7348
//! VXLAN; a GSO frame (up to 64 KiB) or one with a partial checksum is sent whole, in one UDP
//! datagram the underlay fragments, with the TAP's virtio-net header behind the VXLAN header
//! and our flag bit set, and leaves the receiving host's TAP the way it entered ours. The
//! headers go out with `sendmsg` from a stack array next to the frame in the engine's receive
//! buffer: no copy, no allocation.

use std::io::IoSlice;
use std::net::SocketAddr;

use socket2::{SockAddr, Socket};
use switch::vnet::LEN as VNET_HDR_LEN;

use crate::overlay::vxlan::VxlanPort;
use crate::overlay::{OverlayRx, wire};

/// A network's overlay side: its VNI and the host's VXLAN socket (shared by all overlay
/// networks of the host).
pub struct OverlayConfig {
    /// The network's VXLAN network identifier (24 bits).
    pub vni: u32,
    /// This host's VTEP (advertise address and VXLAN port).
    pub local_vtep: SocketAddr,
    /// MTU of the interface holding the advertise address.
    pub underlay_mtu: u32,
    /// The host socket to send from and this VNI's receive ring, from
    /// [`Vxlan::network`](crate::overlay::Vxlan::network).
    pub port: VxlanPort,
}

impl OverlayConfig {
    /// The overlay network's MTU: the underlay's minus the VXLAN overhead (50 bytes).
    pub fn network_mtu(&self) -> u32 {
        self.underlay_mtu.saturating_sub(wire::OVERHEAD)
    }
}

/// What the engine holds for an overlay network.
pub(super) struct Overlay {
    vni: u32,
    socket: Socket,
    pub(super) rx: OverlayRx,
    flood: Vec<SocketAddr>,
}

impl Overlay {
    pub(super) fn new(cfg: OverlayConfig) -> Self {
        Self {
            vni: cfg.vni,
            socket: Socket::from(cfg.port.socket),
            rx: cfg.port.rx,
            flood: Vec::new(),
        }
    }

    pub(super) fn set_flood(&mut self, vteps: Vec<SocketAddr>) {
        self.flood = vteps;
    }

    /// Sends one buffer (virtio-net header + frame) to `vtep`; false on a send error.
    #[inline]
    pub(super) fn send(&self, vtep: SocketAddr, buf: &[u8]) -> bool {
        let Some((vnet, frame)) = buf.split_at_checked(VNET_HDR_LEN) else {
            return false;
        };
        let with_vnet = wire::needs_vnet(vnet);
        let header = wire::header(self.vni, with_vnet);
        let body = if with_vnet { buf } else { frame };
        let iov = [IoSlice::new(&header), IoSlice::new(body)];
        matches!(
            self.socket.send_to_vectored(&iov, &SockAddr::from(vtep)),
            Ok(n) if n == header.len() + body.len()
        )
    }

    /// Sends one buffer to every flood VTEP; returns (sent, failed).
    #[inline]
    pub(super) fn flood(&self, buf: &[u8]) -> (usize, usize) {
        let mut ok = 0;
        for &vtep in &self.flood {
            if self.send(vtep, buf) {
                ok += 1;
            }
        }
        (ok, self.flood.len() - ok)
    }
}
