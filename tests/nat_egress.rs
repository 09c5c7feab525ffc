//! Outbound NAT, as `docker run` users know it: a container on a bridge network reaches "the
//! internet" through its gateway. Here the internet is the SERVERS namespace (198.51.100.2,
//! 203.0.113.2) behind the daemon's world (198.51.100.1); see `tests/common/world.rs`.
//!
//! Walkthrough: big TCP transfers both ways → the server sees the world's address, the
//! container the real destination → refused and unreachable destinations fail fast → half-close
//! → UDP request/reply and idle expiry → ping → `--internal` has no way out → `host_loopback`
//! reaches the world's 127.0.0.1 → the flow-table limit refuses new flows, spares old ones.

mod common;

use std::time::{Duration, Instant};

use common::world::*;
use common::*;

const GW: &str = "10.100.1.1";

#[test]
fn fixture_world_reaches_servers() {
    if !privileged("fixture_world_reaches_servers") {
        return;
    }
    // Not NAT yet: checks the test world itself (veth, route, servers) before blaming NAT.
    let (w, _c1) = world_with_c1(&[]);
    assert!(w.world.ping(FAR_IP) && w.world.ping(SERVER_IP));
    let _echo = tcp_echo(&w.servers, 7000);
    let r = run(
        &w.world,
        10,
        "echo fixture | socat -t 5 - TCP:203.0.113.2:7000",
    );
    assert_eq!(r.stdout().trim(), "fixture", "{}", w.why(&r));
    // The helpers the NAT tests lean on: an interactive session, a held connection that goes
    // away when its process group is killed.
    let mut s = Session::tcp(&w.world, "203.0.113.2:7000");
    assert!(s.echoes("one") && s.echoes("two"), "session echo");
    let held = Bg::sh(&w.world, "sleep 60 | socat - TCP:203.0.113.2:7000");
    let established = || {
        let ss = stdout(&w.world.exec(&[
            "ss",
            "-Htn",
            "state",
            "established",
            "dst",
            "203.0.113.2:7000",
        ]));
        ss.lines().count()
    };
    assert!(wait_until(5, || established() == 2), "two connections held");
    drop(held);
    assert!(
        wait_until(5, || established() == 1),
        "the held one is gone with its group"
    );
    s.close_write();
    assert!(wait_until(5, || !s.running()), "session ends after our EOF");
    // Nothing but the veth's subnets is routable from the world.
    let r = run(&w.world, 5, "socat /dev/null TCP:8.8.8.8:53");
    assert!(!r.ok() && r.stderr().contains("unreachable"), "{r}");
}

#[test]
fn tcp_10mb_each_way_through_nat() {
    if !privileged("tcp_10mb_each_way_through_nat") {
        return;
    }
    let (w, c1) = world_with_c1(&[]);
    let _echo = tcp_echo(&w.servers, 7000);
    let _push = tcp_serve(&w.servers, 7002, "head -c 10485760 /dev/zero");

    // First a line, so that a NAT that does not work at all fails here, fast and clearly.
    let r = run(&c1, 10, "echo hello | socat -t 5 - TCP:203.0.113.2:7000");
    assert_eq!(
        r.stdout().trim(),
        "hello",
        "TCP echo through NAT: {}",
        w.why(&r)
    );

    // Upload 10 MiB of random bytes, get them echoed back, compare.
    let dir = w.dir.path().display().to_string();
    let r = run(
        &c1,
        90,
        &format!(
            "head -c 10485760 /dev/urandom > {dir}/up.in && \
             socat -t 30 -T 30 TCP:203.0.113.2:7000 - < {dir}/up.in > {dir}/up.out && \
             cmp {dir}/up.in {dir}/up.out && echo same"
        ),
    );
    assert_eq!(r.stdout().trim(), "same", "10 MiB echo: {}", w.why(&r));

    // Download: the server pushes 10 MiB and closes.
    let r = run(&c1, 90, "socat -T 30 -u TCP:203.0.113.2:7002 - | wc -c");
    assert_eq!(
        r.stdout().trim(),
        "10485760",
        "10 MiB download: {}",
        w.why(&r)
    );

    assert!(
        w.stat(NET, "Counters", "TcpOpened") >= 2,
        "{}",
        w.stats(NET)
    );
}

