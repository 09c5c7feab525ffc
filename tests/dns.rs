//! The embedded DNS, as `docker run` users know it: every network's gateway answers on port 53
//! for the names and aliases of the containers on the networks the asking container is
//! attached to, and forwards everything else to the daemon's upstream resolvers.
//!
//! The upstream here is a dnsmasq that the test runs in the SERVERS namespace (203.0.113.2);
//! every daemon gets `--dns` explicitly, so the machine's /etc/resolv.conf is never used and
//! nothing leaves the test's namespaces. See `tests/common/world.rs` and `tests/common/dns.rs`.
//!
//! Walkthrough: names, aliases, case, isolation between networks, multi-homed containers and
//! shared aliases → disconnect, PTR, AAAA → daemon restart → forwarding over UDP and TCP,
//! truncation → upstream down → internal networks → host.vswitch.internal → malformed
//! queries → `vswitchctl run` gets resolv.conf, hosts and hostname.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::dns::*;
use common::world::*;
use common::*;

const NET: &str = "net";
const GW: &str = "10.100.1.1";
const OTHER_GW: &str = "10.100.2.1";

/// The world with network "net" 10.100.1.0/24, upstream 203.0.113.2, plus `extra` flags.
fn world(extra: &[&str]) -> NatWorld {
    let mut args = vec!["--network", "net=10.100.1.0/24", "--dns", UPSTREAM_IP];
    args.extend_from_slice(extra);
    NatWorld::start(&args)
}

/// Connects `ns` to `network` as `name` with these aliases; returns its address.
fn connect_aliases(
    w: &NatWorld,
    network: &str,
    ns: &Netns,
    name: &str,
    aliases: &[&str],
) -> String {
    let mut extra = Vec::new();
    for a in aliases {
        extra.push("--alias");
        extra.push(*a);
    }
    w.connect_with(network, ns, name, &extra)
}

/// Checks that `d` answered NOERROR with exactly `want`, with the daemon log on failure.
#[track_caller]
fn assert_resolves(w: &NatWorld, d: &Dig, want: &[&str], what: &str) {
    assert!(
        d.resolves_to(want),
        "{what}: want NOERROR {want:?}, got {d}\n--- daemon log ---\n{}",
        w.plain_log()
    );
}

#[track_caller]
fn assert_status(w: &NatWorld, d: &Dig, want: &str, what: &str) {
    assert_eq!(
        d.status(),
        want,
        "{what}: {d}\n--- daemon log ---\n{}",
        w.plain_log()
    );
}

