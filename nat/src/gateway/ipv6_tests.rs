//! The gateway's IPv6 services: Neighbor Discovery and ping6 on a dual-stack network.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use etherparse::{IcmpEchoHeader, Icmpv6Type, PacketBuilder};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, Icmpv6Packet, Icmpv6Repr, IpProtocol,
    Ipv6Packet, Ipv6Repr, NdiscNeighborFlags, NdiscRepr, RawHardwareAddress,
};

use super::{BURST, Gateway, RATE};

const GW_IP: Ipv4Addr = Ipv4Addr::new(10, 60, 0, 1);
const GW6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x60, 0, 0, 0, 0, 0, 1);
const GW_MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x3c, 0x00, 0x01];
/// fe80:: + modified EUI-64 of GW_MAC.
const GW_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x0042, 0x0aff, 0xfe3c, 0x0001);
const C1_MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x3c, 0x00, 0x02];
const C1_6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x60, 0, 0, 0, 0, 0, 2);
const C1_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x0042, 0x0aff, 0xfe3c, 0x0002);
const C2_6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x60, 0, 0, 0, 0, 0, 3);
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

fn gateway() -> Gateway {
    Gateway::new(GW_IP, GW_MAC).with_ipv6(GW6)
}

/// The solicited-node group of `target` and its MAC.
fn solicited_node(target: Ipv6Addr) -> (Ipv6Addr, [u8; 6]) {
    let [.., a, b, c] = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        u16::from_be_bytes([0xff, a]),
        u16::from_be_bytes([b, c]),
    );
    (group, [0x33, 0x33, 0xff, a, b, c])
}

struct Ns {
    src: Ipv6Addr,
    dst: Ipv6Addr,
    eth_dst: [u8; 6],
    hop_limit: u8,
    target: Ipv6Addr,
    slla: bool,
}

impl Ns {
    /// Address resolution of `target` from C1's link-local address, as Linux sends it.
    fn resolve(target: Ipv6Addr) -> Self {
        let (group, group_mac) = solicited_node(target);
        Ns {
            src: C1_LL,
            dst: group,
            eth_dst: group_mac,
            hop_limit: 255,
            target,
            slla: true,
        }
    }

    /// A Duplicate Address Detection probe for `target`.
    fn dad(target: Ipv6Addr) -> Self {
        Ns {
            src: Ipv6Addr::UNSPECIFIED,
            slla: false,
            ..Ns::resolve(target)
        }
    }

    fn frame(&self) -> Vec<u8> {
        let mut body = self.target.octets().to_vec();
        if self.slla {
            body.extend_from_slice(&[1, 1]);
            body.extend_from_slice(&C1_MAC);
        }
        let mut f = Vec::new();
        PacketBuilder::ethernet2(C1_MAC, self.eth_dst)
            .ipv6(self.src.octets(), self.dst.octets(), self.hop_limit)
            .icmpv6(Icmpv6Type::NeighborSolicitation)
            .write(&mut f, &body)
            .unwrap();
        f
    }
}

fn echo6(eth_dst: [u8; 6], src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(C1_MAC, eth_dst)
        .ipv6(src.octets(), dst.octets(), 64)
        .icmpv6_echo_request(0x4321, 9)
        .write(&mut f, payload)
        .unwrap();
    f
}

fn run(gw: &mut Gateway, frame: &[u8]) -> Option<Vec<u8>> {
    let mut out = [0u8; 2048];
    gw.on_frame(frame, &mut out).map(|n| out[..n].to_vec())
}

/// A parsed reply: Ethernet addresses, the IPv6 header and the ICMPv6 message with its
/// checksum verified by smoltcp.
struct Parsed {
    eth_src: EthernetAddress,
    eth_dst: EthernetAddress,
    ip: Ipv6Repr,
    icmp: Vec<u8>,
}

impl Parsed {
    fn of(frame: &[u8]) -> Self {
        let eth = EthernetFrame::new_checked(frame).unwrap();
        assert_eq!(eth.ethertype(), EthernetProtocol::Ipv6);
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        let repr = Ipv6Repr::parse(&ip).unwrap();
        assert_eq!(repr.next_header, IpProtocol::Icmpv6);
        assert_eq!(14 + 40 + repr.payload_len, frame.len(), "no trailing bytes");
        Parsed {
            eth_src: eth.src_addr(),
            eth_dst: eth.dst_addr(),
            ip: repr,
            icmp: ip.payload().to_vec(),
        }
    }

