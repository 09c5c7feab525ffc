//! The overlay data plane between two hosts, without etcd: two host namespaces on a veth
//! LAN (198.51.100.0/24, MTU 1500), each running one overlay network's data path with its
//! own VXLAN endpoint, driven through the library's `Datapath` API the way the daemon does
//! once the store has spoken; one container per host. What a user would check: ping and a
//! TCP transfer cross hosts, ARP for the remote container is answered by the local gateway,
//! and forged VXLAN traffic is dropped and counted.

mod common;
#[path = "../examples/support/overlay_pair.rs"]
mod overlay_pair;

use std::net::{IpAddr, SocketAddr, UdpSocket};

use common::*;
use overlay_pair::{Host, Side, VNI};
use switch::{DropReason, OVERLAY};
use vswitchd::overlay::wire;

/// The namespaces (deleted on drop, after the hosts that use them).
struct Lan {
    _namespaces: Vec<Netns>,
    a: Side,
    b: Side,
}

fn lan() -> Lan {
    let (ha, hb, ca, cb) = (
        Netns::new("ha"),
        Netns::new("hb"),
        Netns::new("ca"),
        Netns::new("cb"),
    );
    overlay_pair::wire_hosts(&ha.name, &hb.name, 1500);
    let (a, b) = overlay_pair::sides(&ha.name, &hb.name, &ca.name, &cb.name);
    Lan {
        _namespaces: vec![ha, hb, ca, cb],
        a,
        b,
    }
}

