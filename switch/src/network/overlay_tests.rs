//! Overlay tests of [`Network`]: remote endpoints behind VXLAN VTEPs.

use std::net::{Ipv4Addr, SocketAddr};

use super::tests::{
    C1, C2, GW_IP, GW_MAC, IP1, IP2, MAC1, MAC2, arp, container, flood_targets, udp,
};
use super::*;
use crate::BROADCAST;

const R1_MAC: Mac = [0x02, 0x42, 0, 0, 1, 0x21];
const R1_IP: [u8; 4] = [172, 18, 0, 21];
const R2_MAC: Mac = [0x02, 0x42, 0, 0, 2, 0x22];
const R2_IP: [u8; 4] = [172, 18, 0, 22];

fn vtep(last: u8) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, last], 4789))
}

fn remote(mac: Mac, ip: [u8; 4], host: u8) -> RemoteEndpoint {
    RemoteEndpoint {
        mac,
        ip: Ipv4Addr::from(ip),
        ip6: None,
        vtep: vtep(host),
    }
}

/// Two local containers, and R1 on host .2, R2 on host .3.
fn overlay_network(icc: bool) -> Network {
    let mut config = NetworkConfig::new(GW_MAC);
    config.icc = icc;
    let mut net = Network::new(config);
    net.add_port(C1, container(MAC1, IP1)).unwrap();
    net.add_port(C2, container(MAC2, IP2)).unwrap();
    net.enable_overlay();
    let refused = net.set_remote_endpoints(&[remote(R1_MAC, R1_IP, 2), remote(R2_MAC, R2_IP, 3)]);
    assert!(refused.is_empty());
    net
}

fn drops(net: &Network, port: PortId, reason: DropReason) -> u64 {
    net.counters(port).unwrap().drops[reason as usize]
}

#[test]
fn unicast_to_a_remote_mac_goes_to_its_vtep() {
    let mut net = overlay_network(true);
    assert_eq!(
        net.forward(C1, &udp(MAC1, R1_MAC, IP1, R1_IP), 0),
        Verdict::Unicast(OVERLAY)
    );
    assert_eq!(net.remote_vtep(&R1_MAC), Some(vtep(2)));
    assert_eq!(net.remote_vtep(&R2_MAC), Some(vtep(3)));
    assert_eq!(net.remote_vtep(&MAC2), None);
}

#[test]
fn frames_from_the_right_vtep_reach_local_containers() {
    let mut net = overlay_network(true);
    let f = udp(R1_MAC, MAC1, R1_IP, IP1);
    assert_eq!(net.forward_from_vtep(vtep(2), &f), Verdict::Unicast(C1));
    let c = net.counters(OVERLAY).unwrap();
    assert_eq!((c.rx_frames, c.dropped_total()), (1, 0));
}

#[test]
fn broadcast_goes_to_the_overlay_and_never_back() {
    let net = overlay_network(true);
    // From a local container: the gateway, the other container and the overlay (the caller
    // replicates to every flood VTEP).
    assert_eq!(flood_targets(&net, C1), vec![GATEWAY, C2, OVERLAY]);
    // From the overlay: local containers only; never the overlay again, never the gateway.
    assert_eq!(flood_targets(&net, OVERLAY), vec![C1, C2]);
    // From the gateway: never across hosts.
    assert_eq!(flood_targets(&net, GATEWAY), vec![C1, C2]);
}

#[test]
fn broadcast_from_a_vtep_is_flooded_locally() {
    let mut net = overlay_network(true);
    let f = arp(R1_MAC, BROADCAST, R1_MAC, R1_IP, IP1);
    assert_eq!(net.forward_from_vtep(vtep(2), &f), Verdict::Flood);
}

#[test]
fn arp_for_a_remote_ip_is_suppressed_to_the_gateway() {
    let mut net = overlay_network(true);
    let who_has_r1 = arp(MAC1, BROADCAST, MAC1, IP1, R1_IP);
    assert_eq!(net.forward(C1, &who_has_r1, 0), Verdict::Unicast(GATEWAY));
    // A local address or the gateway's is not suppressed: it floods as usual.
    assert_eq!(
        net.forward(C1, &arp(MAC1, BROADCAST, MAC1, IP1, IP2), 0),
        Verdict::Flood
    );
    assert_eq!(
        net.forward(C1, &arp(MAC1, BROADCAST, MAC1, IP1, GW_IP), 0),
        Verdict::Flood
    );
}

#[test]
fn unknown_inner_mac_from_a_vtep_is_dropped_and_counted() {
    let mut net = overlay_network(true);
    let stranger = [0x02, 0x42, 0, 0, 9, 9];
    let f = udp(stranger, MAC1, R1_IP, IP1);
    assert_eq!(
        net.forward_from_vtep(vtep(2), &f),
        Verdict::Drop(DropReason::SpoofedMac)
    );
    assert_eq!(drops(&net, OVERLAY, DropReason::SpoofedMac), 1);
    // Nothing was learned from it: unicast to it still floods.
    assert_eq!(net.mac_table().lookup(&stranger), None);
}

