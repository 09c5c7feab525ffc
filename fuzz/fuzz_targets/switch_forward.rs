//! Arbitrary frames through `switch::Network::forward` from arbitrary ingress ports (the
//! gateway, three containers (two of them dual stack), an uplink and a port that is not attached), with icc on or off,
//! delivering every verdict to in-memory ports as the data path would. Checks that nothing
//! panics and that the verdicts keep the switch's promises: never back to the ingress port,
//! only to attached ports, and with icc off a container's flood reaches only the gateway.
//!
//! Input: byte 0 = flags (bit 0: icc off, bit 1: age the MAC table between frames), then
//! records of `[port selector][length lo][length hi][frame bytes...]` until the input ends.
#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use switch::{GATEWAY, MemPort, Network, NetworkConfig, Port, PortId, PortRole, Verdict};

const GW_MAC: [u8; 6] = [0x02, 0x42, 10, 0, 0, 1];
/// Containers 1 and 2 are dual stack (IPv6 source and Neighbor Discovery checks), 3 is
/// IPv4 only.
const CONTAINERS: [(u32, [u8; 6], [u8; 4], Option<Ipv6Addr>); 3] = [
    (
        1,
        [0x02, 0x42, 10, 0, 0, 2],
        [10, 0, 0, 2],
        Some(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)),
    ),
    (
        2,
        [0x02, 0x42, 10, 0, 0, 3],
        [10, 0, 0, 3],
        Some(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3)),
    ),
    (3, [0x02, 0x42, 10, 0, 0, 4], [10, 0, 0, 4], None),
];
const UPLINK: PortId = PortId(9);
const NOT_ATTACHED: PortId = PortId(77);
/// Ingress choices, by selector byte modulo their number.
const INGRESS: [PortId; 6] = [
    GATEWAY,
    PortId(1),
    PortId(2),
    PortId(3),
    UPLINK,
    NOT_ATTACHED,
];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let icc = flags & 1 == 0;
    let age = flags & 2 != 0;
    let mut config = NetworkConfig::new(GW_MAC);
    config.icc = icc;
    config.mac_capacity = 64;
    let mut net = Network::new(config);
    for (id, mac, ip, ipv6) in CONTAINERS {
        let role = PortRole::Container {
            mac,
            ipv4: Ipv4Addr::from(ip),
            ipv6,
        };
        net.add_port(PortId(id), role).expect("fresh network");
    }
    net.add_port(UPLINK, PortRole::Uplink)
        .expect("fresh network");
    // Slot i holds the port INGRESS[i] (the unattached one never receives).
    let mut ports: Vec<MemPort> = (0..INGRESS.len()).map(|_| MemPort::new(2, 1600)).collect();
    let slot = |id: PortId| INGRESS.iter().position(|p| *p == id);

    let mut now = 0;
    while let Some((&[sel, lo, hi], tail)) = rest.split_first_chunk::<3>() {
        let len = usize::from(u16::from_le_bytes([lo, hi])).min(tail.len());
        let (frame, tail) = tail.split_at(len);
        rest = tail;
        let ingress = INGRESS[usize::from(sel) % INGRESS.len()];
        let from_container = net.role(ingress).is_some_and(PortRole::is_container);
        match net.forward(ingress, frame, now) {
            Verdict::Unicast(dst) => {
                assert_ne!(dst, ingress, "unicast back to the ingress port");
                assert!(net.role(dst).is_some(), "unicast to an unattached port");
                let i = slot(dst).expect("a known port");
                let ok = ports[i].send(frame).is_ok();
                net.count_tx(dst, frame.len(), ok);
            }
            Verdict::Flood => {
                let mut targets = Vec::new();
                net.for_each_flood_target(ingress, |p| targets.push(p));
                for dst in targets {
                    assert_ne!(dst, ingress, "flood back to the ingress port");
                    if !icc && from_container {
                        assert_eq!(dst, GATEWAY, "icc=false flood from a container");
                    }
                    let i = slot(dst).expect("a known port");
                    let ok = ports[i].send(frame).is_ok();
                    net.count_tx(dst, frame.len(), ok);
                }
            }
            Verdict::Drop(_) => {}
        }
        if age {
            now += 100;
            net.age(now);
        }
        let _ = switch::FrameSummary(frame).to_string();
    }
    // Every attached port's counters stay consistent.
    for (id, _) in net.ports() {
        let c = net.counters(id).expect("attached");
        assert!(c.dropped_total() <= c.rx_frames);
    }
});
