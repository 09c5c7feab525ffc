//! The control plane holds against its own users: a restart serves what the state holds,
//! state and socket are private, oversized bodies get 413, hundreds of idle or half-sent
//! connections do not keep others waiting, and a hung netns helper is killed without
//! stalling the daemon or leaking a lease.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A daemon started by hand (own flags and environment) inside `world`.
struct Plain {
    proc: Proc,
    socket: PathBuf,
    log: PathBuf,
}

impl Plain {
    /// Starts `vswitchd --state-dir DIR/state --socket DIR/vswitchd.sock ARGS` in `world`
    /// with `env`, and waits until it answers.
    fn start(world: &Netns, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let socket = dir.join("vswitchd.sock");
        let log = dir.join("plain.log");
        let child = Command::new("ip")
            .args(["netns", "exec", &world.name])
            .arg(bin("vswitchd"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start vswitchd");
        let mut p = Plain {
            proc: Proc(child),
            socket,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !p.ctl(&["network", "ls"]).status.success() {
            if let Ok(Some(st)) = p.proc.0.try_wait() {
                panic!("vswitchd exited ({st}): {}", p.log());
            }
            assert!(Instant::now() < deadline, "no answer: {}", p.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn ctl(&self, args: &[&str]) -> std::process::Output {
        ctl_at(&self.socket, args)
    }

    fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "vswitchctl {args:?}: {}\n{}",
            stderr(&out),
            self.log()
        );
        stdout(&out)
    }

    fn stop(mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.proc.pid() as i32),
            nix::sys::signal::SIGTERM,
        );
        let _ = self.proc.0.wait();
    }
}

fn ctl_at(socket: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin("vswitchctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run vswitchctl")
}

/// Runs `vswitchd ARGS` in `world` expecting it to refuse to start; returns its output.
fn refused_start(world: &Netns, args: &[&str]) -> std::process::Output {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &world.name])
        .arg(bin("vswitchd"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vswitchd");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("vswitchd {args:?} kept running instead of refusing to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn a_plain_restart_serves_the_state_and_adds_no_bridge() {
    if !privileged("a_plain_restart_serves_the_state_and_adds_no_bridge") {
        return;
    }
    let world = Netns::new("world");
    let dir = tempfile::tempdir().unwrap();

    // net1 takes the first default pool, 172.17.0.0/16, which "bridge" would want.
    let d = Plain::start(&world, dir.path(), &["--network", "net1"], &[]);
    assert!(d.ctl_ok(&["network", "ls"]).contains("172.17.0.0/16"));
    d.stop();
    let d = Plain::start(&world, dir.path(), &[], &[]);
    let ls = d.ctl_ok(&["network", "ls"]);
    assert!(names(&ls) == ["net1"], "{ls}");
    d.stop();

    // With the state's network elsewhere, a plain restart still adds nothing.
    let dir2 = tempfile::tempdir().unwrap();
    let d = Plain::start(
        &world,
        dir2.path(),
        &["--network", "net2=10.97.1.0/24"],
        &[],
    );
    d.stop();
    let d = Plain::start(&world, dir2.path(), &[], &[]);
    let ls = d.ctl_ok(&["network", "ls"]);
    assert!(names(&ls) == ["net2"], "{ls}");
    d.stop();
    let saved = std::fs::read_to_string(dir2.path().join("state/state.json")).unwrap();
    assert!(!saved.contains("bridge"), "nothing saved: {saved}");

    // Only an empty state gets the implicit "bridge".
    let dir3 = tempfile::tempdir().unwrap();
    let d = Plain::start(&world, dir3.path(), &[], &[]);
    let ls = d.ctl_ok(&["network", "ls"]);
    assert!(
        names(&ls) == ["bridge"] && ls.contains("172.17.0.0/16"),
        "{ls}"
    );
    d.stop();
}

/// The NAME column of `network ls` (the DRIVER column says `bridge` too).
fn names(ls: &str) -> Vec<&str> {
    ls.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect()
}

#[test]
fn state_files_and_socket_are_private_unless_a_socket_group_is_given() {
    if !privileged("state_files_and_socket_are_private_unless_a_socket_group_is_given") {
        return;
    }
    let world = Netns::new("world");
    let dir = tempfile::tempdir().unwrap();
    // Reachable by other users (the tempdir is 0700), so the socket's own mode decides.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let state = dir.path().join("state");
    // A state directory and file left world-readable by an older version are tightened.
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();

    let d = Plain::start(&world, dir.path(), &["--network", "n=10.97.2.0/24"], &[]);
    let c1 = Netns::new("c1");
    d.ctl_ok(&["network", "connect", "n", &c1.path(), "--name", "c1"]);
    assert_eq!(mode(&state), 0o700, "state dir");
    for f in ["state.json", "state.json.bak", "lock"] {
        assert_eq!(mode(&state.join(f)), 0o600, "{f}");
    }
    let names: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for n in &names {
        assert_eq!(
            mode(&state.join(n)),
            0o600,
            "every file in the state dir: {n}"
        );
    }
    assert_eq!(mode(&d.socket), 0o600, "socket");
    // Another user cannot use it.
    let bins = tempfile::tempdir().unwrap();
    let ctl = public_copy(bins.path(), "vswitchctl");
    let nobody = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&ctl)
        .arg("--socket")
        .arg(&d.socket)
        .args(["network", "ls"])
        .output()
        .unwrap();
    assert_eq!(nobody.status.code(), Some(3), "{}", stderr(&nobody));
    assert!(
        stderr(&nobody).contains("ermission denied"),
        "{}",
        stderr(&nobody)
    );
    d.stop();

    // A world-readable state.json from an older version is tightened at start.
    std::fs::set_permissions(
        state.join("state.json"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    // --socket-group: 0660 and the group's members get in.
    let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(1))
        .unwrap()
        .expect("group 1 exists");
    let d = Plain::start(&world, dir.path(), &["--socket-group", &group.name], &[]);
    assert_eq!(mode(&state.join("state.json")), 0o600);
    assert_eq!(mode(&d.socket), 0o660, "socket with --socket-group");
    assert_eq!(std::fs::metadata(&d.socket).unwrap().gid(), 1);
    let member = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--groups=1"])
        .arg(&ctl)
        .arg("--socket")
        .arg(&d.socket)
        .args(["network", "ls"])
        .output()
        .unwrap();
    assert!(member.status.success(), "{}", stderr(&member));
    assert!(stdout(&member).contains("10.97.2.0/24"));
    d.stop();

    // An unknown group is one line at start.
    let out = refused_start(
        &world,
        &[
            "--state-dir",
            state.to_str().unwrap(),
            "--socket",
            dir.path().join("x.sock").to_str().unwrap(),
            "--socket-group",
            "no-such-group-vsw",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("unknown group \"no-such-group-vsw\""), "{err}");
}

/// Sends raw bytes on a fresh connection and returns the response's status code.
fn raw_status(socket: &Path, head: &str, body: &[u8]) -> u16 {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    // The daemon may answer and close before it has read everything.
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"))
}

#[test]
fn bodies_over_one_mebibyte_get_413() {
    if !privileged("bodies_over_one_mebibyte_get_413") {
        return;
    }
    let d = Daemon::start(&["--network", "n=10.97.3.0/24"]);
    let limit = 1024 * 1024;
    // A create body padded with whitespace: valid JSON of any size.
    let body = |size: usize| {
        let json = br#"{"Name":"big"}"#;
        let mut b = vec![b' '; size - json.len()];
        b.extend_from_slice(json);
        b
    };
    let head = |len: usize| {
        format!(
            "POST /networks/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
        )
    };
    assert_eq!(
        raw_status(&d.socket, &head(limit + 1), &body(limit + 1)),
        413
    );
    // Without a length: chunked, 2 MiB.
    let big = body(2 * limit);
    let mut chunked = Vec::new();
    for c in big.chunks(64 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        chunked.extend_from_slice(c);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let chunked_head = "POST /networks/create HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(&d.socket, chunked_head, &chunked), 413);
    assert!(
        !d.ctl_ok(&["network", "ls"]).contains("big"),
        "nothing created"
    );
    // Exactly at the limit is accepted.
    assert_eq!(raw_status(&d.socket, &head(limit), &body(limit)), 201);
    assert!(d.ctl_ok(&["network", "ls"]).contains("big"));
}

/// Open file descriptors of a process.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[test]
fn hundreds_of_idle_or_half_sent_connections_do_not_keep_others_waiting() {
    if !privileged("hundreds_of_idle_or_half_sent_connections_do_not_keep_others_waiting") {
        return;
    }
    let d = Daemon::start(&["--network", "n=10.97.4.0/24"]);
    let pid = d.pid().unwrap();
    let baseline = fds(pid);
    // Silent, half a request line, or a whole head with half its body.
    let mut idle = Vec::new();
    for i in 0..300 {
        let mut s = UnixStream::connect(&d.socket).unwrap();
        match i % 3 {
            0 => {}
            1 => s.write_all(b"GET /netw").unwrap(),
            _ => s
                .write_all(
                    b"POST /networks/create HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"Na",
                )
                .unwrap(),
        }
        idle.push(s);
    }
    // A normal client is answered at once, not after the idle ones time out (10 s).
    let started = Instant::now();
    let mut ls = Command::new(bin("vswitchctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["network", "ls"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while ls.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(5) {
            let _ = ls.kill();
            panic!("network ls waited behind 300 idle connections");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = ls.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("10.97.4.0/24"));
    // The daemon holds at most its connection cap, not one fd per client.
    let held = fds(pid);
    assert!(
        held < baseline + 128 + 16,
        "daemon holds {held} fds (baseline {baseline}) for 300 idle clients"
    );
    // The oldest idle ones were closed to make room.
    let mut closed = 0;
    for s in &mut idle[..100] {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut b = [0u8; 64];
        if matches!(s.read(&mut b), Ok(0) | Err(_)) {
            closed += 1;
        }
    }
    assert!(closed >= 90, "only {closed} of the 100 oldest were closed");
    // A body that stops coming is answered 408 after 10 s; the newest was never closed.
    let last = idle.last_mut().unwrap();
    last.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut resp = String::new();
    let _ = last.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp:?}");
    drop(idle);
    d.ctl_ok(&["network", "inspect", "n"]);
}

/// PIDs of netns helpers whose parent is `daemon` (running or zombie).
fn helpers_of(daemon: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // pid (comm) state ppid ...
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(daemon) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn a_hung_netns_helper_is_killed_and_never_stalls_the_daemon() {
    if !privileged("a_hung_netns_helper_is_killed_and_never_stalls_the_daemon") {
        return;
    }
    let world = Netns::new("world");
    let dir = tempfile::tempdir().unwrap();
    let delay = dir.path().join("helper-delay-ms");
    let d = Plain::start(
        &world,
        dir.path(),
        &["--network", "n=10.97.5.0/24"],
        &[("VSWITCHD_TEST_HELPER_DELAY_FILE", delay.to_str().unwrap())],
    );
    let c1 = Netns::new("c1");
    std::fs::write(&delay, "30000").unwrap();
    let started = Instant::now();
    let attach = {
        let socket = d.socket.clone();
        let path = c1.path();
        std::thread::spawn(move || {
            ctl_at(&socket, &["network", "connect", "n", &path, "--name", "c1"])
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    // While the helper hangs, the daemon answers everything else.
    let t = Instant::now();
    d.ctl_ok(&["network", "ls"]);
    d.ctl_ok(&["network", "inspect", "n"]);
    d.ctl_ok(&["network", "create", "--subnet", "10.97.6.0/24", "other"]);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "requests waited for the attach: {:?}",
        t.elapsed()
    );
    let out = attach.join().unwrap();
    let waited = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("did not answer within 5 s"), "{err}");
    assert!(waited < Duration::from_secs(15), "attach took {waited:?}");
    // Killed and reaped: no helper (not even a zombie) is left.
    assert!(
        wait_until(3, || helpers_of(d.proc.pid()).is_empty()),
        "helpers left: {:?}",
        helpers_of(d.proc.pid())
    );
    // Nothing changed: no endpoint, and the lease came back.
    let inspect: serde_json::Value =
        serde_json::from_str(&d.ctl_ok(&["network", "inspect", "n"])).unwrap();
    assert_eq!(
        inspect[0]["Containers"],
        serde_json::json!({}),
        "no endpoint"
    );
    std::fs::remove_file(&delay).unwrap();
    let c2 = Netns::new("c2");
    d.ctl_ok(&["network", "connect", "n", &c2.path(), "--name", "c2"]);
    let inspect = d.ctl_ok(&["network", "inspect", "n"]);
    assert!(
        inspect.contains("10.97.5.2/24"),
        "the first address is free again: {inspect}"
    );
    d.stop();
}

/// A real state file with networks `a` (one endpoint) and `b`, written by the daemon.
fn real_state(world: &Netns, dir: &Path) -> PathBuf {
    let d = Plain::start(
        world,
        dir,
        &["--network", "a=10.97.7.0/24", "--network", "b=10.97.8.0/24"],
        &[],
    );
    let c = Netns::new("c");
    d.ctl_ok(&["network", "connect", "a", &c.path(), "--name", "c"]);
    d.stop();
    dir.join("state/state.json")
}

#[test]
fn a_corrupt_or_invalid_state_stops_the_daemon_with_one_line_and_is_left_untouched() {
    if !privileged(
        "a_corrupt_or_invalid_state_stops_the_daemon_with_one_line_and_is_left_untouched",
    ) {
        return;
    }
    let world = Netns::new("world");
    let dir = tempfile::tempdir().unwrap();
    let path = real_state(&world, dir.path());
    let good = std::fs::read(&path).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&good).unwrap();

    let mut overlapping = value.clone();
    overlapping["networks"]["b"]["pool"]["config"]["subnet"] = "10.97.7.0/25".into();
    overlapping["networks"]["b"]["pool"]["config"]["gateway"] = "10.97.7.1".into();
    let mut outside = value.clone();
    {
        let a = &mut outside["networks"]["a"];
        let (id, _) = a["endpoints"].as_object().unwrap().iter().next().unwrap();
        let id = id.clone();
        a["endpoints"][&id]["ip"] = "10.97.9.2".into();
        a["pool"]["leases"] = serde_json::json!({ "10.97.9.2": id });
    }
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "corrupt JSON",
            b"{\"version\": 1, \"networks\": {]".to_vec(),
            "not valid",
        ),
        (
            "overlapping subnets",
            serde_json::to_vec_pretty(&overlapping).unwrap(),
            "overlaps subnet 10.97.7.0/24",
        ),
        (
            "lease outside its subnet",
            serde_json::to_vec_pretty(&outside).unwrap(),
            "10.97.9.2 is outside subnet 10.97.7.0/24",
        ),
        ("truncated file", good[..good.len() / 2].to_vec(), "EOF"),
        ("empty file", Vec::new(), "EOF"),
    ];
    for (what, bytes, why) in cases {
        std::fs::write(&path, &bytes).unwrap();
        let out = refused_start(
            &world,
            &[
                "--state-dir",
                path.parent().unwrap().to_str().unwrap(),
                "--socket",
                dir.path().join("s.sock").to_str().unwrap(),
                "--dns",
                "127.0.0.1",
            ],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{what}: one line: {err}");
        assert!(
            err.contains(path.to_str().unwrap()),
            "{what}: names the file: {err}"
        );
        assert!(err.contains(why), "{what}: says why ({why}): {err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{what}: file untouched"
        );
        assert!(
            !dir.path().join("s.sock").exists(),
            "{what}: no socket left"
        );
    }

    // The error points at the last good state, and following it works.
    let bak = path.with_file_name("state.json.bak");
    assert!(bak.exists());
    std::fs::write(&path, &good[..10]).unwrap();
    let out = refused_start(
        &world,
        &[
            "--state-dir",
            path.parent().unwrap().to_str().unwrap(),
            "--socket",
            dir.path().join("s.sock").to_str().unwrap(),
        ],
    );
    let err = stderr(&out);
    let hint = format!(
        "the previous good state is in {}: move it to {} to restore it",
        bak.display(),
        path.display()
    );
    assert!(err.contains(&hint), "{err}");
    std::fs::rename(&bak, &path).unwrap();
    let d = Plain::start(&world, dir.path(), &[], &[]);
    let ls = d.ctl_ok(&["network", "ls"]);
    assert!(
        ls.contains("10.97.7.0/24") && ls.contains("10.97.8.0/24"),
        "{ls}"
    );
    d.stop();
}