#[test]
fn server_sees_world_address_container_sees_real_destination() {
    if !privileged("server_sees_world_address_container_sees_real_destination") {
        return;
    }
    let (w, c1) = world_with_c1(&[]);
    let _peer = tcp_peer(&w.servers, 7004);
    let _echo = tcp_echo(&w.servers, 7000);

    // Masquerade: the server is dialled at the address the container asked for, from the world.
    let r = run(&c1, 10, "socat -T 5 - TCP:203.0.113.2:7004 < /dev/null");
    assert_eq!(
        r.stdout().trim(),
        "198.51.100.1 203.0.113.2",
        "server reports 'PEER LOCAL': {}",
        w.why(&r)
    );

    // The container's own socket is connected to the real destination, from its own address.
    let mut s = Session::tcp(&c1, "203.0.113.2:7000");
    assert!(
        s.echoes("hello"),
        "echo over a held connection\n{}",
        w.plain_log()
    );
    let ss = stdout(&c1.exec(&[
        "ss",
        "-Htn",
        "state",
        "established",
        "dst",
        "203.0.113.2:7000",
    ]));
    assert!(
        ss.contains("10.100.1.2:"),
        "local side is the container's address: {ss:?}"
    );
    assert!(
        ss.contains("203.0.113.2:7000"),
        "peer is the real destination: {ss:?}"
    );
}

#[test]
fn closed_port_is_refused_quickly() {
    if !privileged("closed_port_is_refused_quickly") {
        return;
    }
    let (w, c1) = world_with_c1(&[]);
    let r = run(&c1, 10, "socat /dev/null TCP:203.0.113.2:7999");
    assert!(!r.ok(), "connect to a closed port must fail: {}", w.why(&r));
    assert!(
        r.stderr().contains("Connection refused"),
        "the container sees a refusal (RST): {}",
        w.why(&r)
    );
    assert!(
        r.took < Duration::from_secs(3),
        "refused quickly: {}",
        w.why(&r)
    );
    assert!(
        w.stat(NET, "Counters", "TcpRefused") >= 1,
        "{}",
        w.stats(NET)
    );
}

#[test]
fn unreachable_destination_fails_instead_of_hanging() {
    if !privileged("unreachable_destination_fails_instead_of_hanging") {
        return;
    }
    let (w, c1) = world_with_c1(&[]);
    // 203.0.113.99: SERVERS forwards it back out of s0, ARP fails, host unreachable after ~3 s.
    let r = run(&c1, 20, "socat /dev/null TCP:203.0.113.99:7000");
    assert!(!r.ok(), "connect to nobody must fail: {}", w.why(&r));
    assert!(
        r.took < Duration::from_secs(15),
        "fails within 15 s rather than hanging: {}",
        w.why(&r)
    );
    let err = r.stderr();
    assert!(
        !err.trim().is_empty(),
        "socat reports an error: {}",
        w.why(&r)
    );
    assert!(
        [
            "No route to host",
            "Host is unreachable",
            "timed out",
            "Connection refused"
        ]
        .iter()
        .any(|m| err.contains(m)),
        "a connect error: {}",
        w.why(&r)
    );
    assert!(
        w.stat(NET, "Counters", "TcpUnreachable") >= 1,
        "{}",
        w.stats(NET)
    );
}