#[test]
fn names_and_aliases_resolve_within_the_networks_of_the_asker() {
    if !privileged("names_and_aliases_resolve_within_the_networks_of_the_asker") {
        return;
    }
    let w = world(&["--dns-timeout", "1"]);
    w.ctl_ok(&["network", "create", "--subnet", "10.100.2.0/24", "other"]);
    let (web, peer, hidden, multi) = (
        Netns::new("web"),
        Netns::new("peer"),
        Netns::new("hidden"),
        Netns::new("multi"),
    );
    let ip_web = connect_aliases(&w, NET, &web, "web", &["www", "Api", "shared"]);
    let ip_peer = connect_aliases(&w, NET, &peer, "peer", &["shared"]);
    let ip_hidden = w.connect("other", &hidden, "hidden");
    let ip_multi = w.connect(NET, &multi, "multi");
    let ip_multi2 = w.connect("other", &multi, "multi");

    // inspect shows the aliases per endpoint.
    let ep = w.endpoint(NET, "web");
    let aliases: Vec<&str> = ep["Aliases"]
        .as_array()
        .unwrap_or_else(|| panic!("inspect: no Aliases array on the endpoint: {ep}"))
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for a in ["www", "Api", "shared"] {
        assert!(
            aliases.contains(&a),
            "inspect Aliases {aliases:?} lacks {a}"
        );
    }

    // The name and every alias, from a peer, any case, over UDP and TCP; A records, TTL 600.
    for q in ["web", "www", "api", "Api", "WEB", "wWw.", "APi"] {
        let d = dig(&peer, GW, q);
        assert_resolves(&w, &d, &[&ip_web], &format!("peer asks {q}"));
        assert_eq!(d.answers[0].ttl, 600, "TTL 600: {d}");
        assert!(d.flag("qr"), "{d}");
    }
    let d = dig(&peer, GW, "+tcp web");
    assert_resolves(&w, &d, &[&ip_web], "web over TCP");
    // A container resolves itself and its peer.
    assert_resolves(&w, &dig(&web, GW, "web"), &[&ip_web], "web asks web");
    assert_resolves(&w, &dig(&web, GW, "peer"), &[&ip_peer], "web asks peer");

    // Names of a network the asker is not on: NXDOMAIN, both ways, whatever gateway it asks.
    let d = dig(&peer, GW, "hidden");
    assert_status(
        &w,
        &d,
        "NXDOMAIN",
        "peer (net only) asks hidden (other only)",
    );
    let d = dig(&hidden, OTHER_GW, "web");
    assert_status(
        &w,
        &d,
        "NXDOMAIN",
        "hidden (other only) asks web (net only)",
    );
    let d = dig(&hidden, OTHER_GW, "www");
    assert_status(&w, &d, "NXDOMAIN", "hidden asks the alias www");
    let d = dig(&hidden, OTHER_GW, "hidden");
    assert_resolves(&w, &d, &[&ip_hidden], "hidden asks itself on other");

    // A container on both networks resolves names of both, through either gateway.
    for gw in [GW, OTHER_GW] {
        assert_resolves(&w, &dig(&multi, gw, "web"), &[&ip_web], "multi asks web");
        assert_resolves(
            &w,
            &dig(&multi, gw, "hidden"),
            &[&ip_hidden],
            "multi asks hidden",
        );
    }
    // And each network sees it under its own address there.
    assert_resolves(
        &w,
        &dig(&peer, GW, "multi"),
        &[&ip_multi],
        "peer asks multi",
    );
    assert_resolves(
        &w,
        &dig(&hidden, OTHER_GW, "multi"),
        &[&ip_multi2],
        "hidden asks multi",
    );

    // A shared alias: both addresses, and the order rotates between queries.
    let mut firsts = HashSet::new();
    for _ in 0..8 {
        let d = dig(&multi, GW, "shared");
        assert_resolves(&w, &d, &[&ip_web, &ip_peer], "shared alias");
        firsts.insert(d.addrs()[0].clone());
    }
    assert_eq!(
        firsts.len(),
        2,
        "the order of a shared alias rotates between queries: first was always {firsts:?}"
    );
}

