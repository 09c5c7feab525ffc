//! A hostile container cannot take its network down, reach the daemon itself, or hold the
//! daemon's resources: each defect found in the hardening round, reproduced from inside a
//! container in the NAT world of `tests/common/world.rs`, then shown fixed.
//!
//! Walkthrough: a SYN with IP options or data to a closed port is refused and the network
//! keeps forwarding → the daemon's loopback and its own addresses are out of reach →
//! DNS-over-TCP connections closed mid-message or left idle go away → dials the container
//! abandoned go away → one container cannot take the whole flow table.

mod common;

use std::time::Duration;

use common::world::*;
use common::*;

const GW: &str = "10.100.1.1";

/// Runs a Python 3 program inside `ns`.
fn py(ns: &Netns, secs: u64, program: &str) -> Run {
    let quoted = program.replace('\'', "'\\''");
    run(ns, secs, &format!("python3 -c '{quoted}'"))
}

/// The network still forwards: a fresh connection through the NAT echoes.
fn still_forwards(w: &NatWorld, c: &Netns) {
    let r = run(c, 10, "echo alive | socat -t 3 - TCP:203.0.113.2:7000");
    assert_eq!(
        r.stdout().trim(),
        "alive",
        "network forwards: {}",
        w.why(&r)
    );
}

#[test]
fn a_long_syn_to_a_closed_port_is_refused_and_the_network_lives_on() {
    if !privileged("a_long_syn_to_a_closed_port_is_refused_and_the_network_lives_on") {
        return;
    }
    let (w, c1) = world_with_c1(&[]);
    let _echo = tcp_echo(&w.servers, 7000);
    // 40 bytes of IP options (NOPs then EOL) on an unprivileged socket: a 100-byte SYN.
    let r = py(
        &c1,
        10,
        "import socket\n\
         s = socket.socket()\n\
         s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, bytes([1] * 39 + [0]))\n\
         s.settimeout(5)\n\
         try:\n    s.connect((\"203.0.113.2\", 7999)); print(\"connected\")\n\
         except ConnectionRefusedError: print(\"refused\")\n",
    );
    assert_eq!(r.stdout().trim(), "refused", "{}", w.why(&r));
    // Data in the SYN (TCP Fast Open without a cookie), to a closed port.
    let r = py(
        &c1,
        10,
        "import socket, subprocess\n\
         open(\"/proc/sys/net/ipv4/tcp_fastopen\", \"w\").write(\"5\")\n\
         s = socket.socket()\n\
         s.settimeout(5)\n\
         try:\n    s.sendto(b\"x\" * 1000, socket.MSG_FASTOPEN, (\"203.0.113.2\", 7999)); s.recv(1); print(\"sent\")\n\
         except ConnectionRefusedError: print(\"refused\")\n",
    );
    assert_eq!(r.stdout().trim(), "refused", "{}", w.why(&r));
    // The same to an open port carries the data.
    let r = py(
        &c1,
        10,
        "import socket\n\
         s = socket.socket()\n\
         s.settimeout(5)\n\
         s.sendto(b\"fastopen\\n\", socket.MSG_FASTOPEN, (\"203.0.113.2\", 7000))\n\
         print(s.recv(100).decode().strip())\n",
    );
    assert_eq!(r.stdout().trim(), "fastopen", "{}", w.why(&r));
    still_forwards(&w, &c1);
    assert!(
        w.stat(NET, "Counters", "TcpRefused") >= 2,
        "{}",
        w.stats(NET)
    );
}

