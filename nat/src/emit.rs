//! Packets the gateway writes itself, outside smoltcp: UDP and ICMP replies, RSTs for refused
//! dials, and ICMP destination-unreachable errors. Each is built in the engine's one scratch
//! frame buffer and handed to the sink.

use smoltcp::phy::{ChecksumCapabilities, PacketMeta};
use smoltcp::wire::{
    Icmpv4DstUnreachable, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr,
};

use crate::device::Sink;
use crate::engine::Nat;

/// Sends one IPv4 packet to a container: `ip` gives addresses, protocol and payload length;
/// `fill` writes the payload (with its checksum; TCP gets a partial one from the framer).
pub(crate) fn send_ipv4(
    nat: &mut Nat,
    ip: Ipv4Repr,
    sink: &mut Sink<'_>,
    fill: impl FnOnce(&mut [u8]),
) {
    let hdr = ip.buffer_len();
    let total = hdr + ip.payload_len;
    if total > nat.cfg.mtu as usize {
        return;
    }
    nat.framer.send(total, PacketMeta::default(), sink, |buf| {
        ip.emit(
            &mut Ipv4Packet::new_unchecked(&mut *buf),
            &ChecksumCapabilities::default(),
        );
        fill(&mut buf[hdr..]);
    });
}

/// Answers `packet` (an IPv4 packet from a container) with ICMP destination unreachable,
/// quoting its header and first 8 payload bytes as RFC 792 asks.
pub(crate) fn unreachable(
    nat: &mut Nat,
    packet: &[u8],
    reason: Icmpv4DstUnreachable,
    sink: &mut Sink<'_>,
) {
    let Ok(orig) = Ipv4Packet::new_checked(packet) else {
        return;
    };
    let Ok(header) = Ipv4Repr::parse(&orig, &ChecksumCapabilities::ignored()) else {
        return;
    };
    let quoted = &orig.payload()[..orig.payload().len().min(8)];
    let icmp = Icmpv4Repr::DstUnreachable {
        reason,
        header,
        data: quoted,
    };
    let ip = Ipv4Repr {
        src_addr: nat.cfg.gateway_ip,
        dst_addr: header.src_addr,
        next_header: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: 64,
    };
    send_ipv4(nat, ip, sink, |buf| {
        icmp.emit(
            &mut Icmpv4Packet::new_unchecked(buf),
            &ChecksumCapabilities::default(),
        );
    });
}
