//! Forwarding and IPv4 anti-spoofing tests of [`Network`].

use std::net::Ipv4Addr;

use super::*;
use crate::BROADCAST;
use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder, VlanId};

pub(super) const GW_MAC: Mac = [0x02, 0x42, 0, 0, 0, 0x01];
pub(super) const MAC1: Mac = [0x02, 0x42, 0, 0, 0, 0x11];
pub(super) const MAC2: Mac = [0x02, 0x42, 0, 0, 0, 0x12];
pub(super) const MAC3: Mac = [0x02, 0x42, 0, 0, 0, 0x13];
pub(super) const REMOTE_X: Mac = [0x02, 0x99, 0, 0, 0, 0x01];
const REMOTE_Y: Mac = [0x02, 0x99, 0, 0, 0, 0x02];
const UNKNOWN: Mac = [0x02, 0x77, 0, 0, 0, 0x01];
pub(super) const GW_IP: [u8; 4] = [172, 18, 0, 1];
pub(super) const IP1: [u8; 4] = [172, 18, 0, 11];
pub(super) const IP2: [u8; 4] = [172, 18, 0, 12];
const IP3: [u8; 4] = [172, 18, 0, 13];
pub(super) const C1: PortId = PortId(1);
pub(super) const C2: PortId = PortId(2);
pub(super) const C3: PortId = PortId(3);
pub(super) const UP: PortId = PortId(9);

pub(super) fn container(mac: Mac, ip: [u8; 4]) -> PortRole {
    PortRole::Container {
        mac,
        ipv4: Ipv4Addr::from(ip),
        ipv6: None,
    }
}

/// A network with the gateway, three containers and one uplink.
fn network(icc: bool) -> Network {
    let mut config = NetworkConfig::new(GW_MAC);
    config.icc = icc;
    let mut net = Network::new(config);
    net.add_port(C1, container(MAC1, IP1)).unwrap();
    net.add_port(C2, container(MAC2, IP2)).unwrap();
    net.add_port(C3, container(MAC3, IP3)).unwrap();
    net.add_port(UP, PortRole::Uplink).unwrap();
    net
}

pub(super) fn udp(src: Mac, dst: Mac, src_ip: [u8; 4], dst_ip: [u8; 4]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src, dst)
        .ipv4(src_ip, dst_ip, 64)
        .udp(5000, 53)
        .write(&mut v, b"payload")
        .unwrap();
    v
}

pub(super) fn arp(src: Mac, dst: Mac, sha: Mac, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let packet = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &sha,
        &spa,
        &[0; 6],
        &tpa,
    )
    .unwrap();
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src, dst)
        .arp(packet)
        .write(&mut v)
        .unwrap();
    v
}

pub(super) fn flood_targets(net: &Network, ingress: PortId) -> Vec<PortId> {
    let mut v = Vec::new();
    net.for_each_flood_target(ingress, |p| v.push(p));
    v.sort();
    v
}

#[test]
fn gateway_is_attached_and_pinned() {
    let net = Network::new(NetworkConfig::new(GW_MAC));
    assert!(matches!(net.role(GATEWAY), Some(PortRole::Gateway)));
    assert_eq!(net.mac_table().lookup(&GW_MAC), Some(GATEWAY));
    assert_eq!(net.port_count(), 1);
    assert_eq!(net.config().mac_capacity, 16_384);
    assert_eq!(net.config().mac_max_age, 300);
    assert!(net.config().icc);
}

#[test]
fn two_containers_unicast_both_ways() {
    let mut net = network(true);
    let f12 = udp(MAC1, MAC2, IP1, IP2);
    let f21 = udp(MAC2, MAC1, IP2, IP1);
    assert_eq!(net.forward(C1, &f12, 0), Verdict::Unicast(C2));
    assert_eq!(net.forward(C2, &f21, 0), Verdict::Unicast(C1));
    let c1 = net.counters(C1).unwrap();
    assert_eq!(c1.rx_frames, 1);
    assert_eq!(c1.rx_bytes, f12.len() as u64);
    assert_eq!(c1.dropped_total(), 0);
}

