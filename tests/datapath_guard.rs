//! Hostile frames from a container against the data path: a frame that makes the data path
//! panic costs that frame only (the network keeps forwarding, `inspect` and `/_ping` report
//! it), and IPv6 Router Advertisements from a container never reach its neighbours (RA guard).
//!
//! Frames are sent and watched with tiny python3 AF_PACKET programs inside the container
//! namespaces, so they bypass the container's own IPv6 stack.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Sends each hex-encoded frame given after the interface name, as is.
const SEND: &str = "import socket,sys
s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)
s.bind((sys.argv[1],0))
for h in sys.argv[2:]: s.send(bytes.fromhex(h))";

/// Prints `ready`, then every frame seen on the interface (hex, one per line) for N seconds.
const SNIFF: &str = "import socket,sys,time
s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW,socket.htons(3))
s.bind((sys.argv[1],0))
s.settimeout(0.2)
print('ready',flush=True)
end=time.time()+float(sys.argv[2])
while time.time()<end:
    try: f=s.recv(65535)
    except socket.timeout: continue
    print(f.hex(),flush=True)";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn mac_of(d: &Daemon, net: &str, ep: &str) -> [u8; 6] {
    let s = d.endpoint(net, ep)["MacAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let v: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

/// Sends raw Ethernet frames out of `eth0` of `ns`.
fn send_frames(ns: &Netns, frames: &[Vec<u8>]) {
    let mut args = vec![
        "python3".to_string(),
        "-c".into(),
        SEND.into(),
        "eth0".into(),
    ];
    args.extend(frames.iter().map(|f| hex(f)));
    let out = ns.exec(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "send frames: {}", stderr(&out));
}

/// Watches `eth0` of `watcher` while `act` runs; returns every frame it saw (hex).
fn frames_seen_during(watcher: &Netns, act: impl FnOnce()) -> String {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &watcher.name, "python3", "-u", "-c", SNIFF])
        .args(["eth0", "3"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sniffer");
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    stdout.read_exact(&mut first).expect("sniffer ready");
    assert_eq!(&first, b"ready\n");
    act();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let _ = child.wait();
    rest
}

/// `GET /_ping` on the daemon's socket: (status line, body).
fn ping_api(d: &Daemon) -> (String, String) {
    let mut s = UnixStream::connect(&d.socket).expect("connect API socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn a_panicking_frame_is_dropped_counted_and_the_network_keeps_forwarding() {
    if !privileged("a_panicking_frame_is_dropped_counted_and_the_network_keeps_forwarding") {
        return;
    }
    let d = Daemon::start_with_env(
        &["--network", "net=10.94.1.0/24"],
        &[("VSWITCHD_TEST_PANIC_ETHERTYPE", "0x88b5")],
    );
    let (a, b) = (Netns::new("a"), Netns::new("b"));
    d.connect("net", &a, "a");
    let ip_b = d.connect("net", &b, "b");
    assert!(a.ping(&ip_b), "baseline");
    let health = d.inspect("net")["Datapath"].clone();
    assert_eq!(health["Healthy"], true, "{health}");
    assert_eq!(health["Panics"], 0, "{health}");
    assert!(health["LastPanic"].is_null(), "{health}");
    let (status, body) = ping_api(&d);
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body, "OK");

    // A broadcast frame with the trigger EtherType: the data path panics on it.
    let mac_a = mac_of(&d, "net", "a");
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&mac_a);
    frame.extend_from_slice(&[0x88, 0xb5]);
    frame.extend_from_slice(&[0x5a; 46]);
    send_frames(&a, std::slice::from_ref(&frame));
    wait_for("the panic to be counted", || {
        d.inspect("net")["Datapath"]["Panics"] == 1
    });
    let health = d.inspect("net")["Datapath"].clone();
    assert_eq!(health["Healthy"], false, "{health}");
    let last = health["LastPanic"].as_str().unwrap_or_default().to_string();
    assert!(
        last.contains("test panic hook")
            && last.contains("len 60")
            && last.contains("02:42:0a:5e:01:02->ff:ff:ff:ff:ff:ff")
            && last.contains("type 0x88b5"),
        "the panic names the frame: {last}"
    );
    assert!(!last.contains("5a5a"), "no payload in the summary: {last}");
    assert!(a.ping(&ip_b), "forwarding goes on after a panic");
    assert!(b.ping("10.94.1.1"), "the gateway still answers");

    // A second one is counted, not logged again.
    send_frames(&a, &[frame]);
    wait_for("the second panic to be counted", || {
        d.inspect("net")["Datapath"]["Panics"] == 2
    });
    assert!(a.ping(&ip_b), "still forwarding");
    let log = d.log();
    assert_eq!(count(&log, "data path panicked"), 1, "logged once: {log}");
    assert_eq!(
        count(&log, "panicked at"),
        0,
        "the default hook stays quiet: {log}"
    );
    let (status, body) = ping_api(&d);
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        body.starts_with("DEGRADED\n") && body.contains("net: 2 panics, last: test panic hook"),
        "{body}"
    );
}

