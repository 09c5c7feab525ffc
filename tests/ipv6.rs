//! Dual stack (`--ipv6`): the whole model over IPv6, as a user of `docker network create
//! --ipv6` expects it. Each test builds its own world (see `tests/common/world.rs`); the
//! world's IPv6 side is 2001:db8:1::1, the servers 2001:db8:1::2 and 2001:db8:2::2.
//!
//! Walkthrough: the contract (create, connect, inspect, bad input, restart) → L2 (NDP, ping6
//! to the gateway and between containers, DAD, multicast stays in its network, icc) →
//! anti-spoofing (foreign sources, forged Neighbor Advertisements) → NAT66 (TCP, UDP, ping,
//! refusals, forbidden destinations) → published ports over IPv6 → DNS (AAAA, ip6.arpa, the
//! gateway's IPv6 address, an IPv6 upstream) → `run` → host_loopback to ::1.

mod common;

use std::time::Duration;

use common::world::*;
use common::*;

const NET6: &str = "fd00:60::/64";
const GW4: &str = "10.100.6.1";
const GW6: &str = "fd00:60::1";
const C1_6: &str = "fd00:60::2";
const C2_6: &str = "fd00:60::3";

/// The world with the dual-stack network "net" 10.100.6.0/24 + fd00:60::/64 (given as
/// `--network net=V4,V6`) and containers c1 (::2) and c2 (::3) on it.
fn dual_world(extra: &[&str]) -> (NatWorld, Netns, Netns) {
    let mut args = vec!["--network", "net=10.100.6.0/24,fd00:60::/64"];
    args.extend_from_slice(extra);
    let w = NatWorld::start(&args);
    let c1 = Netns::new("c1");
    let c2 = Netns::new("c2");
    w.connect(NET, &c1, "c1");
    w.connect(NET, &c2, "c2");
    (w, c1, c2)
}

