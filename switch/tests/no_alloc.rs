//! The forwarding path must never allocate: checked with a counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{Icmpv6Type, PacketBuilder};
use switch::{
    GATEWAY, Mac, MacAddr, MemPort, Network, NetworkConfig, Port, PortId, PortRole, Verdict,
};
use vswitch_switch as switch;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Counts allocations made by the current thread.
struct CountingAllocator;

// SAFETY: delegates every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn mac(id: u32) -> Mac {
    let [_, a, b, c] = id.to_be_bytes();
    [0x02, 0x42, 0, a, b, c]
}

fn ip(id: u32) -> [u8; 4] {
    let [_, a, b, c] = id.to_be_bytes();
    [10, a, b, c]
}

fn ipv4_frame(src: Mac, dst: Mac, src_ip: [u8; 4], dst_ip: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[26..30].copy_from_slice(&src_ip);
    f[30..34].copy_from_slice(&dst_ip);
    f
}

fn ip6(id: u32) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, id as u16)
}

/// IPv6 UDP between link-local addresses.
fn ipv6_frame(src: Mac, dst: Mac) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(src, dst)
        .ipv6(
            MacAddr(src).link_local_ipv6().octets(),
            MacAddr(dst).link_local_ipv6().octets(),
            64,
        )
        .udp(1, 2)
        .write(&mut f, b"x")
        .unwrap();
    f
}

/// A Neighbor Solicitation for `target` from `src` with its source link-layer option.
fn neighbor_solicitation(src: Mac, src_ip: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let mut body = target.octets().to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&src);
    let mut f = Vec::new();
    PacketBuilder::ethernet2(src, [0x33, 0x33, 0xff, 0, 0, 1])
        .ipv6(
            src_ip.octets(),
            [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 1],
            255,
        )
        .icmpv6(Icmpv6Type::NeighborSolicitation)
        .write(&mut f, &body)
        .unwrap();
    f
}

#[test]
fn forwarding_and_flooding_never_allocate() {
    const CONTAINERS: u32 = 16;
    const UPLINK_A: PortId = PortId(1000);
    const UPLINK_B: PortId = PortId(1001);
    let mut config = NetworkConfig::new([0x02, 0x42, 0xff, 0, 0, 1]);
    config.mac_capacity = 512;
    config.mac_max_age = 2;
    let mut net = Network::new(config);
    let mut ports: Vec<MemPort> = (0..=UPLINK_B.0).map(|_| MemPort::new(1, 128)).collect();
    for id in 1..=CONTAINERS {
        let role = PortRole::Container {
            mac: mac(id),
            ipv4: Ipv4Addr::from(ip(id)),
            ipv6: (id % 2 == 0).then(|| ip6(id)),
        };
        net.add_port(PortId(id), role).unwrap();
    }
    net.add_port(UPLINK_A, PortRole::Uplink).unwrap();
    net.add_port(UPLINK_B, PortRole::Uplink).unwrap();

    let mut frames = Vec::new();
    for id in 1..=CONTAINERS {
        let peer = id % CONTAINERS + 1;
        frames.push((PortId(id), ipv4_frame(mac(id), mac(peer), ip(id), ip(peer))));
        frames.push((PortId(id), ipv4_frame(mac(id), [0xff; 6], ip(id), [255; 4])));
        frames.push((PortId(id), ipv4_frame(mac(peer), mac(id), ip(id), ip(peer))));
        frames.push((PortId(id), ipv6_frame(mac(id), mac(peer))));
        let ns = neighbor_solicitation(mac(id), ip6(id), ip6(peer));
        frames.push((PortId(id), ns));
    }
    let mut from_uplink = ipv4_frame(mac(0x10_0000), mac(1), [192, 0, 2, 1], ip(1));

    // The counter works: a heap allocation on this thread is seen.
    let probe = allocations();
    drop(std::hint::black_box(Box::new(0u64)));
    assert_eq!(allocations() - probe, 1);

    let before = allocations();
    let mut delivered = 0u64;
    for round in 0..20_000u32 {
        let now = u64::from(round / 1000);
        // Trunk traffic from ever-new source MACs: fills the table, then is refused.
        from_uplink[6..12].copy_from_slice(&mac(0x10_0000 + round));
        let uplink = if round % 3 == 0 { UPLINK_A } else { UPLINK_B };
        let (ingress, frame) = if round % 2 == 0 {
            (uplink, &from_uplink[..])
        } else {
            let (p, f) = &frames[round as usize % frames.len()];
            (*p, &f[..])
        };
        match net.forward(ingress, frame, now) {
            Verdict::Unicast(p) => {
                let ok = ports[p.0 as usize].send(frame).is_ok();
                net.count_tx(p, frame.len(), ok);
                delivered += 1;
            }
            Verdict::Flood => net.for_each_flood_target(ingress, |p| {
                let _ = ports[p.0 as usize].send(frame);
                delivered += 1;
            }),
            Verdict::Drop(_) => {}
        }
        if round % 500 == 0 {
            // Aging leaves tombstones; later inserts must rehash in place.
            net.age(now);
        }
        if round == 10_000 {
            net.set_icc(false);
        }
    }
    let after = allocations();
    assert_eq!(after - before, 0, "forwarding allocated");
    assert!(delivered > 20_000);
    assert!(ports[GATEWAY.0 as usize].sent() > 0);
    assert!(net.mac_table().len() <= 512);
    // The IPv6 frames went through the IPv6 checks (on the dual-stack ports) and passed.
    let spoofed: u64 = (1..=CONTAINERS)
        .map(|id| {
            net.counters(PortId(id))
                .unwrap()
                .dropped(switch::DropReason::SpoofedIp)
        })
        .sum();
    assert_eq!(spoofed, 0, "every IPv6 frame was legitimate");
}