fn exec(ns: &str, script: &str) -> std::process::Output {
    cmd("ip", &["netns", "exec", ns, "sh", "-c", script])
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn start(rt: &tokio::runtime::Runtime, lan: &Lan) -> (Host, Host) {
    let a = overlay_pair::start_host(rt, &lan.a, &lan.b, true, 1500);
    let b = overlay_pair::start_host(rt, &lan.b, &lan.a, true, 1500);
    (a, b)
}

#[test]
fn containers_on_two_hosts_ping_and_talk_tcp() {
    if !privileged("containers_on_two_hosts_ping_and_talk_tcp") {
        return;
    }
    let lan = lan();
    let rt = runtime();
    let (host_a, host_b) = start(&rt, &lan);
    let (ca, cb) = (&lan.a.container_ns, &lan.b.container_ns);

    // The overlay MTU is the underlay's minus 50.
    let mtu = exec(ca, "cat /sys/class/net/eth0/mtu");
    assert_eq!(String::from_utf8_lossy(&mtu.stdout).trim(), "1450");

    let ping = exec(ca, "ping -c 3 -i 0.2 -W 2 10.77.0.3");
    assert!(
        ping.status.success(),
        "ping across hosts: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    // Each container reached its own host's gateway too.
    assert!(exec(cb, "ping -c 1 -W 2 10.77.0.1").status.success());
    // ARP for the remote container was answered on host A (ARP suppression), not flooded.
    let snap_a = rt.block_on(host_a.dp.snapshot()).unwrap();
    assert!(snap_a.gateway.arp_replies >= 1, "{:?}", snap_a.gateway);
    let neigh = exec(ca, "ip neigh show 10.77.0.3");
    assert!(
        String::from_utf8_lossy(&neigh.stdout).contains("02:42:0a:4d:00:03"),
        "{}",
        String::from_utf8_lossy(&neigh.stdout)
    );

    // TCP: 8 MiB of random bytes arrive intact (GSO frames cross whole).
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("payload");
    let dst = dir.path().join("received");
    must(
        "sh",
        &[
            "-c",
            &format!("head -c 8388608 /dev/urandom > {}", src.display()),
        ],
    );
    let server = Proc::spawn(
        "ip",
        &[
            "netns",
            "exec",
            cb,
            "socat",
            "-u",
            "TCP-LISTEN:5001,reuseaddr",
            &format!("CREATE:{}", dst.display()),
        ],
    );
    let mut sent = false;
    for _ in 0..50 {
        let out = exec(
            ca,
            &format!(
                "socat -u FILE:{} TCP:10.77.0.3:5001,connect-timeout=2",
                src.display()
            ),
        );
        if out.status.success() {
            sent = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(sent, "TCP connect across hosts");
    let mut same = false;
    for _ in 0..100 {
        if std::fs::read(&dst).ok() == std::fs::read(&src).ok() {
            same = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(server);
    assert!(same, "the file arrived intact");
    let snap_b = rt.block_on(host_b.dp.snapshot()).unwrap();
    let overlay_b = &snap_b.ports[&OVERLAY.0];
    assert_eq!(overlay_b.dropped_total(), 0, "{overlay_b:?}");
    assert_eq!(host_a.vxlan.stats().not_member, 0);
}

/// Sends one VXLAN datagram carrying `frame` from `from` (inside host namespace `ns`).
fn forge(ns: &str, from: SocketAddr, to: SocketAddr, vni: u32, frame: Vec<u8>) {
    overlay_pair::in_netns(ns, move || {
        let s = UdpSocket::bind(from).unwrap();
        let mut d = wire::header(vni, false).to_vec();
        d.extend_from_slice(&frame);
        s.send_to(&d, to).unwrap();
    });
}

/// A UDP frame from `src_mac`/`src_ip` to container A.
fn frame_to_a(lan: &Lan, src_mac: [u8; 6], src_ip: [u8; 4]) -> Vec<u8> {
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2(src_mac, lan.a.mac)
        .ipv4(src_ip, lan.a.ip.octets(), 64)
        .udp(4000, 4000)
        .write(&mut v, b"forged")
        .unwrap();
    v
}

fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..50 {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

#[test]
fn forged_vxlan_is_dropped_and_counted() {
    if !privileged("forged_vxlan_is_dropped_and_counted") {
        return;
    }
    let lan = lan();
    let rt = runtime();
    let (host_a, _host_b) = start(&rt, &lan);
    let hb = lan.b.host_ns.clone();
    let to = lan.a.vtep;
    let b_ip = lan.b.vtep.ip();
    let overlay_drops = |reason: DropReason| {
        let snap = rt.block_on(host_a.dp.snapshot()).unwrap();
        snap.ports
            .get(&OVERLAY.0)
            .map_or(0, |c| c.drops[reason as usize])
    };

    // B's container identity, but from another port of host B: not the VTEP the store names.
    let genuine = frame_to_a(&lan, lan.b.mac, lan.b.ip.octets());
    forge(&hb, SocketAddr::new(b_ip, 0), to, VNI, genuine.clone());
    assert!(wait_for(|| overlay_drops(DropReason::SpoofedMac) == 1));

    // A MAC the store places nowhere, and B's MAC with another address (from B's real VTEP
    // port is impossible while B runs, so these too come from another port; the MAC check
    // fires first for the stranger).
    let stranger = frame_to_a(&lan, [0x02, 0x42, 9, 9, 9, 9], lan.b.ip.octets());
    forge(&hb, SocketAddr::new(b_ip, 0), to, VNI, stranger);
    assert!(wait_for(|| overlay_drops(DropReason::SpoofedMac) == 2));

    // An unknown VNI.
    forge(&hb, SocketAddr::new(b_ip, 0), to, VNI + 1, genuine.clone());
    assert!(wait_for(|| host_a.vxlan.stats().unknown_vni == 1));

    // A host that is not a cluster member.
    must(
        "ip",
        &["-n", &hb, "addr", "add", "198.51.100.9/24", "dev", "vxb"],
    );
    let stranger_host = SocketAddr::new(IpAddr::from([198, 51, 100, 9]), 0);
    forge(&hb, stranger_host, to, VNI, genuine);
    assert!(wait_for(|| host_a.vxlan.stats().not_member == 1));
    // The two frames that reached the switch were dropped there; the other two never got
    // that far. (Host B's own multicast, e.g. its container's IPv6 MLD reports, is genuine
    // and may arrive too.)
    let snap = rt.block_on(host_a.dp.snapshot()).unwrap();
    let c = &snap.ports[&OVERLAY.0];
    assert_eq!(c.dropped_total(), 2, "{c:?}");
    assert_eq!(host_a.vxlan.stats().malformed, 0);
}