#[test]
fn disconnect_removes_the_name_ptr_and_aaaa() {
    if !privileged("disconnect_removes_the_name_ptr_and_aaaa") {
        return;
    }
    let w = world(&["--dns-timeout", "1"]);
    let (web, peer) = (Netns::new("web"), Netns::new("peer"));
    let ip_web = connect_aliases(&w, NET, &web, "web", &["www"]);
    let ip_peer = w.connect(NET, &peer, "peer");

    // PTR for a container address → its name.
    let o: Vec<&str> = ip_web.split('.').collect();
    let arpa = format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0]);
    let d = dig(&peer, GW, &format!("-x {ip_web}"));
    assert_status(&w, &d, "NOERROR", "PTR of web");
    assert!(
        d.answers
            .iter()
            .any(|r| r.rtype == "PTR" && r.data == "web." && r.name == format!("{arpa}.")),
        "PTR {arpa} -> web.: {d}"
    );
    let d = dig(&web, GW, &format!("-x {ip_peer}"));
    assert!(
        d.answers
            .iter()
            .any(|r| r.rtype == "PTR" && r.data == "peer."),
        "PTR of peer -> peer.: {d}"
    );

    // AAAA for a known name: NOERROR, no answers (no IPv6 yet, but the name exists).
    for q in ["web", "www"] {
        let d = dig(&peer, GW, &format!("{q} AAAA"));
        assert_status(&w, &d, "NOERROR", &format!("AAAA {q}"));
        assert!(d.answers.is_empty(), "AAAA {q} has no answers: {d}");
    }

    // Disconnect: the name and its aliases are gone (NXDOMAIN, not forwarded).
    w.ctl_ok(&["network", "disconnect", NET, "web"]);
    let mut last = None;
    let gone = wait_until(3, || {
        let a = dig(&peer, GW, "web");
        let b = dig(&peer, GW, "www");
        let ok = a.status() == "NXDOMAIN" && b.status() == "NXDOMAIN";
        last = Some(format!("{a}\n{b}"));
        ok
    });
    assert!(
        gone,
        "web and www are NXDOMAIN after disconnect: {}\n--- daemon log ---\n{}",
        last.unwrap_or_default(),
        w.plain_log()
    );
    let d = dig(&peer, GW, &format!("-x {ip_web}"));
    assert!(
        !d.answers.iter().any(|r| r.data == "web."),
        "no PTR to web. after disconnect: {d}"
    );
    // The peer is still there; a new connect brings a name back at once.
    assert_resolves(&w, &dig(&peer, GW, "peer"), &[&ip_peer], "peer stays");
    let web2 = Netns::new("web2");
    let ip_web2 = w.connect(NET, &web2, "web");
    assert_resolves(
        &w,
        &dig(&peer, GW, "web"),
        &[&ip_web2],
        "web again after reconnect",
    );
}

#[test]
fn restart_keeps_answering_for_attached_containers() {
    if !privileged("restart_keeps_answering_for_attached_containers") {
        return;
    }
    let mut w = world(&["--dns-timeout", "1"]);
    let (web, peer) = (Netns::new("web"), Netns::new("peer"));
    let ip_web = connect_aliases(&w, NET, &web, "web", &["www"]);
    let ip_peer = w.connect(NET, &peer, "peer");
    assert_resolves(&w, &dig(&peer, GW, "web"), &[&ip_web], "before restart");

    w.d.stop();
    w.d.restart();
    let mut last = String::new();
    let ok = wait_until(15, || {
        let d = dig(&peer, GW, "www");
        let ok = d.resolves_to(&[&ip_web]);
        last = d.to_string();
        ok
    });
    assert!(
        ok,
        "www after a restart: {last}\n--- daemon log ---\n{}",
        w.plain_log()
    );
    assert_resolves(&w, &dig(&peer, GW, "WEB"), &[&ip_web], "web after restart");
    assert_resolves(
        &w,
        &dig(&web, GW, "+tcp peer"),
        &[&ip_peer],
        "peer after restart, TCP",
    );
    let ep = w.endpoint(NET, "web");
    assert!(
        ep["Aliases"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "www")),
        "aliases persist across a restart: {ep}"
    );
}

