//! The whole NAT fed frames from a container, with a fake clock, inside a private network
//! namespace: its "host sockets" reach nothing (no interface is up there, so every dial and
//! datagram fails locally) and nothing can leave the machine.
//!
//! Input: a sequence of operations, each chosen by one byte:
//! - raw: a length byte and that many bytes as the IP packet of a frame to the gateway (an
//!   IPv6 frame when the first nibble is 6: the network has an IPv6 side, fd00::/64);
//! - shaped: a TCP, UDP or ICMP packet from one of four containers to one of a few
//!   destinations (the gateway, its DNS port, loopback, an outside address, broadcast), with
//!   fuzzed ports, flags, sequence numbers and payload, and valid checksums;
//! - time: the clock moves forward (up to 25 s) and the engine polls;
//! - poll: the engine polls.
#![no_main]

use std::net::Ipv4Addr;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use nat::{Ipv6Config, Nat, NatConfig};

const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const GW_MAC: [u8; 6] = [0x02, 0x42, 10, 0, 0, 1];

static PRIVATE: Once = Once::new();
static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
static OFFSET_US: AtomicU64 = AtomicU64::new(0);

fn clock() -> Instant {
    *BASE.get_or_init(Instant::now) + Duration::from_micros(OFFSET_US.load(Ordering::Relaxed))
}

fn enter_private_netns() {
    use nix::sched::{CloneFlags, unshare};
    let done = unshare(CloneFlags::CLONE_NEWNET)
        .or_else(|_| unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET));
    if let Err(e) = done {
        // Never fuzz against the real network.
        eprintln!("nat_engine: cannot enter a private network namespace: {e}");
        std::process::abort();
    }
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.byte()?, self.byte()?]))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes([
            self.byte()?,
            self.byte()?,
            self.byte()?,
            self.byte()?,
        ]))
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
}

fn csum(data: &[u8], mut sum: u32) -> u16 {
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum >> 16) + (sum & 0xffff);
    }
    !(sum as u16)
}

/// A frame to the gateway around an IPv4 packet.
fn frame(src_mac: [u8; 6], ip: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + ip.len());
    f.extend_from_slice(&GW_MAC);
    f.extend_from_slice(&src_mac);
    let ipv6 = ip.first().is_some_and(|b| b >> 4 == 6);
    f.extend_from_slice(if ipv6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    f.extend_from_slice(ip);
    f
}

