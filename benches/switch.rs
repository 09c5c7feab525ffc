//! Forwarding throughput of one `switch::Network` with a 100k-entry MAC table (IPv4 frames,
//! and 64-byte IPv6 frames through the IPv6 source check).
//!
//! Each iteration pushes a pre-built ring of frames through `Network::forward` and
//! copies every forwarded frame into the destination's `MemPort` (a simulated send),
//! so the reported throughput is frames switched per second on one core.
//!
//! Group `capture`: the same forwarding with the data path's capture hook
//! (`vswitchd::datapath::capture`) in front of each frame, with no capture running (the
//! one-branch cost everyone pays) and with one whole-network capture running (each frame
//! copied into the capture's ring as a pcap record; the ring is emptied every 512 frames, as
//! the daemon would, and that copy out is counted too).

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use etherparse::PacketBuilder;
use switch::{
    GATEWAY, Mac, MacAddr, MemPort, Network, NetworkConfig, Port, PortId, PortRole, Verdict,
};

/// Learned MACs behind the uplinks.
const LEARNED: u32 = 100_000;
/// Uplink ports carrying the learned MACs.
const UPLINKS: u32 = 4;
/// Frames in the traffic ring; one benchmark iteration forwards all of them.
const RING: usize = 4096;
const GATEWAY_MAC: Mac = [0x02, 0x42, 0xff, 0xff, 0xff, 0xff];

fn container_mac(id: u32) -> Mac {
    let [_, a, b, c] = id.to_be_bytes();
    [0x02, 0x42, 0, a, b, c]
}

fn container_ip(id: u32) -> [u8; 4] {
    let [_, a, b, c] = id.to_be_bytes();
    [10, a, b, c]
}

fn container_ip6(id: u32) -> Ipv6Addr {
    let [_, a, b, c] = id.to_be_bytes();
    Ipv6Addr::new(
        0xfd00,
        0,
        0,
        0,
        0,
        u16::from(a),
        0,
        u16::from_be_bytes([b, c]),
    )
}

fn learned_mac(i: u32) -> Mac {
    let [a, b, c, d] = i.to_be_bytes();
    [0x02, 0x01, a, b, c, d]
}

/// Deterministic xorshift, so runs are comparable.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % u64::from(n)) as u32
    }
}

fn udp_frame(src: Mac, dst: Mac, src_ip: [u8; 4], dst_ip: [u8; 4], size: usize) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(src, dst)
        .ipv4(src_ip, dst_ip, 64)
        .udp(40000, 5201);
    let payload = vec![0xab; size - builder.size(0)];
    let mut frame = Vec::with_capacity(size);
    builder.write(&mut frame, &payload).unwrap();
    assert_eq!(frame.len(), size);
    frame
}

fn udp6_frame(src: Mac, dst: Mac, src_ip: Ipv6Addr, dst_ip: Ipv6Addr, size: usize) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(src, dst)
        .ipv6(src_ip.octets(), dst_ip.octets(), 64)
        .udp(40000, 5201);
    let payload = vec![0xab; size - builder.size(0)];
    let mut frame = Vec::with_capacity(size);
    builder.write(&mut frame, &payload).unwrap();
    assert_eq!(frame.len(), size);
    frame
}

/// A network of `containers` dual-stack container ports, the gateway and the uplinks, with
/// 100k learned MACs, plus one MemPort per port id.
fn build(containers: u32, frame_size: usize) -> (Network, Vec<MemPort>) {
    let mut config = NetworkConfig::new(GATEWAY_MAC);
    config.mac_capacity = 131_072;
    let mut net = Network::new(config);
    for id in 1..=containers {
        let role = PortRole::Container {
            mac: container_mac(id),
            ipv4: Ipv4Addr::from(container_ip(id)),
            ipv6: Some(container_ip6(id)),
        };
        net.add_port(PortId(id), role).unwrap();
    }
    for u in 0..UPLINKS {
        net.add_port(PortId(containers + 1 + u), PortRole::Uplink)
            .unwrap();
    }
    for i in 0..LEARNED {
        let uplink = PortId(containers + 1 + i % UPLINKS);
        net.mac_table_mut().learn(learned_mac(i), uplink, 0);
    }
    assert_eq!(net.mac_table().len(), (LEARNED + containers + 1) as usize);
    let ports = (0..=containers + UPLINKS)
        .map(|_| MemPort::new(1, frame_size))
        .collect();
    (net, ports)
}

