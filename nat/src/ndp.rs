//! Neighbor Discovery responder for the gateway's IPv6 addresses, and the IPv6 dispatch of the
//! gateway's own services (Neighbor Discovery here, ping6 in `icmp.rs`).
//!
//! Purpose: a container on a dual-stack network resolves its default router (the gateway's
//! global address, or its link-local one as routes learned from Router Advertisements name
//! it) with a Neighbor Solicitation before it sends anything off-link; and its kernel runs
//! Duplicate Address Detection before it uses an address. This answers both for the
//! gateway's two addresses: the configured one and `fe80::` + the modified EUI-64 of the
//! gateway MAC.
//!
//! Model (RFC 4861 §7.1.1, §7.2.3–4): an IPv6 packet whose next header is ICMPv6 (no
//! extension headers), with a valid checksum, code 0 and hop limit 255, carrying a Neighbor
//! Solicitation whose target is one of the gateway's addresses, sent to the target's
//! solicited-node group (`ff02::1:ffXX:XXXX` on `33:33:ff:XX:XX:XX`) or unicast to a gateway
//! address on the gateway MAC, is answered with a Neighbor Advertisement from the target
//! address and the gateway MAC: Router, Solicited and Override set, the Target Link-Layer
//! Address option carrying the gateway MAC, hop limit 255, sent to the solicitor's source
//! address and Ethernet source. A DAD probe (source `::`, no Source Link-Layer Address option,
//! to the solicited-node group) gets the same advertisement with Solicited clear, sent to
//! all nodes (`ff02::1`, `33:33:00:00:00:01`), which tells the prober the address is taken.
//!
//! Limits: the reply must fit in the caller's buffer, otherwise nothing is sent. Answers are
//! rate limited per container by the gateway (`gateway.rs`). No neighbour cache is kept: the
//! gateway learns nothing from solicitations.
//!
//! Router Solicitations are answered when the gateway advertises (`ra.rs`); otherwise they
//! are left alone (containers get a static route). Aliases (slirp4netns's DNS address
//! fd00::3) are answered like the configured address.
//!
//! Overlay networks (neighbour suppression): a multicast solicitation for the IPv6 address of
//! an endpoint on another host (from the table the cluster store fills,
//! [`crate::Gateway::set_remote_neighbors6`]) is answered the same way, from that endpoint's
//! MAC and without the Router flag, as the endpoint itself would answer; it never crosses
//! hosts.
//!
//! Not handled (left for the NAT to see or to drop): Neighbor Advertisements, MLD,
//! solicitations for any other target, packets with extension headers (ND and echo never need
//! them), anything on an IPv4-only network.

use std::net::Ipv6Addr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv6Packet, Icmpv6Repr,
    IpProtocol, Ipv6Packet, Ipv6Repr, NdiscNeighborFlags, NdiscRepr,
};

use crate::icmp;
use crate::ra::{self, Advertiser};

/// Hop limit of Neighbor Discovery messages, sent and required (RFC 4861 §7.1.1).
const ND_HOP_LIMIT: u8 = 255;
/// The all-nodes group, where DAD defences and unsolicited Router Advertisements go.
pub(crate) const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// The all-routers group, where Router Solicitations go.
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// The gateway's IPv6 identity: its addresses and its MAC.
#[derive(Clone, Debug)]
pub(crate) struct Gateway6 {
    /// The configured (global or ULA) address.
    pub global: Ipv6Addr,
    /// `fe80::` + the modified EUI-64 of `mac`.
    pub link_local: Ipv6Addr,
    /// Further addresses answered like `global` (slirp4netns's DNS address fd00::3).
    pub aliases: Vec<Ipv6Addr>,
    /// The gateway MAC.
    pub mac: EthernetAddress,
}

impl Gateway6 {
    /// Whether `addr` is one of the gateway's addresses.
    pub fn owns(&self, addr: Ipv6Addr) -> bool {
        addr == self.global || addr == self.link_local || self.aliases.contains(&addr)
    }
}

/// What the gateway answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A Neighbor Advertisement for one of its addresses.
    NeighborAdvert,
    /// An ICMPv6 echo reply.
    EchoReply,
    /// A Router Advertisement answering a solicitation.
    RouterAdvert,
}

/// Builds the gateway's answer to the IPv6 frame `eth` into `out`; returns what it is and
/// the frame length.
pub(crate) fn answer(
    gw: &Gateway6,
    ra: Option<&Advertiser>,
    eth: &EthernetFrame<&[u8]>,
    out: &mut [u8],
    remote: impl Fn(Ipv6Addr) -> Option<EthernetAddress>,
) -> Option<(Answer, usize)> {
    let src_mac = eth.src_addr();
    if !src_mac.is_unicast() || src_mac == gw.mac {
        return None;
    }
    // Verify every checksum on the way in; fill them on the way out.
    let caps = ChecksumCapabilities::default();
    let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
    let ip_repr = Ipv6Repr::parse(&ip).ok()?;
    if ip_repr.next_header != IpProtocol::Icmpv6 || ip_repr.src_addr.is_multicast() {
        return None;
    }
    let icmp = Icmpv6Packet::new_checked(ip.payload()).ok()?;
    let request = Icmpv6Repr::parse(&ip_repr.src_addr, &ip_repr.dst_addr, &icmp, &caps).ok()?;
    match request {
        Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
            target_addr,
            lladdr,
        }) => advertise(
            gw,
            eth,
            &ip_repr,
            target_addr,
            lladdr.is_some(),
            out,
            remote,
        )
        .map(|len| (Answer::NeighborAdvert, len)),
        Icmpv6Repr::EchoRequest {
            ident,
            seq_no,
            data,
        } => {
            if eth.dst_addr() != gw.mac || !gw.owns(ip_repr.dst_addr) {
                return None;
            }
            icmp::echo_reply_v6(gw.mac, eth.src_addr(), &ip_repr, ident, seq_no, data, out)
                .map(|len| (Answer::EchoReply, len))
        }
        Icmpv6Repr::Ndisc(NdiscRepr::RouterSolicit { lladdr }) => {
            let ra = ra?;
            let to_group =
                ip_repr.dst_addr == ALL_ROUTERS && eth.dst_addr() == multicast_mac(ALL_ROUTERS);
            let to_us = gw.owns(ip_repr.dst_addr) && eth.dst_addr() == gw.mac;
            // RFC 4861 §6.1.1: a solicitation from :: carries no link-layer address.
            if ip_repr.src_addr.is_unspecified() && lladdr.is_some() {
                return None;
            }
            if !ra::is_solicitation(&request, ip_repr.hop_limit, to_group || to_us) {
                return None;
            }
            ra.solicited(gw.link_local, gw.mac, ip_repr.src_addr, src_mac, out)
                .map(|len| (Answer::RouterAdvert, len))
        }
        _ => None,
    }
}

