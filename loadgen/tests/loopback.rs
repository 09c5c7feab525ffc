//! vswitchd-loadgen against itself on 127.0.0.1: each mode does what bench-scale.sh reads
//! from it (counts that add up, no errors, the lines the script parses). No figures are
//! asserted, only that work was done and reported.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_vswitchd-loadgen");

/// A port free on 127.0.0.1 for TCP and UDP right now.
fn free_port() -> u16 {
    loop {
        let t = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = t.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A `serve` process, killed on drop; its stdout lines arrive on `lines`.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `serve ARGS` and waits until it holds `port` (TCP and/or UDP).
    fn start(args: &[&str], port: u16) -> Server {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        // Bound once our own bind of the same port fails (neither sets SO_REUSEPORT).
        let tcp = args.contains(&"--tcp");
        let udp = args.contains(&"--udp");
        let t0 = std::time::Instant::now();
        while (tcp && TcpListener::bind(("127.0.0.1", port)).is_ok())
            || (udp && UdpSocket::bind(("127.0.0.1", port)).is_ok())
        {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "serve never bound {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, lines }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).output().expect("run loadgen");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The value of `key=` in a `key=value` line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

#[test]
fn connrate_counts_greeted_connections_without_errors() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _srv = Server::start(&["--tcp", &addr], port);
    let out = run(&[
        "connrate",
        "--to",
        &addr,
        "--conns",
        "8",
        "--threads",
        "2",
        "--secs",
        "0.5",
    ]);
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(line.starts_with("connrate "), "{line}");
    let connects: u64 = field(&line, "connects").parse().expect("number");
    assert!(connects > 0, "{line}");
    assert_eq!(field(&line, "errors"), "0", "{line}");
    assert_eq!(field(&line, "done_when"), "greeting");
    assert_eq!(field(&line, "close"), "rst(SO_LINGER=0)");
}

#[test]
fn connrate_reports_refused_connections_as_errors() {
    let port = free_port(); // nothing listens there
    let addr = format!("127.0.0.1:{port}");
    let out = run(&["connrate", "--to", &addr, "--conns", "2", "--secs", "0.3"]);
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(field(&line, "connects"), "0", "{line}");
    assert_ne!(field(&line, "errors"), "0", "{line}");
    assert!(line.contains("ConnectionRefused"), "{line}");
}

#[test]
fn hold_opens_every_flow_and_keeps_it() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _srv = Server::start(
        &["--tcp", &addr, "--tcp-mode", "echo", "--udp", &addr],
        port,
    );
    let mut hold = Command::new(BIN)
        .args(["hold", "--to", &addr, "--tcp", "200", "--udp", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn hold");
    let mut line = String::new();
    BufReader::new(hold.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    // Count our own established connections to the server before letting go.
    let ss = Command::new("ss")
        .args([
            "-Htn",
            "state",
            "established",
            &format!("( dport = :{port} )"),
        ])
        .output();
    let _ = hold.kill();
    let _ = hold.wait();
    assert!(line.ends_with("ready\n"), "{line}");
    assert_eq!(field(&line, "tcp"), "200/200", "{line}");
    assert_eq!(field(&line, "udp"), "20/20", "{line}");
    assert_eq!(field(&line, "errors"), "0", "{line}");
    if let Some(ss) = ss.ok().filter(|o| o.status.success()) {
        let n = String::from_utf8_lossy(&ss.stdout).lines().count();
        assert_eq!(n, 200, "established connections while held");
    }
}

#[test]
fn udpflood_and_serve_agree_on_what_was_sent() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let srv = Server::start(&["--udp", &addr, "--idle-ms", "200"], port);
    let out = run(&["udpflood", "--to", &addr, "--size", "64", "--secs", "0.3"]);
    let sent_line = String::from_utf8_lossy(&out.stdout).to_string();
    let sent: u64 = field(&sent_line, "sent").parse().expect("number");
    assert!(sent > 0, "{sent_line}");
    let got = srv
        .lines
        .recv_timeout(Duration::from_secs(10))
        .expect("a burst report");
    assert!(got.starts_with("serve udp "), "{got}");
    let received: u64 = field(&got, "received").parse().expect("number");
    let highest: u64 = field(&got, "highest_seq").parse().expect("number");
    // Loopback may drop under a flood, but never invent datagrams.
    assert!(received > 0 && received <= sent, "{sent_line} / {got}");
    assert!(highest < sent, "{sent_line} / {got}");
    assert_eq!(field(&got, "bytes"), (received * 64).to_string(), "{got}");
}

#[test]
fn bad_arguments_get_one_line_errors() {
    for args in [
        &["connrate", "--to", "nowhere"][..],
        &["connrate", "--to", "127.0.0.1:1", "--secs", "0"],
        &["udpflood", "--to", "127.0.0.1:1", "--size", "4"],
        &["serve"],
    ] {
        let out = Command::new(BIN).args(args).output().expect("run");
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error:"), "{args:?}: {err}");
    }
}