#[test]
fn endpoint_from_the_wrong_vtep_is_dropped() {
    let mut net = overlay_network(true);
    // R1 lives behind .2; host .3 claims to send for it.
    let f = udp(R1_MAC, MAC1, R1_IP, IP1);
    assert_eq!(
        net.forward_from_vtep(vtep(3), &f),
        Verdict::Drop(DropReason::SpoofedMac)
    );
    // Same host, another port: not the VTEP the store names either.
    let other_port = SocketAddr::from(([198, 51, 100, 2], 4790));
    assert_eq!(
        net.forward_from_vtep(other_port, &f),
        Verdict::Drop(DropReason::SpoofedMac)
    );
    assert_eq!(drops(&net, OVERLAY, DropReason::SpoofedMac), 2);
}

#[test]
fn spoofed_inner_ip_from_a_vtep_is_dropped() {
    let mut net = overlay_network(true);
    // R1's MAC with R2's address.
    let f = udp(R1_MAC, MAC1, R2_IP, IP1);
    assert_eq!(
        net.forward_from_vtep(vtep(2), &f),
        Verdict::Drop(DropReason::SpoofedIp)
    );
    let a = arp(R1_MAC, BROADCAST, R1_MAC, GW_IP, IP1);
    assert_eq!(
        net.forward_from_vtep(vtep(2), &a),
        Verdict::Drop(DropReason::SpoofedIp)
    );
    assert_eq!(drops(&net, OVERLAY, DropReason::SpoofedIp), 2);
}

#[test]
fn gateway_mac_never_crosses() {
    let mut net = overlay_network(true);
    // From the overlay with the gateway's MAC as source.
    let f = udp(GW_MAC, MAC1, GW_IP, IP1);
    assert_eq!(
        net.forward_from_vtep(vtep(2), &f),
        Verdict::Drop(DropReason::SpoofedMac)
    );
    // From the overlay to the gateway's MAC: each host has its own gateway.
    let to_gw = udp(R1_MAC, GW_MAC, R1_IP, [8, 8, 8, 8]);
    assert_eq!(
        net.forward_from_vtep(vtep(2), &to_gw),
        Verdict::Drop(DropReason::Isolation)
    );
    // From the gateway to a remote endpoint.
    let from_gw = udp(GW_MAC, R1_MAC, GW_IP, R1_IP);
    assert_eq!(
        net.forward(GATEWAY, &from_gw, 0),
        Verdict::Drop(DropReason::Isolation)
    );
    // The store cannot place the gateway's MAC on a VTEP.
    let refused = net.set_remote_endpoints(&[remote(GW_MAC, GW_IP, 2)]);
    assert_eq!(refused, vec![GW_MAC]);
    assert_eq!(net.mac_table().lookup(&GW_MAC), Some(GATEWAY));
}

#[test]
fn icc_false_holds_across_the_overlay() {
    let mut net = overlay_network(false);
    assert_eq!(
        net.forward(C1, &udp(MAC1, R1_MAC, IP1, R1_IP), 0),
        Verdict::Drop(DropReason::Isolation)
    );
    assert_eq!(
        net.forward_from_vtep(vtep(2), &udp(R1_MAC, MAC1, R1_IP, IP1)),
        Verdict::Drop(DropReason::Isolation)
    );
    // Floods: a container reaches only its gateway; the overlay reaches nobody.
    assert_eq!(flood_targets(&net, C1), vec![GATEWAY]);
    assert_eq!(flood_targets(&net, OVERLAY), Vec::<PortId>::new());
}

#[test]
fn replacing_remote_endpoints_forgets_the_old_ones() {
    let mut net = overlay_network(true);
    let refused = net.set_remote_endpoints(&[remote(R2_MAC, R2_IP, 2)]);
    assert!(refused.is_empty());
    assert_eq!(net.mac_table().lookup(&R1_MAC), None);
    assert_eq!(net.remote_vtep(&R2_MAC), Some(vtep(2)));
    // R1 is gone: its frames are no longer accepted, and unicast to it floods.
    assert_eq!(
        net.forward_from_vtep(vtep(2), &udp(R1_MAC, MAC1, R1_IP, IP1)),
        Verdict::Drop(DropReason::SpoofedMac)
    );
    assert_eq!(
        net.forward(C1, &udp(MAC1, R1_MAC, IP1, R1_IP), 0),
        Verdict::Flood
    );
    // A MAC pinned to a local container cannot be claimed by a remote endpoint.
    assert_eq!(
        net.set_remote_endpoints(&[remote(MAC1, R1_IP, 2)]),
        vec![MAC1]
    );
    assert_eq!(net.mac_table().lookup(&MAC1), Some(C1));
}

#[test]
fn a_network_without_overlay_accepts_nothing_from_vteps() {
    let mut net = Network::new(NetworkConfig::new(GW_MAC));
    net.add_port(C1, container(MAC1, IP1)).unwrap();
    assert_eq!(
        net.set_remote_endpoints(&[remote(R1_MAC, R1_IP, 2)]),
        vec![R1_MAC]
    );
    assert_eq!(
        net.forward_from_vtep(vtep(2), &udp(R1_MAC, MAC1, R1_IP, IP1)),
        Verdict::Drop(DropReason::UnknownPort)
    );
    assert_eq!(flood_targets(&net, C1), vec![GATEWAY]);
}
