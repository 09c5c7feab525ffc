//! Published ports, as in `docker run -p`: a listener in the daemon's world (the "host")
//! forwards to a port in a container. Clients are in the SERVERS namespace (198.51.100.2), which
//! reaches the world at 198.51.100.1; see `tests/common/world.rs`.
//!
//! Walkthrough: `connect --publish 8080:80` → a client reaches the container's echo server and
//! inspect lists the mapping → the container sees the real client address → UDP → two containers
//! at once → `port add/ls/rm` and its errors → `--internal` refuses to publish → a port published
//! on 127.0.0.1 serves only the world's loopback, and looks to the container as if from the
//! gateway.

mod common;

use std::time::Duration;

use common::world::*;
use common::*;

const NET: &str = "net";
const GW: &str = "10.100.1.1";

fn world() -> NatWorld {
    NatWorld::start(&["--network", "net=10.100.1.0/24"])
}

/// `port ls [NETWORK]` as rows of whitespace-separated cells, header checked and dropped.
fn port_ls(w: &NatWorld, network: Option<&str>) -> Vec<Vec<String>> {
    let mut args = vec!["port", "ls"];
    args.extend(network);
    let out = w.ctl_ok(&args);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        header,
        ["NETWORK", "CONTAINER", "PROTO", "HOST", "PORT"],
        "port ls header: {out}"
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|s| s.to_string()).collect()
}

/// Asserts a refused request: exit 1, one line `error: ...` containing one of `needles`.
fn assert_refused(w: &NatWorld, args: &[&str], needles: &[&str]) {
    let out = w.ctl(args);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "vswitchctl {args:?} must be refused (exit 1): {err}\n--- daemon log ---\n{}",
        w.plain_log()
    );
    assert_eq!(
        err.trim().lines().count(),
        1,
        "one-line error for {args:?}: {err:?}"
    );
    assert!(
        err.starts_with("error: "),
        "`error: ...` for {args:?}: {err:?}"
    );
    assert!(
        needles.iter().any(|n| err.contains(n)),
        "error for {args:?} mentions one of {needles:?}: {err:?}"
    );
}

#[test]
fn publish_tcp_port_on_connect() {
    if !privileged("publish_tcp_port_on_connect") {
        return;
    }
    let w = world();
    let c1 = Netns::new("c1");
    w.connect_with(NET, &c1, "c1", &["--publish", "8080:80"]);
    let _web = tcp_echo(&c1, 80);

    let r = run(
        &w.servers,
        10,
        "echo hello | socat -t 5 - TCP:198.51.100.1:8080",
    );
    assert_eq!(
        r.stdout().trim(),
        "hello",
        "echo through 8080: {}",
        w.why(&r)
    );

    let ep = w.endpoint(NET, "c1");
    assert_eq!(
        ep["Ports"],
        serde_json::json!([
            {"HostIp": "0.0.0.0", "HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp"}
        ]),
        "inspect lists the mapping: {ep}"
    );

    // 1 MiB there and back, intact, five times (the client half-closes after sending; every
    // byte the container echoes after that must still reach the client).
    let dir = w.dir.path().display().to_string();
    for round in 1..=5 {
        let r = run(
            &w.servers,
            60,
            &format!(
                "head -c 1048576 /dev/urandom > {dir}/p.in && \
                 socat -t 30 -T 30 TCP:198.51.100.1:8080 - < {dir}/p.in > {dir}/p.out && \
                 cmp {dir}/p.in {dir}/p.out && echo same"
            ),
        );
        assert_eq!(
            r.stdout().trim(),
            "same",
            "1 MiB through 8080, round {round}: {}",
            w.why(&r)
        );
    }
}

#[test]
fn container_sees_the_real_client_address() {
    if !privileged("container_sees_the_real_client_address") {
        return;
    }
    let w = world();
    let c1 = Netns::new("c1");
    let ip = w.connect_with(NET, &c1, "c1", &["--publish", "8081:81"]);
    let _peer = tcp_peer(&c1, 81);
    let r = run(
        &w.servers,
        10,
        "socat -T 5 - TCP:198.51.100.1:8081 < /dev/null",
    );
    assert_eq!(
        r.stdout().trim(),
        format!("198.51.100.2 {ip}"),
        "container reports 'PEER LOCAL': the client's own address, to its own address: {}",
        w.why(&r)
    );
}