#[test]
fn container_reaches_gateway_and_back() {
    let mut net = network(true);
    let out = udp(MAC1, GW_MAC, IP1, [8, 8, 8, 8]);
    assert_eq!(net.forward(C1, &out, 0), Verdict::Unicast(GATEWAY));
    // Gateway ingress is unfiltered: any source IP passes.
    let back = udp(GW_MAC, MAC1, [8, 8, 8, 8], IP1);
    assert_eq!(net.forward(GATEWAY, &back, 0), Verdict::Unicast(C1));
}

#[test]
fn broadcast_arp_floods_to_every_other_port() {
    let mut net = network(true);
    let f = arp(MAC1, BROADCAST, MAC1, IP1, GW_IP);
    assert_eq!(net.forward(C1, &f, 0), Verdict::Flood);
    assert_eq!(flood_targets(&net, C1), vec![GATEWAY, C2, C3, UP]);
    assert_eq!(flood_targets(&net, GATEWAY), vec![C1, C2, C3, UP]);
}

#[test]
fn multicast_floods() {
    let mut net = network(true);
    let f = udp(MAC1, [0x01, 0x00, 0x5e, 0, 0, 0xfb], IP1, [224, 0, 0, 251]);
    assert_eq!(net.forward(C1, &f, 0), Verdict::Flood);
}

#[test]
fn unknown_unicast_floods() {
    let mut net = network(true);
    let f = udp(MAC1, UNKNOWN, IP1, IP2);
    assert_eq!(net.forward(C1, &f, 0), Verdict::Flood);
}

#[test]
fn spoofed_source_mac_is_dropped_and_counted() {
    let mut net = network(true);
    let f = udp(UNKNOWN, MAC2, IP1, IP2);
    assert_eq!(
        net.forward(C1, &f, 0),
        Verdict::Drop(DropReason::SpoofedMac)
    );
    // Impersonating another container is the same.
    let f = udp(MAC3, MAC2, IP3, IP2);
    assert_eq!(
        net.forward(C1, &f, 0),
        Verdict::Drop(DropReason::SpoofedMac)
    );
    let c = net.counters(C1).unwrap();
    assert_eq!(c.rx_frames, 2);
    assert_eq!(c.dropped(DropReason::SpoofedMac), 2);
    assert_eq!(c.dropped_total(), 2);
    // Nothing was learned from the spoofed frames.
    assert_eq!(net.mac_table().lookup(&UNKNOWN), None);
    assert_eq!(net.mac_table().lookup(&MAC3), Some(C3));
}

#[test]
fn spoofed_arp_sender_mac_is_dropped() {
    let mut net = network(true);
    let f = arp(MAC1, BROADCAST, MAC3, IP1, GW_IP);
    assert_eq!(
        net.forward(C1, &f, 0),
        Verdict::Drop(DropReason::SpoofedMac)
    );
}

#[test]
fn spoofed_arp_sender_ip_is_dropped() {
    let mut net = network(true);
    let f = arp(MAC1, BROADCAST, MAC1, IP2, GW_IP);
    assert_eq!(net.forward(C1, &f, 0), Verdict::Drop(DropReason::SpoofedIp));
    assert_eq!(net.counters(C1).unwrap().dropped(DropReason::SpoofedIp), 1);
}

#[test]
fn arp_probe_is_allowed() {
    let mut net = network(true);
    let f = arp(MAC1, BROADCAST, MAC1, [0, 0, 0, 0], IP1);
    assert_eq!(net.forward(C1, &f, 0), Verdict::Flood);
}

#[test]
fn spoofed_ipv4_source_is_dropped() {
    let mut net = network(true);
    let f = udp(MAC1, MAC2, IP3, IP2);
    assert_eq!(net.forward(C1, &f, 0), Verdict::Drop(DropReason::SpoofedIp));
    let f = udp(MAC1, GW_MAC, [0, 0, 0, 0], [255, 255, 255, 255]);
    assert_eq!(net.forward(C1, &f, 0), Verdict::Drop(DropReason::SpoofedIp));
}

#[test]
fn ipv6_on_an_ipv4_only_port_gets_the_mac_check_only() {
    let mut net = network(true);
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC1, MAC2)
        .ipv6([0xfe; 16], [0xfd; 16], 64)
        .udp(1, 2)
        .write(&mut f, b"x")
        .unwrap();
    assert_eq!(net.forward(C1, &f, 0), Verdict::Unicast(C2));
    f[6..12].copy_from_slice(&MAC3);
    assert_eq!(
        net.forward(C1, &f, 0),
        Verdict::Drop(DropReason::SpoofedMac)
    );
}

