//! Direct receive: in-order data from a container goes straight from its frame to the host
//! socket, without passing through smoltcp's receive buffer.
//!
//! Why: on the egress path every byte is copied from the TAP into the data path's buffer
//! and from there into the host socket; smoltcp's ring would add a third copy (into the
//! ring, then out of it). When the flow is established and holds nothing (no unread and no
//! out-of-order data), a segment whose sequence number is the next expected one can be
//! written to the host socket first. smoltcp is then told those octets were received and
//! read (`skip_received`, a documented patch in third_party/smoltcp/VSWITCHD-PATCH.md) and
//! is fed the segment without them: it handles the ACK field, the window, timestamps, and
//! acknowledges what the host socket took. Octets the host socket did not take (it was
//! full) stay in the rewritten segment and are buffered by smoltcp as usual.
//!
//! Taken only while nothing is in flight towards the container (`send_queue() == 0`): a
//! segment stripped of its payload would otherwise look to smoltcp like a duplicate ACK.

use std::io::{self, Write};

use smoltcp::wire::{Ipv4Packet, Ipv6Packet, TcpPacket};

use super::{Far, HostSide, Phase, Tcp};
use crate::ctx::Ctx;
use crate::device::Sink;
use crate::flow::Handle;

impl Tcp {
    /// Tries the direct path for `packet` (an IP packet of either family whose header is
    /// `ihl` bytes, parsed by the caller as `tcp` after that) on flow `h`; false if the
    /// segment must go through smoltcp unchanged (nothing was written).
    pub(super) fn direct(
        &mut self,
        ctx: &mut Ctx,
        h: Handle,
        packet: &[u8],
        ihl: usize,
        tcp: &TcpPacket<&[u8]>,
        sink: &mut Sink<'_>,
    ) -> bool {
        let Some(flow) = self.flows.get_mut(h) else {
            return false;
        };
        let Far::Host(
            host @ HostSide {
                phase: Phase::Open,
                host_writable: true,
                shut_wr: false,
                ..
            },
        ) = &mut flow.far
        else {
            return false;
        };
        let sock = flow.conn.sock_mut();
        let Some(expected) = sock.direct_rx_seq() else {
            return false;
        };
        if sock.send_queue() != 0 {
            return false;
        }
        let plain = tcp.ack() && !tcp.syn() && !tcp.fin() && !tcp.rst() && !tcp.urg();
        let payload = tcp.payload();
        if !plain
            || payload.is_empty()
            || tcp.seq_number() != expected
            || payload.len() > sock.recv_capacity()
        {
            return false;
        }
        let n = match host.stream.write(payload) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                host.host_writable = false;
                return false;
            }
            // Errors surface in the ordinary path (the next write fails there too).
            Err(_) => return false,
        };
        if n == 0 || sock.skip_received(n).is_err() {
            return false;
        }
        // The segment without the octets the host took: headers, then the rest.
        let headers = ihl + usize::from(tcp.header_len());
        let (Some(head), Some(rest)) = (packet.get(..headers), payload.get(n..)) else {
            return true; // unreachable: both lengths were checked when parsing
        };
        let mut buf = std::mem::take(&mut self.rewrite);
        buf.clear();
        buf.extend_from_slice(head);
        buf.extend_from_slice(rest);
        let total = u16::try_from(buf.len()).unwrap_or(u16::MAX);
        if buf.first().is_some_and(|b| b >> 4 == 6) {
            let mut ip = Ipv6Packet::new_unchecked(&mut buf[..]);
            ip.set_payload_len(total.saturating_sub(40));
        } else {
            let mut ip = Ipv4Packet::new_unchecked(&mut buf[..]);
            ip.set_total_len(total);
            ip.fill_checksum();
        }
        if let Some(segment) = buf.get_mut(ihl..) {
            let mut tcp = TcpPacket::new_unchecked(segment);
            tcp.set_seq_number(tcp.seq_number() + n);
        }
        flow.last = ctx.now;
        flow.to_remote += n as u64;
        ctx.counters.tcp_direct_bytes += n as u64;
        super::buffers::grow_rx(ctx, sock, 0, &mut flow.rx_rate, n);
        self.poll_flow(ctx, h, Some(&buf), sink);
        self.rewrite = buf;
        true
    }
}