#[test]
fn forwards_to_the_upstream_over_udp_and_tcp_with_truncation() {
    if !privileged("forwards_to_the_upstream_over_udp_and_tcp_with_truncation") {
        return;
    }
    let w = world(&[]);
    let up = Upstream::start(&w);
    let c1 = Netns::new("c1");
    w.connect(NET, &c1, "c1");
    // The upstream itself works from the world (fixture check before blaming the daemon).
    let d = dig(&w.world, UPSTREAM_IP, "fixture.fwd.test");
    assert!(
        d.resolves_to(&[FWD_ADDR]),
        "fixture: dnsmasq answers: {d}\n{}",
        up.log()
    );

    let d = dig(&c1, GW, "fwd.test");
    assert_resolves(&w, &d, &[FWD_ADDR], "forwarded over UDP");
    let d = dig(&c1, GW, "+tcp tcp.fwd.test");
    assert_resolves(&w, &d, &[FWD_ADDR], "forwarded, container asks over TCP");
    let d = dig(&c1, GW, "Mixed.FWD.Test");
    assert_resolves(&w, &d, &[FWD_ADDR], "forwarded, mixed case");
    assert!(
        up.saw("fwd.test") && up.saw("tcp.fwd.test"),
        "the upstream got the queries: {}",
        up.log()
    );
    assert!(
        up.log().contains(&format!("from {WORLD_IP}")),
        "queries come from the daemon's world address: {}",
        up.log()
    );

    // big.test: ~1.7 KB of TXT. Over UDP only, the answer respects 512 bytes (or the EDNS
    // size asked for) and says TC; dig's default retries over TCP and gets all of it.
    for (args, limit) in [
        ("big.test TXT +notcp +ignore +bufsize=512", 512),
        ("big.test TXT +notcp +ignore +noedns", 512),
        ("big.test TXT +notcp +ignore", 1232),
    ] {
        let d = dig(&c1, GW, args);
        assert!(
            d.status.is_some(),
            "{args}: an answer: {d}\n{}",
            w.plain_log()
        );
        assert!(d.flag("tc"), "{args}: TC set: {d}\n{}", w.plain_log());
        assert!(
            d.answers.len() < BIG_TXT_RECORDS,
            "{args}: a truncated answer is not the whole set: {d}"
        );
        let size = msg_size(&d);
        assert!(
            size.is_some_and(|n| n <= limit),
            "{args}: {size:?} bytes > {limit}: {d}"
        );
    }
    let d = dig(&c1, GW, "big.test TXT +bufsize=512");
    assert_status(&w, &d, "NOERROR", "big.test, dig's default (UDP then TCP)");
    assert!(
        d.run.stdout().contains("Truncated, retrying in TCP mode"),
        "dig saw TC over UDP first: {d}"
    );
    assert_eq!(
        d.answers.len(),
        BIG_TXT_RECORDS,
        "full answer over TCP: {d}"
    );
    assert!(!d.flag("tc"), "{d}");
    let d = dig(&c1, GW, "+tcp big.test TXT");
    assert_eq!(d.answers.len(), BIG_TXT_RECORDS, "full answer, +tcp: {d}");
    assert!(
        d.answers.iter().all(|r| r.rtype == "TXT"),
        "TXT records: {d}"
    );
    // A 4096-byte EDNS buffer: the whole answer (~1.7 KB) over UDP, or, if the daemon keeps
    // its own UDP answers within one 1500-byte frame, TC and at most 1472 bytes. Either way an
    // answer arrives (an unfragmented 1.7 KB datagram would be lost on the TAP).
    let d = dig(&c1, GW, "big.test TXT +notcp +ignore +bufsize=4096");
    let size = msg_size(&d);
    assert!(
        (d.answers.len() == BIG_TXT_RECORDS && !d.flag("tc"))
            || (d.flag("tc") && size.is_some_and(|n| n <= 1472)),
        "EDNS 4096: the full answer, or TC within one frame: {d}\n{}",
        w.plain_log()
    );
}

/// dig's ";; MSG SIZE  rcvd: N" of the last message.
fn msg_size(d: &Dig) -> Option<usize> {
    d.run
        .stdout()
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(";; MSG SIZE  rcvd: "))
        .and_then(|n| n.trim().parse().ok())
}

