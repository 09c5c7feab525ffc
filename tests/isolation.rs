//! Isolation between networks, multi-homed containers, icc=false and anti-spoofing: the
//! guarantees Docker gets from DOCKER-ISOLATION chains and ebtables-like filters.

mod common;

use common::*;

fn drops(d: &Daemon, net: &str, ep: &str, reason: &str) -> u64 {
    d.endpoint(net, ep)["Counters"]["Drops"][reason]
        .as_u64()
        .unwrap_or(0)
}

fn tx_frames(d: &Daemon, net: &str, ep: &str) -> u64 {
    d.endpoint(net, ep)["Counters"]["TxFrames"]
        .as_u64()
        .unwrap()
}

#[test]
fn networks_are_isolated_and_a_multi_homed_container_reaches_both() {
    if !privileged("networks_are_isolated_and_a_multi_homed_container_reaches_both") {
        return;
    }
    let d = Daemon::start(&[
        "--network",
        "neta=10.91.1.0/24",
        "--network",
        "netb=10.91.2.0/24",
    ]);
    let (a, b, m) = (Netns::new("a"), Netns::new("b"), Netns::new("m"));
    let ip_a = d.connect("neta", &a, "a");
    let ip_b = d.connect("netb", &b, "b");
    // Make a believe b is on its link: any frame crossing would have to leave neta's switch.
    must(
        "ip",
        &["-n", &a.name, "route", "add", "10.91.2.0/24", "dev", "eth0"],
    );
    let before = tx_frames(&d, "netb", "b");
    assert!(
        a.unreachable(&ip_b),
        "a must not reach b on another network"
    );
    assert_eq!(
        tx_frames(&d, "netb", "b"),
        before,
        "not one frame from neta reached netb's port"
    );

    // Multi-homed: eth0 on neta (keeps the default route), eth1 on netb.
    d.ctl_ok(&["network", "connect", "neta", &m.path(), "--name", "m"]);
    d.ctl_ok(&["network", "connect", "netb", &m.path(), "--name", "m"]);
    assert_eq!(d.endpoint("netb", "m")["Interface"], "eth1");
    let route = stdout(&m.exec(&["ip", "route", "show", "default"]));
    assert!(
        route.contains("via 10.91.1.1 dev eth0"),
        "default route stays on eth0: {route}"
    );
    assert!(m.ping(&ip_a), "m reaches a");
    assert!(m.ping(&ip_b), "m reaches b");
}

#[test]
fn icc_false_drops_container_to_container_but_keeps_the_gateway() {
    if !privileged("icc_false_drops_container_to_container_but_keeps_the_gateway") {
        return;
    }
    let d = Daemon::start(&["--network", "open=10.92.1.0/24"]);
    d.ctl_ok(&[
        "network",
        "create",
        "--subnet",
        "10.92.2.0/24",
        "--opt",
        "icc=false",
        "closed",
    ]);
    assert_eq!(
        d.inspect("closed")["Options"]["com.docker.network.bridge.enable_icc"],
        "false"
    );
    let (x, y) = (Netns::new("x"), Netns::new("y"));
    d.connect("closed", &x, "x");
    let ip_y = d.connect("closed", &y, "y");
    assert!(x.ping("10.92.2.1"), "gateway reachable with icc=false");
    assert!(
        x.unreachable(&ip_y),
        "container-to-container blocked with icc=false"
    );
    // The ARP broadcast for y only reached the gateway, so y never even saw x ask.
    let seen = stdout(&y.exec(&["ip", "neigh", "show", "10.92.2.2"]));
    assert!(
        seen.trim().is_empty() || seen.contains("FAILED"),
        "y learned nothing of x: {seen}"
    );
    // On the icc=true network the same pair talks.
    let (p, q) = (Netns::new("p"), Netns::new("q"));
    d.connect("open", &p, "p");
    let ip_q = d.connect("open", &q, "q");
    assert!(p.ping(&ip_q));
}

#[test]
fn spoofed_mac_and_ip_are_dropped_and_counted() {
    if !privileged("spoofed_mac_and_ip_are_dropped_and_counted") {
        return;
    }
    let d = Daemon::start(&["--network", "net=10.93.1.0/24"]);
    let (good, evil) = (Netns::new("good"), Netns::new("evil"));
    let ip_good = d.connect("net", &good, "good");
    d.connect("net", &evil, "evil");
    assert!(evil.ping(&ip_good), "baseline: evil reaches good honestly");

    // A forged source MAC: nothing gets through.
    must("ip", &["-n", &evil.name, "neigh", "flush", "dev", "eth0"]);
    must(
        "ip",
        &[
            "-n",
            &evil.name,
            "link",
            "set",
            "eth0",
            "address",
            "02:42:de:ad:be:ef",
        ],
    );
    assert!(evil.unreachable(&ip_good));
    assert!(
        drops(&d, "net", "evil", "spoofed_mac") > 0,
        "spoofed MAC counted"
    );
    must(
        "ip",
        &[
            "-n",
            &evil.name,
            "link",
            "set",
            "eth0",
            "address",
            "02:42:0a:5d:01:03",
        ],
    );

    // A forged source IP (the real MAC): nothing gets through either.
    must(
        "ip",
        &[
            "-n",
            &evil.name,
            "addr",
            "add",
            "10.93.1.200/32",
            "dev",
            "eth0",
        ],
    );
    must("ip", &["-n", &evil.name, "neigh", "flush", "dev", "eth0"]);
    let forged = evil.exec(&[
        "ping",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "1",
        "-I",
        "10.93.1.200",
        &ip_good,
    ]);
    assert!(
        !forged.status.success(),
        "ping from a forged source must fail"
    );
    assert!(
        drops(&d, "net", "evil", "spoofed_ip") > 0,
        "spoofed IP counted"
    );
    assert!(evil.ping(&ip_good), "its own address still works");
}