fn shaped(inp: &mut Input<'_>) -> Option<(Ipv4Addr, Vec<u8>)> {
    let sel = inp.byte()?;
    let src = Ipv4Addr::new(10, 0, 0, 2 + (sel & 3));
    let dst = match (sel >> 2) & 7 {
        0 | 1 => GW,
        2 => Ipv4Addr::LOCALHOST,
        3 => Ipv4Addr::new(198, 51, 100, 7),
        4 => Ipv4Addr::new(255, 255, 255, 255),
        5 => Ipv4Addr::UNSPECIFIED,
        6 => Ipv4Addr::new(10, 0, 0, 9),
        _ => Ipv4Addr::new(203, 0, 113, 5),
    };
    let proto = match sel >> 5 {
        0..=3 => 6u8,
        4..=6 => 17,
        _ => 1,
    };
    let opts_len = usize::from(inp.byte()? % 11) * 4;
    let payload_len = usize::from(inp.byte()?) * 4;
    let mut l4 = Vec::new();
    match proto {
        6 => {
            let (sport, dport) = (inp.u16()? % 8, inp.u16()?);
            let dport = if dport % 4 == 0 { 53 } else { dport };
            let (seq, ack, flags) = (inp.u32()?, inp.u32()?, inp.byte()?);
            let doff = 5 + inp.byte()? % 3;
            l4.extend_from_slice(&(40000 + sport).to_be_bytes());
            l4.extend_from_slice(&dport.to_be_bytes());
            l4.extend_from_slice(&seq.to_be_bytes());
            l4.extend_from_slice(&ack.to_be_bytes());
            l4.push(doff << 4);
            l4.push(flags & 0x3f);
            l4.extend_from_slice(&65535u16.to_be_bytes());
            l4.extend_from_slice(&[0, 0, 0, 0]);
            let opts = inp.bytes(usize::from(doff - 5) * 4).to_vec();
            l4.extend_from_slice(&opts);
            l4.resize(usize::from(doff) * 4, 1);
        }
        17 => {
            let (sport, dport) = (inp.u16()? % 8, inp.u16()?);
            let dport = if dport % 2 == 0 { 53 } else { dport };
            l4.extend_from_slice(&(40000 + sport).to_be_bytes());
            l4.extend_from_slice(&dport.to_be_bytes());
            l4.extend_from_slice(&[0, 0, 0, 0]);
        }
        _ => {
            let ty = if inp.byte()? % 4 == 0 { inp.byte()? } else { 8 };
            l4.extend_from_slice(&[ty, 0, 0, 0]);
            l4.extend_from_slice(&inp.u32()?.to_be_bytes());
        }
    }
    l4.extend_from_slice(inp.bytes(payload_len));
    let len = l4.len() as u16;
    if proto == 17 {
        l4[4..6].copy_from_slice(&len.to_be_bytes());
    }
    let mut pseudo = 0u32;
    for w in [src.octets(), dst.octets()] {
        pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]))
            + u32::from(u16::from_be_bytes([w[2], w[3]]));
    }
    pseudo += u32::from(proto) + u32::from(len);
    let at = match proto {
        6 => 16,
        17 => 6,
        _ => 2,
    };
    let sum = if proto == 1 {
        csum(&l4, 0)
    } else {
        csum(&l4, pseudo)
    };
    l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    let ihl = 20 + opts_len;
    let mut ip = vec![0u8; ihl];
    ip[0] = 0x40 | (ihl / 4) as u8;
    ip[2..4].copy_from_slice(&((ihl + l4.len()) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    for b in ip.iter_mut().skip(20) {
        *b = 1; // NOP options
    }
    let c = csum(&ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&l4);
    Some((src, ip))
}

fuzz_target!(|data: &[u8]| {
    PRIVATE.call_once(enter_private_netns);
    let mut cfg = NatConfig::new(GW, GW_MAC, (Ipv4Addr::new(10, 0, 0, 0), 24), 1500);
    cfg.ipv6 = Some(Ipv6Config {
        gateway_ip: "fd00::1".parse().expect("address"),
        subnet: ("fd00::".parse().expect("address"), 64),
    });
    cfg.max_flows = 64;
    cfg.max_flows_per_endpoint = 16;
    cfg.host_loopback = data.first().is_some_and(|b| b & 1 == 1);
    cfg.dns.upstreams = vec!["198.51.100.53:53".parse().expect("address")];
    let Ok(mut nat) = Nat::with_clock(cfg, clock) else {
        return;
    };
    let mut out_frames = 0usize;
    let mut sink = |f: &[u8]| {
        assert!(
            f.len() >= 12 + 14,
            "a frame carries a virtio header and Ethernet"
        );
        out_frames += 1;
    };
    let mut inp = Input(data);
    while let Some(op) = inp.byte() {
        match op % 4 {
            0 => {
                let n = usize::from(inp.byte().unwrap_or(0));
                let ip = inp.bytes(n).to_vec();
                nat.on_frame(&frame([0x02, 0x42, 10, 0, 0, 2], &ip), &mut sink);
            }
            1 => {
                if let Some((src, ip)) = shaped(&mut inp) {
                    let o = src.octets();
                    nat.on_frame(&frame([0x02, 0x42, o[0], o[1], o[2], o[3]], &ip), &mut sink);
                }
            }
            2 => {
                let step = u64::from(inp.byte().unwrap_or(0)) * 100_000;
                OFFSET_US.fetch_add(step, Ordering::Relaxed);
                nat.poll(&mut sink);
            }
            _ => nat.poll(&mut sink),
        }
    }
    let stats = nat.stats();
    assert!(
        stats.tcp_flows + stats.udp_flows + stats.icmp_flows <= 64,
        "flow limit held"
    );
    let _ = nat.poll_delay();
});