#[test]
fn upstream_down_gives_servfail_within_the_timeout() {
    if !privileged("upstream_down_gives_servfail_within_the_timeout") {
        return;
    }
    // (upstreams, --dns-timeout): nobody at 203.0.113.99 (silence, then host unreachable);
    // 198.51.100.2 is up but nothing listens on 53 (port unreachable); both.
    for (ups, timeout) in [
        (vec![NOBODY_IP], 1u64),
        (vec![SERVER_IP], 1),
        (vec![NOBODY_IP, SERVER_IP], 1),
        (vec![NOBODY_IP], 2),
    ] {
        let mut args = vec!["--network", "net=10.100.1.0/24"];
        for u in &ups {
            args.extend_from_slice(&["--dns", u]);
        }
        let t = timeout.to_string();
        args.extend_from_slice(&["--dns-timeout", &t]);
        let w = NatWorld::start(&args);
        let c1 = Netns::new("c1");
        let ip = w.connect(NET, &c1, "c1");
        let bound = Duration::from_secs(timeout * ups.len() as u64 + 1);
        for q in ["fwd.test", "+tcp tcp.fwd.test"] {
            let start = Instant::now();
            let d = dig(&c1, GW, &format!("+time=15 {q}"));
            let took = start.elapsed();
            assert_status(
                &w,
                &d,
                "SERVFAIL",
                &format!("{q} with upstreams {ups:?} down"),
            );
            // dig and `ip netns exec` themselves take a few tens of ms; allow 1 s of slack.
            assert!(
                took <= bound + Duration::from_secs(1),
                "SERVFAIL after {took:?}, bound {bound:?} (+1 s slack) for {ups:?} \
                 --dns-timeout {timeout}: {d}"
            );
        }
        // Local names do not depend on the upstream.
        let start = Instant::now();
        assert_resolves(&w, &dig(&c1, GW, "c1"), &[&ip], "local name, upstream down");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "local answer is immediate"
        );
    }

    // A dead first upstream, a live second one: the answer comes from the second.
    let w = NatWorld::start(&[
        "--network",
        "net=10.100.1.0/24",
        "--dns",
        NOBODY_IP,
        "--dns",
        UPSTREAM_IP,
        "--dns-timeout",
        "1",
    ]);
    let up = Upstream::start(&w);
    let c1 = Netns::new("c1");
    w.connect(NET, &c1, "c1");
    let d = dig(&c1, GW, "+time=10 second.fwd.test");
    assert_resolves(&w, &d, &[FWD_ADDR], "second upstream answers");
    assert!(up.saw("second.fwd.test"), "{}", up.log());
}

#[test]
fn internal_network_resolves_local_names_and_refuses_the_rest() {
    if !privileged("internal_network_resolves_local_names_and_refuses_the_rest") {
        return;
    }
    let w = world(&[]);
    let up = Upstream::start(&w);
    w.ctl_ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.100.9.0/24",
        "int",
    ]);
    // (Not "a" or "c": dig would read those as a type or class.)
    let (alpha, beta, gamma) = (Netns::new("alpha"), Netns::new("beta"), Netns::new("gamma"));
    let ip_alpha = w.connect("int", &alpha, "alpha");
    let ip_beta = connect_aliases(&w, "int", &beta, "beta", &["bee"]);
    w.connect(NET, &gamma, "gamma");

    assert_resolves(
        &w,
        &dig(&alpha, "10.100.9.1", "beta"),
        &[&ip_beta],
        "internal: beta",
    );
    assert_resolves(
        &w,
        &dig(&alpha, "10.100.9.1", "BEE"),
        &[&ip_beta],
        "internal: alias",
    );
    let d = dig(&beta, "10.100.9.1", "+tcp alpha");
    assert_resolves(&w, &d, &[&ip_alpha], "internal: alpha, TCP");
    for q in ["int-udp.fwd.test", "+tcp int-tcp.fwd.test"] {
        let d = dig(&alpha, "10.100.9.1", q);
        assert_status(&w, &d, "REFUSED", &format!("internal network, {q}"));
        assert!(d.answers.is_empty(), "{d}");
    }
    // Control: the same upstream answers the non-internal network, so the log is live.
    assert_resolves(
        &w,
        &dig(&gamma, GW, "ctl.fwd.test"),
        &[FWD_ADDR],
        "non-internal forwards",
    );
    assert!(
        up.saw("ctl.fwd.test"),
        "control query reached dnsmasq: {}",
        up.log()
    );
    assert!(
        !up.saw("int-udp.fwd.test") && !up.saw("int-tcp.fwd.test"),
        "an internal network never forwards: {}",
        up.log()
    );
}

