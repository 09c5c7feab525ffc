//! The Docker walkthrough on one network: create → connect two containers → they get eth0,
//! addresses, MACs, routes → they ping each other and the gateway, exchange TCP and UDP →
//! inspect shows them → disconnect removes the interface and frees the address.

mod common;

use common::*;

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).expect("JSON from ip -j")
}

#[test]
fn two_containers_get_interfaces_ping_and_exchange_tcp_udp() {
    if !privileged("two_containers_get_interfaces_ping_and_exchange_tcp_udp") {
        return;
    }
    let d = Daemon::start(&["--network", "net1=10.90.1.0/24"]);
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let ip1 = d.connect("net1", &c1, "c1");
    let ip2 = d.connect("net1", &c2, "c2");
    assert_eq!((ip1.as_str(), ip2.as_str()), ("10.90.1.2", "10.90.1.3"));

    // eth0: up, MAC 02:42 + IP, the address, MTU 1500; lo up; default route via the gateway.
    let link = json(&c1.exec(&["ip", "-j", "addr", "show", "eth0"]));
    let link = &link[0];
    assert_eq!(link["address"], "02:42:0a:5a:01:02");
    assert_eq!(link["mtu"], 1500);
    assert!(link["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    let addr = link["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["family"] == "inet")
        .expect("an IPv4 address");
    assert_eq!(
        (addr["local"].as_str(), addr["prefixlen"].as_u64()),
        (Some("10.90.1.2"), Some(24))
    );
    let lo = json(&c1.exec(&["ip", "-j", "link", "show", "lo"]));
    assert!(
        lo[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "lo is up"
    );
    let routes = json(&c1.exec(&["ip", "-j", "route", "show", "default"]));
    assert_eq!(routes[0]["gateway"], "10.90.1.1");
    assert_eq!(routes[0]["dev"], "eth0");

    // The gateway answers ARP and ping; the containers reach each other.
    assert!(c1.ping("10.90.1.1"), "c1 pings the gateway");
    assert!(c1.ping(&ip2), "c1 pings c2");
    assert!(c2.ping(&ip1), "c2 pings c1");
    let neigh = json(&c1.exec(&["ip", "-j", "neigh", "show", "10.90.1.1"]));
    assert_eq!(
        neigh[0]["lladdr"], "02:42:0a:5a:01:01",
        "gateway MAC learned by ARP"
    );

    // TCP: 1 MiB echoed back intact.
    let _srv = Proc::spawn(
        "ip",
        &[
            "netns",
            "exec",
            &c2.name,
            "socat",
            "TCP-LISTEN:7000,reuseaddr,fork",
            "EXEC:cat",
        ],
    );
    wait_for("TCP listener", || listening(&c2, "tcp", 7000));
    let out = c1.sh(&format!(
        "head -c 1048576 /dev/urandom > /tmp/{n}.in && \
         socat -t 5 -T 10 TCP:{ip2}:7000 - < /tmp/{n}.in > /tmp/{n}.out && \
         cmp /tmp/{n}.in /tmp/{n}.out && echo same; rm -f /tmp/{n}.in /tmp/{n}.out",
        n = c1.name
    ));
    assert_eq!(stdout(&out).trim(), "same", "TCP echo: {}", stderr(&out));

    // UDP: a datagram and its echo.
    let _usrv = Proc::spawn(
        "ip",
        &[
            "netns",
            "exec",
            &c2.name,
            "socat",
            "UDP-RECVFROM:7001,fork",
            "EXEC:cat",
        ],
    );
    wait_for("UDP listener", || listening(&c2, "udp", 7001));
    let out = c1.sh(&format!("echo udp-hello | socat -T 2 - UDP:{ip2}:7001"));
    assert_eq!(
        stdout(&out).trim(),
        "udp-hello",
        "UDP echo: {}",
        stderr(&out)
    );

    // inspect: both endpoints with counters that moved.
    let ep = d.endpoint("net1", "c1");
    assert_eq!(ep["MacAddress"], "02:42:0a:5a:01:02");
    assert_eq!(ep["IPv4Address"], "10.90.1.2/24");
    assert_eq!(ep["Interface"], "eth0");
    assert_eq!(ep["Status"], "attached");
    // Bytes, not frames: TSO lets 1 MiB cross in ~100 GSO frames.
    assert!(
        ep["Counters"]["RxBytes"].as_u64().unwrap() > 1 << 20,
        "1 MiB went through: {ep}"
    );
    let net = d.inspect("net1");
    assert_eq!(net["IPAM"]["Config"][0]["Subnet"], "10.90.1.0/24");
    assert_eq!(net["IPAM"]["Config"][0]["Gateway"], "10.90.1.1");
    assert!(net["Gateway"]["EchoReplies"].as_u64().unwrap() >= 1);

    // disconnect: the interface disappears, the address is free again.
    d.ctl_ok(&["network", "disconnect", "net1", "c2"]);
    assert!(
        !c2.exec(&["ip", "link", "show", "eth0"]).status.success(),
        "eth0 removed"
    );
    assert!(c1.unreachable(&ip2));
    let c3 = Netns::new("c3");
    assert_eq!(
        d.connect("net1", &c3, "c3"),
        "10.90.1.3",
        "freed address reused"
    );
}

#[test]
fn create_ls_inspect_rm_and_default_pools() {
    if !privileged("create_ls_inspect_rm_and_default_pools") {
        return;
    }
    let d = Daemon::start(&["--network", "first"]);
    let net = d.inspect("first");
    assert_eq!(
        net["IPAM"]["Config"][0]["Subnet"], "172.17.0.0/16",
        "first default pool"
    );
    d.ctl_ok(&["network", "create", "second"]);
    assert_eq!(
        d.inspect("second")["IPAM"]["Config"][0]["Subnet"],
        "172.18.0.0/16"
    );
    d.ctl_ok(&[
        "network",
        "create",
        "--subnet",
        "10.10.0.0/24",
        "--gateway",
        "10.10.0.254",
        "--ip-range",
        "10.10.0.128/25",
        "--mtu",
        "9000",
        "net2",
    ]);
    let ls = d.ctl_ok(&["network", "ls"]);
    let header = ls.lines().next().unwrap();
    assert!(
        header.starts_with("NETWORK ID     NAME"),
        "docker-style header: {header:?}"
    );
    for name in ["first", "second", "net2"] {
        assert!(
            ls.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(name)),
            "{name} in ls"
        );
    }
    let n2 = d.inspect("net2");
    assert_eq!(n2["IPAM"]["Config"][0]["Gateway"], "10.10.0.254");
    assert_eq!(n2["IPAM"]["Config"][0]["IPRange"], "10.10.0.128/25");
    assert_eq!(n2["Options"]["com.docker.network.driver.mtu"], "9000");
    let c = Netns::new("c");
    assert_eq!(
        d.connect("net2", &c, "c"),
        "10.10.0.128",
        "allocated from the ip-range"
    );
    let mtu = json(&c.exec(&["ip", "-j", "link", "show", "eth0"]))[0]["mtu"].clone();
    assert_eq!(mtu, 9000);
    assert!(c.ping("10.10.0.254"), "gateway at a custom address answers");

    let rm = d.ctl(&["network", "rm", "net2"]);
    assert_eq!(
        rm.status.code(),
        Some(1),
        "rm refused with endpoints attached"
    );
    assert!(stderr(&rm).contains("active endpoints"), "{}", stderr(&rm));
    d.ctl_ok(&["network", "disconnect", "net2", "c"]);
    d.ctl_ok(&["network", "rm", "net2", "second"]);
    let ls = d.ctl_ok(&["network", "ls", "-q"]);
    assert_eq!(ls.lines().count(), 1, "only 'first' is left: {ls}");
}

#[test]
fn a_namespace_that_goes_away_is_detached_and_its_name_forgotten() {
    if !privileged("a_namespace_that_goes_away_is_detached_and_its_name_forgotten") {
        return;
    }
    let d = Daemon::start(&["--network", "net1=10.90.7.0/24", "--dns", "127.0.0.1"]);
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    d.connect("net1", &c1, "c1");
    let ip2 = d.connect("net1", &c2, "gone");
    let answer = stdout(&c1.exec(&["dig", "@10.90.7.1", "gone", "+short"]));
    assert_eq!(answer.trim(), ip2, "resolvable while attached");
    drop(c2); // ip netns del
    wait_for("the endpoint to be detached", || {
        d.inspect("net1")["Containers"]
            .as_object()
            .unwrap()
            .values()
            .all(|e| e["Name"] != "gone")
    });
    let status = stdout(&c1.exec(&["dig", "@10.90.7.1", "gone"]));
    assert!(
        status.contains("status: NXDOMAIN"),
        "name forgotten: {status}"
    );
    let c3 = Netns::new("c3");
    assert_eq!(
        d.connect("net1", &c3, "c3"),
        ip2,
        "its address is free again"
    );
}
