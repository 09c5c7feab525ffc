//! State survives the daemon: a restart (clean or crash) re-attaches containers whose
//! namespaces still exist, reports the others as lost, and never hands one address to two
//! containers.

mod common;

use common::*;

#[test]
fn restart_keeps_leases_reattaches_and_reports_lost_endpoints() {
    if !privileged("restart_keeps_leases_reattaches_and_reports_lost_endpoints") {
        return;
    }
    let mut d = Daemon::start(&["--network", "net1=10.94.1.0/24"]);
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let ip1 = d.connect("net1", &c1, "c1");
    let ip2 = d.connect("net1", &c2, "c2");
    d.ctl_ok(&["network", "create", "--subnet", "10.94.2.0/24", "later"]);

    // Clean stop: the containers keep eth0; a new daemon re-opens them.
    d.stop();
    assert!(
        c1.exec(&["ip", "link", "show", "eth0"]).status.success(),
        "eth0 outlives the daemon"
    );
    d.restart();
    assert!(c1.ping(&ip2), "traffic flows again after a restart");
    assert_eq!(d.endpoint("net1", "c1")["Status"], "attached");
    assert!(
        d.ctl_ok(&["network", "ls"]).contains("later"),
        "runtime-created network kept"
    );

    // Crash with c2's namespace deleted meanwhile; the stale socket must not block the start.
    d.crash();
    assert!(d.socket.exists(), "a crash leaves the socket file behind");
    let c2_name = c2.name.clone();
    drop(c2);
    assert!(!std::path::Path::new(&format!("/run/netns/{c2_name}")).exists());
    d.restart();
    let lost = d.endpoint("net1", "c2");
    assert!(
        lost["Status"].as_str().unwrap().starts_with("lost"),
        "c2 reported lost: {lost}"
    );
    assert_eq!(d.endpoint("net1", "c1")["Status"], "attached");
    assert!(c1.ping("10.94.1.1"));

    // The lost endpoint keeps its lease until it is disconnected.
    let c3 = Netns::new("c3");
    let ip3 = d.connect("net1", &c3, "c3");
    assert!(
        ip3 != ip1 && ip3 != ip2,
        "no address handed out twice: {ip3}"
    );
    d.ctl_ok(&["network", "disconnect", "net1", "c2"]);
    let c4 = Netns::new("c4");
    assert_eq!(
        d.connect("net1", &c4, "c4"),
        ip2,
        "released only by disconnect"
    );
}

#[test]
fn a_second_daemon_on_the_same_socket_or_state_is_refused() {
    if !privileged("a_second_daemon_on_the_same_socket_or_state_is_refused") {
        return;
    }
    let d = Daemon::start(&["--network", "n=10.95.1.0/24"]);
    let out = cmd(
        bin("vswitchd").to_str().unwrap(),
        &[
            "--state-dir",
            d.state_dir.to_str().unwrap(),
            "--socket",
            d.dir.path().join("other.sock").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("in use by another vswitchd"),
        "{}",
        stderr(&out)
    );
    let other_state = d.dir.path().join("other-state");
    let out = cmd(
        bin("vswitchd").to_str().unwrap(),
        &[
            "--state-dir",
            other_state.to_str().unwrap(),
            "--socket",
            d.socket.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already serving"), "{}", stderr(&out));
    d.ctl_ok(&["network", "inspect", "n"]);
}