    /// The ICMPv6 message; panics unless the checksum is valid.
    fn icmp(&self) -> Icmpv6Repr<'_> {
        let packet = Icmpv6Packet::new_checked(&self.icmp[..]).unwrap();
        assert!(
            packet.verify_checksum(&self.ip.src_addr, &self.ip.dst_addr),
            "ICMPv6 checksum"
        );
        Icmpv6Repr::parse(
            &self.ip.src_addr,
            &self.ip.dst_addr,
            &packet,
            &ChecksumCapabilities::default(),
        )
        .unwrap()
    }

    fn advert(&self) -> (NdiscNeighborFlags, Ipv6Addr, Option<RawHardwareAddress>) {
        match self.icmp() {
            Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
                flags,
                target_addr,
                lladdr,
            }) => (flags, target_addr, lladdr),
            other => panic!("not a neighbor advertisement: {other:?}"),
        }
    }
}

fn all_flags() -> NdiscNeighborFlags {
    NdiscNeighborFlags::ROUTER | NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE
}

#[test]
fn addresses_are_the_configured_one_and_the_eui64_link_local() {
    let gw = gateway();
    assert_eq!(gw.ipv6(), Some(GW6));
    assert_eq!(gw.link_local(), GW_LL);
    let v4 = Gateway::new(GW_IP, GW_MAC);
    assert_eq!(v4.ipv6(), None);
    assert_eq!(v4.link_local(), GW_LL);
}

#[test]
fn a_solicitation_for_the_global_address_gets_a_router_advertisement_of_it() {
    let mut gw = gateway();
    let reply = run(&mut gw, &Ns::resolve(GW6).frame()).expect("answered");
    let p = Parsed::of(&reply);
    assert_eq!(p.eth_src, EthernetAddress(GW_MAC));
    assert_eq!(p.eth_dst, EthernetAddress(C1_MAC));
    assert_eq!((p.ip.src_addr, p.ip.dst_addr), (GW6, C1_LL));
    assert_eq!(p.ip.hop_limit, 255);
    let (flags, target, lladdr) = p.advert();
    assert_eq!(flags, all_flags());
    assert_eq!(target, GW6);
    assert_eq!(lladdr.unwrap().as_bytes(), &GW_MAC);
    let c = gw.counters();
    assert_eq!((c.neighbor_adverts, c.echo6_replies, c.ignored), (1, 0, 0));
}

#[test]
fn a_solicitation_for_the_link_local_address_is_answered_too() {
    let mut gw = gateway();
    let reply = run(&mut gw, &Ns::resolve(GW_LL).frame()).expect("answered");
    let p = Parsed::of(&reply);
    assert_eq!((p.ip.src_addr, p.ip.dst_addr), (GW_LL, C1_LL));
    let (flags, target, lladdr) = p.advert();
    assert_eq!((flags, target), (all_flags(), GW_LL));
    assert_eq!(lladdr.unwrap().as_bytes(), &GW_MAC);

    // Unicast (neighbour unreachability detection) from the global address.
    let nud = Ns {
        src: C1_6,
        dst: GW6,
        eth_dst: GW_MAC,
        ..Ns::resolve(GW6)
    };
    let p = Parsed::of(&run(&mut gw, &nud.frame()).expect("answered"));
    assert_eq!((p.ip.src_addr, p.ip.dst_addr), (GW6, C1_6));
    assert_eq!(p.eth_dst, EthernetAddress(C1_MAC));
    assert_eq!(p.advert().1, GW6);
    assert_eq!(gw.counters().neighbor_adverts, 2);
}

