//! What a rootless user reads instead of `bridge fdb` and `conntrack -L`: `vswitchctl network
//! macs` (the switch's MAC table) and `vswitchctl flows` (live NAT flows), against live
//! traffic in the NAT test world (`tests/common/world.rs`).
//!
//! Walkthrough: two containers ping each other → `network macs` names both and the gateway,
//! as a table and as JSON → a TCP connection to a server in the world shows up in `flows` with
//! its addresses and the bytes echoed each way, then goes away when it closes; a ping shows as
//! an ICMP flow → an IPv6 flow shows its addresses in brackets → unknown networks get one
//! line and exit 1.

mod common;

use common::world::*;
use common::*;
use serde_json::Value;

/// `vswitchctl ARGS --format json`, parsed as an array.
fn json_rows(w: &NatWorld, args: &[&str]) -> Vec<Value> {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--format", "json"]);
    let out = w.ctl_ok(&all);
    match serde_json::from_str::<Value>(&out) {
        Ok(Value::Array(rows)) => rows,
        other => panic!("{all:?}: not a JSON array: {other:?}\n{out}"),
    }
}

#[test]
fn network_macs_lists_both_containers_and_the_gateway() {
    if !privileged("network_macs_lists_both_containers_and_the_gateway") {
        return;
    }
    let (w, c1) = world_with_c1(&[]);
    let c2 = Netns::new("c2");
    let ip2 = w.connect(NET, &c2, "c2");
    assert!(c1.ping(&ip2), "c1 pings c2");
    assert!(c2.ping("10.100.1.2"), "c2 pings c1");
    let mac = |name: &str| {
        w.endpoint(NET, name)["MacAddress"]
            .as_str()
            .expect("MacAddress")
            .to_string()
    };
    let (mac1, mac2) = (mac("c1"), mac("c2"));

    // The table: a header, then one line per MAC naming its endpoint; bound MACs are static.
    let table = w.ctl_ok(&["network", "macs", NET]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["MAC", "ADDRESS", "ENDPOINT", "PORT", "AGE"],
        "{table}"
    );
    let row = |endpoint: &str| {
        table
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.get(1) == Some(&endpoint))
            .unwrap_or_else(|| panic!("no {endpoint} row in:\n{table}"))
    };
    assert_eq!(row("c1")[0], mac1, "{table}");
    assert_eq!(row("c2")[0], mac2, "{table}");
    assert_eq!(row("c1")[3], "static", "{table}");
    let gw = row("_gateway");
    assert!(gw[0] != mac1 && gw[0] != mac2, "{table}");
    assert_eq!(
        table.lines().count(),
        4,
        "header + c1, c2, gateway:\n{table}"
    );

    // JSON: the same entries, parseable, with the port ids the table showed.
    let rows = json_rows(&w, &["network", "macs", NET]);
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (name, mac) in [("c1", &mac1), ("c2", &mac2)] {
        let r = rows
            .iter()
            .find(|r| r["Endpoint"] == name)
            .unwrap_or_else(|| panic!("no {name} in {rows:?}"));
        assert_eq!(r["MacAddress"], mac.as_str(), "{r}");
        assert_eq!(r["StaticEntry"], true, "{r}");
        assert_eq!(r["Age"], Value::Null, "{r}");
        assert_eq!(
            r["Port"].as_u64().map(|p| p.to_string()).as_deref(),
            Some(row(name)[2]),
            "{r}"
        );
    }
    assert!(rows.iter().any(|r| r["Endpoint"] == "_gateway"), "{rows:?}");

    // A container that leaves leaves the table.
    w.ctl_ok(&["network", "disconnect", NET, "c2"]);
    let rows = json_rows(&w, &["network", "macs", NET]);
    assert!(
        rows.iter()
            .all(|r| r["Endpoint"] != "c2" && r["MacAddress"] != mac2.as_str()),
        "{rows:?}"
    );
}

