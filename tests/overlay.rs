//! Overlay networks across hosts, as a user of three vswitchd hosts sharing an etcd sees
//! them: `network create --driver overlay` on one host shows up on all, addresses are
//! unique cluster-wide even when two hosts attach at once, containers resolve each other's
//! names across hosts, a killed host's containers leave the others (and come back when it
//! restarts), and a store outage leaves what runs running while new attaches fail with one
//! line. The layout is in `tests/common/cluster.rs`.

mod common;

use std::collections::BTreeSet;

use common::cluster::*;
use common::dns::dig;
use common::world::{Session, run, tcp_echo};
use common::*;

const NET: &str = "ov";
const SUBNET: &str = "10.90.0.0/24";
const GW: &str = "10.90.0.1";

/// The names (and addresses) of the remote containers a host sees on `network`.
fn remote(h: &Daemon, network: &str) -> Vec<(String, String)> {
    let net = h.inspect(network);
    let mut out: Vec<(String, String)> = net["Overlay"]["RemoteContainers"]
        .as_object()
        .map(|m| {
            m.values()
                .map(|e| {
                    (
                        e["Name"].as_str().unwrap_or_default().to_string(),
                        e["IPv4Address"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The `network ls` row of `name` on a host, split into columns.
fn ls_row(h: &Daemon, name: &str) -> Option<Vec<String>> {
    h.ctl_ok(&["network", "ls"])
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cols| cols.get(1).map(String::as_str) == Some(name))
}

fn create_overlay(c: &Cluster, on: usize) {
    c.h(on).ctl_ok(&[
        "network", "create", "--driver", "overlay", "--subnet", SUBNET, NET,
    ]);
    for i in 1..=c.hosts.len() {
        let seen = wait_until(5, || ls_row(c.h(i), NET).is_some());
        assert!(seen, "h{i} does not list {NET}\n{}", c.logs());
    }
}

#[test]
fn overlay_networks_are_global_and_bridge_networks_stay_local() {
    if !privileged("overlay_networks_are_global_and_bridge_networks_stay_local") {
        return;
    }
    let c = Cluster::start(3, &[]);
    c.h(1)
        .ctl_ok(&["network", "create", "--subnet", "10.91.0.0/24", "local1"]);
    c.h(2).ctl_ok(&[
        "network", "create", "--driver", "overlay", "--subnet", SUBNET, NET,
    ]);
    for i in 1..=3 {
        let seen = wait_until(3, || {
            ls_row(c.h(i), NET).is_some_and(|r| r[2] == "overlay" && r[3] == "global")
        });
        assert!(
            seen,
            "h{i} does not list {NET} as overlay/global within 3 s:\n{}\n{}",
            c.h(i).ctl_ok(&["network", "ls"]),
            c.logs()
        );
    }
    let row = ls_row(c.h(1), "local1").expect("local1 listed on h1");
    assert_eq!((row[2].as_str(), row[3].as_str()), ("bridge", "local"));
    assert!(
        ls_row(c.h(2), "local1").is_none(),
        "a bridge network leaked to h2"
    );
    // Same id, VNI and gateway everywhere; the MTU is the underlay's (1500) minus 50.
    let a = c.h(1).inspect(NET);
    let b = c.h(3).inspect(NET);
    assert_eq!(a["Id"], b["Id"]);
    assert_eq!(a["Overlay"]["VNI"], b["Overlay"]["VNI"]);
    assert_eq!(a["Options"]["com.docker.network.driver.mtu"], "1450");
    assert_eq!(b["Gateway"]["IPv4Address"], GW);
    // A name taken in the cluster is refused on another host.
    let dup = c.h(3).ctl(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--subnet",
        "10.92.0.0/24",
        NET,
    ]);
    assert!(!dup.status.success());
    assert_eq!(stderr(&dup).lines().count(), 1, "{}", stderr(&dup));
    // rm is refused while any host has an endpoint on it, and works everywhere after.
    let c2 = Netns::new("c2");
    c.h(2).connect(NET, &c2, "c2");
    let rm = c.h(1).ctl(&["network", "rm", NET]);
    assert!(!rm.status.success(), "rm with an endpoint on h2 succeeded");
    let msg = stderr(&rm);
    assert!(msg.contains("c2") && msg.lines().count() == 1, "{msg}");
    c.h(2).ctl_ok(&["network", "disconnect", NET, "c2"]);
    c.h(1).ctl_ok(&["network", "rm", NET]);
    for i in 1..=3 {
        let gone = wait_until(3, || ls_row(c.h(i), NET).is_none());
        assert!(gone, "h{i} still lists {NET} after rm\n{}", c.logs());
    }
}

#[test]
fn overlay_without_a_cluster_store_is_refused_with_one_line() {
    if !privileged("overlay_without_a_cluster_store_is_refused_with_one_line") {
        return;
    }
    let d = Daemon::start(&[]);
    let out = d.ctl(&[
        "network", "create", "--driver", "overlay", "--subnet", SUBNET, NET,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr(&out);
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(msg.contains("--cluster-store"), "{msg}");
    let bad = d.ctl(&["network", "create", "--driver", "vlan", NET]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    // The daemon refuses a store without an advertise address, and a bad store URL.
    for args in [
        vec!["--cluster-store", STORE],
        vec![
            "--cluster-store",
            "consul://x:1",
            "--cluster-advertise",
            "127.0.0.1",
        ],
        vec![
            "--cluster-store",
            STORE,
            "--cluster-advertise",
            "198.51.100.99",
        ],
    ] {
        let out = d.world.exec(
            &[
                &[
                    bin("vswitchd").to_str().unwrap(),
                    "--socket",
                    &format!("{}/other.sock", d.dir.path().display()),
                    "--state-dir",
                    &format!("{}/other-state", d.dir.path().display()),
                ][..],
                &args[..],
            ]
            .concat(),
        );
        assert!(!out.status.success(), "{args:?} accepted");
        // One line says what is wrong (clap adds its usage lines after a usage error).
        let msg = stderr(&out);
        let first = msg.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error") || first.starts_with("vswitchd: error"),
            "{args:?}: {msg}"
        );
        assert!(msg.contains("--cluster-"), "{args:?}: {msg}");
    }
}

#[test]
fn concurrent_attaches_on_two_hosts_never_share_an_address() {
    if !privileged("concurrent_attaches_on_two_hosts_never_share_an_address") {
        return;
    }
    let c = Cluster::start(2, &[]);
    create_overlay(&c, 1);
    const EACH: usize = 6;
    let spaces: Vec<Vec<Netns>> = (0..2)
        .map(|h| {
            (0..EACH)
                .map(|i| Netns::new(&format!("h{h}c{i}")))
                .collect()
        })
        .collect();
    let results: Vec<(usize, String, std::process::Output)> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (h, list) in spaces.iter().enumerate() {
            for (i, ns) in list.iter().enumerate() {
                let host = c.h(h + 1);
                let name = format!("h{h}c{i}");
                handles.push(s.spawn(move || {
                    let out = host.ctl(&["network", "connect", NET, &ns.path(), "--name", &name]);
                    (h + 1, name, out)
                }));
            }
        }
        handles.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut addrs = BTreeSet::new();
    for (h, name, out) in &results {
        assert!(
            out.status.success(),
            "connect {name} on h{h}: {}\n{}",
            stderr(out),
            c.logs()
        );
        let ip = c.h(*h).endpoint(NET, name)["IPv4Address"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(addrs.insert(ip.clone()), "{ip} given twice\n{}", c.logs());
    }
    assert_eq!(addrs.len(), 2 * EACH);
    // Each host sees the other's endpoints, with the same addresses.
    let on2: BTreeSet<String> = remote(c.h(1), NET).into_iter().map(|(_, ip)| ip).collect();
    let seen = wait_until(3, || {
        remote(c.h(1), NET).len() == EACH && remote(c.h(2), NET).len() == EACH
    });
    assert!(
        seen,
        "h1 sees {:?}, h2 sees {:?}",
        remote(c.h(1), NET),
        remote(c.h(2), NET)
    );
    assert!(on2.iter().all(|ip| addrs.contains(ip)));
}

#[test]
fn names_of_containers_on_other_hosts_resolve_on_every_gateway() {
    if !privileged("names_of_containers_on_other_hosts_resolve_on_every_gateway") {
        return;
    }
    let c = Cluster::start(3, &[]);
    create_overlay(&c, 3);
    let c1 = Netns::new("c1");
    let c2 = Netns::new("c2");
    let ip1 = c.h(1).connect_with(NET, &c1, "web", &["--alias", "www"]);
    let ip2 = c.h(2).connect(NET, &c2, "db");
    for (ns, name, want) in [(&c2, "web", &ip1), (&c2, "www", &ip1), (&c1, "db", &ip2)] {
        let ok = wait_until(3, || dig(ns, GW, name).resolves_to(&[want]));
        assert!(
            ok,
            "{name} does not resolve to {want}: {}\n{}",
            dig(ns, GW, name),
            c.logs()
        );
    }
}

#[test]
fn a_killed_host_leaves_the_cluster_and_rejoins_when_restarted() {
    if !privileged("a_killed_host_leaves_the_cluster_and_rejoins_when_restarted") {
        return;
    }
    let mut c = Cluster::start(3, &[]);
    create_overlay(&c, 1);
    let c1 = Netns::new("c1");
    let c2 = Netns::new("c2");
    let c3 = Netns::new("c3");
    let ip1 = c.h(1).connect(NET, &c1, "one");
    c.h(2).connect(NET, &c2, "two");
    let ip3 = c.h(3).connect(NET, &c3, "three");
    let seen = wait_until(3, || remote(c.h(2), NET).len() == 2);
    assert!(seen, "h2 sees {:?}", remote(c.h(2), NET));
    assert!(dig(&c2, GW, "one").resolves_to(&[&ip1]));

    // h1 is killed: after its lease TTL its container leaves h2's table and DNS.
    c.hosts[0].crash();
    let gone = wait_until(TTL + 8, || {
        remote(c.h(2), NET).iter().all(|(n, _)| n != "one")
    });
    assert!(
        gone,
        "h2 still sees one: {:?}\n{}",
        remote(c.h(2), NET),
        c.logs()
    );
    assert_eq!(dig(&c2, GW, "one").status(), "NXDOMAIN");
    assert_eq!(
        remote(c.h(3), NET).len(),
        1,
        "h3: {:?}",
        remote(c.h(3), NET)
    );

    // Restarted, h1 rejoins with its container, at the same address.
    c.hosts[0].restart();
    let back = wait_until(5, || {
        remote(c.h(2), NET).contains(&("one".to_string(), format!("{ip1}/24")))
    });
    assert!(
        back,
        "h2 does not see one again: {:?}\n{}",
        remote(c.h(2), NET),
        c.logs()
    );
    assert!(dig(&c2, GW, "one").resolves_to(&[&ip1]));

    // h3 is killed and its address freed: another host may take it.
    c.hosts[2].crash();
    let gone = wait_until(TTL + 8, || {
        remote(c.h(2), NET).iter().all(|(n, _)| n != "three")
    });
    assert!(gone, "h2 still sees three: {:?}", remote(c.h(2), NET));
    let c4 = Netns::new("c4");
    let out = c.h(2).ctl(&[
        "network",
        "connect",
        NET,
        &c4.path(),
        "--name",
        "four",
        "--ip",
        &ip3,
    ]);
    assert!(
        out.status.success(),
        "{ip3} not freed: {}\n{}",
        stderr(&out),
        c.logs()
    );
}

#[test]
fn a_store_outage_keeps_what_runs_and_refuses_new_attaches_with_one_line() {
    if !privileged("a_store_outage_keeps_what_runs_and_refuses_new_attaches_with_one_line") {
        return;
    }
    let mut c = Cluster::start(2, &[]);
    create_overlay(&c, 1);
    let c1 = Netns::new("c1");
    let c2 = Netns::new("c2");
    let ip1 = c.h(1).connect(NET, &c1, "one");
    c.h(2).connect(NET, &c2, "two");
    assert!(wait_until(3, || dig(&c2, GW, "one").resolves_to(&[&ip1])));
    assert!(
        c2.ping(&ip1),
        "no ping across hosts before the outage\n{}",
        c.logs()
    );

    c.etcd.stop();
    let c3 = Netns::new("c3");
    let out = c
        .h(2)
        .ctl(&["network", "connect", NET, &c3.path(), "--name", "three"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "connect during the outage: {}",
        stderr(&out)
    );
    let msg = stderr(&out);
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(
        msg.contains("cluster store") && msg.contains("unreachable"),
        "{msg}"
    );
    // Longer than the TTL: the cached view stays in force.
    std::thread::sleep(std::time::Duration::from_secs(TTL + 2));
    assert!(dig(&c2, GW, "one").resolves_to(&[&ip1]), "{}", c.logs());
    assert_eq!(remote(c.h(2), NET).len(), 1);
    assert!(
        c2.ping(&ip1),
        "no ping across hosts during the outage\n{}",
        c.logs()
    );

    // The store is back: attaches work again and nobody lost anyone.
    c.etcd.start();
    let ok = wait_until(10, || {
        c.h(2)
            .ctl(&["network", "connect", NET, &c3.path(), "--name", "three"])
            .status
            .success()
    });
    assert!(ok, "connect after the outage fails\n{}", c.logs());
    let seen = wait_until(5, || remote(c.h(1), NET).len() == 2);
    assert!(seen, "h1 sees {:?}\n{}", remote(c.h(1), NET), c.logs());
    assert!(dig(&c2, GW, "one").resolves_to(&[&ip1]));
}

#[test]
fn containers_on_different_hosts_ping_and_talk_tcp_over_vxlan() {
    if !privileged("containers_on_different_hosts_ping_and_talk_tcp_over_vxlan") {
        return;
    }
    let c = Cluster::start(3, &[]);
    create_overlay(&c, 1);
    let c1 = Netns::new("c1");
    let c2 = Netns::new("c2");
    let c3 = Netns::new("c3");
    let ip1 = c.h(1).connect(NET, &c1, "one");
    let ip2 = c.h(2).connect(NET, &c2, "two");
    let ip3 = c.h(3).connect(NET, &c3, "three");
    assert!(
        wait_until(3, || remote(c.h(1), NET).len() == 2),
        "{}",
        c.logs()
    );
    // MTU = the underlay's 1500 minus 50.
    let link =
        String::from_utf8_lossy(&c1.exec(&["ip", "link", "show", "eth0"]).stdout).into_owned();
    assert!(link.contains("mtu 1450"), "{link}");
    for (from, to) in [(&c1, &ip2), (&c2, &ip3), (&c3, &ip1)] {
        assert!(
            from.ping(to),
            "[{}] ping {to} fails\n{}",
            from.name,
            c.logs()
        );
    }
    // The gateway is each host's own: reachable from every container.
    assert!(c3.ping(GW));
    // TCP across hosts, with a bulk transfer far larger than the MTU.
    let _echo = tcp_echo(&c2, 7000);
    let mut s = Session::tcp(&c1, &format!("{ip2}:7000"));
    assert!(s.echoes("hello across hosts"), "{}", c.logs());
    let bulk = run(
        &c3,
        20,
        &format!("head -c 4000000 /dev/zero | socat -t 5 - TCP:{ip2}:7000 | wc -c"),
    );
    assert!(
        bulk.ok() && bulk.stdout().trim() == "4000000",
        "4 MB echoed through the overlay: {bulk}\n{}",
        c.logs()
    );
}

#[test]
fn icc_false_and_isolation_hold_across_hosts() {
    if !privileged("icc_false_and_isolation_hold_across_hosts") {
        return;
    }
    let c = Cluster::start(2, &[]);
    c.h(1).ctl_ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--subnet",
        SUBNET,
        "--opt",
        "icc=false",
        NET,
    ]);
    c.h(1).ctl_ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--subnet",
        "10.93.0.0/24",
        "other",
    ]);
    assert!(wait_until(3, || ls_row(c.h(2), NET).is_some()
        && ls_row(c.h(2), "other").is_some()));
    let c1 = Netns::new("c1");
    let c2 = Netns::new("c2");
    let c3 = Netns::new("c3");
    c.h(1).connect(NET, &c1, "one");
    let ip2 = c.h(2).connect(NET, &c2, "two");
    let ip3 = c.h(2).connect("other", &c3, "three");
    assert!(
        wait_until(3, || remote(c.h(1), NET).len() == 1),
        "{}",
        c.logs()
    );
    // icc=false: no container-to-container traffic, also across hosts; the gateway answers.
    assert!(c1.ping(GW));
    assert!(
        c1.unreachable(&ip2),
        "icc=false let c1 reach c2 on another host"
    );
    // Another overlay network is another world, even on the same hosts.
    let via = run(
        &c1,
        5,
        &format!("ip route add {ip3}/32 dev eth0; ping -c 2 -W 1 {ip3}"),
    );
    assert!(
        !via.ok(),
        "c1 reached a container of another overlay network: {via}"
    );
}
