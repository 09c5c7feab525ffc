//! DNS query handling: any bytes as a query over UDP and over TCP, against a small zone.
#![no_main]

use std::net::Ipv4Addr;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static ZONE: OnceLock<nat::Zone> = OnceLock::new();

fn zone() -> &'static nat::Zone {
    ZONE.get_or_init(|| {
        let mut zone = nat::Zone::new();
        zone.add("web", Ipv4Addr::new(10, 0, 0, 2));
        zone.add("db", Ipv4Addr::new(10, 0, 0, 3));
        zone.add("web", std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));
        for i in 0..100 {
            zone.add("many", Ipv4Addr::new(10, 0, 1, i));
        }
        zone
    })
}

fuzz_target!(|data: &[u8]| {
    let zone = zone();
    let gw = Ipv4Addr::new(10, 0, 0, 1);
    for tcp in [false, true] {
        if let Some(reply) = nat::answer_query(zone, gw, data, tcp) {
            assert!(tcp || reply.len() <= 1472, "UDP reply larger than the link");
            assert!(reply.len() >= 12, "a reply has a header");
        }
    }
});