/// An all-nodes Router Advertisement from `src` (ICMPv6 type 134, no options).
fn router_advertisement(src: Mac) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(src, [0x33, 0x33, 0, 0, 0, 1])
        .ipv6(
            [0xfe; 16],
            [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            255,
        )
        .icmpv6(etherparse::Icmpv6Type::Unknown {
            type_u8: 134,
            code_u8: 0,
            bytes5to8: [64, 0, 0x07, 0x08],
        })
        .write(&mut f, &[0; 8])
        .unwrap();
    f
}

#[test]
fn ra_guard_drops_container_router_advertisements_only() {
    let mut net = network(true);
    let ra = router_advertisement(MAC1);
    assert_eq!(net.forward(C1, &ra, 0), Verdict::Drop(DropReason::RaGuard));
    let c = net.counters(C1).unwrap();
    assert_eq!((c.rx_frames, c.dropped(DropReason::RaGuard)), (1, 1));
    // A truncated chain hiding the upper layer is malformed.
    let cut = &ra[..14 + 40];
    assert_eq!(
        net.forward(C1, cut, 0),
        Verdict::Drop(DropReason::Malformed)
    );
    assert_eq!(net.counters(C1).unwrap().dropped(DropReason::Malformed), 1);
    // The gateway and trunks are trusted.
    assert_eq!(
        net.forward(GATEWAY, &router_advertisement(GW_MAC), 0),
        Verdict::Flood
    );
    assert_eq!(
        net.forward(UP, &router_advertisement(REMOTE_X), 0),
        Verdict::Flood
    );
}

#[test]
fn vlan_tagged_frames_from_containers_are_dropped() {
    let mut net = network(true);
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC1, MAC2)
        .single_vlan(VlanId::try_new(5).unwrap())
        .ipv4(IP1, IP2, 64)
        .udp(1, 2)
        .write(&mut f, b"x")
        .unwrap();
    assert_eq!(
        net.forward(C1, &f, 0),
        Verdict::Drop(DropReason::VlanTagged)
    );
    // 802.1ad outer tag too.
    f[12..14].copy_from_slice(&0x88a8u16.to_be_bytes());
    assert_eq!(
        net.forward(C1, &f, 0),
        Verdict::Drop(DropReason::VlanTagged)
    );
    assert_eq!(net.counters(C1).unwrap().dropped(DropReason::VlanTagged), 2);
    // Trunks are unfiltered.
    f[6..12].copy_from_slice(&REMOTE_X);
    assert_eq!(net.forward(UP, &f, 0), Verdict::Unicast(C2));
}

#[test]
fn icc_disabled_isolates_containers_but_not_the_gateway() {
    let mut net = network(false);
    let f12 = udp(MAC1, MAC2, IP1, IP2);
    assert_eq!(
        net.forward(C1, &f12, 0),
        Verdict::Drop(DropReason::Isolation)
    );
    assert_eq!(net.counters(C1).unwrap().dropped(DropReason::Isolation), 1);

    let bcast = arp(MAC1, BROADCAST, MAC1, IP1, IP2);
    assert_eq!(net.forward(C1, &bcast, 0), Verdict::Flood);
    assert_eq!(flood_targets(&net, C1), vec![GATEWAY]);

    let to_gw = udp(MAC1, GW_MAC, IP1, GW_IP);
    assert_eq!(net.forward(C1, &to_gw, 0), Verdict::Unicast(GATEWAY));
    let from_gw = udp(GW_MAC, MAC1, GW_IP, IP1);
    assert_eq!(net.forward(GATEWAY, &from_gw, 0), Verdict::Unicast(C1));
    assert_eq!(flood_targets(&net, GATEWAY), vec![C1, C2, C3, UP]);

    net.set_icc(true);
    assert_eq!(net.forward(C1, &f12, 0), Verdict::Unicast(C2));
    assert_eq!(flood_targets(&net, C1), vec![GATEWAY, C2, C3, UP]);
}

