//! Fixtures for tests that build real namespaces: a private **world** namespace in which the
//! daemon runs (so nothing it does can reach the machine's real network), container
//! namespaces, and the daemon itself. Everything is torn down in `Drop` (processes by PID,
//! namespaces by name), also when a test fails.
//!
//! These tests need root. Outside CI a test without root is skipped with a loud message;
//! under `CI=true` that is a failure.

#![allow(dead_code)]

pub mod cluster;
pub mod dns;
pub mod slirp;
pub mod world;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// True when the test can run; false (after a loud message) when it must be skipped.
/// Panics under CI=true instead of skipping.
pub fn privileged(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if root {
        return true;
    }
    let msg = format!("{test}: needs root to create network namespaces");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg}; under CI=true a skipped namespace test is a failure");
    }
    eprintln!("\n*** SKIPPED {msg} ***\n");
    false
}

/// A unique, short tag for names in this test process.
pub fn tag() -> String {
    format!(
        "vt{}x{}",
        std::process::id() % 100_000,
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

/// Runs a command and returns its output (never panics on a non-zero exit).
pub fn cmd(prog: &str, args: &[&str]) -> Output {
    Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"))
}

/// Like [`cmd`] but panics with stderr on failure; returns stdout.
pub fn must(prog: &str, args: &[&str]) -> String {
    let out = cmd(prog, args);
    assert!(
        out.status.success(),
        "{prog} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace made with `ip netns add`, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates the namespace with `lo` up.
    pub fn new(role: &str) -> Self {
        let name = format!("{}-{role}", tag());
        must("ip", &["netns", "add", &name]);
        must("ip", &["-n", &name, "link", "set", "lo", "up"]);
        Self { name }
    }

    /// `/run/netns/NAME`.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Runs a command inside.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut v = vec!["netns", "exec", &self.name];
        v.extend_from_slice(args);
        cmd("ip", &v)
    }

    /// Runs a shell command inside.
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["sh", "-c", script])
    }

    /// True if `ping -c1` to `ip` gets an answer within `secs` tries.
    pub fn ping(&self, ip: &str) -> bool {
        self.exec(&["ping", "-c", "1", "-W", "1", ip])
            .status
            .success()
            || self
                .exec(&["ping", "-c", "2", "-W", "1", ip])
                .status
                .success()
    }

    /// True if no ping to `ip` is answered (3 tries).
    pub fn unreachable(&self, ip: &str) -> bool {
        !self
            .exec(&["ping", "-c", "3", "-i", "0.2", "-W", "1", ip])
            .status
            .success()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = cmd("ip", &["netns", "del", &self.name]);
    }
}

/// A background process started by the test, killed by PID on drop.
pub struct Proc(pub Child);

impl Proc {
    /// Spawns `prog args` with stdio to /dev/null.
    pub fn spawn(prog: &str, args: &[&str]) -> Self {
        let child = Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {prog}: {e}"));
        Proc(child)
    }

    /// The PID.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Path of a binary built by cargo for this package.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "vswitchd" => PathBuf::from(env!("CARGO_BIN_EXE_vswitchd")),
        "vswitchctl" => PathBuf::from(env!("CARGO_BIN_EXE_vswitchctl")),
        "netavark-plugin-vswitch" => PathBuf::from(env!("CARGO_BIN_EXE_netavark-plugin-vswitch")),
        _ => panic!("unknown binary {name}"),
    }
}

/// vswitchd running inside a world namespace, with its own state dir and socket.
pub struct Daemon {
    pub world: Netns,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    child: Option<Child>,
    args: Vec<String>,
    /// Run the daemon as this uid:gid (rootless test).
    pub user: Option<u32>,
    vswitchd: PathBuf,
    /// Extra environment of the daemon process.
    env: Vec<(String, String)>,
}

impl Daemon {
    /// Starts `vswitchd ARGS` in a new world namespace and waits until it answers.
    pub fn start(args: &[&str]) -> Self {
        Self::start_as(args, None, bin("vswitchd"))
    }

    /// Same, as user `uid` (gid = uid), running the given binary.
    pub fn start_as(args: &[&str], user: Option<u32>, vswitchd: PathBuf) -> Self {
        Self::start_prepared(args, user, vswitchd, |_| {})
    }

