//! Prometheus metrics as an operator scrapes them: `curl --unix-socket SOCK http://x/metrics`
//! and `vswitchd --metrics-addr` over TCP, checked with `promtool check metrics`.
//!
//! Walkthrough: two containers ping each other and the gateway → both endpoints' rx counters
//! move → c1 sends from an address it does not own → its spoofed_ip drop counter grows → c1
//! reaches a server through the NAT and asks the gateway's DNS → NAT and DNS counters move →
//! the attach histogram counts each attach, a refused connect counts as a failure → the TCP
//! listener serves the same series (and 404 elsewhere) → a bad or busy --metrics-addr stops
//! the daemon with one line.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use common::world::*;
use common::*;

const GW: &str = "10.100.1.1";
const METRICS: &str = "127.0.0.1:9323";

/// Series (`name{labels}`) → value of one exposition; comments skipped.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("line {l:?}"));
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("value in {l:?}")),
            };
            (series.to_string(), value)
        })
        .collect()
}

/// A scrape over the API socket.
fn scrape(d: &Daemon) -> String {
    must(
        "curl",
        &[
            "-sf",
            "--unix-socket",
            d.socket.to_str().unwrap(),
            "http://x/metrics",
        ],
    )
}

fn value(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("no series {series} in {:#?}", m.keys()))
}

/// The series of a port counter family for an endpoint of network "net".
fn port(family: &str, endpoint: &str) -> String {
    format!("vswitch_port_{family}_total{{network=\"{NET}\",endpoint=\"{endpoint}\"}}")
}

/// `promtool check metrics` on `text`; skipped loudly outside CI when promtool is missing.
fn promtool_accepts(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("promtool not available ({e}): install Debian's prometheus");
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{msg}");
            }
            eprintln!("\n*** SKIPPED promtool check: {msg} ***\n");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed: {}{}\n--- metrics ---\n{text}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn metrics_count_traffic_drops_nat_dns_and_attaches() {
    if !privileged("metrics_count_traffic_drops_nat_dns_and_attaches") {
        return;
    }
    let (w, c1) = world_with_c1(&["--metrics-addr", METRICS]);
    let c2 = Netns::new("c2");
    let ip2 = w.connect(NET, &c2, "c2");
    // A second connect of c2 is refused: an attach failure, not an attach.
    let again = w.ctl(&["network", "connect", NET, &c2.path(), "--name", "c2b"]);
    assert!(!again.status.success(), "c2 attached twice");

    assert!(c1.ping(&ip2) && c2.ping("10.100.1.2"), "containers ping");
    assert!(c1.ping(GW) && c2.ping(GW), "gateway pings");
    let m = parse(&scrape(&w));
    for ep in ["c1", "c2"] {
        assert!(value(&m, &port("rx_frames", ep)) > 0.0, "{ep} rx frames");
        assert!(value(&m, &port("rx_bytes", ep)) > 0.0, "{ep} rx bytes");
        assert!(value(&m, &port("tx_frames", ep)) > 0.0, "{ep} tx frames");
    }
    let replies = format!("vswitch_gateway_replies_total{{network=\"{NET}\",kind=\"echo\"}}");
    assert!(value(&m, &replies) >= 2.0, "gateway answered both pings");
    assert_eq!(value(&m, "vswitch_networks"), 1.0);
    assert_eq!(
        value(&m, &format!("vswitch_endpoints{{network=\"{NET}\"}}")),
        2.0
    );
    assert!(
        value(
            &m,
            &format!("vswitch_mac_table_entries{{network=\"{NET}\"}}")
        ) >= 2.0
    );
    assert_eq!(
        value(
            &m,
            &format!("vswitch_datapath_healthy{{network=\"{NET}\"}}")
        ),
        1.0
    );
    assert_eq!(value(&m, "vswitch_attach_duration_seconds_count"), 2.0);
    assert_eq!(
        value(&m, "vswitch_attach_duration_seconds_bucket{le=\"+Inf\"}"),
        2.0
    );
    assert!(value(&m, "vswitch_attach_duration_seconds_sum") > 0.0);
    assert_eq!(value(&m, "vswitch_attach_failures_total"), 1.0);
    assert!(
        m.keys()
            .any(|k| k.starts_with("vswitch_build_info{version=\"")),
        "build info"
    );

    // c1 sends from an address that is not its own: the switch drops it as spoofed.
    let spoofed = format!(
        "vswitch_port_drops_total{{network=\"{NET}\",endpoint=\"c1\",reason=\"spoofed_ip\"}}"
    );
    let before = value(&m, &spoofed);
    must_in(&c1, "ip addr add 10.100.1.77/24 dev eth0");
    assert!(
        !c1.exec(&["ping", "-c", "2", "-W", "1", "-I", "10.100.1.77", GW])
            .status
            .success(),
        "a spoofed ping must not be answered"
    );
    let m = parse(&scrape(&w));
    assert!(
        value(&m, &spoofed) > before,
        "spoofed_ip drops {before} → {}",
        value(&m, &spoofed)
    );

    // Egress through the NAT and a name asked of the gateway.
    let _echo = tcp_echo(&w.servers, 7000);
    let r = run(&c1, 10, "echo hi | socat -t 5 - TCP:203.0.113.2:7000");
    assert_eq!(r.stdout().trim(), "hi", "{}", w.why(&r));
    let r = run(&c1, 10, &format!("dig +short +tries=1 +time=3 @{GW} c2"));
    assert_eq!(r.stdout().trim(), ip2, "{}", w.why(&r));
    let text = scrape(&w);
    let m = parse(&text);
    let net = format!("{{network=\"{NET}\"}}");
    assert!(value(&m, &format!("vswitch_nat_tcp_opened_total{net}")) >= 1.0);
    assert!(value(&m, &format!("vswitch_nat_buffer_limit_bytes{net}")) > 0.0);
    let local = format!("vswitch_dns_queries_total{{network=\"{NET}\",outcome=\"local\"}}");
    assert!(value(&m, &local) >= 1.0, "DNS answered locally");
    assert!(
        m.contains_key(&format!(
            "vswitch_nat_flows{{network=\"{NET}\",protocol=\"tcp\"}}"
        )),
        "live flows by protocol"
    );
    promtool_accepts(&text);

    // The same series over TCP inside the world, with the format's content type.
    let out = w.world.exec(&[
        "curl",
        "-sf",
        "-D",
        "/dev/stderr",
        &format!("http://{METRICS}/metrics"),
    ]);
    assert!(out.status.success(), "TCP scrape: {}", stderr(&out));
    assert!(
        stderr(&out)
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{}",
        stderr(&out)
    );
    let tcp = parse(&stdout(&out));
    let series = |m: &BTreeMap<String, f64>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(series(&tcp), series(&parse(&scrape(&w))));
    promtool_accepts(&stdout(&out));
    for (method, path) in [("GET", "/"), ("GET", "/networks"), ("POST", "/metrics")] {
        let code = w.world.exec(&[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            method,
            &format!("http://{METRICS}{path}"),
        ]);
        assert_eq!(stdout(&code), "404", "{method} {path}");
    }
}