#[test]
fn half_close_still_gets_the_reply() {
    if !privileged("half_close_still_gets_the_reply") {
        return;
    }
    let (w, c1) = world_with_c1(&[]);
    // The server answers only after it has read EOF.
    let _srv = tcp_serve(&w.servers, 7003, "cat; echo done");
    let r = run(&c1, 15, "echo hi | socat -t 5 - TCP:203.0.113.2:7003");
    assert_eq!(
        r.stdout(),
        "hi\ndone\n",
        "reply after our FIN: {}",
        w.why(&r)
    );
    assert!(
        r.took < Duration::from_secs(5),
        "no waiting on -t: {}",
        w.why(&r)
    );
}

#[test]
fn udp_request_reply() {
    if !privileged("udp_request_reply") {
        return;
    }
    let (w, c1) = world_with_c1(&[]);
    let _far = udp_echo(&w.servers, FAR_IP, 7001);
    let _near = udp_echo(&w.servers, SERVER_IP, 7001);
    for dst in [FAR_IP, SERVER_IP] {
        let r = run(
            &c1,
            10,
            &format!("echo udp-{dst} | socat -T 2 - UDP:{dst}:7001"),
        );
        assert_eq!(
            r.stdout().trim(),
            format!("udp-{dst}"),
            "UDP echo: {}",
            w.why(&r)
        );
    }
    // Several datagrams on one flow (same source port) all come back.
    let r = run(
        &c1,
        10,
        "(echo a; sleep 0.2; echo b; sleep 0.2; echo c; sleep 1) | socat -T 2 - UDP:203.0.113.2:7001,sourceport=40000",
    );
    assert_eq!(r.stdout(), "a\nb\nc\n", "three datagrams: {}", w.why(&r));
    assert!(w.stat(NET, "Counters", "UdpFlows") >= 2, "{}", w.stats(NET));
}

#[test]
fn udp_flows_expire_after_udp_timeout() {
    if !privileged("udp_flows_expire_after_udp_timeout") {
        return;
    }
    let (w, c1) = world_with_c1(&["--udp-timeout", "2"]);
    let _far = udp_echo(&w.servers, FAR_IP, 7001);
    let r = run(&c1, 10, "echo once | socat -T 1 - UDP:203.0.113.2:7001");
    assert_eq!(r.stdout().trim(), "once", "{}", w.why(&r));
    let s = w.stats(NET);
    assert!(s["Flows"]["Udp"].as_u64() >= Some(1), "flow present: {s}");
    assert_eq!(s["MaxFlows"], 4096, "default --max-flows: {s}");

    let t = Instant::now();
    assert!(
        wait_until(6, || w.stat(NET, "Flows", "Udp") == 0),
        "UDP flow idle for {:?} with --udp-timeout 2 is still there: {}\n{}",
        t.elapsed(),
        w.stats(NET),
        w.plain_log()
    );
    assert!(w.stat(NET, "Counters", "Expired") >= 1, "{}", w.stats(NET));

    // A new datagram opens a new flow.
    let r = run(&c1, 10, "echo again | socat -T 2 - UDP:203.0.113.2:7001");
    assert_eq!(r.stdout().trim(), "again", "{}", w.why(&r));
}

#[test]
fn ping_through_nat() {
    if !privileged("ping_through_nat") {
        return;
    }
    let (w, c1) = world_with_c1(&[]);
    for dst in [SERVER_IP, FAR_IP] {
        let r = run(&c1, 10, &format!("ping -c 2 -W 2 {dst}"));
        assert!(r.ok(), "ping {dst}: {}", w.why(&r));
    }
    assert!(
        w.stat(NET, "Counters", "IcmpEchoes") >= 1,
        "{}",
        w.stats(NET)
    );
    // Nobody answers for 203.0.113.99; the daemon must not invent replies.
    let r = run(&c1, 10, "ping -c 2 -W 2 203.0.113.99");
    assert!(!r.ok(), "no reply from nobody: {}", w.why(&r));
}