#[test]
fn publish_udp_port() {
    if !privileged("publish_udp_port") {
        return;
    }
    let w = world();
    let c1 = Netns::new("c1");
    w.connect_with(NET, &c1, "c1", &["--publish", "5353:53/udp"]);
    let _dns = udp_echo(&c1, "*", 53);
    let r = run(
        &w.servers,
        10,
        "echo x | socat -T 2 - UDP:198.51.100.1:5353",
    );
    assert_eq!(
        r.stdout().trim(),
        "x",
        "UDP echo through 5353: {}",
        w.why(&r)
    );
    // A second client (another source port) is its own flow and works too.
    let r = run(
        &w.servers,
        10,
        "echo y | socat -T 2 - UDP:198.51.100.1:5353,sourceport=41000",
    );
    assert_eq!(r.stdout().trim(), "y", "second UDP client: {}", w.why(&r));
    let ep = w.endpoint(NET, "c1");
    assert_eq!(
        ep["Ports"],
        serde_json::json!([
            {"HostIp": "0.0.0.0", "HostPort": 5353, "ContainerPort": 53, "Protocol": "udp"}
        ]),
        "{ep}"
    );
    // TCP 5353 is not published.
    let r = run(&w.servers, 10, "socat /dev/null TCP:198.51.100.1:5353");
    assert!(!r.ok(), "only udp/5353 is published: {}", w.why(&r));
}

#[test]
fn two_containers_publish_at_once() {
    if !privileged("two_containers_publish_at_once") {
        return;
    }
    let w = world();
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    w.connect_with(NET, &c1, "c1", &["--publish", "8080:80"]);
    w.connect_with(NET, &c2, "c2", &["--publish", "8083:80"]);
    // Both listen on 80; each greets with its name, then echoes.
    let _s1 = tcp_serve(&c1, 80, "echo from-c1; cat");
    let _s2 = tcp_serve(&c2, 80, "echo from-c2; cat");

    let mut one = Session::tcp(&w.servers, "198.51.100.1:8080");
    assert_eq!(
        one.recv(5).as_deref(),
        Some("from-c1"),
        "8080 → c1\n{}",
        w.plain_log()
    );
    let r = run(
        &w.servers,
        10,
        "echo ping | socat -t 5 - TCP:198.51.100.1:8083",
    );
    assert_eq!(
        r.stdout(),
        "from-c2\nping\n",
        "8083 → c2 while 8080 is open: {}",
        w.why(&r)
    );
    assert!(
        one.echoes("still c1"),
        "8080 session still works\n{}",
        w.plain_log()
    );
}

