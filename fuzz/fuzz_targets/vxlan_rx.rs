//! The VXLAN receive path: arbitrary UDP datagrams from a cluster member, a stranger or the
//! right host on the wrong port go through the reader's checks (membership, VXLAN header,
//! VNI), the ring to the data path, and the switch's store check
//! (`Network::forward_from_vtep`) of an overlay network with two local containers and two
//! remote endpoints on two VTEPs. Checks that nothing panics and that what comes out keeps
//! the overlay's promises: nothing from the overlay reaches the gateway or goes back to the
//! overlay, only endpoints the store places on the sending VTEP get through, and with icc
//! off nothing gets through at all.
//!
//! Input: byte 0 = flags (bit 0: icc off), then records of
//! `[source selector][length lo][length hi][datagram bytes...]` until the input ends.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use switch::{GATEWAY, Network, NetworkConfig, OVERLAY, PortId, PortRole, RemoteEndpoint, Verdict};
use vswitchd::overlay::RxHarness;

const VNI: u32 = 4242;
const GW_MAC: [u8; 6] = [0x02, 0x42, 10, 0, 0, 1];
const LOCAL: [(u32, [u8; 6], [u8; 4]); 2] = [
    (1, [0x02, 0x42, 10, 0, 0, 2], [10, 0, 0, 2]),
    (2, [0x02, 0x42, 10, 0, 0, 3], [10, 0, 0, 3]),
];
const MEMBER: [u8; 4] = [198, 51, 100, 2];

fn sources() -> [SocketAddr; 4] {
    [
        SocketAddr::from((MEMBER, 4789)),
        SocketAddr::from(([198, 51, 100, 3], 4789)),
        SocketAddr::from((MEMBER, 5000)),
        SocketAddr::from(([198, 51, 100, 9], 4789)),
    ]
}

fn remotes() -> [RemoteEndpoint; 2] {
    [
        RemoteEndpoint {
            mac: [0x02, 0x42, 10, 0, 1, 2],
            ip: Ipv4Addr::new(10, 0, 1, 2),
            ip6: None,
            vtep: SocketAddr::from((MEMBER, 4789)),
        },
        RemoteEndpoint {
            mac: [0x02, 0x42, 10, 0, 1, 3],
            ip: Ipv4Addr::new(10, 0, 1, 3),
            ip6: None,
            vtep: SocketAddr::from(([198, 51, 100, 3], 4789)),
        },
    ]
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let icc = flags & 1 == 0;
    let mut config = NetworkConfig::new(GW_MAC);
    config.icc = icc;
    let mut net = Network::new(config);
    for (id, mac, ip) in LOCAL {
        let role = PortRole::Container {
            mac,
            ipv4: Ipv4Addr::from(ip),
            ipv6: None,
        };
        net.add_port(PortId(id), role).unwrap();
    }
    net.enable_overlay();
    assert!(net.set_remote_endpoints(&remotes()).is_empty());
    HARNESS.with_borrow_mut(|rx| run(rx, &mut net, icc, rest));
});

thread_local! {
    /// The reader's side, made once (its ring is 4 MiB); every input drains what it pushes.
    /// Only MEMBER is a cluster member; .3 hosts an endpoint but is not a member here.
    static HARNESS: std::cell::RefCell<RxHarness> =
        std::cell::RefCell::new(RxHarness::new(VNI, MEMBER.into()).unwrap());
}

fn run(rx: &mut RxHarness, net: &mut Network, icc: bool, mut rest: &[u8]) {
    let srcs = sources();
    while let [sel, lo, hi, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        let (datagram, next) = tail.split_at(len);
        rest = next;
        let src = srcs[usize::from(*sel) % srcs.len()];
        let Some((buf, from)) = rx.offer(datagram, src) else {
            continue;
        };
        assert_eq!(from, src);
        assert_eq!(src.ip(), std::net::IpAddr::from(MEMBER), "only members get through");
        let Some(frame) = buf.get(switch::vnet::LEN..) else {
            continue;
        };
        let verdict = net.forward_from_vtep(from, frame);
        if !matches!(verdict, Verdict::Drop(_)) {
            // Accepted: the inner source is the endpoint the store places on this VTEP.
            let src_mac = frame.get(6..12).and_then(|m| <[u8; 6]>::try_from(m).ok());
            let ep = remotes().into_iter().find(|ep| Some(ep.mac) == src_mac);
            assert_eq!(ep.map(|ep| ep.vtep), Some(from), "accepted from the wrong VTEP");
        }
        match verdict {
            Verdict::Unicast(dst) => {
                assert!(dst != GATEWAY && dst != OVERLAY, "{dst:?}");
                assert!(icc, "icc off lets no unicast in from the overlay");
            }
            Verdict::Flood => net.for_each_flood_target(OVERLAY, |p| {
                assert!(p != GATEWAY && p != OVERLAY, "flood to {p:?}");
                assert!(icc, "icc off lets no flood in from the overlay");
            }),
            Verdict::Drop(_) => {}
        }
    }
}