#[test]
fn remove_port_forgets_its_macs() {
    let mut net = network(true);
    let from_x = udp(REMOTE_X, BROADCAST, [10, 1, 0, 1], [10, 1, 255, 255]);
    assert_eq!(net.forward(UP, &from_x, 0), Verdict::Flood);
    let to_x = udp(MAC1, REMOTE_X, IP1, [10, 1, 0, 1]);
    assert_eq!(net.forward(C1, &to_x, 1), Verdict::Unicast(UP));

    let final_counters = net.remove_port(UP).unwrap();
    assert_eq!(final_counters.rx_frames, 1);
    assert_eq!(net.mac_table().lookup(&REMOTE_X), None);
    assert_eq!(net.forward(C1, &to_x, 2), Verdict::Flood);
    assert!(net.remove_port(UP).is_none());

    // Removing a container unpins its MAC; the remaining ports still resolve.
    net.remove_port(C1).unwrap();
    assert_eq!(net.mac_table().lookup(&MAC1), None);
    let to_1 = udp(MAC2, MAC1, IP2, IP1);
    assert_eq!(net.forward(C2, &to_1, 3), Verdict::Flood);
    assert_eq!(flood_targets(&net, C2), vec![GATEWAY, C3]);
    assert_eq!(
        net.forward(C3, &udp(MAC3, MAC2, IP3, IP2), 3),
        Verdict::Unicast(C2)
    );
    assert_eq!(net.counters(C2).unwrap().rx_frames, 1);
    assert!(net.counters(C1).is_none());
    assert_eq!(
        net.forward(C1, &to_x, 4),
        Verdict::Drop(DropReason::UnknownPort)
    );
    assert_eq!(net.unknown_port_drops(), 1);

    // The id and the MAC can be reused.
    net.add_port(C1, container(MAC1, IP1)).unwrap();
    assert_eq!(net.forward(C2, &to_1, 5), Verdict::Unicast(C1));
}

#[test]
fn hairpin_is_dropped() {
    let mut net = network(true);
    net.mac_table_mut().learn(REMOTE_Y, UP, 0);
    let f = udp(REMOTE_X, REMOTE_Y, [10, 1, 0, 1], [10, 1, 0, 2]);
    assert_eq!(net.forward(UP, &f, 0), Verdict::Drop(DropReason::Hairpin));
    assert_eq!(net.counters(UP).unwrap().dropped(DropReason::Hairpin), 1);
    // Source was still learned.
    assert_eq!(net.mac_table().lookup(&REMOTE_X), Some(UP));
    // A container sending to itself.
    let f = udp(MAC1, MAC1, IP1, IP1);
    assert_eq!(net.forward(C1, &f, 0), Verdict::Drop(DropReason::Hairpin));
}

#[test]
fn runts_are_dropped() {
    let mut net = network(true);
    let f = udp(MAC1, MAC2, IP1, IP2);
    assert_eq!(
        net.forward(C1, &f[..13], 0),
        Verdict::Drop(DropReason::Runt)
    );
    assert_eq!(net.forward(C1, &[], 0), Verdict::Drop(DropReason::Runt));
    // Truncated IPv4 header.
    assert_eq!(
        net.forward(C1, &f[..14 + 19], 0),
        Verdict::Drop(DropReason::Runt)
    );
    // Truncated ARP body.
    let a = arp(MAC1, BROADCAST, MAC1, IP1, GW_IP);
    assert_eq!(
        net.forward(C1, &a[..14 + 27], 0),
        Verdict::Drop(DropReason::Runt)
    );
    // Trunk runts too.
    assert_eq!(
        net.forward(UP, &f[..10], 0),
        Verdict::Drop(DropReason::Runt)
    );
    let c = net.counters(C1).unwrap();
    assert_eq!(c.rx_frames, 4);
    assert_eq!(c.rx_bytes, 13 + 33 + 41);
    assert_eq!(c.dropped(DropReason::Runt), 4);
}

