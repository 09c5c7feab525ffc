//! IPv6 anti-spoofing and Neighbor Discovery inspection on dual-stack Container ports.

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::icmpv6::NeighborAdvertisementHeader;
use etherparse::{Icmpv6Type, PacketBuilder};

use super::tests::{C1, C2, C3, GW_MAC, IP1, IP2, MAC1, MAC2, MAC3, REMOTE_X, UP, flood_targets};
use super::*;
use crate::MacAddr;

const IP3: [u8; 4] = [172, 18, 0, 13];
const GW6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x60, 0, 0, 0, 0, 0, 1);
const V6_1: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x60, 0, 0, 0, 0, 0, 0x11);
const V6_2: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x60, 0, 0, 0, 0, 0, 0x12);
const UNSPECIFIED: Ipv6Addr = Ipv6Addr::UNSPECIFIED;
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_NODES_MAC: Mac = [0x33, 0x33, 0, 0, 0, 1];
const MLDV2_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);

fn ll(mac: Mac) -> Ipv6Addr {
    MacAddr(mac).link_local_ipv6()
}

/// C1 and C2 are dual stack, C3 is IPv4 only; plus the gateway and an uplink.
fn network(icc: bool) -> Network {
    let mut config = NetworkConfig::new(GW_MAC);
    config.icc = icc;
    let mut net = Network::new(config);
    for (id, mac, ip, ip6) in [
        (C1, MAC1, IP1, Some(V6_1)),
        (C2, MAC2, IP2, Some(V6_2)),
        (C3, MAC3, IP3, None),
    ] {
        let role = PortRole::Container {
            mac,
            ipv4: Ipv4Addr::from(ip),
            ipv6: ip6,
        };
        net.add_port(id, role).unwrap();
    }
    net.add_port(UP, PortRole::Uplink).unwrap();
    net
}

fn udp6(src_mac: Mac, dst_mac: Mac, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv6(src.octets(), dst.octets(), 64)
        .udp(5000, 53)
        .write(&mut f, b"payload")
        .unwrap();
    f
}

/// An ICMPv6 message with a correct checksum; `body` follows the first 8 bytes.
fn icmp6(
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ty: Icmpv6Type,
    body: &[u8],
) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv6(src.octets(), dst.octets(), 255)
        .icmpv6(ty)
        .write(&mut f, body)
        .unwrap();
    f
}