#[test]
fn flows_show_a_tcp_connection_with_its_bytes_until_it_closes() {
    if !privileged("flows_show_a_tcp_connection_with_its_bytes_until_it_closes") {
        return;
    }
    let (w, c1) = world_with_c1(&[]);
    let _echo = tcp_echo(&w.servers, 7000);
    let remote = format!("{FAR_IP}:7000");
    let ours = |rows: &[Value]| -> Option<Value> {
        rows.iter()
            .find(|r| r["Protocol"] == "tcp" && r["Remote"] == remote.as_str())
            .cloned()
    };
    assert!(
        ours(&json_rows(&w, &["flows", NET])).is_none(),
        "no flow before the connection"
    );

    let mut s = Session::tcp(&c1, &remote);
    // Three 8-byte lines ("line-NN" and its newline), echoed.
    for n in 10..13 {
        assert!(s.echoes(&format!("line-{n}")), "{} echoes", s.what);
    }
    let mut flow = Value::Null;
    assert!(
        wait_until(5, || {
            flow = ours(&json_rows(&w, &["flows", NET])).unwrap_or(Value::Null);
            flow["BytesToRemote"] == 24 && flow["BytesToContainer"] == 24
        }),
        "the flow with 24 bytes each way: {flow}"
    );
    let container = flow["Container"].as_str().unwrap_or_default();
    assert!(container.starts_with("10.100.1.2:"), "{flow}");
    assert_eq!(flow["State"], "ESTABLISHED", "{flow}");
    assert!(flow["Age"].as_u64().is_some_and(|a| a < 60), "{flow}");

    // The table shows the same flow on one line.
    let table = w.ctl_ok(&["flows", NET]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "PROTO",
            "CONTAINER",
            "REMOTE",
            "STATE",
            "AGE",
            "TO",
            "REMOTE",
            "TO",
            "CONTAINER"
        ],
        "{table}"
    );
    let line: Vec<&str> = table
        .lines()
        .find(|l| l.contains(&remote))
        .unwrap_or_else(|| panic!("no {remote} in:\n{table}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        (line[0], line[1], line[2], line[3], line[5], line[6]),
        ("tcp", container, remote.as_str(), "ESTABLISHED", "24", "24"),
        "{table}"
    );

    // Closed from the container's side (the echo server closes in turn): the flow is gone.
    s.close_write();
    assert!(wait_until(5, || !s.running()), "session ends after our EOF");
    assert!(
        wait_until(10, || ours(&json_rows(&w, &["flows", NET])).is_none()),
        "the closed flow leaves the table: {:?}",
        json_rows(&w, &["flows", NET])
    );

    // A ping is an ICMP flow to the remote address (port 0).
    assert!(c1.ping(FAR_IP), "c1 pings the far server");
    let rows = json_rows(&w, &["flows", NET]);
    let icmp = rows
        .iter()
        .find(|r| r["Protocol"] == "icmp")
        .unwrap_or_else(|| panic!("no icmp flow in {rows:?}"));
    assert_eq!(icmp["Remote"], format!("{FAR_IP}:0"), "{icmp}");
    assert_eq!(icmp["State"], "active", "{icmp}");
    assert!(
        icmp["BytesToRemote"].as_u64() > Some(0) && icmp["BytesToContainer"].as_u64() > Some(0),
        "{icmp}"
    );
}

#[test]
fn ipv6_flows_show_their_addresses_in_brackets() {
    if !privileged("ipv6_flows_show_their_addresses_in_brackets") {
        return;
    }
    let w = NatWorld::start(&["--network", "net=10.100.7.0/24,fd00:70::/64"]);
    let c1 = Netns::new("c1");
    w.connect(NET, &c1, "c1");
    let listen = format!("TCP6-LISTEN:7000,bind=[{FAR6}],reuseaddr,fork");
    let _echo = Bg::spawn(&w.servers, &["socat", &listen, "EXEC:cat"]);
    wait_for("tcp6 echo server", || {
        listening_on(&w.servers, "tcp", "*", 7000)
    });
    let remote = format!("[{FAR6}]:7000");
    let mut s = Session::tcp(&c1, &remote);
    assert!(s.echoes("line-v6"), "{} echoes", s.what);
    let mut flow = Value::Null;
    assert!(
        wait_until(5, || {
            let rows = json_rows(&w, &["flows", NET]);
            flow = rows
                .into_iter()
                .find(|r| r["Remote"] == remote.as_str())
                .unwrap_or(Value::Null);
            flow["BytesToContainer"] == 8
        }),
        "a flow to {remote} with 8 bytes each way: {flow}"
    );
    assert_eq!(flow["BytesToRemote"], 8, "{flow}");
    assert!(
        flow["Container"]
            .as_str()
            .is_some_and(|c| c.starts_with("[fd00:70::2]:")),
        "{flow}"
    );
    let table = w.ctl_ok(&["flows", NET]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("tcp") && l.contains("[fd00:70::2]:") && l.contains(&remote)),
        "{table}"
    );
}

#[test]
fn unknown_networks_are_refused_in_one_line() {
    if !privileged("unknown_networks_are_refused_in_one_line") {
        return;
    }
    let (w, _c1) = world_with_c1(&[]);
    for args in [
        &["network", "macs", "nope"][..],
        &["flows", "nope"],
        &["flows", "nope", "--format", "json"],
        &["flows", "no/pe"],
        &["network", "macs", "no\npe?"],
    ] {
        let out = w.ctl(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains("not found") || err.contains("invalid network name"),
            "{args:?}: {err}"
        );
        assert!(err.contains("no"), "names the network: {err}");
        assert!(stdout(&out).is_empty(), "{args:?}");
    }
    let out = w.ctl(&["flows", NET, "--format", "yaml"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a bad --format is a usage error"
    );
}
