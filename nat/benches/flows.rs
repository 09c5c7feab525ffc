//! The NAT's per-packet bookkeeping at 100, 10k and 100k live flows: finding a flow from a
//! segment's 4-tuple (hash index → generation-checked slab), and the deadline heap a poll
//! takes due flows from. Both must cost the same whatever the number of flows.
//!
//! `lookup`: one iteration resolves a ring of 4096 4-tuples of live flows, in random order.
//! `timers`: one iteration takes the earliest deadline and books it again further on, 4096
//! times, with N deadlines held (a steady state of flows whose timers keep firing).

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vswitch_nat::flow::{FlowKey, Handle, Keys, Table};
use vswitch_nat::timer::Timers;

const RING: usize = 4096;
const SIZES: [u32; 3] = [100, 10_000, 100_000];

/// Deterministic xorshift, so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Flow `i`: one of 250 containers in 10.0.0.0/16 talking to a far address and port.
fn key(i: u32) -> FlowKey {
    let c = Ipv4Addr::new(10, 0, (i % 250) as u8, 2);
    let peer = Ipv4Addr::from(0xc633_6400 | (i >> 16)); // 198.51.100.0/24
    FlowKey::new(
        SocketAddr::new(c.into(), 20_000 + (i % 40_000) as u16),
        SocketAddr::new(peer.into(), 443 + (i / 40_000) as u16),
    )
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("flow_lookup");
    g.throughput(Throughput::Elements(RING as u64));
    for n in SIZES {
        let mut table: Table<[u64; 8]> = Table::default();
        let mut keys = Keys::default();
        for i in 0..n {
            let h = table.insert([u64::from(i); 8]);
            keys.insert(key(i), h);
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let ring: Vec<FlowKey> = (0..RING)
            .map(|_| key((rng.next() % u64::from(n)) as u32))
            .collect();
        g.bench_with_input(BenchmarkId::from_parameter(n), &ring, |b, ring| {
            b.iter(|| {
                let mut sum = 0u64;
                for k in ring {
                    if let Some(v) = keys.get(k).and_then(|h| table.get(*h)) {
                        sum = sum.wrapping_add(v[0]);
                    }
                }
                black_box(sum)
            })
        });
    }
    g.finish();
}

fn timers(c: &mut Criterion) {
    let mut g = c.benchmark_group("flow_timers");
    g.throughput(Throughput::Elements(RING as u64));
    for n in SIZES {
        let t0 = Instant::now();
        let mut table: Table<()> = Table::default();
        let handles: Vec<Handle> = (0..n).map(|_| table.insert(())).collect();
        let mut heap = Timers::default();
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for h in &handles {
            heap.schedule(t0 + Duration::from_micros(rng.next() % 1_000_000), *h);
        }
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                for _ in 0..RING {
                    let now = heap.next().unwrap_or(t0);
                    if let Some((at, h)) = heap.pop_due(now) {
                        heap.schedule(at + Duration::from_micros(rng.next() % 1_000_000), h);
                    }
                }
                black_box(heap.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, lookup, timers);
criterion_main!(benches);