#[test]
fn a_dad_probe_for_a_gateway_address_is_defended_to_all_nodes() {
    let mut gw = gateway();
    for target in [GW6, GW_LL] {
        let reply = run(&mut gw, &Ns::dad(target).frame()).expect("defended");
        let p = Parsed::of(&reply);
        assert_eq!(p.eth_src, EthernetAddress(GW_MAC));
        assert_eq!(p.eth_dst, EthernetAddress(ALL_NODES_MAC));
        assert_eq!((p.ip.src_addr, p.ip.dst_addr), (target, ALL_NODES));
        assert_eq!(p.ip.hop_limit, 255);
        let (flags, advertised, lladdr) = p.advert();
        assert_eq!(
            flags,
            NdiscNeighborFlags::ROUTER | NdiscNeighborFlags::OVERRIDE,
            "Solicited clear"
        );
        assert_eq!(advertised, target);
        assert_eq!(lladdr.unwrap().as_bytes(), &GW_MAC);
    }
    // A probe for a container's own address is none of the gateway's business.
    assert_eq!(run(&mut gw, &Ns::dad(C1_6).frame()), None);
    // A "probe" with a source link-layer option is invalid (RFC 4861 §7.1.1).
    let bad = Ns {
        slla: true,
        ..Ns::dad(GW6)
    };
    assert_eq!(run(&mut gw, &bad.frame()), None);
    // So is a unicast one.
    let bad = Ns {
        dst: GW6,
        eth_dst: GW_MAC,
        ..Ns::dad(GW6)
    };
    assert_eq!(run(&mut gw, &bad.frame()), None);
    let c = gw.counters();
    assert_eq!((c.neighbor_adverts, c.ignored), (2, 3));
}

#[test]
fn a_solicitation_with_hop_limit_below_255_is_ignored() {
    let mut gw = gateway();
    for hop_limit in [64, 254, 1] {
        let ns = Ns {
            hop_limit,
            ..Ns::resolve(GW6)
        };
        assert_eq!(run(&mut gw, &ns.frame()), None, "hop limit {hop_limit}");
    }
    assert_eq!(gw.counters().neighbor_adverts, 0);
}

#[test]
fn solicitations_for_other_targets_or_to_the_wrong_group_are_ignored() {
    let mut gw = gateway();
    // Another container's address (it answers for itself).
    assert_eq!(run(&mut gw, &Ns::resolve(C2_6).frame()), None);
    // The gateway's target, but sent to another solicited-node group or MAC.
    let (other_group, other_mac) = solicited_node(C2_6);
    for (dst, eth_dst) in [
        (other_group, solicited_node(GW6).1),
        (solicited_node(GW6).0, other_mac),
        (ALL_NODES, ALL_NODES_MAC),
        (C2_6, GW_MAC),
    ] {
        let ns = Ns {
            dst,
            eth_dst,
            ..Ns::resolve(GW6)
        };
        assert_eq!(run(&mut gw, &ns.frame()), None, "{dst} on {eth_dst:02x?}");
    }
    // A bad ICMPv6 checksum.
    let mut f = Ns::resolve(GW6).frame();
    *f.last_mut().unwrap() ^= 0x55;
    assert_eq!(run(&mut gw, &f), None);
    // From a multicast Ethernet source.
    let mut f = Ns::resolve(GW6).frame();
    f[6] |= 1;
    assert_eq!(run(&mut gw, &f), None);
    let c = gw.counters();
    assert_eq!((c.neighbor_adverts, c.ignored), (0, 7));
}

#[test]
fn ping6_to_the_global_and_link_local_address_is_answered() {
    let mut gw = gateway();
    let payload: Vec<u8> = (0..56u8).collect();
    for (src, dst) in [(C1_6, GW6), (C1_LL, GW_LL), (C1_LL, GW6)] {
        let reply = run(&mut gw, &echo6(GW_MAC, src, dst, &payload)).expect("answered");
        let p = Parsed::of(&reply);
        assert_eq!(p.eth_src, EthernetAddress(GW_MAC));
        assert_eq!(p.eth_dst, EthernetAddress(C1_MAC));
        assert_eq!(
            (p.ip.src_addr, p.ip.dst_addr),
            (dst, src),
            "from the pinged address"
        );
        assert_eq!(p.ip.hop_limit, 64);
        let Icmpv6Repr::EchoReply {
            ident,
            seq_no,
            data,
        } = p.icmp()
        else {
            panic!("not an echo reply: {:?}", p.icmp())
        };
        assert_eq!((ident, seq_no), (0x4321, 9));
        assert_eq!(data, &payload[..]);
        // And etherparse agrees on the checksum.
        let sliced = etherparse::SlicedPacket::from_ethernet(&reply).unwrap();
        let Some(etherparse::TransportSlice::Icmpv6(icmp)) = sliced.transport else {
            panic!("no ICMPv6")
        };
        assert!(matches!(
            icmp.icmp_type(),
            Icmpv6Type::EchoReply(IcmpEchoHeader { id: 0x4321, seq: 9 })
        ));
        let expected = icmp
            .icmp_type()
            .calc_checksum(
                p.ip.src_addr.octets(),
                p.ip.dst_addr.octets(),
                icmp.payload(),
            )
            .unwrap();
        assert_eq!(icmp.checksum(), expected);
    }
    let c = gw.counters();
    assert_eq!((c.echo6_replies, c.echo_replies, c.ignored), (3, 0, 0));
}