/// The IPv6 address of an endpoint as inspect shows it (with prefix).
fn ipv6_of(d: &Daemon, network: &str, name: &str) -> String {
    d.endpoint(network, name)["IPv6Address"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The IPv6 addresses in `text` (socat prints `$SOCAT_PEERADDR` fully expanded, in
/// brackets), so that they compare as addresses.
fn v6_in(text: &str) -> Vec<std::net::Ipv6Addr> {
    text.split(|c: char| c.is_whitespace() || c == '[' || c == ']')
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// True when `text` names the IPv6 address `want`.
fn names6(text: &str, want: &str) -> bool {
    v6_in(text).contains(&want.parse().expect("an IPv6 address"))
}

/// A drop counter of an endpoint's switch port.
fn drops(d: &Daemon, network: &str, name: &str, reason: &str) -> u64 {
    d.endpoint(network, name)["Counters"]["Drops"][reason]
        .as_u64()
        .unwrap_or(0)
}

/// The link-local address the kernel gave `eth0` in `ns`, once it is no longer tentative.
fn link_local(ns: &Netns) -> String {
    let mut found = String::new();
    let settled = wait_until(10, || {
        let out = stdout(&ns.exec(&[
            "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link",
        ]));
        match out.split_whitespace().skip_while(|w| *w != "inet6").nth(1) {
            Some(a) if !out.contains("tentative") => {
                found = a.split('/').next().unwrap_or_default().to_string();
                true
            }
            _ => false,
        }
    });
    assert!(
        settled,
        "eth0 of {} never got a usable link-local address",
        ns.name
    );
    found
}

#[test]
fn dual_stack_networks_follow_dockers_contract() {
    if !privileged("dual_stack_networks_follow_dockers_contract") {
        return;
    }
    let (w, c1, c2) = dual_world(&[]);
    let net = w.inspect(NET);
    assert_eq!(net["EnableIPv6"], true, "{net}");
    let cfg = net["IPAM"]["Config"].as_array().unwrap();
    assert_eq!(cfg.len(), 2, "{net}");
    assert_eq!(
        (cfg[1]["Subnet"].as_str(), cfg[1]["Gateway"].as_str()),
        (Some(NET6), Some(GW6))
    );
    assert_eq!(net["Gateway"]["IPv6Address"], GW6);
    assert_eq!(ipv6_of(&w, NET, "c1"), format!("{C1_6}/64"));
    assert_eq!(ipv6_of(&w, NET, "c2"), format!("{C2_6}/64"));

    // Inside: the address, a default IPv6 route via the gateway, the network's MTU.
    let addrs = stdout(&c1.exec(&["ip", "-6", "addr", "show", "dev", "eth0"]));
    assert!(
        addrs.contains(&format!("{C1_6}/64")) && addrs.contains("mtu 1500"),
        "{addrs}"
    );
    let routes = stdout(&c1.exec(&["ip", "-6", "route", "show", "default"]));
    assert!(routes.contains(&format!("via {GW6} dev eth0")), "{routes}");

    // A static address; sequential allocation goes on after it.
    let c3 = Netns::new("c3");
    w.connect_with(NET, &c3, "c3", &["--ip6", "fd00:60::99"]);
    assert_eq!(ipv6_of(&w, NET, "c3"), "fd00:60::99/64");

    // Bad input: one line each, exit 1 (refused) or 2 (usage), nothing created.
    let c4 = Netns::new("c4");
    let c4p = c4.path();
    for (args, code, needle) in [
        (
            vec!["network", "connect", NET, &c4p, "--ip6", "fd00:60::99"],
            1,
            "already in use by",
        ),
        (
            vec!["network", "connect", NET, &c4p, "--ip6", "fd00:61::5"],
            1,
            "outside subnet",
        ),
        (
            vec!["network", "connect", NET, &c4p, "--ip6", GW6],
            1,
            "reserved",
        ),
        (
            vec![
                "network",
                "create",
                "--ipv6",
                "--subnet",
                "fd00:60:0:0:8000::/65",
                "x",
            ],
            1,
            "overlaps subnet fd00:60::/64 of network net",
        ),
        (
            vec![
                "network",
                "create",
                "--ipv6",
                "--subnet",
                "fd00:70::/127",
                "x",
            ],
            1,
            "prefix length",
        ),
        (
            vec![
                "network",
                "create",
                "--ipv6",
                "--subnet",
                "fd00:70::/64",
                "--gateway",
                "fd00:71::1",
                "x",
            ],
            1,
            "outside subnet",
        ),
        (
            vec!["network", "create", "--subnet", "fd00:70::/64", "x"],
            1,
            "without --ipv6",
        ),
        (
            vec![
                "network",
                "create",
                "--ipv6",
                "--subnet",
                "fd00:70::/64",
                "--subnet",
                "fd00:71::/64",
                "x",
            ],
            2,
            "one subnet per family",
        ),
        (
            vec!["network", "create", "--ipv6", "--mtu", "1200", "x"],
            1,
            "below 1280",
        ),
    ] {
        let out = w.ctl(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(
            err.contains(needle) && err.trim().lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    assert!(w.inspect(NET)["Containers"].as_object().unwrap().len() == 3);
    assert!(w.ctl(&["network", "inspect", "x"]).status.code() == Some(1));

    // --ipv6 without a subnet: a unique-local /64 from the pool.
    w.ctl_ok(&["network", "create", "--ipv6", "ula"]);
    let ula = w.inspect("ula");
    let s6 = ula["IPAM"]["Config"][1]["Subnet"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(s6.starts_with("fd") && s6.ends_with("::/64"), "{ula}");
    // An IPv4-only network is unchanged: no IPv6 address, --ip6 refused.
    w.ctl_ok(&["network", "create", "--subnet", "10.100.7.0/24", "v4only"]);
    let v4 = w.inspect("v4only");
    assert_eq!(v4["EnableIPv6"], false);
    assert_eq!(v4["IPAM"]["Config"].as_array().unwrap().len(), 1);
    let out = w.ctl(&["network", "connect", "v4only", &c4p, "--ip6", "fd00:60::5"]);
    assert!(stderr(&out).contains("has no IPv6"), "{}", stderr(&out));
    w.connect("v4only", &c4, "c4");
    assert_eq!(ipv6_of(&w, "v4only", "c4"), "");
    let global = stdout(&c4.exec(&["ip", "-6", "addr", "show", "scope", "global"]));
    assert!(global.trim().is_empty(), "{global}");

    // A restart serves the same: leases, addresses and connectivity survive.
    let mut w = w;
    w.d.stop();
    w.d.restart();
    assert_eq!(ipv6_of(&w, NET, "c2"), format!("{C2_6}/64"));
    assert_eq!(w.endpoint(NET, "c3")["Status"], "attached");
    assert!(
        c1.ping(C2_6),
        "c1 → c2 over IPv6 after restart\n{}",
        w.plain_log()
    );
    drop(c2);
}

#[test]
fn ndp_ping6_dad_and_multicast_stay_inside_the_network() {
    if !privileged("ndp_ping6_dad_and_multicast_stay_inside_the_network") {
        return;
    }
    let (w, c1, c2) = dual_world(&[]);
    // DAD of the link-local addresses completes (its probes cross the switch and nobody
    // claims the address), and no address failed it.
    let ll1 = link_local(&c1);
    let ll2 = link_local(&c2);
    for ns in [&c1, &c2] {
        let all = stdout(&ns.exec(&["ip", "-6", "addr", "show", "dev", "eth0"]));
        assert!(!all.contains("dadfailed"), "{all}");
    }
    // The gateway answers NDP and ping6 on its global and link-local addresses.
    assert!(c1.ping(GW6), "ping6 gateway\n{}", w.plain_log());
    let neigh = stdout(&c1.exec(&["ip", "-6", "neigh", "show", GW6]));
    assert!(
        neigh.contains("router") && neigh.contains("lladdr 02:42:0a:64:06:01"),
        "{neigh}"
    );
    let gw_ll = "fe80::42:aff:fe64:601%eth0";
    assert!(c1.ping(gw_ll), "ping6 gateway link-local");
    // Container to container, global and link-local.
    assert!(c1.ping(C2_6), "c1 → c2");
    assert!(c2.ping(&format!("{ll1}%eth0")), "c2 → c1 link-local");
    assert!(c1.ping(&format!("{ll2}%eth0")), "c1 → c2 link-local");

    // Multicast floods within its network only: an all-nodes ping from c1 is answered by
    // c2, never by c3 on another dual-stack network.
    w.ctl_ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "10.100.8.0/24",
        "--subnet",
        "fd00:80::/64",
        "other",
    ]);
    let c3 = Netns::new("c3");
    w.connect("other", &c3, "c3");
    let ll3 = link_local(&c3);
    let out = stdout(&c1.exec(&[
        "ping",
        "-6",
        "-c",
        "3",
        "-i",
        "0.3",
        "-W",
        "1",
        "ff02::1%eth0",
    ]));
    assert!(out.contains(&ll2), "c2 answers the all-nodes ping: {out}");
    assert!(!out.contains(&ll3), "c3 is on another network: {out}");
    // And no unicast crosses networks either.
    assert!(
        c1.unreachable("fd00:80::2"),
        "c1 reaches c3 across networks"
    );

    // icc=false: containers do not reach each other over IPv6, the gateway still answers.
    w.ctl_ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "10.100.9.0/24",
        "--subnet",
        "fd00:90::/64",
        "-o",
        "icc=false",
        "noicc",
    ]);
    let (a, b) = (Netns::new("a"), Netns::new("b"));
    w.connect("noicc", &a, "a");
    w.connect("noicc", &b, "b");
    assert!(a.ping("fd00:90::1"), "gateway reachable with icc=false");
    assert!(a.unreachable("fd00:90::3"), "a reaches b with icc=false");
}

/// Sends one raw Ethernet frame out of `eth0` in `ns` (python3, AF_PACKET).
fn send_frame(ns: &Netns, frame: &[u8]) {
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    let py = format!(
        "import socket; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); \
         s.bind(('eth0', 0)); s.send(bytes.fromhex('{hex}'))"
    );
    let out = ns.exec(&["python3", "-c", &py]);
    assert!(out.status.success(), "send_frame: {}", stderr(&out));
}

/// An ICMPv6 checksum over the pseudo-header and `body`.
fn icmp6_checksum(src: &[u8; 16], dst: &[u8; 16], body: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for pair in b.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |&l| u32::from(l));
            sum += hi | lo;
        }
    };
    add(src);
    add(dst);
    add(&(body.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(body);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A Neighbor Advertisement from `src_mac`/`src` claiming `target` is at `src_mac`, sent to
/// all nodes (an unsolicited, overriding NA: what an attacker uses to steal an address).
fn forged_na(src_mac: [u8; 6], src: std::net::Ipv6Addr, target: std::net::Ipv6Addr) -> Vec<u8> {
    let dst: std::net::Ipv6Addr = "ff02::1".parse().unwrap();
    let mut icmp = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[2, 1]);
    icmp.extend_from_slice(&src_mac);
    let c = icmp6_checksum(&src.octets(), &dst.octets(), &icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = vec![0x33, 0x33, 0, 0, 0, 1];
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, 255]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&icmp);
    f
}

#[test]
fn a_container_cannot_claim_another_ipv6_address() {
    if !privileged("a_container_cannot_claim_another_ipv6_address") {
        return;
    }
    let (w, c1, c2) = dual_world(&[]);
    assert!(c1.ping(C2_6), "baseline c1 → c2\n{}", w.plain_log());
    let ll1: std::net::Ipv6Addr = link_local(&c1).parse().unwrap();
    let mac1 = [0x02, 0x42, 10, 100, 6, 2];

    // A forged NA claiming the gateway's address (router hijack) is dropped at c1's port and
    // counted: c2 keeps the gateway's real MAC.
    assert!(c2.ping(GW6));
    let gw_mac = "lladdr 02:42:0a:64:06:01";
    let before = drops(&w, NET, "c1", "spoofed_ip");
    send_frame(&c1, &forged_na(mac1, ll1, GW6.parse().unwrap()));
    assert!(
        wait_until(5, || drops(&w, NET, "c1", "spoofed_ip") > before),
        "forged NA not counted: {}",
        w.endpoint(NET, "c1")
    );
    let seen = stdout(&c2.exec(&["ip", "-6", "neigh", "show", GW6]));
    assert!(seen.contains(gw_mac), "c2's view of the gateway: {seen}");
    // The same NA for c1's own address passes (it is how a container announces itself).
    let own_before = drops(&w, NET, "c1", "spoofed_ip");
    send_frame(&c1, &forged_na(mac1, ll1, C1_6.parse().unwrap()));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        drops(&w, NET, "c1", "spoofed_ip"),
        own_before,
        "own NA dropped"
    );

    // Traffic from an address that is not c1's never reaches c2 (nor the NAT).
    c1.exec(&[
        "ip",
        "-6",
        "addr",
        "add",
        "fd00:60::77/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    let r = run(&c1, 10, &format!("ping -6 -c 2 -W 1 -I fd00:60::77 {C2_6}"));
    assert!(!r.ok(), "spoofed source answered: {r}");
    assert!(drops(&w, NET, "c1", "spoofed_ip") > own_before);
    // A Router Advertisement from a container is RA-guarded.
    let ra_before = drops(&w, NET, "c1", "ra_guard");
    let mut ra = forged_na(mac1, ll1, C1_6.parse().unwrap());
    ra[54] = 134;
    send_frame(&c1, &ra);
    assert!(wait_until(5, || drops(&w, NET, "c1", "ra_guard") > ra_before));
    // c1's real address still works.
    c1.exec(&["ip", "-6", "addr", "del", "fd00:60::77/64", "dev", "eth0"]);
    assert!(c1.ping(C2_6), "c1's own address after the attempts");
}

/// A TCP server on `[addr]:port` in `ns` running `system` per connection.
fn tcp6_serve(ns: &Netns, addr: &str, port: u16, system: &str) -> Bg {
    let bg = Bg::spawn(
        ns,
        &[
            "socat",
            &format!("TCP6-LISTEN:{port},bind=[{addr}],reuseaddr,fork"),
            &format!("SYSTEM:{system}"),
        ],
    );
    wait_for("tcp6 server", || listening_on(ns, "tcp", "*", port));
    bg
}

#[test]
fn nat66_carries_tcp_udp_and_ping_and_refuses_like_ipv4() {
    if !privileged("nat66_carries_tcp_udp_and_ping_and_refuses_like_ipv4") {
        return;
    }
    let (w, c1, _c2) = dual_world(&[]);
    let _peer = tcp6_serve(&w.servers, FAR6, 7000, "echo $SOCAT_PEERADDR; cat");
    let r = run(
        &c1,
        10,
        &format!("echo hello6 | socat -t 3 - TCP6:[{FAR6}]:7000"),
    );
    let out = r.stdout();
    assert!(
        names6(&out, WORLD6) && out.contains("hello6"),
        "TCP through NAT66: {}",
        w.why(&r)
    );
    // 4 MB the other way, intact.
    let _push = tcp6_serve(&w.servers, FAR6, 7002, "head -c 4194304 /dev/zero");
    let r = run(&c1, 30, &format!("socat -u TCP6:[{FAR6}]:7002 - | wc -c"));
    assert_eq!(r.stdout().trim(), "4194304", "{}", w.why(&r));

    // UDP request/reply.
    let _udp = Bg::spawn(
        &w.servers,
        &[
            "socat",
            &format!("UDP6-RECVFROM:7001,bind=[{FAR6}],fork"),
            "EXEC:cat",
        ],
    );
    wait_for("udp6 echo", || listening_on(&w.servers, "udp", "*", 7001));
    let r = run(
        &c1,
        10,
        &format!("echo dgram6 | socat -t 2 - UDP6:[{FAR6}]:7001"),
    );
    assert_eq!(r.stdout().trim(), "dgram6", "{}", w.why(&r));
    // ping6 through an ICMPv6 datagram socket.
    assert!(c1.ping(FAR6), "ping6 through NAT66\n{}", w.plain_log());

    // Refused: RST at once. Unreachable: an ICMPv6 error, not a hang.
    let r = run(&c1, 10, &format!("socat /dev/null TCP6:[{FAR6}]:7999"));
    assert!(
        !r.ok() && r.stderr().contains("Connection refused"),
        "{}",
        w.why(&r)
    );
    let r = run(
        &c1,
        20,
        &format!("socat /dev/null TCP6:[{NOBODY6}]:7000,connect-timeout=15"),
    );
    assert!(
        !r.ok() && !r.stderr().contains("timed out"),
        "unreachable reported: {}",
        w.why(&r)
    );

    // The daemon's own address is forbidden and counted, even with a server behind it
    // (::1 and the other special ranges never leave a container's kernel through its
    // default route; the NAT's unit tests feed them as frames).
    let _own = tcp6_serve(&w.world, WORLD6, 7003, "echo reached");
    let before = w.stat(NET, "Counters", "ForbiddenDestination");
    let r = run(
        &c1,
        10,
        &format!("socat -t 2 - TCP6:[{WORLD6}]:7003,connect-timeout=5 </dev/null"),
    );
    assert!(
        !r.ok() && !r.stdout().contains("reached"),
        "the daemon's own address: {r}"
    );
    assert!(
        w.stat(NET, "Counters", "ForbiddenDestination") > before,
        "{}",
        w.stats(NET)
    );
}

#[test]
fn published_ports_listen_on_ipv6_and_show_the_real_client() {
    if !privileged("published_ports_listen_on_ipv6_and_show_the_real_client") {
        return;
    }
    let (w, c1, _c2) = dual_world(&[]);
    let c3 = Netns::new("c3");
    w.connect_with(NET, &c3, "web", &["--publish", "8080:80"]);
    let _srv = Bg::spawn(
        &c3,
        &[
            "socat",
            "TCP6-LISTEN:80,reuseaddr,fork,ipv6only=0",
            "SYSTEM:echo $SOCAT_PEERADDR",
        ],
    );
    wait_for("web server", || listening_on(&c3, "tcp", "*", 80));
    assert!(
        listening_on(&w.world, "tcp", "[::]", 8080),
        "no [::]:8080 listener"
    );
    // From another host over IPv6: the container sees the real client address.
    let r = run(
        &w.servers,
        10,
        &format!("socat -t 3 - TCP6:[{WORLD6}]:8080 </dev/null"),
    );
    assert!(
        names6(&r.stdout(), SERVER6),
        "real IPv6 client: {}",
        w.why(&r)
    );
    // From the host's ::1: the container sees the gateway's IPv6 address.
    let r = run(&w.world, 10, "socat -t 3 - TCP6:[::1]:8080 </dev/null");
    assert!(names6(&r.stdout(), GW6), "loopback client: {}", w.why(&r));
    // IPv4 still works on the same mapping (the dual-stack server sees the client mapped).
    let r = run(
        &w.servers,
        10,
        "socat -t 3 - TCP:198.51.100.1:8080 </dev/null",
    );
    assert!(
        names6(&r.stdout(), &format!("::ffff:{SERVER_IP}")),
        "IPv4 client: {}",
        w.why(&r)
    );
    // Withdrawing the mapping closes both host sockets.
    w.ctl_ok(&["port", "rm", NET, "web", "8080:80"]);
    assert!(
        wait_until(5, || !listening_on(&w.world, "tcp", "*", 8080)),
        "a listener on 8080 survived port rm"
    );
    drop(c1);
}

#[test]
fn dns_answers_aaaa_and_ip6_arpa_on_both_gateway_addresses() {
    if !privileged("dns_answers_aaaa_and_ip6_arpa_on_both_gateway_addresses") {
        return;
    }
    let (w, c1, _c2) = dual_world(&["--dns", FAR6]);
    let short = |server: &str, args: &str| {
        let r = run(
            &c1,
            15,
            &format!("dig @{server} +time=3 +tries=1 +short {args}"),
        );
        r.stdout().trim().to_string()
    };
    assert_eq!(short(GW6, "c2 AAAA"), C2_6, "{}", w.plain_log());
    assert_eq!(short(GW4, "c2 AAAA"), C2_6);
    assert_eq!(short(GW6, "c2 A"), "10.100.6.3");
    assert_eq!(short(GW6, &format!("-x {C2_6}")), "c2.");
    // Relayed over IPv6 to an IPv6 upstream (a test resolver in the servers namespace).
    let log = w.dir.path().join("dnsmasq6.log");
    let _up = Bg::sh(
        &w.servers,
        &format!(
            "exec dnsmasq --keep-in-foreground --log-facility=- --log-queries --user=root \
             --pid-file= --no-resolv --no-hosts --listen-address={FAR6} --bind-interfaces \
             --port=53 --address=/fwd.test/203.0.113.50 2>>{}",
            log.display()
        ),
    );
    wait_for("dnsmasq on the IPv6 upstream", || {
        listening_on(&w.servers, "udp", "*", 53)
    });
    assert_eq!(
        short(GW6, "x.fwd.test A"),
        "203.0.113.50",
        "{}",
        w.plain_log()
    );
    let seen = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        seen.contains(&format!("from {WORLD6}")),
        "relayed from the world's IPv6 address: {seen}"
    );
}

#[test]
fn run_writes_both_nameservers_and_host_loopback_reaches_ipv6_localhost() {
    if !privileged("run_writes_both_nameservers_and_host_loopback_reaches_ipv6_localhost") {
        return;
    }
    let w = NatWorld::start(&["--network", "net=10.100.6.0/24,fd00:60::/64"]);
    let out = w.ctl(&[
        "run",
        "--network",
        NET,
        "--",
        "sh",
        "-c",
        "cat /etc/resolv.conf; ip -6 -br addr show eth0",
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains(&format!("nameserver {GW4}\nnameserver {GW6}\n")),
        "{text}"
    );
    assert!(text.contains(&format!("{C1_6}/64")), "{text}");

    w.ctl_ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "10.100.10.0/24",
        "--subnet",
        "fd00:a0::/64",
        "-o",
        "host_loopback=true",
        "hl",
    ]);
    let c = Netns::new("c");
    w.connect("hl", &c, "c");
    let _lo = Bg::spawn(
        &w.world,
        &[
            "socat",
            "TCP6-LISTEN:9000,bind=[::1],reuseaddr,fork",
            "EXEC:cat",
        ],
    );
    wait_for("world [::1]:9000", || {
        listening_on(&w.world, "tcp", "[::1]", 9000)
    });
    let r = run(&c, 10, "echo via-gw6 | socat -t 3 - TCP6:[fd00:a0::1]:9000");
    assert_eq!(
        r.stdout().trim(),
        "via-gw6",
        "host_loopback over IPv6: {}",
        w.why(&r)
    );
}