#[test]
fn internal_network_has_no_way_out() {
    if !privileged("internal_network_has_no_way_out") {
        return;
    }
    let w = NatWorld::start(&["--network", "net=10.100.1.0/24"]);
    w.ctl_ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.100.9.0/24",
        "int",
    ]);
    assert_eq!(w.inspect("int")["Internal"], true);
    let (a, b) = (Netns::new("a"), Netns::new("b"));
    let ipa = w.connect("int", &a, "a");
    let ipb = w.connect("int", &b, "b");
    assert!(
        a.ping(&ipb) && b.ping(&ipa),
        "containers on int reach each other"
    );

    let _echo = tcp_echo(&w.servers, 7000);
    let _udp = udp_echo(&w.servers, FAR_IP, 7001);
    let r = run(&a, 10, "echo out | socat -t 2 - TCP:203.0.113.2:7000");
    assert!(
        !r.ok() && !r.stdout().contains("out"),
        "TCP must not leave: {}",
        w.why(&r)
    );
    assert!(
        r.took < Duration::from_secs(3),
        "and fails quickly: {}",
        w.why(&r)
    );
    let r = run(&a, 10, "echo out | socat -T 2 - UDP:203.0.113.2:7001");
    assert!(
        !r.stdout().contains("out"),
        "UDP must not leave: {}",
        w.why(&r)
    );
    let r = run(&a, 10, "ping -c 2 -W 1 198.51.100.2");
    assert!(!r.ok(), "ping must not leave: {}", w.why(&r));
}

#[test]
fn host_loopback_only_when_enabled() {
    if !privileged("host_loopback_only_when_enabled") {
        return;
    }
    let (w, c1) = world_with_c1(&[]);
    w.ctl_ok(&[
        "network",
        "create",
        "--subnet",
        "10.100.10.0/24",
        "--opt",
        "host_loopback=true",
        "hl",
    ]);
    let c2 = Netns::new("c2");
    w.connect("hl", &c2, "c2");
    // A service on the world's loopback only ("the host's localhost").
    let _lo = Bg::spawn(
        &w.world,
        &[
            "socat",
            "TCP-LISTEN:9000,bind=127.0.0.1,reuseaddr,fork",
            "EXEC:cat",
        ],
    );
    wait_for("world 127.0.0.1:9000", || {
        listening_on(&w.world, "tcp", "127.0.0.1", 9000)
    });

    let r = run(
        &c2,
        10,
        "echo via-gateway | socat -t 5 - TCP:10.100.10.1:9000",
    );
    assert_eq!(
        r.stdout().trim(),
        "via-gateway",
        "host_loopback=true: gateway:9000 is the world's 127.0.0.1:9000: {}",
        w.why(&r)
    );

    let r = run(&c1, 10, &format!("socat /dev/null TCP:{GW}:9000"));
    assert!(
        !r.ok() && r.stderr().contains("Connection refused"),
        "default network: gateway:9000 is refused: {}",
        w.why(&r)
    );
    assert!(
        r.took < Duration::from_secs(3),
        "refused quickly: {}",
        w.why(&r)
    );
}

