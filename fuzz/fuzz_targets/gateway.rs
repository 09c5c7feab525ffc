//! The gateway's own services (ARP, ping; Neighbor Discovery and ping6 on a dual-stack
//! network; in slirp mode also the DNS aliases, the DHCPv4 server and Router Advertisements
//! with their timer): any frames, any output buffer size.
//!
//! Input: byte 0 = output room (low 6 bits, in units of 32 bytes), slirp mode (bit 6) and
//! dual stack (top bit). Without slirp mode the rest is one frame. In slirp mode the rest is a
//! sequence of frames, each preceded by its length (u16, big endian), fed to one gateway with
//! the clock advancing a minute per frame, so DHCP leases and offers are taken, renewed and
//! expire; after each frame the Router Advertisement timer is polled.
#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use nat::{DhcpConfig, Gateway, RaConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let mut gw = Gateway::new(Ipv4Addr::new(172, 18, 0, 1), [0x02, 0x42, 0xac, 0x12, 0, 1]);
    let dual = ctl & 0x80 != 0;
    if dual {
        gw = gw.with_ipv6(Ipv6Addr::new(0xfd00, 0x60, 0, 0, 0, 0, 0, 1));
    }
    let mut out = vec![0u8; usize::from(ctl & 0x3f) * 32];
    if ctl & 0x40 == 0 {
        if let Some(n) = gw.on_frame(rest, &mut out) {
            assert!(n <= out.len());
        }
        return;
    }
    let mut dhcp = DhcpConfig::slirp(Ipv4Addr::new(172, 18, 0, 0), 16, Ipv4Addr::new(172, 18, 0, 3));
    dhcp.mtu = Some(1500);
    dhcp.lease_time = Duration::from_secs(600);
    let mut ra = RaConfig::new(Ipv6Addr::new(0xfd00, 0x60, 0, 0, 0, 0, 0, 0), 64);
    ra.rdnss = vec![Ipv6Addr::new(0xfd00, 0x60, 0, 0, 0, 0, 0, 3)];
    ra.mtu = Some(1500);
    gw = gw
        .with_alias_v4(Ipv4Addr::new(172, 18, 0, 3))
        .with_alias_v6(Ipv6Addr::new(0xfd00, 0x60, 0, 0, 0, 0, 0, 3))
        .with_dhcp(dhcp)
        .with_router_advert(ra);
    let mut now = Instant::now();
    let mut input = rest;
    while let [hi, lo, tail @ ..] = input {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (frame, next) = tail.split_at(len);
        input = next;
        if let Some(n) = gw.on_frame_at(frame, &mut out, now) {
            assert!(n <= out.len());
        }
        if let Some(n) = gw.poll_at(now, &mut out) {
            assert!(n <= out.len());
        }
        if dual {
            assert!(gw.next_deadline().is_some());
        }
        now += Duration::from_secs(60);
    }
});
