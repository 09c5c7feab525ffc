//! Every bad input gets a one-line error naming the problem, a meaningful exit code, and
//! changes nothing.

mod common;

use common::*;

/// Runs vswitchctl expecting failure with `code`; returns the single stderr line.
fn refused(d: &Daemon, args: &[&str], code: i32) -> String {
    let out = d.ctl(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "{args:?} → {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line for {args:?}: {err:?}");
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0].to_string()
}

/// The endpoints of a network minus their traffic counters (which move with every IPv6
/// router solicitation the containers' kernels send).
fn endpoints_without_counters(d: &Daemon, network: &str) -> serde_json::Value {
    let mut c = d.inspect(network)["Containers"].clone();
    for ep in c.as_object_mut().unwrap().values_mut() {
        ep.as_object_mut().unwrap().remove("Counters");
    }
    c
}

#[test]
fn bad_inputs_get_one_line_errors_and_change_nothing() {
    if !privileged("bad_inputs_get_one_line_errors_and_change_nothing") {
        return;
    }
    let d = Daemon::start(&["--network", "net1=10.96.1.0/24"]);
    d.ctl_ok(&["network", "create", "--subnet", "10.96.9.0/30", "tiny"]);
    let c1 = Netns::new("c1");
    d.connect("net1", &c1, "c1");
    // Pool exhausted: a /30 has one address besides its gateway.
    let (t1, t2) = (Netns::new("t1"), Netns::new("t2"));
    d.connect("tiny", &t1, "t1");
    let line = refused(
        &d,
        &["network", "connect", "tiny", &t2.path(), "--name", "t2"],
        1,
    );
    assert!(line.contains("no free address"), "{line}");
    assert!(
        !t2.exec(&["ip", "link", "show", "eth0"]).status.success(),
        "nothing half-made in t2"
    );

    let before_ls = d.ctl_ok(&["network", "ls"]);
    let before_net1 = endpoints_without_counters(&d, "net1");

    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["network", "create", "--subnet", "10.96.300.0/24", "x"],
            1,
            "invalid CIDR",
        ),
        (
            &["network", "create", "--subnet", "10.96.1.5/24", "x"],
            1,
            "host bits",
        ),
        (
            &["network", "create", "--subnet", "10.96.0.0/16", "x"],
            1,
            "overlaps",
        ),
        (
            &[
                "network",
                "create",
                "--subnet",
                "10.97.0.0/24",
                "--gateway",
                "10.98.0.1",
                "x",
            ],
            1,
            "10.98.0.1",
        ),
        (
            &[
                "network",
                "create",
                "--subnet",
                "10.97.0.0/24",
                "--opt",
                "icc=maybe",
                "x",
            ],
            1,
            "icc",
        ),
        (
            &["network", "create", "--subnet", "10.97.0.0/24", "net1"],
            1,
            "already in use",
        ),
        (
            &["network", "create", "--subnet", "10.97.0.0/24", "bad/name"],
            1,
            "invalid network name",
        ),
        (&["network", "inspect", "nope"], 1, "network nope not found"),
        (&["network", "rm", "nope"], 1, "network nope not found"),
        (
            &["network", "connect", "nope", "/run/netns/x"],
            1,
            "network nope not found",
        ),
        (
            &[
                "network",
                "connect",
                "net1",
                "/run/netns/does-not-exist",
                "--name",
                "z",
            ],
            1,
            "does not exist",
        ),
        (
            &["network", "connect", "net1", "/etc/hostname", "--name", "z"],
            1,
            "not a network namespace",
        ),
        (
            &["network", "connect", "net1", "999999999", "--name", "z"],
            1,
            "no process",
        ),
        (
            &[
                "network",
                "connect",
                "net1",
                "/run/netns/x",
                "--name",
                "z",
                "--ip",
                "10.99.0.5",
            ],
            1,
            "10.99.0.5",
        ),
        (
            &[
                "network",
                "connect",
                "net1",
                "/run/netns/x",
                "--name",
                "z",
                "--ip",
                "10.96.1.2",
            ],
            1,
            "in use",
        ),
        (
            &[
                "network",
                "connect",
                "net1",
                "/run/netns/x",
                "--name",
                "z",
                "--ip",
                "10.96.1.1",
            ],
            1,
            "10.96.1.1",
        ),
        (
            &["network", "connect", "net1", "/run/netns/x", "--name", "c1"],
            1,
            "already in use",
        ),
        (
            &[
                "network",
                "connect",
                "net1",
                "/run/netns/x",
                "--name",
                "z",
                "--mac",
                "zz",
            ],
            1,
            "invalid MAC",
        ),
        (
            &[
                "network",
                "connect",
                "net1",
                "/run/netns/x",
                "--name",
                "z",
                "--interface",
                "a/b",
            ],
            1,
            "invalid interface name \"a/b\"",
        ),
        (
            &[
                "network",
                "connect",
                "net1",
                "/run/netns/x",
                "--name",
                "z",
                "--interface",
                "lo",
            ],
            1,
            "interface lo already exists",
        ),
        (
            &["network", "disconnect", "net1", "ghost"],
            1,
            "not connected",
        ),
        (&["network", "create", "--mtu", "10", "x"], 2, "10"),
    ];
    let c2 = Netns::new("c2");
    for (args, code, needle) in cases {
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("/run/netns/x", &c2.path()))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if *code == 2 {
            let out = d.ctl(&args);
            assert_eq!(out.status.code(), Some(2), "usage error for {args:?}");
            continue;
        }
        let line = refused(&d, &args, *code);
        assert!(
            line.contains(needle),
            "{args:?}: {line:?} should mention {needle:?}"
        );
    }
    // The same container twice on one network.
    let line = refused(
        &d,
        &["network", "connect", "net1", &c1.path(), "--name", "again"],
        1,
    );
    assert!(line.contains("already connected"), "{line}");
    // Nothing changed.
    assert_eq!(
        d.ctl_ok(&["network", "ls"]),
        before_ls,
        "no network added or removed"
    );
    assert_eq!(
        endpoints_without_counters(&d, "net1"),
        before_net1,
        "net1 untouched"
    );
    assert!(
        !c2.exec(&["ip", "link", "show", "eth0"]).status.success(),
        "nothing half-made in c2"
    );
}

#[test]
fn daemon_not_running_is_exit_code_3() {
    let dir = tempfile::tempdir().unwrap();
    let out = cmd(
        bin("vswitchctl").to_str().unwrap(),
        &[
            "--socket",
            dir.path().join("none.sock").to_str().unwrap(),
            "network",
            "ls",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("daemon not running"), "{err}");
}

#[test]
fn daemon_refuses_conflicting_network_flag() {
    if !privileged("daemon_refuses_conflicting_network_flag") {
        return;
    }
    let mut d = Daemon::start(&["--network", "n=10.96.5.0/24"]);
    d.stop();
    let out = cmd(
        bin("vswitchd").to_str().unwrap(),
        &[
            "--state-dir",
            d.state_dir.to_str().unwrap(),
            "--socket",
            d.socket.to_str().unwrap(),
            "--network",
            "n=10.96.6.0/24",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("already exists with subnet 10.96.5.0/24"),
        "{}",
        stderr(&out)
    );
    let out = cmd(
        bin("vswitchd").to_str().unwrap(),
        &[
            "--state-dir",
            d.state_dir.to_str().unwrap(),
            "--socket",
            d.socket.to_str().unwrap(),
            "--network",
            "m=10.96.5.128/25",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("overlaps"), "{}", stderr(&out));
}