#[test]
fn other_ipv6_traffic_is_left_to_the_nat() {
    let mut gw = gateway();
    let world: Ipv6Addr = "2001:db8::1".parse().unwrap();
    // A ping through the gateway, not to it.
    assert_eq!(run(&mut gw, &echo6(GW_MAC, C1_6, world, b"hi")), None);
    // A ping to the gateway's address on a multicast MAC, and one from ::.
    assert_eq!(run(&mut gw, &echo6(ALL_NODES_MAC, C1_6, GW6, b"hi")), None);
    let from_unspecified = echo6(GW_MAC, Ipv6Addr::UNSPECIFIED, GW6, b"hi");
    assert_eq!(run(&mut gw, &from_unspecified), None);
    // A ping with a bad checksum.
    let mut bad = echo6(GW_MAC, C1_6, GW6, b"hi");
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(run(&mut gw, &bad), None);
    // TCP and UDP to the gateway (DNS, NAT) are not the gateway's own services.
    let mut udp = Vec::new();
    PacketBuilder::ethernet2(C1_MAC, GW_MAC)
        .ipv6(C1_6.octets(), GW6.octets(), 64)
        .udp(5353, 53)
        .write(&mut udp, b"query")
        .unwrap();
    assert_eq!(run(&mut gw, &udp), None);
    // Router Solicitation and an MLDv2 report.
    let mut rs = Vec::new();
    PacketBuilder::ethernet2(C1_MAC, [0x33, 0x33, 0, 0, 0, 2])
        .ipv6(
            C1_LL.octets(),
            [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            255,
        )
        .icmpv6(Icmpv6Type::RouterSolicitation)
        .write(&mut rs, &[1, 1, 2, 0x42, 0x0a, 0x3c, 0, 2])
        .unwrap();
    assert_eq!(run(&mut gw, &rs), None);
    let mut mld = Vec::new();
    let report = Icmpv6Type::Unknown {
        type_u8: 143,
        code_u8: 0,
        bytes5to8: [0, 0, 0, 1],
    };
    let mut record = vec![4, 0, 0, 0];
    record.extend_from_slice(&solicited_node(C1_6).0.octets());
    PacketBuilder::ethernet2(C1_MAC, [0x33, 0x33, 0, 0, 0, 0x16])
        .ipv6(
            Ipv6Addr::UNSPECIFIED.octets(),
            [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x16],
            1,
        )
        .icmpv6(report)
        .write(&mut mld, &record)
        .unwrap();
    assert_eq!(run(&mut gw, &mld), None);
    let c = gw.counters();
    assert_eq!((c.echo6_replies, c.neighbor_adverts, c.ignored), (0, 0, 7));
}

#[test]
fn an_ipv4_only_gateway_answers_no_ipv6() {
    let mut gw = Gateway::new(GW_IP, GW_MAC);
    assert_eq!(run(&mut gw, &Ns::resolve(GW_LL).frame()), None);
    assert_eq!(run(&mut gw, &Ns::dad(GW_LL).frame()), None);
    assert_eq!(run(&mut gw, &echo6(GW_MAC, C1_LL, GW_LL, b"hi")), None);
    assert_eq!(run(&mut gw, &echo6(GW_MAC, C1_6, GW6, b"hi")), None);
    let c = gw.counters();
    assert_eq!((c.neighbor_adverts, c.echo6_replies, c.ignored), (0, 0, 4));
}

#[test]
fn ipv6_answers_share_the_rate_limit() {
    let mut gw = gateway();
    let t0 = Instant::now();
    let mut out = [0u8; 2048];
    let ns = Ns::resolve(GW6).frame();
    let ping = echo6(GW_MAC, C1_6, GW6, b"flood");
    let answered = (0..BURST + 50)
        .filter(|i| {
            let frame = if i % 2 == 0 { &ns } else { &ping };
            gw.on_frame_at(frame, &mut out, t0).is_some()
        })
        .count();
    assert_eq!(answered, BURST as usize, "one bucket for both");
    let c = gw.counters();
    assert_eq!(c.rate_limited, 50);
    assert_eq!(c.neighbor_adverts + c.echo6_replies, u64::from(BURST));
    // An ARP-sized IPv4 ping from the same MAC is out of tokens too.
    let mut v4 = Vec::new();
    PacketBuilder::ethernet2(C1_MAC, GW_MAC)
        .ipv4([10, 60, 0, 2], GW_IP.octets(), 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut v4, b"x")
        .unwrap();
    assert_eq!(gw.on_frame_at(&v4, &mut out, t0), None);
    let later = t0 + Duration::from_millis(100);
    let refilled = (0..50)
        .filter(|_| gw.on_frame_at(&ping, &mut out, later).is_some())
        .count();
    assert_eq!(refilled, (RATE / 10) as usize);
}

#[test]
fn small_output_buffer_yields_none() {
    let mut gw = gateway();
    let ns = Ns::resolve(GW6).frame();
    // Ethernet + IPv6 + NA (24) + target link-layer option (8).
    let na_len = 14 + 40 + 24 + 8;
    let mut out = vec![0u8; na_len - 1];
    assert_eq!(gw.on_frame(&ns, &mut out), None);
    let mut out = vec![0u8; na_len];
    assert_eq!(gw.on_frame(&ns, &mut out), Some(na_len));
    let ping = echo6(GW_MAC, C1_6, GW6, &[0; 100]);
    let mut out = vec![0u8; ping.len() - 1];
    assert_eq!(gw.on_frame(&ping, &mut out), None);
    let mut out = vec![0u8; ping.len()];
    assert_eq!(gw.on_frame(&ping, &mut out), Some(ping.len()));
}

#[test]
fn truncated_and_garbage_ipv6_frames_never_panic() {
    let mut gw = gateway();
    let valid = [
        Ns::resolve(GW6).frame(),
        Ns::dad(GW_LL).frame(),
        echo6(GW_MAC, C1_6, GW6, &[0xab; 24]),
    ];
    for frame in &valid {
        assert!(run(&mut gw, frame).is_some());
        for n in 0..frame.len() {
            assert_eq!(run(&mut gw, &frame[..n]), None, "prefix of {n} bytes");
        }
    }
    let mut out = [0u8; 2048];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let mut frame = valid[(rand() % 3) as usize].clone();
        for _ in 0..(rand() % 4 + 1) {
            let i = (rand() as usize) % frame.len();
            frame[i] = rand() as u8;
        }
        let cut = (rand() as usize) % (frame.len() + 1);
        let _ = gw.on_frame(&frame[..cut], &mut out);
    }
    let c = gw.counters();
    let seen = c.arp_replies
        + c.echo_replies
        + c.neighbor_adverts
        + c.echo6_replies
        + c.ignored
        + c.rate_limited;
    let prefixes: usize = valid.iter().map(Vec::len).sum();
    assert_eq!(seen, (3 + prefixes + 20_000) as u64);
}