/// An all-nodes ICMPv6 frame of `ty` from `mac`, carrying `marker` after the ICMPv6 header.
fn icmpv6_frame(mac: [u8; 6], ty: u8, marker: &[u8]) -> Vec<u8> {
    let mut link_local = [0u8; 16];
    link_local[..2].copy_from_slice(&[0xfe, 0x80]);
    link_local[10..].copy_from_slice(&mac);
    let all_nodes = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let mut body = vec![64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
    body.extend_from_slice(marker);
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2(mac, [0x33, 0x33, 0, 0, 0, 1])
        .ipv6(link_local, all_nodes, 255)
        .icmpv6(etherparse::Icmpv6Type::Unknown {
            type_u8: ty,
            code_u8: 0,
            bytes5to8: [0; 4],
        })
        .write(&mut f, &body)
        .unwrap();
    f
}

/// The same frame with an 8-byte hop-by-hop header (PadN) before the ICMPv6 header.
fn behind_hop_by_hop(mut f: Vec<u8>) -> Vec<u8> {
    let ip = 14;
    let len = u16::from_be_bytes([f[ip + 4], f[ip + 5]]) + 8;
    f[ip + 4..ip + 6].copy_from_slice(&len.to_be_bytes());
    f[ip + 6] = 0;
    let hbh = [58, 0, 1, 4, 0, 0, 0, 0];
    f.splice(ip + 40..ip + 40, hbh);
    f
}

#[test]
fn router_advertisements_from_a_container_never_reach_its_neighbours() {
    if !privileged("router_advertisements_from_a_container_never_reach_its_neighbours") {
        return;
    }
    let d = Daemon::start(&["--network", "net=10.95.1.0/24"]);
    let (a, b) = (Netns::new("a"), Netns::new("b"));
    d.connect("net", &a, "a");
    d.connect("net", &b, "b");
    let mac_a = mac_of(&d, "net", "a");
    let marker = |n: u8| format!("vswitch-ra-guard-{n}").into_bytes();

    // Baseline: other ICMPv6 multicast from a (echo request, router solicitation) reaches b.
    let seen = frames_seen_during(&b, || {
        send_frames(
            &a,
            &[
                icmpv6_frame(mac_a, 128, &marker(1)),
                icmpv6_frame(mac_a, 133, &marker(2)),
            ],
        )
    });
    assert!(
        seen.contains(&hex(&marker(1))) && seen.contains(&hex(&marker(2))),
        "the watcher sees ordinary ICMPv6 from a: {seen}"
    );

    // Router Advertisements and Redirects, plain and behind a hop-by-hop header, do not.
    let hostile = [
        icmpv6_frame(mac_a, 134, &marker(3)),
        icmpv6_frame(mac_a, 137, &marker(4)),
        behind_hop_by_hop(icmpv6_frame(mac_a, 134, &marker(5))),
    ];
    let seen = frames_seen_during(&b, || send_frames(&a, &hostile));
    for n in 3..=5 {
        assert!(
            !seen.contains(&hex(&marker(n))),
            "frame {n} reached the neighbour: {seen}"
        );
    }
    let drops = d.endpoint("net", "a")["Counters"]["Drops"].clone();
    assert_eq!(drops["ra_guard"], 3, "counted as ra_guard: {drops}");

    // A chain cut short inside the frame is malformed, not forwarded.
    let mut cut = behind_hop_by_hop(icmpv6_frame(mac_a, 134, &marker(6)));
    cut.truncate(14 + 40 + 6);
    cut.resize(60, 0); // pad to the Ethernet minimum; the header still claims 8 bytes of HBH
    cut[14 + 40 + 1] = 9; // ...now 80 bytes: past the end of the frame
    send_frames(&a, &[cut]);
    wait_for("the malformed drop", || {
        d.endpoint("net", "a")["Counters"]["Drops"]["malformed"] == 1
    });
}
