//! The gateway's own services (ARP, ping): any frame, any output buffer size.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&room, frame)) = data.split_first() else {
        return;
    };
    let mut gw = nat::Gateway::new(Ipv4Addr::new(172, 18, 0, 1), [0x02, 0x42, 0xac, 0x12, 0, 1]);
    let mut out = vec![0u8; usize::from(room) * 8];
    if let Some(n) = gw.on_frame(frame, &mut out) {
        assert!(n <= out.len());
    }
});
