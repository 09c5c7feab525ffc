//! ICMP echo ("ping") responder for the gateway address, IPv4 and IPv6.
//!
//! Purpose: `ping <gateway>` from a container is the first thing users try; it must work.
//!
//! Model: an IPv4 packet with a valid header checksum, not fragmented, addressed to the
//! gateway IP inside an Ethernet frame addressed to the gateway MAC, carrying an ICMP
//! echo request with a valid checksum, is answered with an echo reply that keeps the
//! identifier, sequence number and payload, swaps source and destination (MAC and IP),
//! and uses TTL 64. IPv4 options in the request are accepted and not echoed.
//!
//! IPv6 (`ping6`): `ndp.rs` parses the packet (next header ICMPv6, checksum verified) and
//! hands an echo request sent to the gateway MAC and to the gateway's global or link-local
//! address here; the reply comes from the address that was pinged, keeps identifier, sequence
//! number and payload, and uses hop limit 64.
//!
//! Limits: the reply must fit in the caller's buffer, otherwise nothing is sent. Answers are
//! rate limited per container by the gateway (`gateway.rs`).
//!
//! Not handled: fragmented requests (no reassembly), any other ICMP type (no
//! unreachable/time-exceeded generation yet), packets for other addresses (the NAT's),
//! broadcast/multicast pings, IPv6 requests behind extension headers or from `::`.

use std::net::Ipv4Addr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet, Icmpv4Repr,
    Icmpv6Repr, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Repr,
};

use crate::ndp;

/// TTL (IPv6: hop limit) of replies, as a Linux host would send.
const REPLY_TTL: u8 = 64;

/// Builds the echo reply for `eth` into `out` if it is a ping to the gateway address or one of
/// its `aliases` (answered from the address pinged); returns the frame length.
pub(crate) fn answer(
    gw_ip: Ipv4Addr,
    aliases: &[Ipv4Addr],
    gw_mac: EthernetAddress,
    eth: &EthernetFrame<&[u8]>,
    out: &mut [u8],
) -> Option<usize> {
    if eth.dst_addr() != gw_mac || !eth.src_addr().is_unicast() {
        return None;
    }
    // Verify every checksum on the way in; fill them on the way out.
    let caps = ChecksumCapabilities::default();
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    // Checked here rather than relying on smoltcp: another crate in the build may enable
    // smoltcp's fragmentation support, which makes Ipv4Repr::parse accept fragments.
    if ip.more_frags() || ip.frag_offset() != 0 {
        return None;
    }
    let ip_repr = Ipv4Repr::parse(&ip, &caps).ok()?;
    if ip_repr.dst_addr != gw_ip && !aliases.contains(&ip_repr.dst_addr)
        || ip_repr.next_header != IpProtocol::Icmp
    {
        return None;
    }
    let src = ip_repr.src_addr;
    if src.is_unspecified() || src.is_broadcast() || src.is_multicast() {
        return None;
    }
    let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
    let Icmpv4Repr::EchoRequest {
        ident,
        seq_no,
        data,
    } = Icmpv4Repr::parse(&icmp, &caps).ok()?
    else {
        return None;
    };

    let icmp_reply = Icmpv4Repr::EchoReply {
        ident,
        seq_no,
        data,
    };
    let ip_reply = Ipv4Repr {
        src_addr: ip_repr.dst_addr,
        dst_addr: src,
        next_header: IpProtocol::Icmp,
        payload_len: icmp_reply.buffer_len(),
        hop_limit: REPLY_TTL,
    };
    let eth_reply = EthernetRepr {
        src_addr: gw_mac,
        dst_addr: eth.src_addr(),
        ethertype: EthernetProtocol::Ipv4,
    };
    let len = eth_reply.buffer_len() + ip_reply.buffer_len() + icmp_reply.buffer_len();
    let out = out.get_mut(..len)?;
    let mut frame = EthernetFrame::new_unchecked(out);
    eth_reply.emit(&mut frame);
    let mut ip_out = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip_reply.emit(&mut ip_out, &caps);
    let mut icmp_out = Icmpv4Packet::new_unchecked(ip_out.payload_mut());
    icmp_reply.emit(&mut icmp_out, &caps);
    Some(len)
}

/// Builds the echo reply to an ICMPv6 echo request (`ident`, `seq_no`, `data`) that arrived
/// in `request` from `client`, addressed to one of the gateway's addresses (checked by the
/// caller); returns the frame length.
pub(crate) fn echo_reply_v6(
    gw_mac: EthernetAddress,
    client: EthernetAddress,
    request: &Ipv6Repr,
    ident: u16,
    seq_no: u16,
    data: &[u8],
    out: &mut [u8],
) -> Option<usize> {
    if request.src_addr.is_unspecified() || request.src_addr.is_multicast() {
        return None;
    }
    let reply = Icmpv6Repr::EchoReply {
        ident,
        seq_no,
        data,
    };
    ndp::emit(
        gw_mac,
        client,
        request.dst_addr,
        request.src_addr,
        REPLY_TTL,
        &reply,
        out,
    )
}