#[test]
fn flow_limit_refuses_new_flows_and_spares_old_ones() {
    if !privileged("flow_limit_refuses_new_flows_and_spares_old_ones") {
        return;
    }
    // The network's limit, not the per-container one (a quarter of it by default).
    let (w, c1) = world_with_c1(&["--max-flows", "3", "--max-flows-per-endpoint", "3"]);
    assert_eq!(w.stats(NET)["MaxFlows"], 3);
    let _echo = tcp_echo(&w.servers, 7000);

    // Three flows: an interactive echo session and two idle connections.
    let mut live = Session::tcp(&c1, "203.0.113.2:7000");
    assert!(live.echoes("first"), "session works\n{}", w.plain_log());
    let idle1 = Bg::sh(&c1, "sleep 60 | socat - TCP:203.0.113.2:7000");
    let idle2 = Bg::sh(&c1, "sleep 60 | socat - TCP:203.0.113.2:7000");
    assert!(
        wait_until(10, || w.stat(NET, "Flows", "Tcp") == 3),
        "three TCP flows: {}\n{}",
        w.stats(NET),
        w.plain_log()
    );

    // The fourth is refused at once.
    let r = run(&c1, 10, "socat /dev/null TCP:203.0.113.2:7000");
    assert!(
        !r.ok(),
        "4th flow over --max-flows 3 must fail: {}",
        w.why(&r)
    );
    assert!(
        r.took < Duration::from_secs(3),
        "and fail fast: {}",
        w.why(&r)
    );
    assert!(
        w.stat(NET, "Counters", "RefusedLimit") >= 1,
        "{}",
        w.stats(NET)
    );
    assert_eq!(w.stat(NET, "Flows", "Tcp"), 3, "{}", w.stats(NET));

    // The old ones are untouched.
    assert!(
        live.echoes("still here"),
        "old flow still works\n{}",
        w.plain_log()
    );

    // Close them all; new connections work again.
    drop(idle1);
    drop(idle2);
    live.close_write();
    assert!(
        wait_until(15, || w.stat(NET, "Flows", "Tcp") == 0),
        "flows removed after close: {}\n{}",
        w.stats(NET),
        w.plain_log()
    );
    let r = run(&c1, 10, "echo again | socat -t 5 - TCP:203.0.113.2:7000");
    assert_eq!(r.stdout().trim(), "again", "room again: {}", w.why(&r));
}

/// Python one-liners (Debian's python3) for an abortive close: socat cannot send an RST.
const RST_SERVER: &str = r#"
import socket, struct, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("203.0.113.2", int(sys.argv[1]))); s.listen()
c, _ = s.accept()
if sys.argv[2] == "abort":
    c.recv(100)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); c.close()
else:
    try:
        while c.recv(100): pass
        open(sys.argv[3], "w").write("eof")
    except ConnectionResetError:
        open(sys.argv[3], "w").write("reset")
"#;

const RST_CLIENT: &str = r#"
import socket, struct, sys, time
c = socket.create_connection(("203.0.113.2", int(sys.argv[1])), timeout=5); c.sendall(b"x")
if sys.argv[2] == "abort":
    time.sleep(0.3)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); c.close()
else:
    try:
        print("eof" if c.recv(100) == b"" else "data")
    except ConnectionResetError:
        print("reset")
"#;

#[test]
fn rst_passes_through_both_ways() {
    if !privileged("rst_passes_through_both_ways") {
        return;
    }
    let (w, c1) = world_with_c1(&[]);
    let dir = w.dir.path().display().to_string();
    std::fs::write(format!("{dir}/rst_server.py"), RST_SERVER).unwrap();
    std::fs::write(format!("{dir}/rst_client.py"), RST_CLIENT).unwrap();

    // The far side resets: the container's read fails with ECONNRESET, not a clean EOF.
    let _abort = Bg::spawn(
        &w.servers,
        &["python3", &format!("{dir}/rst_server.py"), "7010", "abort"],
    );
    wait_for("RST server", || listening(&w.servers, "tcp", 7010));
    let r = run(&c1, 10, &format!("python3 {dir}/rst_client.py 7010 read"));
    assert_eq!(
        r.stdout().trim(),
        "reset",
        "far-side RST reaches the container: {}",
        w.why(&r)
    );

    // The container resets: the far side sees ECONNRESET too.
    let result = format!("{dir}/far_side.txt");
    let _read = Bg::spawn(
        &w.servers,
        &[
            "python3",
            &format!("{dir}/rst_server.py"),
            "7011",
            "read",
            &result,
        ],
    );
    wait_for("reading server", || listening(&w.servers, "tcp", 7011));
    let r = run(&c1, 10, &format!("python3 {dir}/rst_client.py 7011 abort"));
    assert!(r.out.status.success(), "{}", w.why(&r));
    wait_for("the far side to notice", || {
        std::path::Path::new(&result).exists()
    });
    assert_eq!(
        std::fs::read_to_string(&result).unwrap(),
        "reset",
        "container RST reaches the far side"
    );
}