#[test]
fn a_solicitation_for_a_remote_endpoint_is_answered_with_its_mac() {
    const R6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x60, 0, 0, 0, 0, 0, 0x30);
    const R_MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x3c, 0x00, 0x30];
    let mut gw = gateway();
    assert_eq!(run(&mut gw, &Ns::resolve(R6).frame()), None);
    // The store places R on another host; it cannot take over the gateway's address.
    gw.set_remote_neighbors6([(R6, R_MAC), (GW6, R_MAC)]);
    let reply = run(&mut gw, &Ns::resolve(R6).frame()).expect("answered");
    let p = Parsed::of(&reply);
    assert_eq!(p.eth_src, EthernetAddress(R_MAC));
    assert_eq!(p.eth_dst, EthernetAddress(C1_MAC));
    assert_eq!((p.ip.src_addr, p.ip.dst_addr), (R6, C1_LL));
    let (flags, target, lladdr) = p.advert();
    assert_eq!(
        flags,
        NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE,
        "an endpoint is no router"
    );
    assert_eq!(target, R6);
    assert_eq!(lladdr.unwrap().as_bytes(), &R_MAC);
    let own = Parsed::of(&run(&mut gw, &Ns::resolve(GW6).frame()).unwrap());
    assert_eq!(own.eth_src, EthernetAddress(GW_MAC));
    gw.set_remote_neighbors6([]);
    assert_eq!(run(&mut gw, &Ns::resolve(R6).frame()), None);
}