/// Runs a shell command in `ns`, panicking with its output on failure.
fn must_in(ns: &Netns, script: &str) {
    let out = ns.sh(script);
    assert!(
        out.status.success(),
        "{script}: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn a_bad_metrics_addr_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let sock = dir.path().join("s.sock");
    let vswitchd = bin("vswitchd");
    for bad in ["bogus", "127.0.0.1", "localhost:9323", "127.0.0.1:99999"] {
        let out = cmd(
            vswitchd.to_str().unwrap(),
            &[
                "--state-dir",
                state.to_str().unwrap(),
                "--socket",
                sock.to_str().unwrap(),
                "--metrics-addr",
                bad,
            ],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{bad}: {err}");
        assert_eq!(err.lines().count(), 1, "{bad}: {err}");
        assert!(err.contains("--metrics-addr") && err.contains(bad), "{err}");
        assert!(!sock.exists(), "{bad}: nothing served");
    }
}

#[test]
fn a_busy_metrics_addr_stops_the_daemon_with_one_line() {
    if !privileged("a_busy_metrics_addr_stops_the_daemon_with_one_line") {
        return;
    }
    let d = Daemon::start(&["--network", "m=10.96.7.0/24", "--metrics-addr", METRICS]);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let sock = dir.path().join("s.sock");
    let out = d.world.exec(&[
        bin("vswitchd").to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--socket",
        sock.to_str().unwrap(),
        "--metrics-addr",
        METRICS,
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("cannot listen on --metrics-addr {METRICS}")),
        "{err}"
    );
    // The first daemon still serves its metrics.
    let out = d
        .world
        .exec(&["curl", "-sf", &format!("http://{METRICS}/metrics")]);
    assert!(
        stdout(&out).contains("vswitch_networks 1"),
        "{}",
        stdout(&out)
    );
}