/// The Neighbor Advertisement answering a solicitation for `target`, if it is ours.
fn advertise(
    gw: &Gateway6,
    eth: &EthernetFrame<&[u8]>,
    ip: &Ipv6Repr,
    target: Ipv6Addr,
    has_source_lladdr: bool,
    out: &mut [u8],
    remote: impl Fn(Ipv6Addr) -> Option<EthernetAddress>,
) -> Option<usize> {
    if ip.hop_limit != ND_HOP_LIMIT {
        return None;
    }
    // Multicast solicitations go to the target's solicited-node group; unicast ones (NUD)
    // to one of our addresses on our MAC.
    let to_group = ip.dst_addr == solicited_node(target) && eth.dst_addr() == group_mac(target);
    let (owner, router) = if gw.owns(target) {
        (gw.mac, NdiscNeighborFlags::ROUTER)
    } else if to_group {
        (remote(target)?, NdiscNeighborFlags::empty())
    } else {
        return None;
    };
    let to_us = gw.owns(ip.dst_addr) && eth.dst_addr() == gw.mac;
    if !(to_group || to_us) {
        return None;
    }
    let dad = ip.src_addr.is_unspecified();
    let (dst_ip, dst_mac, flags) = if dad {
        // RFC 4861 §7.1.1: a DAD probe is multicast and carries no link-layer address.
        if !to_group || has_source_lladdr {
            return None;
        }
        let flags = router | NdiscNeighborFlags::OVERRIDE;
        (ALL_NODES, multicast_mac(ALL_NODES), flags)
    } else {
        let flags = router | NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE;
        (ip.src_addr, eth.src_addr(), flags)
    };
    let reply = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
        flags,
        target_addr: target,
        lladdr: Some(owner.into()),
    });
    emit(owner, dst_mac, target, dst_ip, ND_HOP_LIMIT, &reply, out)
}

/// Writes an Ethernet/IPv6/ICMPv6 frame carrying `icmp` into `out`; returns its length, or
/// `None` if it does not fit.
pub(crate) fn emit(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    icmp: &Icmpv6Repr<'_>,
    out: &mut [u8],
) -> Option<usize> {
    emit_with(src_mac, dst_mac, src, dst, hop_limit, icmp, 0, out, |_| {})
}

/// [`emit`] with `extra` bytes of room after `icmp`, which `finish` fills (it gets the whole
/// ICMPv6 message and must fix its checksum if it changes anything).
#[allow(clippy::too_many_arguments)]
pub(crate) fn emit_with(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    icmp: &Icmpv6Repr<'_>,
    extra: usize,
    out: &mut [u8],
    finish: impl FnOnce(&mut [u8]),
) -> Option<usize> {
    let caps = ChecksumCapabilities::default();
    let eth = EthernetRepr {
        src_addr: src_mac,
        dst_addr: dst_mac,
        ethertype: EthernetProtocol::Ipv6,
    };
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp.buffer_len() + extra,
        hop_limit,
    };
    let len = eth.buffer_len() + ip.buffer_len() + ip.payload_len;
    let out = out.get_mut(..len)?;
    let mut frame = EthernetFrame::new_unchecked(out);
    eth.emit(&mut frame);
    let mut ip_out = Ipv6Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut ip_out);
    let mut icmp_out = Icmpv6Packet::new_unchecked(ip_out.payload_mut());
    icmp.emit(&src, &dst, &mut icmp_out, &caps);
    finish(ip_out.payload_mut());
    Some(len)
}

/// The solicited-node multicast group of `addr` (RFC 4291 §2.7.1): `ff02::1:ff00:0/104`
/// and its low 24 bits.
fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let [.., a, b, c] = addr.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        u16::from_be_bytes([0xff, a]),
        u16::from_be_bytes([b, c]),
    )
}

/// The Ethernet group of `target`'s solicited-node group: `33:33:ff:XX:XX:XX`.
fn group_mac(target: Ipv6Addr) -> EthernetAddress {
    multicast_mac(solicited_node(target))
}

/// The Ethernet address of an IPv6 multicast group (RFC 2464 §7): `33:33` + its low 32 bits.
pub(crate) fn multicast_mac(group: Ipv6Addr) -> EthernetAddress {
    let [.., a, b, c, d] = group.octets();
    EthernetAddress([0x33, 0x33, a, b, c, d])
}