#[test]
fn host_vswitch_internal_only_with_host_loopback() {
    if !privileged("host_vswitch_internal_only_with_host_loopback") {
        return;
    }
    let w = world(&["--dns-timeout", "1"]);
    let _up = Upstream::start(&w);
    w.ctl_ok(&[
        "network",
        "create",
        "--subnet",
        "10.100.10.0/24",
        "--opt",
        "host_loopback=true",
        "hl",
    ]);
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    w.connect(NET, &c1, "c1");
    w.connect("hl", &c2, "c2");

    let d = dig(&c2, "10.100.10.1", "host.vswitch.internal");
    assert_resolves(&w, &d, &["10.100.10.1"], "host_loopback=true");
    let d = dig(&c2, "10.100.10.1", "+tcp HOST.vswitch.Internal");
    assert_resolves(
        &w,
        &d,
        &["10.100.10.1"],
        "host_loopback=true, TCP, any case",
    );

    let d = dig(&c1, GW, "host.vswitch.internal");
    assert!(
        !d.addrs().iter().any(|a| a == GW || a == "10.100.10.1"),
        "default network: host.vswitch.internal is not the gateway: {d}"
    );
}

#[test]
fn malformed_queries_do_not_stop_the_responder() {
    if !privileged("malformed_queries_do_not_stop_the_responder") {
        return;
    }
    let w = world(&["--dns-timeout", "1"]);
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let ip1 = w.connect(NET, &c1, "c1");
    w.connect(NET, &c2, "c2");
    let dir = w.dir.path();
    assert_resolves(&w, &dig(&c2, GW, "c1"), &[&ip1], "before");

    let mut random = vec![0u8; 300];
    let mut x: u32 = 0x1234_5678;
    for b in random.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let five_questions = [0xab, 0xcd, 0x01, 0x00, 0, 5, 0, 0, 0, 0, 0, 0];
    let mut cut_question = query_bytes(0x4242, "c1", 1);
    cut_question.truncate(15);
    let mut bad_label = query_bytes(0x4343, "c1", 1);
    bad_label[12] = 0xc0; // compression pointer to itself
    bad_label[13] = 12;
    let mut response = query_bytes(0x4444, "c1", 1);
    response[2] |= 0x80; // QR set: a response, not a query
    let mut long_label = vec![0x45, 0x45, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 63];
    long_label.extend_from_slice(&[b'a'; 20]); // label says 63, packet ends after 20
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", random.clone()),
        ("truncated header", vec![0x12, 0x34, 0x01]),
        ("empty", vec![]),
        ("header claiming 5 questions", five_questions.to_vec()),
        ("question cut short", cut_question),
        ("compression loop", bad_label),
        ("label past the end", long_label),
        ("a response", response),
    ];
    for (what, bytes) in &cases {
        let reply = send_raw(&c1, dir, GW, false, bytes);
        if reply.len() >= 12 {
            let rcode = reply[3] & 0x0f;
            assert!(
                reply[2] & 0x80 != 0 && rcode != 0,
                "{what}: a reply must be an error (FORMERR), got rcode {rcode}: {reply:02x?}"
            );
            if bytes.len() >= 2 {
                assert_eq!(&reply[..2], &bytes[..2], "{what}: the reply echoes the id");
            }
        }
        if *what == "header claiming 5 questions" && !reply.is_empty() {
            assert_eq!(reply[3] & 0x0f, 1, "FORMERR: {reply:02x?}");
        }
        let d = dig(&c2, GW, "c1");
        assert_resolves(&w, &d, &[&ip1], &format!("right after UDP {what}"));
    }

    // TCP: garbage after a length prefix, a length larger than what follows, a half header.
    let mut framed = (random.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&random);
    let mut framed5 = 12u16.to_be_bytes().to_vec();
    framed5.extend_from_slice(&five_questions);
    let mut short = 200u16.to_be_bytes().to_vec();
    short.extend_from_slice(&query_bytes(0x5555, "c1", 1));
    for (what, bytes) in [
        ("framed random bytes", framed),
        ("framed 5 questions", framed5),
        ("length beyond the data", short),
        ("one byte", vec![0x00]),
        ("zero length", vec![0, 0]),
    ] {
        send_raw(&c1, dir, GW, true, &bytes);
        let d = dig(&c2, GW, "+tcp c1");
        assert_resolves(&w, &d, &[&ip1], &format!("TCP right after TCP {what}"));
        let d = dig(&c2, GW, "c1");
        assert_resolves(&w, &d, &[&ip1], &format!("UDP right after TCP {what}"));
    }

    // A burst of garbage from c1, then a normal query from c1 itself.
    let r = run(
        &c1,
        20,
        &format!(
            "for i in $(seq 200); do head -c $((i % 40 + 1)) /dev/urandom; done | \
             socat -b 37 -u - UDP:{GW}:53"
        ),
    );
    assert!(r.ok(), "{r}");
    assert_resolves(&w, &dig(&c1, GW, "c1"), &[&ip1], "after a burst of garbage");
    // The well-formed raw query works too (the raw path itself is fine).
    let reply = send_raw(&c1, dir, GW, false, &query_bytes(0x6666, "c1", 1));
    assert!(
        reply.len() > 12 && reply[..2] == [0x66, 0x66] && reply[3] & 0x0f == 0,
        "raw well-formed query: {reply:02x?}"
    );
}

