//! `vswitchctl capture`: what a rootless user has instead of `tcpdump -i docker0`.
//!
//! Walkthrough: two containers on net1 → a capture of the whole network to a file while they
//! ping each other and the gateway, stopped with SIGTERM → `tcpdump -r` reads both echo
//! requests and replies of both pings → `-c 3` stops by itself after exactly 3 frames →
//! `-w - | tcpdump -r -` streams → `--endpoint c3` sees only c3's frames → an unknown endpoint
//! or network, a bad count, an unwritable file and a ninth capture each get one line.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const NET: &str = "net1";
const GW: &str = "10.77.0.1";

fn daemon() -> Daemon {
    Daemon::start(&["--network", "net1=10.77.0.0/24"])
}

/// `vswitchctl capture ARGS` in the background, stdout to `out` (a file) when given.
fn start_capture(d: &Daemon, args: &[&str]) -> Proc {
    let before = d.log().matches("capture started").count();
    let mut cmd = Command::new(bin("vswitchctl"));
    cmd.arg("--socket")
        .arg(&d.socket)
        .arg("capture")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let p = Proc(cmd.spawn().expect("run vswitchctl capture"));
    wait_for("the capture to start", || {
        d.log().matches("capture started").count() > before
    });
    p
}

/// Stops a capture with SIGTERM; returns its stderr after it exits.
fn sigterm(p: Proc) -> (bool, String) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p.pid() as i32),
        nix::sys::signal::SIGTERM,
    );
    finish(p)
}

/// Waits for a capture to exit; (success, stderr).
fn finish(mut p: Proc) -> (bool, String) {
    let mut err = String::new();
    if let Some(mut s) = p.0.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    let status = p.0.wait().expect("wait for vswitchctl");
    (status.success(), err)
}

/// `tcpdump -n -r FILE [FILTER]`: one line per frame (panics on an unreadable file).
fn read_pcap(file: &std::path::Path, filter: &[&str]) -> Vec<String> {
    let mut args = vec!["-n", "-r", file.to_str().expect("path")];
    args.extend_from_slice(filter);
    let out = cmd("tcpdump", &args);
    assert!(
        out.status.success(),
        "tcpdump cannot read {}: {}",
        file.display(),
        stderr(&out)
    );
    stdout(&out).lines().map(str::to_string).collect()
}

fn has(lines: &[String], from: &str, to: &str, what: &str) -> bool {
    let want = format!("IP {from} > {to}: ICMP echo {what}");
    lines.iter().any(|l| l.contains(&want))
}

#[test]
fn capture_to_a_file_shows_pings_both_ways_between_containers_and_to_the_gateway() {
    if !privileged("capture_to_a_file_shows_pings_both_ways") {
        return;
    }
    let d = daemon();
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let ip1 = d.connect(NET, &c1, "c1");
    let ip2 = d.connect(NET, &c2, "c2");
    let file = d.dir.path().join("all.pcap");
    let cap = start_capture(&d, &["net1", "-w", file.to_str().unwrap()]);
    assert!(
        c1.exec(&["ping", "-c", "2", "-i", "0.2", &ip2])
            .status
            .success()
    );
    assert!(
        c2.exec(&["ping", "-c", "2", "-i", "0.2", GW])
            .status
            .success()
    );
    let (ok, err) = sigterm(cap);
    assert!(ok, "capture ends cleanly on SIGTERM: {err}");
    assert!(err.contains("frames captured, 0 dropped"), "{err}");

    let lines = read_pcap(&file, &["icmp"]);
    assert!(has(&lines, &ip1, &ip2, "request"), "{lines:#?}");
    assert!(has(&lines, &ip2, &ip1, "reply"), "{lines:#?}");
    assert!(has(&lines, &ip2, GW, "request"), "{lines:#?}");
    assert!(has(&lines, GW, &ip2, "reply"), "{lines:#?}");
    // Each frame crosses the switch once: 2 pings × (request + reply) × 2 peers.
    assert_eq!(lines.len(), 8, "{lines:#?}");
    // The frames are whole Ethernet frames with their MACs (LINKTYPE_ETHERNET).
    let eth = read_pcap(&file, &["-e", "icmp"]);
    assert!(
        eth.iter().all(|l| l.contains("02:42:0a:4d:00:")),
        "{eth:#?}"
    );
}

