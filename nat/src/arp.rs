//! ARP responder for the gateway address.
//!
//! Purpose: containers must resolve the gateway's MAC before they can send anything
//! off-subnet; this answers those requests.
//!
//! Model: the gateway owns exactly one IPv4 address. An Ethernet/IPv4 ARP *request*
//! whose target protocol address is that address, sent to the broadcast address or to
//! the gateway MAC, is answered with a unicast reply from the gateway MAC to the
//! requester's MAC and IP (RFC 826). Probes (sender IP 0.0.0.0, RFC 5227) are answered
//! the same way, which is how a defender signals the conflict.
//!
//! Limits: the reply is the minimal 42-byte frame (no padding to 60 bytes; virtual links
//! do not need it). No ARP cache is kept: the gateway learns nothing from requests.
//!
//! Overlay networks (ARP suppression): the gateway also answers requests for the IPv4
//! addresses of endpoints on other hosts, from the table the cluster store fills
//! ([`crate::Gateway::set_remote_neighbors`]), so those requests never cross hosts. The reply
//! then comes from the remote endpoint's MAC, as if it had answered itself.
//!
//! Not handled: ARP replies, gratuitous ARP, requests for any other address (other
//! containers answer for themselves), RARP/InARP, non-Ethernet or non-IPv4 ARP.

use std::net::Ipv4Addr;

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr,
};

/// Builds the ARP reply for `eth` into `out` if it is a request for `gw_ip` or one of
/// `aliases` (or, broadcast, for an address `remote` knows); returns the frame length.
pub(crate) fn answer(
    gw_ip: Ipv4Addr,
    aliases: &[Ipv4Addr],
    gw_mac: EthernetAddress,
    eth: &EthernetFrame<&[u8]>,
    out: &mut [u8],
    remote: impl Fn(Ipv4Addr) -> Option<EthernetAddress>,
) -> Option<usize> {
    let dst = eth.dst_addr();
    if !(dst.is_broadcast() || dst == gw_mac) {
        return None;
    }
    let packet = ArpPacket::new_checked(eth.payload()).ok()?;
    let ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr,
        source_protocol_addr,
        target_protocol_addr,
        ..
    } = ArpRepr::parse(&packet).ok()?
    else {
        return None;
    };
    if !source_hardware_addr.is_unicast() || source_hardware_addr == gw_mac {
        return None;
    }
    let owner = if target_protocol_addr == gw_ip || aliases.contains(&target_protocol_addr) {
        gw_mac
    } else if dst.is_broadcast() {
        remote(target_protocol_addr)?
    } else {
        return None;
    };

    let eth_repr = EthernetRepr {
        src_addr: owner,
        dst_addr: source_hardware_addr,
        ethertype: EthernetProtocol::Arp,
    };
    let arp_repr = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: owner,
        source_protocol_addr: target_protocol_addr,
        target_hardware_addr: source_hardware_addr,
        target_protocol_addr: source_protocol_addr,
    };
    let len = eth_repr.buffer_len() + arp_repr.buffer_len();
    let out = out.get_mut(..len)?;
    let mut frame = EthernetFrame::new_unchecked(out);
    eth_repr.emit(&mut frame);
    arp_repr.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    Some(len)
}