#[test]
fn run_gets_resolv_conf_hosts_and_hostname() {
    if !privileged("run_gets_resolv_conf_hosts_and_hostname") {
        return;
    }
    let w = world(&["--dns-timeout", "1"]);
    let _up = Upstream::start(&w);
    let other = Netns::new("other");
    let ip_other = connect_aliases(&w, NET, &other, "other-container", &["oc"]);

    let out = w.ctl(&[
        "run",
        "--network",
        NET,
        "--name",
        "web",
        "--",
        "sh",
        "-c",
        "cat /etc/resolv.conf; echo '--- hosts'; cat /etc/hosts; echo '--- hostname'; hostname; \
         echo '--- addr'; ip -4 -o addr show eth0; echo '--- getent'; \
         getent hosts other-container; getent hosts oc; getent hosts web; \
         getent hosts fwd.test; echo '--- end'",
    ]);
    let text = stdout(&out);
    let why = format!(
        "{text}\n--- stderr ---\n{}\n--- daemon log ---\n{}",
        stderr(&out),
        w.plain_log()
    );
    assert!(out.status.success(), "run: {why}");
    let section = |name: &str| -> String {
        let start = text
            .find(&format!("--- {name}\n"))
            .map(|i| i + name.len() + 5)
            .unwrap_or(0);
        let rest = &text[start..];
        rest[..rest.find("\n---").map(|i| i + 1).unwrap_or(rest.len())].to_string()
    };
    let resolv = &text[..text.find("--- hosts").unwrap_or(0)];
    let ns: Vec<&str> = resolv
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(str::trim)
        .collect();
    assert_eq!(ns, vec![GW], "resolv.conf names the gateway only: {why}");

    let my_ip = section("addr")
        .split_whitespace()
        .find(|t| t.contains('/'))
        .and_then(|t| t.split('/').next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no address on eth0: {why}"));
    let hosts = section("hosts");
    assert!(
        hosts.lines().any(|l| {
            let mut f = l.split_whitespace();
            f.next() == Some(my_ip.as_str()) && f.any(|n| n == "web")
        }),
        "/etc/hosts maps web to {my_ip}: {why}"
    );
    assert_eq!(section("hostname").trim(), "web", "hostname: {why}");

    let getent = section("getent");
    let resolved = |name: &str| -> Option<String> {
        getent.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            let ip = f.next()?;
            f.any(|n| n == name).then(|| ip.to_string())
        })
    };
    assert_eq!(resolved("other-container"), Some(ip_other.clone()), "{why}");
    assert_eq!(
        resolved("oc"),
        Some(ip_other),
        "alias through getent: {why}"
    );
    assert_eq!(resolved("web"), Some(my_ip), "{why}");
    assert_eq!(
        resolved("fwd.test").as_deref(),
        Some(FWD_ADDR),
        "forwarded: {why}"
    );
}