#[test]
fn count_stops_at_exactly_count_and_stdout_streams_into_tcpdump() {
    if !privileged("count_stops_at_exactly_count_and_stdout_streams_into_tcpdump") {
        return;
    }
    let d = daemon();
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    d.connect(NET, &c1, "c1");
    let ip2 = d.connect(NET, &c2, "c2");
    // Traffic until the captures are done.
    let pinger = Proc::spawn(
        "ip",
        &["netns", "exec", &c1.name, "ping", "-i", "0.05", &ip2],
    );

    let file = d.dir.path().join("three.pcap");
    let out = d.ctl(&["capture", NET, "-c", "3", "-w", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("3 frames captured"),
        "{}",
        stderr(&out)
    );
    assert_eq!(read_pcap(&file, &[]).len(), 3);

    // `-w -` into `tcpdump -r -`, which prints each frame as it reads it.
    let script = format!(
        "{} --socket {} capture {NET} -c 4 -w - | tcpdump -n -r -",
        bin("vswitchctl").display(),
        d.socket.display()
    );
    let out = cmd("sh", &["-c", &script]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(
        text.contains(&format!("> {ip2}: ICMP echo request")),
        "{text}"
    );
    drop(pinger);
}

#[test]
fn endpoint_capture_sees_only_that_endpoints_frames() {
    if !privileged("endpoint_capture_sees_only_that_endpoints_frames") {
        return;
    }
    let d = daemon();
    let (c1, c2, c3) = (Netns::new("c1"), Netns::new("c2"), Netns::new("c3"));
    let ip1 = d.connect(NET, &c1, "c1");
    let ip2 = d.connect(NET, &c2, "c2");
    let ip3 = d.connect(NET, &c3, "c3");
    let file = d.dir.path().join("c3.pcap");
    let cap = start_capture(
        &d,
        &["net1", "--endpoint", "c3", "-w", file.to_str().unwrap()],
    );
    assert!(
        c1.exec(&["ping", "-c", "2", "-i", "0.2", &ip2])
            .status
            .success()
    );
    assert!(
        c3.exec(&["ping", "-c", "2", "-i", "0.2", GW])
            .status
            .success()
    );
    assert!(c1.exec(&["ping", "-c", "1", &ip3]).status.success());
    let (ok, err) = sigterm(cap);
    assert!(ok, "{err}");

    let lines = read_pcap(&file, &["icmp"]);
    assert!(has(&lines, &ip3, GW, "request"), "{lines:#?}");
    assert!(has(&lines, GW, &ip3, "reply"), "{lines:#?}");
    assert!(has(&lines, &ip1, &ip3, "request"), "{lines:#?}");
    assert!(has(&lines, &ip3, &ip1, "reply"), "{lines:#?}");
    assert!(
        lines.iter().all(|l| l.contains(&ip3)),
        "only c3's frames: {lines:#?}"
    );
    assert_eq!(lines.len(), 6, "{lines:#?}");
}

#[test]
fn bad_captures_get_one_line() {
    if !privileged("bad_captures_get_one_line") {
        return;
    }
    let d = daemon();
    let c1 = Netns::new("c1");
    d.connect(NET, &c1, "c1");
    let one_line = |args: &[&str], code: i32, want: &str| {
        let out = d.ctl(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        if code != 2 {
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        }
    };
    let devnull = ["-w", "/dev/null"];
    one_line(
        &[&["capture", NET, "--endpoint", "nobody"][..], &devnull].concat(),
        1,
        "error: container nobody is not connected to network net1",
    );
    one_line(
        &[&["capture", "nonet"][..], &devnull].concat(),
        1,
        "error: network nonet not found",
    );
    one_line(
        &["capture", NET, "-c", "0", "-w", "/dev/null"],
        2,
        "--count",
    );
    one_line(
        &["capture", NET, "-s", "300000", "-w", "/dev/null"],
        2,
        "300000",
    );
    one_line(
        &["capture", NET, "-w", "/nonexistent/dir/x.pcap"],
        1,
        "error: cannot write /nonexistent/dir/x.pcap",
    );

    // Eight captures at once are fine; the ninth is refused.
    let running: Vec<Proc> = (0..8)
        .map(|_| start_capture(&d, &["net1", "-w", "/dev/null"]))
        .collect();
    one_line(
        &["capture", NET, "-w", "/dev/null"],
        1,
        "network net1 already has 8 captures running",
    );
    for p in running {
        let (ok, err) = sigterm(p);
        assert!(ok, "{err}");
    }
    // Their slots are free again.
    let p = start_capture(&d, &["net1", "-w", "/dev/null"]);
    std::thread::sleep(Duration::from_millis(100));
    assert!(sigterm(p).0);
}

#[test]
fn a_capture_ends_when_its_client_goes_away_or_the_daemon_stops() {
    if !privileged("a_capture_ends_when_its_client_goes_away_or_the_daemon_stops") {
        return;
    }
    let mut d = daemon();
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    d.connect(NET, &c1, "c1");
    let ip2 = d.connect(NET, &c2, "c2");

    // A client killed outright: the daemon ends its capture (at the latest when the next
    // frame finds nobody to send it to) and its slot is free again.
    let mut gone = start_capture(&d, &["net1", "-w", "/dev/null"]);
    let _ = gone.0.kill();
    let _ = gone.0.wait();
    assert!(
        c1.exec(&["ping", "-c", "2", "-i", "0.2", &ip2])
            .status
            .success()
    );
    let ended = wait_until(10, || {
        common::world::strip_ansi(&d.log()).contains("client_gone=true")
    });
    assert!(ended, "capture not ended: {}", d.log());

    // A daemon that stops ends the capture cleanly: the client reports and exits 0, and the
    // file is a whole pcap.
    let file = d.dir.path().join("until-stop.pcap");
    let cap = start_capture(&d, &["net1", "-w", file.to_str().unwrap()]);
    assert!(
        c1.exec(&["ping", "-c", "2", "-i", "0.2", &ip2])
            .status
            .success()
    );
    d.stop();
    let (ok, err) = finish(cap);
    assert!(ok, "{err}");
    assert!(err.contains("frames captured, 0 dropped"), "{err}");
    assert_eq!(read_pcap(&file, &["icmp"]).len(), 4);
}
