//! Flow-table churn at the daemon: thousands of connections and UDP flows opened and closed
//! through the NAT leave nothing behind (no flow, no file descriptor), and the network keeps
//! forwarding. The per-packet cost of many flows is measured by `scripts/bench-scale.sh`,
//! not asserted here.

mod common;

use common::world::*;
use common::*;

/// The daemon's open descriptors, by what they point at.
fn fds(w: &NatWorld) -> Vec<String> {
    let pid = w.pid().expect("daemon running");
    let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|l| l.display().to_string())
                .map(|l| {
                    if l.starts_with("socket:") {
                        "socket".into()
                    } else {
                        l
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Accepts, answers one line with itself, closes; forever (until killed).
const SERVER: &str = r#"python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("203.0.113.2", 7400)); s.listen(1024)
while True:
    c, _ = s.accept()
    try:
        c.sendall(c.recv(16))
    except OSError:
        pass
    c.close()
'"#;

/// Echoes every datagram back to its sender.
const UDP_ECHO: &str = r#"python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("203.0.113.2", 7401))
while True:
    d, a = s.recvfrom(64); s.sendto(d, a)
'"#;

#[test]
fn ten_thousand_connections_and_a_thousand_udp_flows_leave_no_flow_or_fd_behind() {
    if !privileged("ten_thousand_connections_and_a_thousand_udp_flows_leave_no_flow_or_fd_behind") {
        return;
    }
    let (w, c1) = world_with_c1(&["--udp-timeout", "2", "--max-flows", "20000"]);
    let _server = Bg::sh(&w.servers, SERVER);
    let _udp = Bg::sh(&w.servers, UDP_ECHO);
    wait_for("churn server", || {
        listening_on(&w.servers, "tcp", "203.0.113.2", 7400)
            && listening_on(&w.servers, "udp", "203.0.113.2", 7401)
    });
    // One flow first: the NAT keeps one UDP socket for asking the kernel which addresses
    // are the daemon's own (made on first use, held for good), which is not churn's doing.
    let r = run(&c1, 10, "echo warm | socat -t 3 - TCP:203.0.113.2:7400");
    assert_eq!(r.stdout().trim(), "warm", "{}", w.why(&r));
    let before = fds(&w);
    // 10,000 connections one after another; every tenth is reset instead of closed, and
    // every connection's echo must come back.
    let r = run(
        &c1,
        240,
        r#"python3 -c '
import socket, struct
ok = 0
for i in range(10000):
    s = socket.create_connection(("203.0.113.2", 7400), timeout=5)
    s.sendall(b"%d" % i)
    ok += s.recv(16) == b"%d" % i
    if i % 10 == 0:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
u = []
for i in range(1000):
    x = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); x.settimeout(5)
    x.sendto(b"u%d" % i, ("203.0.113.2", 7401)); u.append(x)
got = sum(1 for i, x in enumerate(u) if x.recv(16) == b"u%d" % i)
print(ok, got)
'"#,
    );
    assert_eq!(r.stdout().trim(), "10000 1000", "{}", w.why(&r));
    assert!(
        wait_until(10, || w.stat(NET, "Flows", "Tcp") == 0
            && w.stat(NET, "Flows", "Udp") == 0),
        "every flow left the table: {}",
        w.stats(NET)
    );
    // (An API connection of the stat calls above may take a moment to close.)
    assert!(
        wait_until(5, || fds(&w).len() <= before.len()),
        "the daemon holds no more descriptors than before: {before:?} -> {:?}\n{}",
        fds(&w),
        w.world.exec(&["ss", "-anpe"]).stdout.escape_ascii()
    );
    assert!(
        w.stat(NET, "Counters", "TcpOpened") >= 10_000,
        "{}",
        w.stats(NET)
    );
    assert_eq!(
        w.stat(NET, "Counters", "RefusedLimit"),
        0,
        "{}",
        w.stats(NET)
    );
    // And the network still forwards.
    let r = run(&c1, 10, "echo alive | socat -t 3 - TCP:203.0.113.2:7400");
    assert_eq!(r.stdout().trim(), "alive", "{}", w.why(&r));
}