    /// Like [`Daemon::start_as`], but runs `prepare` on the fresh world namespace before the
    /// daemon starts in it (links, routes, per-namespace sysctls).
    pub fn start_prepared(
        args: &[&str],
        user: Option<u32>,
        vswitchd: PathBuf,
        prepare: impl FnOnce(&Netns),
    ) -> Self {
        let world = Netns::new("world");
        prepare(&world);
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(uid) = user {
            must(
                "chown",
                &[&format!("{uid}:{uid}"), dir.path().to_str().unwrap()],
            );
        }
        let socket = dir.path().join("vswitchd.sock");
        let state_dir = dir.path().join("state");
        let mut d = Daemon {
            world,
            socket,
            state_dir,
            dir,
            child: None,
            args: args.iter().map(|s| s.to_string()).collect(),
            user,
            vswitchd,
            env: Vec::new(),
        };
        d.restart();
        d
    }

    /// Like [`Daemon::start`], with extra environment variables for the daemon.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut d = Self::start(args);
        d.stop();
        d.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        d.restart();
        d
    }

    /// Starts the daemon process again (after [`Daemon::stop`] or a crash).
    pub fn restart(&mut self) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.world.name]);
        if let Some(uid) = self.user {
            cmd.args([
                "setpriv",
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
            ]);
        }
        cmd.arg(&self.vswitchd)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--socket")
            .arg(&self.socket)
            .args(&self.args)
            .env("VSWITCHD_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("vswitchd.log"))
                    .expect("log file"),
            );
        self.child = Some(cmd.spawn().expect("start vswitchd"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.ctl(&["network", "ls"]).status.success() {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("vswitchd exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "vswitchd did not answer: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("vswitchd.log")).unwrap_or_default()
    }

    /// Stops the daemon with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }

    /// Kills the daemon with SIGKILL (a crash) and waits for it.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// PID of the running daemon process (the `ip netns exec` wrapper execs into it).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Runs `vswitchctl --socket S ARGS`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(bin("vswitchctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run vswitchctl")
    }

    /// Runs vswitchctl and panics unless it succeeds; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "vswitchctl {args:?} failed: {}\n--- daemon log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `network inspect NAME` parsed.
    pub fn inspect(&self, network: &str) -> serde_json::Value {
        let out = self.ctl_ok(&["network", "inspect", network]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
        v[0].clone()
    }

    /// The endpoint named `name` in an inspect of `network`.
    pub fn endpoint(&self, network: &str, name: &str) -> serde_json::Value {
        let net = self.inspect(network);
        net["Containers"]
            .as_object()
            .expect("Containers")
            .values()
            .find(|e| e["Name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no endpoint {name} in {network}: {net}"))
    }

    /// Attaches `ns` to `network` as `name`; returns the endpoint's IPv4 address (no prefix).
    pub fn connect(&self, network: &str, ns: &Netns, name: &str) -> String {
        self.connect_with(network, ns, name, &[])
    }

    /// Like [`Daemon::connect`], with more `network connect` flags (e.g. `--publish 8080:80`).
    pub fn connect_with(&self, network: &str, ns: &Netns, name: &str, extra: &[&str]) -> String {
        let path = ns.path();
        let mut args = vec!["network", "connect", network, &path, "--name", name];
        args.extend_from_slice(extra);
        self.ctl_ok(&args);
        let ep = self.endpoint(network, name);
        ep["IPv4Address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.crash();
    }
}

/// Waits until `check` is true (up to 10 s).
pub fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `check` is true, up to `secs` seconds; false if it never became true.
pub fn wait_until(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stderr of an output as a string.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Stdout of an output as a string.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Reads a TCP listener's readiness inside a namespace.
pub fn listening(ns: &Netns, proto: &str, port: u16) -> bool {
    let flag = if proto == "udp" { "-Hlun" } else { "-Hltn" };
    let out = ns.exec(&["ss", flag, &format!("sport = :{port}")]);
    !stdout(&out).trim().is_empty()
}

/// Directory for binaries an unprivileged user can execute.
pub fn public_copy(dir: &Path, name: &str) -> PathBuf {
    let dst = dir.join(name);
    std::fs::copy(bin(name), &dst).expect("copy binary");
    must(
        "chmod",
        &["0755", dir.to_str().unwrap(), dst.to_str().unwrap()],
    );
    dst
}