/// The solicited-node multicast group of `target` and its MAC (RFC 4291 §2.7.1).
fn solicited_node(target: Ipv6Addr) -> (Ipv6Addr, Mac) {
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

/// A link-layer address option (type 1 source, 2 target).
fn lla(ty: u8, mac: Mac) -> [u8; 8] {
    let [a, b, c, d, e, f] = mac;
    [ty, 1, a, b, c, d, e, f]
}

/// A Neighbor Solicitation from `src_mac`/`src` for `target` to its solicited-node group.
fn ns(src_mac: Mac, src: Ipv6Addr, target: Ipv6Addr, options: &[u8]) -> Vec<u8> {
    let (group, group_mac) = solicited_node(target);
    let mut body = target.octets().to_vec();
    body.extend_from_slice(options);
    icmp6(
        src_mac,
        group_mac,
        src,
        group,
        Icmpv6Type::NeighborSolicitation,
        &body,
    )
}

/// An unsolicited Neighbor Advertisement for `target` to all nodes.
fn na(src_mac: Mac, src: Ipv6Addr, target: Ipv6Addr, options: &[u8]) -> Vec<u8> {
    let mut body = target.octets().to_vec();
    body.extend_from_slice(options);
    let flags = NeighborAdvertisementHeader {
        router: false,
        solicited: false,
        r#override: true,
    };
    icmp6(
        src_mac,
        ALL_NODES_MAC,
        src,
        ALL_NODES,
        Icmpv6Type::NeighborAdvertisement(flags),
        &body,
    )
}

/// An MLDv2 report (ICMPv6 143) joining one group, or an MLDv1 report (131).
fn mld_report(src_mac: Mac, src: Ipv6Addr, v2: bool) -> Vec<u8> {
    let (group, _) = solicited_node(V6_1);
    let (ty, rest, body) = if v2 {
        // One record: change to exclude mode (4), no aux data, no sources, the group.
        let mut record = vec![4, 0, 0, 0];
        record.extend_from_slice(&group.octets());
        (143, [0, 0, 0, 1], record)
    } else {
        // Max response delay and reserved, then the group.
        (131, [0, 0, 0, 0], group.octets().to_vec())
    };
    let ty = Icmpv6Type::Unknown {
        type_u8: ty,
        code_u8: 0,
        bytes5to8: rest,
    };
    icmp6(
        src_mac,
        [0x33, 0x33, 0, 0, 0, 0x16],
        src,
        MLDV2_ROUTERS,
        ty,
        &body,
    )
}

/// Inserts an 8-byte hop-by-hop header (router alert, PadN) in front of the upper layer.
fn with_hop_by_hop(frame: &[u8]) -> Vec<u8> {
    let next = frame[14 + 6];
    let plen = u16::from_be_bytes([frame[14 + 4], frame[14 + 5]]) + 8;
    let mut f = frame[..14 + 40].to_vec();
    f[14 + 4..14 + 6].copy_from_slice(&plen.to_be_bytes());
    f[14 + 6] = 0;
    f.extend_from_slice(&[next, 0, 5, 2, 0, 0, 1, 0]);
    f.extend_from_slice(&frame[14 + 40..]);
    f
}

fn dropped(reason: DropReason) -> Verdict {
    Verdict::Drop(reason)
}

#[test]
fn a_spoofed_ipv6_source_is_dropped_and_counted() {
    let mut net = network(true);
    // Another container's address, another MAC's link-local, the gateway's, unspecified.
    for src in [V6_2, ll(MAC2), GW6, ll(REMOTE_X), UNSPECIFIED] {
        let f = udp6(MAC1, MAC2, src, V6_2);
        assert_eq!(
            net.forward(C1, &f, 0),
            dropped(DropReason::SpoofedIp),
            "{src}"
        );
    }
    // Not even an echo request may come from ::.
    let ping = icmp6(
        MAC1,
        GW_MAC,
        UNSPECIFIED,
        GW6,
        Icmpv6Type::EchoRequest(etherparse::IcmpEchoHeader { id: 1, seq: 1 }),
        b"x",
    );
    assert_eq!(net.forward(C1, &ping, 0), dropped(DropReason::SpoofedIp));
    let c = net.counters(C1).unwrap();
    assert_eq!((c.rx_frames, c.dropped(DropReason::SpoofedIp)), (6, 6));
    assert_eq!(c.dropped_total(), 6);
}

#[test]
fn the_leased_and_the_mac_derived_link_local_source_pass() {
    let mut net = network(true);
    assert_eq!(
        net.forward(C1, &udp6(MAC1, MAC2, V6_1, V6_2), 0),
        Verdict::Unicast(C2)
    );
    assert_eq!(
        net.forward(C1, &udp6(MAC1, MAC2, ll(MAC1), ll(MAC2)), 0),
        Verdict::Unicast(C2)
    );
    assert_eq!(
        net.forward(
            C1,
            &udp6(MAC1, GW_MAC, V6_1, "2001:db8::1".parse().unwrap()),
            0
        ),
        Verdict::Unicast(GATEWAY)
    );
    assert_eq!(net.counters(C1).unwrap().dropped_total(), 0);
}

#[test]
fn dad_from_unspecified_may_probe_only_owned_targets() {
    let mut net = network(true);
    for target in [V6_1, ll(MAC1)] {
        let f = ns(MAC1, UNSPECIFIED, target, &[]);
        assert_eq!(net.forward(C1, &f, 0), Verdict::Flood, "{target}");
    }
    // Probing somebody else's address would make its owner give it up (DAD denial).
    for target in [V6_2, ll(MAC2), GW6] {
        let f = ns(MAC1, UNSPECIFIED, target, &[]);
        assert_eq!(
            net.forward(C1, &f, 0),
            dropped(DropReason::SpoofedIp),
            "{target}"
        );
    }
    // Ordinary address resolution from an owned source may ask for anyone.
    let f = ns(MAC1, ll(MAC1), GW6, &lla(1, MAC1));
    assert_eq!(net.forward(C1, &f, 0), Verdict::Flood);
    let f = ns(MAC1, V6_1, V6_2, &lla(1, MAC1));
    assert_eq!(net.forward(C1, &f, 0), Verdict::Flood);
    assert_eq!(net.counters(C1).unwrap().dropped(DropReason::SpoofedIp), 3);
}

#[test]
fn mld_reports_from_unspecified_pass() {
    let mut net = network(true);
    for v2 in [true, false] {
        let f = mld_report(MAC1, UNSPECIFIED, v2);
        assert_eq!(net.forward(C1, &f, 0), Verdict::Flood, "v2 {v2}");
        // As the kernel sends it: behind a hop-by-hop router alert.
        let f = with_hop_by_hop(&f);
        assert_eq!(net.forward(C1, &f, 0), Verdict::Flood, "v2 {v2} hbh");
    }
    // From the link-local address too; but never from a foreign address.
    assert_eq!(
        net.forward(C1, &mld_report(MAC1, ll(MAC1), true), 0),
        Verdict::Flood
    );
    assert_eq!(
        net.forward(C1, &mld_report(MAC1, ll(MAC2), true), 0),
        dropped(DropReason::SpoofedIp)
    );
}

#[test]
fn a_neighbor_advertisement_for_a_foreign_target_is_dropped() {
    let mut net = network(true);
    // Claiming the gateway's address is the IPv6 form of ARP spoofing.
    for target in [GW6, V6_2, ll(GW_MAC), ll(MAC2)] {
        let f = na(MAC1, ll(MAC1), target, &lla(2, MAC1));
        assert_eq!(
            net.forward(C1, &f, 0),
            dropped(DropReason::SpoofedIp),
            "{target}"
        );
    }
    // Hidden behind an extension header it is found all the same.
    let f = with_hop_by_hop(&na(MAC1, V6_1, GW6, &[]));
    assert_eq!(net.forward(C1, &f, 0), dropped(DropReason::SpoofedIp));
    // Its own addresses it may advertise.
    for target in [V6_1, ll(MAC1)] {
        let f = na(MAC1, V6_1, target, &lla(2, MAC1));
        assert_eq!(net.forward(C1, &f, 0), Verdict::Flood, "{target}");
    }
    assert_eq!(net.counters(C1).unwrap().dropped(DropReason::SpoofedIp), 5);
}

#[test]
fn a_link_layer_option_with_a_foreign_mac_is_dropped() {
    let mut net = network(true);
    let f = ns(MAC1, V6_1, GW6, &lla(1, REMOTE_X));
    assert_eq!(net.forward(C1, &f, 0), dropped(DropReason::SpoofedMac));
    let f = ns(MAC1, V6_1, GW6, &lla(1, GW_MAC));
    assert_eq!(net.forward(C1, &f, 0), dropped(DropReason::SpoofedMac));
    // A second option hiding behind a good one.
    let mut options = lla(1, MAC1).to_vec();
    options.extend_from_slice(&lla(1, MAC2));
    let f = ns(MAC1, V6_1, GW6, &options);
    assert_eq!(net.forward(C1, &f, 0), dropped(DropReason::SpoofedMac));
    let f = na(MAC1, V6_1, V6_1, &lla(2, MAC2));
    assert_eq!(net.forward(C1, &f, 0), dropped(DropReason::SpoofedMac));
    let rs = icmp6(
        MAC1,
        [0x33, 0x33, 0, 0, 0, 2],
        ll(MAC1),
        "ff02::2".parse().unwrap(),
        Icmpv6Type::RouterSolicitation,
        &lla(1, REMOTE_X),
    );
    assert_eq!(net.forward(C1, &rs, 0), dropped(DropReason::SpoofedMac));
    assert_eq!(net.counters(C1).unwrap().dropped(DropReason::SpoofedMac), 5);
    // A Router Solicitation with its own MAC is fine (the gateway may ignore it).
    let mut ok = rs.clone();
    let n = ok.len();
    ok[n - 6..].copy_from_slice(&MAC1);
    assert_eq!(net.forward(C1, &ok, 0), Verdict::Flood);
}

#[test]
fn malformed_neighbor_discovery_is_dropped() {
    let mut net = network(true);
    // Option of length 0 (RFC 4861 §4.6: discard).
    let f = ns(MAC1, V6_1, GW6, &[1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(net.forward(C1, &f, 0), dropped(DropReason::Malformed));
    // Option running past the payload.
    let f = ns(MAC1, V6_1, GW6, &[1, 2, 0, 0, 0, 0, 0, 0]);
    assert_eq!(net.forward(C1, &f, 0), dropped(DropReason::Malformed));
    // Target cut short.
    let mut f = ns(MAC1, V6_1, GW6, &[]);
    f.truncate(f.len() - 4);
    let plen = u16::from_be_bytes([f[18], f[19]]) - 4;
    f[18..20].copy_from_slice(&plen.to_be_bytes());
    assert_eq!(net.forward(C1, &f, 0), dropped(DropReason::Malformed));
    // A fragmented NS (RFC 6980): first fragment.
    let good = ns(MAC1, V6_1, GW6, &lla(1, MAC1));
    let mut f = good[..14 + 40].to_vec();
    f[14 + 6] = 44;
    let plen = u16::from_be_bytes([f[18], f[19]]) + 8;
    f[18..20].copy_from_slice(&plen.to_be_bytes());
    f.extend_from_slice(&[58, 0, 0, 1, 0, 0, 0, 7]);
    f.extend_from_slice(&good[14 + 40..]);
    assert_eq!(net.forward(C1, &f, 0), dropped(DropReason::Malformed));
    assert_eq!(net.forward(C1, &good, 0), Verdict::Flood);
    // Ethernet padding beyond the IPv6 payload is not parsed as options.
    let mut padded = good.clone();
    padded.extend_from_slice(&[0; 6]);
    assert_eq!(net.forward(C1, &padded, 0), Verdict::Flood);
}

#[test]
fn router_advertisements_and_redirects_stay_ra_guard() {
    let mut net = network(true);
    let ra = Icmpv6Type::RouterAdvertisement(etherparse::icmpv6::RouterAdvertisementHeader {
        cur_hop_limit: 64,
        managed_address_config: false,
        other_config: false,
        router_lifetime: 1800,
    });
    // From its own link-local address, or pretending to be the gateway's: RA guard either way.
    for src in [ll(MAC1), ll(GW_MAC)] {
        let f = icmp6(MAC1, ALL_NODES_MAC, src, ALL_NODES, ra, &[0; 8]);
        assert_eq!(
            net.forward(C1, &f, 0),
            dropped(DropReason::RaGuard),
            "{src}"
        );
    }
    let mut redirect_body = vec![0; 4];
    redirect_body.extend_from_slice(&GW6.octets());
    redirect_body.extend_from_slice(&V6_2.octets());
    let f = icmp6(
        MAC1,
        MAC2,
        ll(MAC1),
        V6_2,
        Icmpv6Type::Redirect,
        &redirect_body,
    );
    assert_eq!(net.forward(C1, &f, 0), dropped(DropReason::RaGuard));
    let c = net.counters(C1).unwrap();
    assert_eq!((c.dropped(DropReason::RaGuard), c.dropped_total()), (3, 3));
}

#[test]
fn an_ipv4_only_port_keeps_the_mac_check_and_ra_guard_only() {
    let mut net = network(true);
    // C3 has no IPv6 lease: sources and ND are not inspected (unchanged behaviour).
    let f = udp6(MAC3, MAC2, V6_2, V6_1);
    assert_eq!(net.forward(C3, &f, 0), Verdict::Unicast(C2));
    let f = na(MAC3, GW6, GW6, &lla(2, REMOTE_X));
    assert_eq!(net.forward(C3, &f, 0), Verdict::Flood);
    let f = udp6(MAC1, MAC2, V6_1, V6_2);
    assert_eq!(net.forward(C3, &f, 0), dropped(DropReason::SpoofedMac));
}

#[test]
fn the_gateway_and_uplinks_are_trusted() {
    let mut net = network(true);
    let f = na(GW_MAC, ll(GW_MAC), GW6, &lla(2, GW_MAC));
    assert_eq!(net.forward(GATEWAY, &f, 0), Verdict::Flood);
    let f = na(REMOTE_X, V6_1, V6_1, &lla(2, MAC2));
    assert_eq!(net.forward(UP, &f, 0), Verdict::Flood);
}

#[test]
fn a_neighbor_solicitation_floods_within_its_network_only() {
    // Two networks with the same port ids: floods name ports of the network asked only.
    let mut a = network(true);
    let mut b = network(true);
    let f = ns(MAC1, ll(MAC1), GW6, &lla(1, MAC1));
    assert_eq!(a.forward(C1, &f, 0), Verdict::Flood);
    assert_eq!(flood_targets(&a, C1), vec![GATEWAY, C2, C3, UP]);
    assert!(
        b.ports()
            .all(|(id, _)| b.counters(id).unwrap().rx_frames == 0)
    );
    let extra = PortId(40);
    b.add_port(extra, PortRole::Uplink).unwrap();
    assert!(!flood_targets(&a, C1).contains(&extra));
    assert!(flood_targets(&b, C1).contains(&extra));
    // With icc=false the multicast reaches only the gateway.
    a.set_icc(false);
    assert_eq!(a.forward(C1, &f, 0), Verdict::Flood);
    assert_eq!(flood_targets(&a, C1), vec![GATEWAY]);
    let dad = ns(MAC2, UNSPECIFIED, V6_2, &[]);
    assert_eq!(a.forward(C2, &dad, 0), Verdict::Flood);
    assert_eq!(flood_targets(&a, C2), vec![GATEWAY]);
    // The gateway's answer still reaches every port.
    assert_eq!(flood_targets(&a, GATEWAY), vec![C1, C2, C3, UP]);
    b.forward(C1, &f, 0);
}

#[test]
fn a_solicitation_for_a_remote_endpoint_goes_to_the_gateway_only() {
    use crate::{OVERLAY, RemoteEndpoint};
    let remote6 = Ipv6Addr::new(0xfd00, 0x60, 0, 0, 0, 0, 0, 0x30);
    let mut net = network(true);
    net.enable_overlay();
    let refused = net.set_remote_endpoints(&[RemoteEndpoint {
        mac: [0x02, 0x42, 0, 0, 1, 0x30],
        ip: Ipv4Addr::new(172, 18, 0, 30),
        ip6: Some(remote6),
        vtep: "198.51.100.2:4789".parse().unwrap(),
    }]);
    assert!(refused.is_empty());
    assert_eq!(
        net.forward(C1, &ns(MAC1, ll(MAC1), remote6, &lla(1, MAC1)), 0),
        Verdict::Unicast(GATEWAY)
    );
    // A local target still floods (to the overlay too).
    assert_eq!(
        net.forward(C1, &ns(MAC1, ll(MAC1), V6_2, &lla(1, MAC1)), 0),
        Verdict::Flood
    );
    let mut targets = Vec::new();
    net.for_each_flood_target(C1, |p| targets.push(p));
    assert!(targets.contains(&OVERLAY));
}
