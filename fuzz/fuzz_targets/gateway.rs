//! The gateway's own services (ARP, ping; Neighbor Discovery and ping6 on a dual-stack
//! network): any frame, any output buffer size.
//!
//! Input: byte 0 = output room (low 7 bits, in units of 16 bytes) and dual stack (top bit);
//! the rest is the frame.
#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&room, frame)) = data.split_first() else {
        return;
    };
    let mut gw = nat::Gateway::new(Ipv4Addr::new(172, 18, 0, 1), [0x02, 0x42, 0xac, 0x12, 0, 1]);
    if room & 0x80 != 0 {
        gw = gw.with_ipv6(Ipv6Addr::new(0xfd00, 0x60, 0, 0, 0, 0, 0, 1));
    }
    let mut out = vec![0u8; usize::from(room & 0x7f) * 16];
    if let Some(n) = gw.on_frame(frame, &mut out) {
        assert!(n <= out.len());
    }
});