#[test]
fn uplink_learns_and_moves_but_never_steals_pinned_macs() {
    let mut net = network(true);
    let up2 = PortId(10);
    net.add_port(up2, PortRole::Uplink).unwrap();
    let f = udp(REMOTE_X, MAC1, [10, 1, 0, 1], IP1);
    assert_eq!(net.forward(UP, &f, 0), Verdict::Unicast(C1));
    assert_eq!(net.mac_table().lookup(&REMOTE_X), Some(UP));
    assert_eq!(net.forward(up2, &f, 1), Verdict::Unicast(C1));
    assert_eq!(net.mac_table().lookup(&REMOTE_X), Some(up2));
    // An uplink claiming a container's MAC does not move it.
    let f = udp(MAC2, MAC1, IP2, IP1);
    assert_eq!(net.forward(UP, &f, 1), Verdict::Unicast(C1));
    assert_eq!(net.mac_table().lookup(&MAC2), Some(C2));
    // Nor the gateway's.
    let f = udp(GW_MAC, MAC1, GW_IP, IP1);
    net.forward(UP, &f, 1);
    assert_eq!(net.mac_table().lookup(&GW_MAC), Some(GATEWAY));
    // Group source addresses are not learned.
    let f = udp(BROADCAST, MAC1, GW_IP, IP1);
    net.forward(UP, &f, 1);
    assert_eq!(net.mac_table().lookup(&BROADCAST), None);
}

#[test]
fn add_port_rejects_duplicates() {
    let mut net = network(true);
    assert_eq!(
        net.add_port(C1, PortRole::Uplink),
        Err(SwitchError::PortExists(C1))
    );
    assert_eq!(
        net.add_port(GATEWAY, PortRole::Gateway),
        Err(SwitchError::PortExists(GATEWAY))
    );
    assert_eq!(
        net.add_port(PortId(20), container(MAC1, IP1)),
        Err(SwitchError::MacInUse {
            mac: MAC1,
            port: C1
        })
    );
    assert_eq!(
        net.add_port(PortId(20), container(GW_MAC, IP1)),
        Err(SwitchError::MacInUse {
            mac: GW_MAC,
            port: GATEWAY
        })
    );
    assert!(net.role(PortId(20)).is_none());
    assert_eq!(net.ports().count(), 5);
    assert_eq!(
        SwitchError::MacInUse {
            mac: MAC1,
            port: C1
        }
        .to_string(),
        "MAC 02:42:00:00:00:11 is already in use on port 1"
    );
}

#[test]
fn count_tx_records_writes_and_errors() {
    let mut net = network(true);
    net.count_tx(C2, 100, true);
    net.count_tx(C2, 60, true);
    net.count_tx(C2, 60, false);
    net.count_tx(PortId(999), 60, true);
    let c = net.counters(C2).unwrap();
    assert_eq!((c.tx_frames, c.tx_bytes, c.tx_errors), (2, 160, 1));
}

#[test]
fn aging_uses_the_configured_max_age() {
    let mut net = network(true);
    let f = udp(REMOTE_X, MAC1, [10, 1, 0, 1], IP1);
    net.forward(UP, &f, 100);
    assert_eq!(net.age(399), 0);
    assert_eq!(net.age(400), 1);
    assert_eq!(net.mac_table().lookup(&REMOTE_X), None);
    assert_eq!(net.mac_table().lookup(&MAC1), Some(C1));
    net.set_mac_max_age(10);
    net.forward(UP, &f, 500);
    assert_eq!(net.age(510), 1);
}

#[test]
fn large_port_ids_use_the_sparse_index() {
    let mut net = network(true);
    let big = PortId(100_000);
    let huge = PortId(u32::MAX - 1);
    let m: Mac = [0x02, 0x42, 0, 1, 0, 0];
    net.add_port(big, container(m, [172, 18, 1, 0])).unwrap();
    net.add_port(huge, PortRole::Uplink).unwrap();
    let f = udp(m, MAC1, [172, 18, 1, 0], IP1);
    assert_eq!(net.forward(big, &f, 0), Verdict::Unicast(C1));
    let back = udp(MAC1, m, IP1, [172, 18, 1, 0]);
    assert_eq!(net.forward(C1, &back, 0), Verdict::Unicast(big));
    assert_eq!(flood_targets(&net, huge).len(), 6);
    net.remove_port(big).unwrap();
    assert_eq!(net.forward(C1, &back, 0), Verdict::Flood);
    assert!(net.counters(huge).is_some());
    assert_eq!(
        net.add_port(huge, PortRole::Uplink),
        Err(SwitchError::PortExists(huge))
    );
}
