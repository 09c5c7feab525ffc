//! Rootless is the point: the daemon runs as an unprivileged uid with no capabilities and
//! attaches containers living in `unshare -Urn` namespaces owned by that uid; `vswitchctl run`
//! works for that user too.

mod common;

use common::*;

const UID: u32 = 65534;

fn as_user(args: &[&str]) -> Vec<String> {
    let mut v = vec![
        "setpriv".to_string(),
        format!("--reuid={UID}"),
        format!("--regid={UID}"),
        "--clear-groups".into(),
        "--inh-caps=-all".into(),
    ];
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

/// `(name, Seccomp, NoNewPrivs)` of every `dp-*` thread of process `pid`.
fn sandboxed_threads(pid: u32) -> Vec<(String, String, String)> {
    let mut v = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let name = field("Name:");
        if name.starts_with("dp-") {
            v.push((name, field("Seccomp:"), field("NoNewPrivs:")));
        }
    }
    v
}

#[test]
fn unprivileged_daemon_attaches_user_namespace_containers() {
    if !privileged("unprivileged_daemon_attaches_user_namespace_containers") {
        return;
    }
    let tun = std::fs::metadata("/dev/net/tun").expect("/dev/net/tun");
    let mode = std::os::unix::fs::PermissionsExt::mode(&tun.permissions()) & 0o777;
    if mode != 0o666 {
        let msg = format!("/dev/net/tun is mode {mode:o}; rootless needs 0666 (.ci/run sets it)");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!(
            "\n*** SKIPPED unprivileged_daemon_attaches_user_namespace_containers: {msg} ***\n"
        );
        return;
    }
    let bins = tempfile::tempdir().unwrap();
    let vswitchd = public_copy(bins.path(), "vswitchd");
    let vswitchctl = public_copy(bins.path(), "vswitchctl");
    let d = Daemon::start_as(&["--network", "rl=10.97.1.0/24"], Some(UID), vswitchd);

    // The daemon really is unprivileged.
    let pid = d.pid().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
            .unwrap()
    };
    assert_eq!(field("Uid:"), UID.to_string(), "daemon uid");
    assert_eq!(
        field("CapEff:"),
        "0000000000000000",
        "daemon has no capabilities"
    );
    // Every data path thread is confined: seccomp filter mode, no_new_privs.
    let dp = sandboxed_threads(pid);
    assert_eq!(dp.len(), 1, "one data path thread for network rl: {dp:?}");
    for (name, seccomp, nnp) in &dp {
        assert_eq!(seccomp, "2", "{name}: Seccomp");
        assert_eq!(nnp, "1", "{name}: NoNewPrivs");
    }

    // Two containers in user namespaces owned by that uid.
    let c1 = Proc::spawn(
        "setpriv",
        &as_user(&["unshare", "-Urn", "sleep", "120"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let c2 = Proc::spawn(
        "setpriv",
        &as_user(&["unshare", "-Urn", "sleep", "120"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let nsnet = |p: &Proc| format!("/proc/{}/ns/net", p.pid());
    wait_for("unshared namespaces", || {
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        [&c1, &c2]
            .iter()
            .all(|p| std::fs::read_link(nsnet(p)).is_ok_and(|l| l != own))
    });
    d.ctl_ok(&[
        "network",
        "connect",
        "rl",
        &c1.pid().to_string(),
        "--name",
        "u1",
    ]);
    d.ctl_ok(&["network", "connect", "rl", &nsnet(&c2), "--name", "u2"]);
    let in_c1 = |args: &[&str]| {
        let mut v = vec!["-t".to_string(), c1.pid().to_string(), "-n".to_string()];
        v.extend(args.iter().map(|s| s.to_string()));
        cmd("nsenter", &v.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let addr = stdout(&in_c1(&["ip", "-br", "addr", "show", "eth0"]));
    assert!(
        addr.contains("10.97.1.2/24"),
        "eth0 configured by the rootless helper: {addr}"
    );
    assert!(
        in_c1(&["ping", "-c", "2", "-W", "1", "10.97.1.1"])
            .status
            .success(),
        "gateway"
    );
    assert!(
        in_c1(&["ping", "-c", "2", "-W", "1", "10.97.1.3"])
            .status
            .success(),
        "u2"
    );

    // `vswitchctl run` as the same unprivileged user.
    let socket = d.socket.to_str().unwrap().to_string();
    let run = as_user(&[
        vswitchctl.to_str().unwrap(),
        "--socket",
        &socket,
        "run",
        "--network",
        "rl",
        "--name",
        "r",
        "--",
        "sh",
        "-c",
        "ping -c 1 -W 2 10.97.1.2 >/dev/null && exit 42",
    ]);
    let out = cmd(
        "setpriv",
        &run[1..].iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(
        out.status.code(),
        Some(42),
        "run as a user: {}\n{}",
        stderr(&out),
        d.log()
    );

    // Disconnect works rootless too.
    d.ctl_ok(&["network", "disconnect", "rl", "u2"]);
    assert!(
        !in_c1(&["ping", "-c", "2", "-W", "1", "10.97.1.3"])
            .status
            .success()
    );
}