/// Frames from random containers to random known MACs: half containers, half learned.
fn unicast_ring(containers: u32, frame_size: usize) -> Vec<(PortId, Vec<u8>)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..RING)
        .map(|i| {
            let src = 1 + rng.below(containers);
            let (dst, dst_ip) = if i % 2 == 0 {
                let mut dst = 1 + rng.below(containers);
                if dst == src {
                    dst = dst % containers + 1;
                }
                (container_mac(dst), container_ip(dst))
            } else {
                (learned_mac(rng.below(LEARNED)), [192, 0, 2, 1])
            };
            let frame = udp_frame(
                container_mac(src),
                dst,
                container_ip(src),
                dst_ip,
                frame_size,
            );
            (PortId(src), frame)
        })
        .collect()
}

/// As [`unicast_ring`] over IPv6: sources alternate between the leased and the link-local
/// address, so both IPv6 source checks run.
fn unicast6_ring(containers: u32, frame_size: usize) -> Vec<(PortId, Vec<u8>)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..RING)
        .map(|i| {
            let src = 1 + rng.below(containers);
            let (dst, dst_ip) = if i % 2 == 0 {
                let mut dst = 1 + rng.below(containers);
                if dst == src {
                    dst = dst % containers + 1;
                }
                (container_mac(dst), container_ip6(dst))
            } else {
                let remote = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
                (learned_mac(rng.below(LEARNED)), remote)
            };
            let src_ip = if i % 4 < 2 {
                container_ip6(src)
            } else {
                MacAddr(container_mac(src)).link_local_ipv6()
            };
            let frame = udp6_frame(container_mac(src), dst, src_ip, dst_ip, frame_size);
            (PortId(src), frame)
        })
        .collect()
}

/// Forwards every frame of `ring` and copies it to its destination port(s).
fn switch_ring(net: &mut Network, ports: &mut [MemPort], ring: &[(PortId, Vec<u8>)]) -> u64 {
    let mut sent = 0;
    for (ingress, frame) in ring {
        match net.forward(*ingress, frame, 1) {
            Verdict::Unicast(port) => {
                let ok = ports[port.0 as usize].send(frame).is_ok();
                net.count_tx(port, frame.len(), ok);
                sent += 1;
            }
            Verdict::Flood => net.for_each_flood_target(*ingress, |port| {
                let _ = ports[port.0 as usize].send(frame);
                sent += 1;
            }),
            Verdict::Drop(_) => {}
        }
    }
    sent
}

fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward");
    group.throughput(Throughput::Elements(RING as u64));
    for frame_size in [64, 1500] {
        for containers in [2, 64, 1024] {
            let (mut net, mut ports) = build(containers, frame_size);
            let ring = unicast_ring(containers, frame_size);
            // Every frame is a known unicast that passes anti-spoofing.
            assert_eq!(switch_ring(&mut net, &mut ports, &ring), RING as u64);
            let id = BenchmarkId::new(format!("{frame_size}B"), format!("{containers}ports"));
            group.bench_function(id, |b| {
                b.iter(|| black_box(switch_ring(&mut net, &mut ports, black_box(&ring))))
            });
        }
    }
    for containers in [2, 64, 1024] {
        let (mut net, mut ports) = build(containers, 64);
        let ring = unicast6_ring(containers, 64);
        assert_eq!(switch_ring(&mut net, &mut ports, &ring), RING as u64);
        let id = BenchmarkId::new("64B-ipv6", format!("{containers}ports"));
        group.bench_function(id, |b| {
            b.iter(|| black_box(switch_ring(&mut net, &mut ports, black_box(&ring))))
        });
    }
    group.finish();
}

