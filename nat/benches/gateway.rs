//! The gateway's per-frame cost on an ordinary network (no slirp4netns services): every frame
//! sent to the gateway MAC passes `Gateway::on_frame` before the NAT sees it, so a TCP or UDP
//! segment to the outside must be turned away cheaply; pings to the gateway are answered.
//!
//! One iteration hands the gateway 4096 frames of one kind. Pings advance the clock 10 ms per
//! frame so the per-container rate limit never drops them.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etherparse::PacketBuilder;
use vswitch_nat::Gateway;

const N: usize = 4096;
const GW: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 1);
const GW_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x12, 0, 1];
const C_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x12, 0, 2];

fn frame(build: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = Vec::new();
    build(&mut v);
    v
}

fn pass(c: &mut Criterion) {
    let mut g = c.benchmark_group("gateway_frame");
    g.throughput(Throughput::Elements(N as u64));
    let tcp = frame(|v| {
        PacketBuilder::ethernet2(C_MAC, GW_MAC)
            .ipv4([172, 18, 0, 2], [198, 51, 100, 1], 64)
            .tcp(40000, 443, 1, 65535)
            .write(v, &[0u8; 1400])
            .unwrap()
    });
    let udp = frame(|v| {
        PacketBuilder::ethernet2(C_MAC, GW_MAC)
            .ipv4([172, 18, 0, 2], [198, 51, 100, 1], 64)
            .udp(40000, 443)
            .write(v, &[0u8; 1200])
            .unwrap()
    });
    let ping = frame(|v| {
        PacketBuilder::ethernet2(C_MAC, GW_MAC)
            .ipv4([172, 18, 0, 2], GW.octets(), 64)
            .icmpv4_echo_request(1, 1)
            .write(v, &[0u8; 56])
            .unwrap()
    });
    for (name, f) in [("tcp_out", &tcp), ("udp_out", &udp), ("ping_gw", &ping)] {
        let mut gw = Gateway::new(GW, GW_MAC);
        let mut out = vec![0u8; 2048];
        let mut now = Instant::now();
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut answered = 0usize;
                for _ in 0..N {
                    now += Duration::from_millis(10);
                    answered += usize::from(gw.on_frame_at(f, &mut out, now).is_some());
                }
                black_box(answered)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, pass);
criterion_main!(benches);