/// Sends one raw Ethernet frame from `ns`'s eth0 to the gateway: IPv4 from 10.100.1.2 to
/// `dst`, protocol `proto` (6 TCP SYN, 17 UDP), to port `port`.
fn raw_to_gateway(w: &NatWorld, ns: &Netns, dst: &str, proto: u8, port: u16) {
    let gw_mac = w.inspect(NET)["Gateway"]["MacAddress"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| "02:42:0a:64:01:01".to_string());
    let program = format!(
        "import socket, struct\n\
         def csum(b):\n\
         \x20   if len(b) % 2: b += bytes(1)\n\
         \x20   s = sum(struct.unpack(\"!%dH\" % (len(b) // 2), b))\n\
         \x20   s = (s >> 16) + (s & 0xffff); s += s >> 16\n\
         \x20   return ~s & 0xffff\n\
         src = socket.inet_aton(\"10.100.1.2\"); dst = socket.inet_aton(\"{dst}\")\n\
         if {proto} == 6:\n\
         \x20   l4 = struct.pack(\"!HHIIBBHHH\", 40000, {port}, 1, 0, 5 << 4, 2, 65535, 0, 0)\n\
         \x20   c = csum(src + dst + struct.pack(\"!BBH\", 0, 6, len(l4)) + l4)\n\
         \x20   l4 = l4[:16] + struct.pack(\"!H\", c) + l4[18:]\n\
         else:\n\
         \x20   data = b\"hello-loopback\"\n\
         \x20   l4 = struct.pack(\"!HHHH\", 40000, {port}, 8 + len(data), 0) + data\n\
         ip = struct.pack(\"!BBHHHBBH4s4s\", 0x45, 0, 20 + len(l4), 1, 0, 64, {proto}, 0, src, dst)\n\
         ip = ip[:10] + struct.pack(\"!H\", csum(ip)) + ip[12:]\n\
         mac = bytes(int(x, 16) for x in \"{gw_mac}\".split(\":\"))\n\
         me = open(\"/sys/class/net/eth0/address\").read().strip()\n\
         eth = mac + bytes(int(x, 16) for x in me.split(\":\")) + b\"\\x08\\x00\"\n\
         s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
         s.bind((\"eth0\", 0))\n\
         for _ in range(3): s.send(eth + ip + l4)\n\
         print(\"sent\")\n"
    );
    let r = py(ns, 10, &program);
    assert_eq!(r.stdout().trim(), "sent", "{}", w.why(&r));
}

#[test]
fn the_daemons_loopback_and_own_addresses_are_out_of_reach() {
    if !privileged("the_daemons_loopback_and_own_addresses_are_out_of_reach") {
        return;
    }
    let (w, c1) = world_with_c1(&[]);
    // Services of the daemon's own namespace: on loopback, and on every address.
    let dir = tempfile_dir("hostile-lo");
    let tcp_log = dir.join("tcp");
    let udp_log = dir.join("udp");
    let _tcp = Bg::sh(
        &w.world,
        &format!(
            "socat TCP-LISTEN:7100,bind=127.0.0.1,fork,reuseaddr SYSTEM:'echo hit >> {}'",
            tcp_log.display()
        ),
    );
    let _udp = Bg::sh(
        &w.world,
        &format!(
            "socat -u UDP-RECV:7101,bind=127.0.0.1 OPEN:{},creat,append",
            udp_log.display()
        ),
    );
    let _any = Bg::sh(
        &w.world,
        "socat TCP-LISTEN:7102,fork,reuseaddr SYSTEM:'echo own'",
    );
    assert!(wait_until(5, || listening(&w.world, "tcp", 7100)
        && listening(&w.world, "tcp", 7102)));
    // Frames the container's kernel would never route: straight onto eth0 to the gateway.
    raw_to_gateway(&w, &c1, "127.0.0.1", 6, 7100);
    raw_to_gateway(&w, &c1, "127.0.0.1", 17, 7101);
    raw_to_gateway(&w, &c1, "0.0.0.0", 17, 7101);
    // The daemon's own address on the world's link.
    let r = run(
        &c1,
        10,
        &format!("socat -T 3 - TCP:{WORLD_IP}:7102 </dev/null"),
    );
    assert!(
        !r.stdout().contains("own"),
        "reached the daemon's own address: {}",
        w.why(&r)
    );
    assert!(
        r.stderr().contains("No route to host") || r.stderr().contains("unreachable"),
        "refused with ICMP: {}",
        w.why(&r)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(!tcp_log.exists(), "a container reached 127.0.0.1 over TCP");
    assert!(
        std::fs::read_to_string(&udp_log)
            .unwrap_or_default()
            .is_empty(),
        "a container reached 127.0.0.1 over UDP"
    );
    assert!(
        w.stat(NET, "Counters", "ForbiddenDestination") >= 5,
        "{}",
        w.stats(NET)
    );
    // The world itself still works for the container.
    let _echo = tcp_echo(&w.servers, 7000);
    still_forwards(&w, &c1);
}

/// A fresh directory under /tmp for one test.
fn tempfile_dir(what: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("vsw-{what}-{}", tag()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn dns_over_tcp_closed_mid_message_or_idle_goes_away() {
    if !privileged("dns_over_tcp_closed_mid_message_or_idle_goes_away") {
        return;
    }
    let (w, c1) = world_with_c1(&[]);
    // 60 connections that announce a 100-byte query, send 3 bytes of it and close.
    let r = py(
        &c1,
        20,
        &format!(
            "import socket\n\
             for _ in range(60):\n\
             \x20   s = socket.create_connection((\"{GW}\", 53), timeout=3)\n\
             \x20   s.sendall(b\"\\x00\\x64abc\"); s.close()\n\
             print(\"done\")\n"
        ),
    );
    assert_eq!(r.stdout().trim(), "done", "{}", w.why(&r));
    assert!(
        wait_until(5, || w.stat(NET, "Flows", "Tcp") == 0),
        "half-sent DNS connections must not linger: {}",
        w.stats(NET)
    );
    // One that sends nothing and stays open is reset after the idle timeout (10 s).
    let idle = Bg::sh(&c1, &format!("sleep 60 | socat - TCP:{GW}:53"));
    assert!(
        wait_until(5, || w.stat(NET, "Flows", "Tcp") == 1),
        "{}",
        w.stats(NET)
    );
    assert!(
        wait_until(20, || w.stat(NET, "Flows", "Tcp") == 0),
        "idle DNS-over-TCP connection times out: {}",
        w.stats(NET)
    );
    drop(idle);
    // The responder still answers over TCP.
    let r = run(&c1, 10, &format!("dig +tcp +time=3 +tries=1 @{GW} c1"));
    assert!(r.stdout().contains("10.100.1.2"), "{}", w.why(&r));
}

#[test]
fn dials_the_container_abandoned_leave_the_table() {
    if !privileged("dials_the_container_abandoned_leave_the_table") {
        return;
    }
    // A long connect timeout: only the container's RST can end these flows within the test.
    let (w, c1) = world_with_c1(&["--connect-timeout", "60"]);
    // A server whose accept queue is full: SYNs are dropped (the dial hangs, retrying) until
    // it starts accepting after 4 s; then every pending dial completes.
    let slow = Bg::sh(
        &w.servers,
        r#"python3 -c '
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("203.0.113.2", 7200)); s.listen(0)
held = socket.create_connection(("203.0.113.2", 7200))
time.sleep(4)
s.listen(128); s.settimeout(1)
end = time.time() + 30
conns = []
while time.time() < end:
    try: conns.append(s.accept()[0])
    except OSError: pass
'"#,
    );
    assert!(
        wait_until(5, || listening(&w.servers, "tcp", 7200)),
        "slow server listens"
    );
    std::thread::sleep(Duration::from_millis(300));
    // 40 connects that give up after 0.5 s.
    let r = py(
        &c1,
        30,
        "import socket\n\
         n = 0\n\
         for _ in range(40):\n\
         \x20   s = socket.socket(); s.settimeout(0.05)\n\
         \x20   try: s.connect((\"203.0.113.2\", 7200))\n\
         \x20   except OSError: n += 1\n\
         \x20   s.close()\n\
         print(n)\n",
    );
    assert_eq!(
        r.stdout().trim(),
        "40",
        "every connect gave up: {}",
        w.why(&r)
    );
    assert!(
        w.stat(NET, "Flows", "Tcp") >= 1,
        "dials pending: {}",
        w.stats(NET)
    );
    assert!(
        wait_until(20, || w.stat(NET, "Flows", "Tcp") == 0),
        "abandoned dials must leave the table once they complete: {}",
        w.stats(NET)
    );
    drop(slow);
}

#[test]
fn one_container_cannot_take_the_whole_flow_table() {
    if !privileged("one_container_cannot_take_the_whole_flow_table") {
        return;
    }
    let (w, c1) = world_with_c1(&["--max-flows", "8", "--max-flows-per-endpoint", "3"]);
    let c2 = Netns::new("c2");
    assert_eq!(w.connect(NET, &c2, "c2"), "10.100.1.3");
    let _echo = tcp_echo(&w.servers, 7000);
    let _held: Vec<Bg> = (0..3)
        .map(|_| Bg::sh(&c1, "sleep 60 | socat - TCP:203.0.113.2:7000"))
        .collect();
    assert!(
        wait_until(10, || w.stat(NET, "Flows", "Tcp") == 3),
        "{}",
        w.stats(NET)
    );
    let r = run(&c1, 10, "socat /dev/null TCP:203.0.113.2:7000");
    assert!(
        !r.ok() && r.stderr().contains("refused"),
        "c1's 4th flow refused: {}",
        w.why(&r)
    );
    assert!(
        w.stat(NET, "Counters", "RefusedEndpointQuota") >= 1,
        "{}",
        w.stats(NET)
    );
    // Its neighbour is unaffected.
    still_forwards(&w, &c2);
}

/// The daemon's resident memory in MiB.
fn rss_mib(w: &NatWorld) -> u64 {
    let pid = w.pid().expect("daemon running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

#[test]
fn flows_cannot_make_the_daemon_hold_memory() {
    if !privileged("flows_cannot_make_the_daemon_hold_memory") {
        return;
    }
    let (w, c1) = world_with_c1(&["--nat-memory", "64M"]);
    let baseline = rss_mib(&w);
    // A far side that accepts and never reads; 300 container flows push into it.
    let sink = Bg::sh(
        &w.servers,
        r#"python3 -c '
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("203.0.113.2", 7300)); s.listen(512)
held = []
end = time.time() + 60
s.settimeout(1)
while time.time() < end:
    try: held.append(s.accept()[0])
    except OSError: pass
'"#,
    );
    assert!(wait_until(5, || listening(&w.servers, "tcp", 7300)));
    let pushers = Bg::sh(
        &c1,
        r#"python3 -c '
import socket, time
conns = []
for _ in range(300):
    c = socket.create_connection(("203.0.113.2", 7300), timeout=5); c.setblocking(False); conns.append(c)
chunk = bytes(65536)
end = time.time() + 40
while time.time() < end:
    for c in conns:
        try: c.send(chunk)
        except OSError: pass
    time.sleep(0.01)
'"#,
    );
    assert!(
        wait_until(20, || w.stat(NET, "Flows", "Tcp") == 300),
        "300 stalled flows: {}",
        w.stats(NET)
    );
    std::thread::sleep(Duration::from_secs(5));
    let stalled = rss_mib(&w);
    let held = w.stats(NET)["BufferBytes"].as_u64().unwrap_or(u64::MAX);
    eprintln!("RSS: baseline {baseline} MiB, 300 stalled flows {stalled} MiB, buffers {held} B");
    assert!(held <= 64 << 20, "buffers within --nat-memory: {held}");
    assert!(
        stalled <= 2 * baseline + 64 + 64,
        "300 stalled flows hold {stalled} MiB (baseline {baseline} MiB, budget 64 MiB)"
    );
    // Both ends go away (the far side's unread data makes its kernel reset each flow).
    drop(pushers);
    drop(sink);
    assert!(
        wait_until(20, || w.stat(NET, "Flows", "Tcp") == 0),
        "flows end with their far side: {}",
        w.stats(NET)
    );
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_mib(&w);
    eprintln!("RSS after they closed: {after} MiB");
    assert!(
        after <= 2 * baseline + 64,
        "RSS returns near the baseline: {after} MiB (baseline {baseline} MiB)"
    );
    // 1000 idle flows after a burst of traffic each.
    let _echo = tcp_echo(&w.servers, 7000);
    let idle = Bg::sh(
        &c1,
        r#"python3 -c '
import socket, time
conns = []
for _ in range(1000):
    c = socket.create_connection(("203.0.113.2", 7000), timeout=5)
    c.sendall(bytes(16384)); n = 0
    while n < 16384: n += len(c.recv(65536))
    conns.append(c)
time.sleep(180)
'"#,
    );
    assert!(
        wait_until(150, || w.stat(NET, "Flows", "Tcp") == 1000),
        "1000 idle flows: {}",
        w.stats(NET)
    );
    std::thread::sleep(Duration::from_secs(4));
    let idle_rss = rss_mib(&w);
    let held = w.stats(NET)["BufferBytes"].as_u64().unwrap_or(u64::MAX);
    eprintln!("RSS with 1000 idle flows: {idle_rss} MiB, buffers {held} B");
    assert!(
        held <= 1000 * 8192,
        "idle flows hold 8 KiB of buffers each: {held}"
    );
    assert!(
        idle_rss <= 2 * baseline + 64,
        "1000 idle flows hold {idle_rss} MiB (baseline {baseline} MiB)"
    );
    drop(idle);
}

#[test]
fn a_relayed_dns_answer_never_reaches_another_container() {
    if !privileged("a_relayed_dns_answer_never_reaches_another_container") {
        return;
    }
    let w = NatWorld::start(&["--network", "net=10.100.1.0/24", "--dns", FAR_IP]);
    w.ctl_ok(&[
        "network",
        "create",
        "--subnet",
        "10.100.2.0/24",
        "--opt",
        "icc=false",
        "quiet",
    ]);
    let a = Netns::new("a");
    let b = Netns::new("b");
    assert_eq!(w.connect("quiet", &a, "a"), "10.100.2.2");
    assert_eq!(w.connect("quiet", &b, "b"), "10.100.2.3");
    // An upstream that answers every question after one second, with 203.0.113.77.
    let _slow = Bg::sh(
        &w.servers,
        r#"python3 -c '
import socket, struct, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("203.0.113.2", 53))
while True:
    q, peer = s.recvfrom(4096)
    time.sleep(1)
    r = q[:2] + b"\x81\x80" + q[4:6] + b"\x00\x01\x00\x00\x00\x00" + q[12:]
    r += b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([203, 0, 113, 77])
    s.sendto(r, peer)
'"#,
    );
    assert!(wait_until(5, || listening_on(
        &w.servers, "udp", FAR_IP, 53
    )));
    let gw = "10.100.2.1";
    // A asks over TCP and resets its connection before the answer comes back.
    let r = py(
        &a,
        10,
        &format!(
            "import socket, struct\n\
             q = bytes.fromhex(\"abcd01000001000000000000\") + b\"\\x06secret\\x07example\\x00\\x00\\x01\\x00\\x01\"\n\
             s = socket.create_connection((\"{gw}\", 53), timeout=3)\n\
             s.sendall(struct.pack(\"!H\", len(q)) + q)\n\
             s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack(\"ii\", 1, 0))\n\
             s.close(); print(\"asked\")\n"
        ),
    );
    assert_eq!(r.stdout().trim(), "asked", "{}", w.why(&r));
    // B connects at once (its flow may take A's slot) and listens for 3 s.
    let r = py(
        &b,
        10,
        &format!(
            "import socket\n\
             s = socket.create_connection((\"{gw}\", 53), timeout=3)\n\
             s.settimeout(3)\n\
             try: got = s.recv(4096)\n\
             except socket.timeout: got = b\"\"\n\
             print(\"got\", len(got), got.hex())\n"
        ),
    );
    assert_eq!(
        r.stdout().trim(),
        "got 0",
        "B must not receive A's answer: {}",
        w.why(&r)
    );
}

#[test]
fn a_ping_flood_to_the_gateway_is_rate_limited_per_container() {
    if !privileged("a_ping_flood_to_the_gateway_is_rate_limited_per_container") {
        return;
    }
    let (w, c1) = world_with_c1(&[]);
    let c2 = Netns::new("c2");
    assert_eq!(w.connect(NET, &c2, "c2"), "10.100.1.3");
    // A flood for 5 s (ping exits 1 when replies go missing: that is the point).
    let r = run(&c1, 20, &format!("ping -q -f -w 5 {GW}"));
    assert!(r.stdout().contains("packets transmitted"), "{}", w.why(&r));
    let limited = w.inspect(NET)["Gateway"]["RateLimited"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        limited > 0,
        "the flood was limited: {}",
        w.inspect(NET)["Gateway"]
    );
    assert!(c2.ping(GW), "the neighbour still reaches the gateway");
}

#[test]
fn ping_to_a_broadcast_address_does_not_claim_ping_is_unavailable() {
    if !privileged("ping_to_a_broadcast_address_does_not_claim_ping_is_unavailable") {
        return;
    }
    let (w, c1) = world_with_c1(&[]);
    let _ = run(&c1, 5, "ping -c 1 -W 1 198.51.100.255");
    let _ = run(&c1, 5, "ping -b -c 1 -W 1 255.255.255.255");
    assert!(
        c1.ping(FAR_IP),
        "ping through the NAT works: {}",
        w.plain_log()
    );
    assert!(
        !w.plain_log()
            .contains("ping to outside addresses unavailable"),
        "a refused destination is not 'ping unavailable': {}",
        w.plain_log()
    );
}

#[test]
fn connection_churn_never_exhausts_a_containers_quota() {
    if !privileged("connection_churn_never_exhausts_a_containers_quota") {
        return;
    }
    let (w, c1) = world_with_c1(&["--max-flows-per-endpoint", "10"]);
    let _echo = tcp_echo(&w.servers, 7000);
    // 300 short connections, one after another: each leaves the table when both sides closed.
    let r = py(
        &c1,
        60,
        "import socket\n\
         ok = 0\n\
         for i in range(300):\n\
         \x20   s = socket.create_connection((\"203.0.113.2\", 7000), timeout=5)\n\
         \x20   s.sendall(b\"x\\n\"); ok += s.recv(10) == b\"x\\n\"; s.close()\n\
         print(ok)\n",
    );
    assert_eq!(r.stdout().trim(), "300", "{}", w.why(&r));
    assert_eq!(
        w.stat(NET, "Counters", "RefusedEndpointQuota"),
        0,
        "{}",
        w.stats(NET)
    );
    assert!(
        wait_until(5, || w.stat(NET, "Flows", "Tcp") == 0),
        "{}",
        w.stats(NET)
    );
}