/// Broadcasts (ARP-like, 64 bytes) from containers: one copy per other port.
fn flood(c: &mut Criterion) {
    let mut group = c.benchmark_group("flood");
    group.throughput(Throughput::Elements(RING as u64));
    for containers in [2, 64] {
        let (mut net, mut ports) = build(containers, 64);
        let mut rng = Rng(7);
        let ring: Vec<_> = (0..RING)
            .map(|_| {
                let src = 1 + rng.below(containers);
                let frame = udp_frame(
                    container_mac(src),
                    [0xff; 6],
                    container_ip(src),
                    [10, 255, 255, 255],
                    64,
                );
                (PortId(src), frame)
            })
            .collect();
        let copies = u64::from(containers + UPLINKS) * RING as u64;
        assert_eq!(switch_ring(&mut net, &mut ports, &ring), copies);
        assert!(ports[GATEWAY.0 as usize].sent() > 0);
        let id = BenchmarkId::new("64B", format!("{containers}ports"));
        group.bench_function(id, |b| {
            b.iter(|| black_box(switch_ring(&mut net, &mut ports, black_box(&ring))))
        });
    }
    group.finish();
}

fn mac_lookup(c: &mut Criterion) {
    let (net, _) = build(64, 64);
    let mut rng = Rng(42);
    let macs: Vec<Mac> = (0..RING)
        .map(|i| match i % 8 {
            0 => container_mac(1 + rng.below(64)),
            7 => [0x02, 0x77, 0, 0, 0, (i % 256) as u8], // miss
            _ => learned_mac(rng.below(LEARNED)),
        })
        .collect();
    let mut group = c.benchmark_group("mac_table");
    group.throughput(Throughput::Elements(RING as u64));
    group.bench_function("mac_lookup_100k", |b| {
        b.iter(|| {
            let table = net.mac_table();
            let mut hits = 0u32;
            for mac in black_box(&macs) {
                hits += u32::from(table.lookup(mac).is_some());
            }
            hits
        })
    });
    group.finish();
}

fn capture(c: &mut Criterion) {
    use vswitchd::datapath::capture::{Captures, capture};
    let mut group = c.benchmark_group("capture");
    group.throughput(Throughput::Elements(RING as u64));
    for frame_size in [64, 1500] {
        let (mut net, mut ports) = build(2, frame_size);
        let ring = unicast_ring(2, frame_size);
        // The data path sees frames behind their 12-byte virtio-net header.
        let with_vnet: Vec<Vec<u8>> = ring
            .iter()
            .map(|(_, f)| [&[0u8; switch::vnet::LEN][..], f].concat())
            .collect();
        for running in [false, true] {
            let mut caps = Captures::default();
            let mut reader = None;
            let mut stats = None;
            if running {
                let (tap, r) = capture(1, None, 262_144);
                caps.start(tap, "bench").expect("start");
                stats = Some(r.stats.clone());
                reader = Some(r);
            }
            let mut out = Vec::with_capacity(1 << 20);
            let mut one = |net: &mut Network, ports: &mut [MemPort]| {
                let mut sent = 0u64;
                for (chunk, bufs) in ring.chunks(512).zip(with_vnet.chunks(512)) {
                    for (buf, (ingress, _)) in bufs.iter().zip(chunk) {
                        if !caps.is_empty() {
                            caps.ingress(*ingress, buf);
                        }
                    }
                    sent += switch_ring(net, ports, chunk);
                    if let Some(r) = reader.as_mut() {
                        out.clear();
                        r.read_records(&mut out, u64::MAX);
                    }
                }
                sent
            };
            assert_eq!(one(&mut net, &mut ports), RING as u64);
            if let Some(stats) = &stats {
                let dropped = stats.dropped.load(std::sync::atomic::Ordering::Relaxed);
                assert_eq!(dropped, 0, "the ring holds 512 frames");
            }
            let what = if running { "one-capture" } else { "no-capture" };
            let id = BenchmarkId::new(format!("{frame_size}B"), what);
            group.bench_function(id, |b| b.iter(|| black_box(one(&mut net, &mut ports))));
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = forward, flood, mac_lookup, capture
}
criterion_main!(benches);
