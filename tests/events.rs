//! `vswitchctl events`: what a rootless user has instead of `docker events`.
//!
//! Walkthrough: a live `vswitchctl events --since NOW` → network create, connect, port add, port rm,
//! disconnect, network rm → the live reader prints them in that order as JSON lines →
//! `--since 1m --until 0s` replays the same → a container whose namespace dies shows up as
//! `endpoint lost`, then `disconnect` → a bad --since gets one line.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// (type, action, network, endpoint) of an event line.
fn key(v: &Value) -> (String, String, String, String) {
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    (s("type"), s("action"), s("network"), s("endpoint"))
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON event line ({e}): {line}"))
}

/// `vswitchctl events --since 1m --until 0s`: the kept events, then the command ends.
fn replay(d: &Daemon) -> Vec<Value> {
    let out = d.ctl_ok(&["events", "--since", "1m", "--until", "0s"]);
    out.lines().map(parse).collect()
}

fn k(t: &str, a: &str, n: &str, e: &str) -> (String, String, String, String) {
    (t.into(), a.into(), n.into(), e.into())
}

#[test]
fn a_live_reader_sees_the_lifecycle_in_order_and_since_replays_it() {
    if !privileged("a_live_reader_sees_the_lifecycle_in_order_and_since_replays_it") {
        return;
    }
    let d = Daemon::start(&["--network", "net1=10.78.0.0/24"]);
    // From now on: events sent before the reader has subscribed are replayed, so none is
    // missed however slowly it starts.
    let t0 = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
    let mut reader = Command::new(bin("vswitchctl"));
    reader
        .arg("--socket")
        .arg(&d.socket)
        .args(["events", "--since", &t0])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut live = Proc(reader.spawn().expect("run vswitchctl events"));
    let (tx, rx) = mpsc::channel();
    let out = live.0.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    d.ctl_ok(&["network", "create", "--subnet", "10.79.0.0/24", "net2"]);
    let c1 = Netns::new("c1");
    let ip = d.connect("net2", &c1, "web");
    d.ctl_ok(&["port", "add", "net2", "web", "127.0.0.1:18080:80"]);
    d.ctl_ok(&["port", "rm", "net2", "web", "127.0.0.1:18080:80"]);
    d.ctl_ok(&["network", "disconnect", "net2", "web"]);
    d.ctl_ok(&["network", "rm", "net2"]);

    let want = [
        k("network", "create", "net2", ""),
        k("endpoint", "connect", "net2", "web"),
        k("port", "publish", "net2", "web"),
        k("port", "unpublish", "net2", "web"),
        k("endpoint", "disconnect", "net2", "web"),
        k("network", "remove", "net2", ""),
    ];
    let mut seen = Vec::new();
    while seen.len() < want.len() {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("live events so far: {seen:#?}"));
        seen.push(parse(&line));
    }
    let keys: Vec<_> = seen.iter().map(key).collect();
    assert_eq!(keys, want, "{seen:#?}");
    assert_eq!(seen[0]["attributes"]["subnet"], "10.79.0.0/24");
    assert_eq!(seen[1]["attributes"]["ip"], ip.as_str());
    assert_eq!(seen[2]["attributes"]["mapping"], "127.0.0.1:18080:80/tcp");
    let time = seen[0]["time"].as_str().expect("time");
    assert!(
        time.ends_with('Z') && time.len() == "2026-11-29T15:04:05.123456789Z".len(),
        "RFC 3339 with nanoseconds: {time}"
    );

    // --since replays them (the daemon's own "net1" creation first), and --until ends it.
    let past: Vec<_> = replay(&d).iter().map(key).collect();
    assert_eq!(past.first(), Some(&k("network", "create", "net1", "")));
    assert_eq!(&past[1..], &want[..], "{past:#?}");
    // Without --since nothing is replayed: --until alone just ends at once.
    assert_eq!(d.ctl_ok(&["events", "--until", "0s"]), "");

    // A daemon that stops ends the stream; the reader exits 0.
    let mut d = d;
    d.stop();
    let ended = wait_until(5, || matches!(live.0.try_wait(), Ok(Some(_))));
    assert!(
        ended,
        "vswitchctl events still running after the daemon stopped"
    );
    assert!(live.0.wait().expect("status").success());
}

#[test]
fn a_container_whose_namespace_dies_is_reported_lost() {
    if !privileged("a_container_whose_namespace_dies_is_reported_lost") {
        return;
    }
    let d = Daemon::start(&["--network", "net1=10.78.0.0/24"]);
    let c1 = Netns::new("c1");
    d.connect("net1", &c1, "doomed");
    drop(c1);
    let lost = k("endpoint", "lost", "net1", "doomed");
    let gone = k("endpoint", "disconnect", "net1", "doomed");
    let mut events = Vec::new();
    let seen = wait_until(15, || {
        events = replay(&d);
        events.iter().any(|e| key(e) == gone)
    });
    assert!(seen, "no disconnect after the namespace died: {events:#?}");
    let keys: Vec<_> = events.iter().map(key).collect();
    let at = |want: &(String, String, String, String)| keys.iter().position(|x| x == want);
    assert!(at(&lost) < at(&gone), "lost, then disconnect: {keys:#?}");
    let ev = &events[at(&lost).expect("lost event")];
    assert!(
        ev["attributes"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("namespace"),
        "{ev}"
    );
}

#[test]
fn a_bad_time_gets_one_line() {
    if !privileged("a_bad_time_gets_one_line") {
        return;
    }
    let d = Daemon::start(&["--network", "net1=10.78.0.0/24"]);
    let out = d.ctl(&["events", "--since", "yesterday-ish"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("yesterday-ish"), "{}", stderr(&out));
}