#[test]
fn port_add_ls_rm_and_errors() {
    if !privileged("port_add_ls_rm_and_errors") {
        return;
    }
    let w = world();
    w.ctl_ok(&["network", "create", "--subnet", "10.100.2.0/24", "other"]);
    let (c1, c2, c3) = (Netns::new("c1"), Netns::new("c2"), Netns::new("c3"));
    w.connect_with(NET, &c1, "c1", &["--publish", "8080:80"]);
    w.connect(NET, &c2, "c2");
    w.connect("other", &c3, "c3");
    let _web = tcp_echo(&c1, 80);
    let _admin = tcp_echo(&c1, 90);

    // Add at run time, use it, see it listed.
    w.ctl_ok(&["port", "add", NET, "c1", "9090:90"]);
    let r = run(
        &w.servers,
        10,
        "echo added | socat -t 5 - TCP:198.51.100.1:9090",
    );
    assert_eq!(
        r.stdout().trim(),
        "added",
        "9090 after port add: {}",
        w.why(&r)
    );
    let mut ls = port_ls(&w, None);
    ls.sort();
    assert_eq!(
        ls,
        [
            row(&["net", "c1", "tcp", "0.0.0.0:8080", "80"]),
            row(&["net", "c1", "tcp", "0.0.0.0:9090", "90"]),
        ],
        "port ls"
    );
    let mut ls_net = port_ls(&w, Some(NET));
    ls_net.sort();
    assert_eq!(ls_net, ls, "port ls net");
    assert!(port_ls(&w, Some("other")).is_empty(), "nothing on other");
    assert_eq!(
        w.endpoint(NET, "c1")["Ports"].as_array().map(|a| a.len()),
        Some(2)
    );

    // Refusals change nothing.
    let before = w.ctl_ok(&["port", "ls"]);
    // Host port taken by another container's mapping.
    assert_refused(
        &w,
        &["port", "add", NET, "c2", "8080:80"],
        &["in use", "already published"],
    );
    // The same mapping twice.
    assert_refused(
        &w,
        &["port", "add", NET, "c1", "9090:90"],
        &["already published"],
    );
    // Host port taken by some other process in the world.
    let _squatter = Bg::spawn(
        &w.world,
        &["socat", "TCP-LISTEN:9999,reuseaddr,fork", "EXEC:cat"],
    );
    wait_for("squatter on 9999", || {
        listening_on(&w.world, "tcp", "*", 9999)
    });
    assert_refused(&w, &["port", "add", NET, "c1", "9999:90"], &["in use"]);
    // A container that is not on this network.
    assert_refused(
        &w,
        &["port", "add", NET, "c3", "9091:90"],
        &["not connected"],
    );
    assert_refused(&w, &["port", "rm", NET, "c2", "8080:80"], &["not"]);
    assert_eq!(
        w.ctl_ok(&["port", "ls"]),
        before,
        "refusals changed nothing"
    );
    let r = run(&w.servers, 10, "socat /dev/null TCP:198.51.100.1:9091");
    assert!(!r.ok(), "9091 was never opened: {}", w.why(&r));

    // Remove: the listener goes away, the other mapping stays.
    w.ctl_ok(&["port", "rm", NET, "c1", "9090:90"]);
    let r = run(&w.servers, 10, "socat /dev/null TCP:198.51.100.1:9090");
    assert!(
        !r.ok() && r.stderr().contains("Connection refused"),
        "9090 refused after port rm: {}",
        w.why(&r)
    );
    assert_eq!(
        port_ls(&w, None),
        [row(&["net", "c1", "tcp", "0.0.0.0:8080", "80"])],
        "port ls after rm"
    );
    let r = run(
        &w.servers,
        10,
        "echo kept | socat -t 5 - TCP:198.51.100.1:8080",
    );
    assert_eq!(r.stdout().trim(), "kept", "8080 untouched: {}", w.why(&r));

    // After c1 disconnects its mappings are gone and 8080 is free for c2.
    w.ctl_ok(&["network", "disconnect", NET, "c1"]);
    assert!(port_ls(&w, None).is_empty(), "no mappings after disconnect");
    w.ctl_ok(&["port", "add", NET, "c2", "8080:80"]);
    let _web2 = tcp_serve(&c2, 80, "echo c2-now");
    let r = run(
        &w.servers,
        10,
        "socat -T 5 - TCP:198.51.100.1:8080 < /dev/null",
    );
    assert_eq!(
        r.stdout().trim(),
        "c2-now",
        "8080 reused by c2: {}",
        w.why(&r)
    );
}

#[test]
fn internal_network_refuses_to_publish() {
    if !privileged("internal_network_refuses_to_publish") {
        return;
    }
    let w = world();
    w.ctl_ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.100.9.0/24",
        "int",
    ]);
    let x = Netns::new("x");
    assert_refused(
        &w,
        &[
            "network",
            "connect",
            "int",
            &x.path(),
            "--name",
            "x",
            "--publish",
            "8090:80",
        ],
        &["internal"],
    );
    // The refused connect left nothing behind: x connects fine without --publish.
    w.connect("int", &x, "x");
    assert_refused(&w, &["port", "add", "int", "x", "8090:80"], &["internal"]);
    assert!(port_ls(&w, None).is_empty());
    let r = run(&w.servers, 10, "socat /dev/null TCP:198.51.100.1:8090");
    assert!(!r.ok(), "nothing listens on 8090: {}", w.why(&r));
}

#[test]
fn publish_on_loopback_serves_the_world_only() {
    if !privileged("publish_on_loopback_serves_the_world_only") {
        return;
    }
    let w = world();
    let c1 = Netns::new("c1");
    w.connect_with(NET, &c1, "c1", &["--publish", "127.0.0.1:8082:80"]);
    let _peer = tcp_peer(&c1, 80);

    let r = run(&w.world, 10, "socat -T 5 - TCP:127.0.0.1:8082 < /dev/null");
    let reply = r.stdout();
    let peer = reply.split_whitespace().next().unwrap_or("");
    assert_eq!(
        peer,
        GW,
        "from the world's loopback the container sees the gateway as the client: {}",
        w.why(&r)
    );

    let r = run(&w.servers, 10, "socat /dev/null TCP:198.51.100.1:8082");
    assert!(!r.ok(), "not published on 198.51.100.1: {}", w.why(&r));
    assert!(r.took < Duration::from_secs(3), "{}", w.why(&r));

    assert_eq!(
        w.endpoint(NET, "c1")["Ports"],
        serde_json::json!([
            {"HostIp": "127.0.0.1", "HostPort": 8082, "ContainerPort": 80, "Protocol": "tcp"}
        ])
    );
    assert_eq!(
        port_ls(&w, None),
        [row(&["net", "c1", "tcp", "127.0.0.1:8082", "80"])]
    );
}
