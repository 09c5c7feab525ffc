//! The slirp4netns drop-in driven directly, the way podman (`-c`, `--netns-type=path`, ready
//! and exit fds, API socket) and rootlesskit (a PID, a pre-created and self-configured
//! `tap0`) drive slirp4netns. The drop-in runs in a world namespace wired to SERVERS (see
//! `common/world.rs`); its resolv.conf there names the test's dnsmasq. The real clients
//! (podman, rootlesskit) are exercised in `slirp4netns_clients.rs`.

mod common;

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::dns::{self, Upstream};
use common::world::*;
use common::*;

const UNPRIVILEGED: u32 = 65534;

/// A world (wired to SERVERS), with the drop-in binary copied as `slirp4netns`.
struct Setup {
    world: Netns,
    servers: Netns,
    dir: tempfile::TempDir,
    bin: PathBuf,
    resolv_dir: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let servers = Netns::new("srv");
        let world = Netns::new("world");
        wire(&world, &servers);
        must(
            "ip",
            &[
                "netns",
                "exec",
                &world.name,
                "sysctl",
                "-qw",
                "net.ipv4.ping_group_range=0 2147483647",
            ],
        );
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("slirp4netns");
        std::fs::copy(bin_path(), &bin).unwrap();
        must(
            "chmod",
            &["0755", dir.path().to_str().unwrap(), bin.to_str().unwrap()],
        );
        // `ip netns exec` shows this file as /etc/resolv.conf: the drop-in's upstream is the
        // test's dnsmasq, never a real resolver.
        let resolv_dir = PathBuf::from(format!("/etc/netns/{}", world.name));
        std::fs::create_dir_all(&resolv_dir).unwrap();
        std::fs::write(
            resolv_dir.join("resolv.conf"),
            format!("nameserver {}\n", dns::UPSTREAM_IP),
        )
        .unwrap();
        Setup {
            world,
            servers,
            dir,
            bin,
            resolv_dir,
        }
    }

    /// A directory the unprivileged user may write (for its API socket).
    fn user_dir(&self) -> PathBuf {
        let d = self.dir.path().join("user");
        std::fs::create_dir_all(&d).unwrap();
        must("chown", &[&UNPRIVILEGED.to_string(), d.to_str().unwrap()]);
        d
    }

    /// Starts the drop-in in the world with `args`, ready fd 3 and exit fd 4, optionally as
    /// the unprivileged user; waits for its ready byte.
    fn start(&self, args: &[&str], user: Option<u32>) -> Slirp {
        let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (exit_r, exit_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.world.name]);
        if let Some(uid) = user {
            c.args([
                "setpriv",
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                "--inh-caps=-all",
            ]);
        }
        c.arg(&self.bin).args(["-r", "3", "-e", "4"]).args(args);
        let log = self.dir.path().join(format!("slirp-{}.log", tag()));
        let out = std::fs::File::create(&log).unwrap();
        c.stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0);
        let (w, r) = (ready_w.as_raw_fd(), exit_r.as_raw_fd());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
        unsafe {
            c.pre_exec(move || {
                let w2 = libc::fcntl(w, libc::F_DUPFD_CLOEXEC, 100);
                let r2 = libc::fcntl(r, libc::F_DUPFD_CLOEXEC, 100);
                if w2 < 0 || r2 < 0 || libc::dup2(w2, 3) < 0 || libc::dup2(r2, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = c.spawn().expect("start the drop-in");
        drop(ready_w);
        drop(exit_r);
        let mut s = Slirp {
            child: Some(child),
            exit_w: Some(exit_w),
            log,
        };
        let ready = read_with_timeout(ready_r, Duration::from_secs(20));
        assert_eq!(ready, b"1", "no ready byte\n{}", s.log());
        assert!(s.running(), "exited after ready\n{}", s.log());
        s
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.resolv_dir);
    }
}

fn bin_path() -> PathBuf {
    bin("vswitchd")
}

/// Reads from `fd` until EOF or `limit`.
fn read_with_timeout(fd: OwnedFd, limit: Duration) -> Vec<u8> {
    let mut f = std::fs::File::from(fd);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx.recv_timeout(limit).unwrap_or_default()
}

/// A running drop-in.
struct Slirp {
    child: Option<Child>,
    exit_w: Option<OwnedFd>,
    log: PathBuf,
}

impl Slirp {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Closes the exit fd's writer (as conmon does when the container ends) and returns the
    /// exit code, panicking if it does not exit within 10 s.
    fn close_exit_fd(&mut self) -> i32 {
        drop(self.exit_w.take());
        let mut child = self.child.take().unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            if Instant::now() > end {
                let _ = child.kill();
                panic!("did not exit after its exit fd closed\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Slirp {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::SIGKILL,
            );
            let _ = c.wait();
        }
    }
}

/// Sends one API request the way podman does (write, shut down writing, read the reply).
fn api(sock: &Path, request: &str) -> serde_json::Value {
    use std::io::Write;
    let mut s = std::os::unix::net::UnixStream::connect(sock)
        .unwrap_or_else(|e| panic!("connect {}: {e}", sock.display()));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    s.write_all(b"\n").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(
        !reply.ends_with('\n'),
        "reply ends with a newline: {reply:?}"
    );
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{reply:?}: {e}"))
}

fn add_hostfwd(sock: &Path, host_addr: &str, host_port: u16, guest_port: u16) -> serde_json::Value {
    api(
        sock,
        &format!(
            r#"{{"execute":"add_hostfwd","arguments":{{"proto":"tcp","host_addr":"{host_addr}","host_port":{host_port},"guest_addr":"","guest_port":{guest_port}}}}}"#
        ),
    )
}

/// The first line a TCP client gets from `target` (host:port) in `ns`.
fn tcp_line(ns: &Netns, target: &str) -> Run {
    run(
        ns,
        8,
        &format!("socat -T5 - TCP:{target},connect-timeout=4 </dev/null"),
    )
}

#[test]
fn configure_mode_serves_the_namespace_as_slirp4netns_does() {
    if !privileged("configure_mode_serves_the_namespace_as_slirp4netns_does") {
        return;
    }
    let s = Setup::new();
    let _upstream = Upstream::start_in(&s.servers, s.dir.path());
    let c = Netns::new("c");
    let sock = s.dir.path().join("api.sock");
    let mut slirp = s.start(
        &[
            "-c",
            "--mtu=65520",
            "--enable-seccomp",
            "--api-socket",
            sock.to_str().unwrap(),
            "--netns-type=path",
            &c.path(),
            "tap0",
        ],
        None,
    );

    // -c: lo up, tap0 up with the MTU, net+100/24, default route via net+2.
    let addr = stdout(&c.exec(&["ip", "-o", "-4", "addr", "show", "dev", "tap0"]));
    assert!(addr.contains("inet 10.0.2.100/24"), "{addr}");
    let link = stdout(&c.exec(&["ip", "-o", "link", "show", "dev", "tap0"]));
    assert!(link.contains("mtu 65520") && link.contains(",UP"), "{link}");
    let route = stdout(&c.exec(&["ip", "route", "show", "default"]));
    assert!(route.contains("default via 10.0.2.2 dev tap0"), "{route}");
    assert!(c.ping("127.0.0.1"), "lo is not up");

    // The gateway and the DNS address answer; other addresses of the subnet do not.
    assert!(c.ping("10.0.2.2"), "gateway\n{}", slirp.log());
    assert!(c.ping("10.0.2.3"), "DNS address\n{}", slirp.log());
    assert!(c.unreachable("10.0.2.50"));

    // DNS at net+3 is relayed to the world's resolver (its resolv.conf); net+2 is no resolver.
    let d = dns::dig(&c, "10.0.2.3", "a.fwd.test");
    assert!(
        d.resolves_to(&[dns::FWD_ADDR]),
        "{}\n{}",
        d.run,
        slirp.log()
    );
    assert!(dns::dig(&c, "10.0.2.2", "a.fwd.test").addrs().is_empty());

    // Egress: the server sees the world's address.
    let _srv = tcp_peer(&s.servers, 8080);
    let r = tcp_line(&c, &format!("{FAR_IP}:8080"));
    assert!(r.stdout().starts_with(WORLD_IP), "{r}\n{}", slirp.log());

    // Host loopback (on by default): net+2 reaches the world's 127.0.0.1.
    let _lo = tcp_serve(&s.world, 9000, "echo host-loopback");
    let r = tcp_line(&c, "10.0.2.2:9000");
    assert_eq!(r.stdout().trim(), "host-loopback", "{r}");

    // Port forwarding through the API socket: the container sees the real client address,
    // and a client on the world's loopback as net+2.
    assert_eq!(add_hostfwd(&sock, "0.0.0.0", 8081, 80)["return"]["id"], 1);
    let _inside = tcp_peer(&c, 80);
    let r = tcp_line(&s.servers, &format!("{WORLD_IP}:8081"));
    assert!(r.stdout().starts_with(SERVER_IP), "{r}\n{}", slirp.log());
    let r = tcp_line(&s.world, "127.0.0.1:8081");
    assert!(r.stdout().starts_with("10.0.2.2"), "{r}");
    // The same host port twice: refused, with slirp's error and the reason.
    let dup = add_hostfwd(&sock, "0.0.0.0", 8081, 81);
    let desc = dup["error"]["desc"].as_str().unwrap_or_default();
    assert!(
        desc.starts_with("bad request: add_hostfwd: slirp_add_hostfwd failed")
            && desc.contains("in use"),
        "{dup}"
    );
    assert_eq!(add_hostfwd(&sock, "127.0.0.1", 8082, 80)["return"]["id"], 2);
    let list = api(&sock, r#"{"execute":"list_hostfwd"}"#);
    let entries = list["return"]["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(entries.len(), 2, "{list}");
    assert_eq!(list["entries"], list["return"]["entries"], "{list}");
    assert_eq!(entries[0]["guest_addr"], "10.0.2.100");
    assert_eq!(entries[1]["host_addr"], "127.0.0.1");
    assert_eq!(
        api(
            &sock,
            r#"{"execute":"remove_hostfwd","arguments":{"id":1}}"#
        ),
        serde_json::json!({"return": {}})
    );
    let r = tcp_line(&s.servers, &format!("{WORLD_IP}:8081"));
    assert!(
        !r.ok() || r.stdout().is_empty(),
        "still forwarded after remove: {r}"
    );
    assert_eq!(
        api(&sock, r#"{"execute":"frobnicate"}"#)["error"]["desc"],
        "bad request: unknown execute"
    );

    // The exit fd's writer goes away: exit 0, the TAP leaves with us, the socket is removed.
    assert_eq!(slirp.close_exit_fd(), 0, "{}", slirp.log());
    assert!(!sock.exists(), "API socket left behind");
    let links = stdout(&c.exec(&["ip", "-o", "link"]));
    assert!(
        !links.contains("tap0"),
        "tap0 outlived the drop-in: {links}"
    );
}

#[test]
fn without_host_loopback_the_gateway_reaches_nothing_and_outbound_addr_and_mac_apply() {
    if !privileged(
        "without_host_loopback_the_gateway_reaches_nothing_and_outbound_addr_and_mac_apply",
    ) {
        return;
    }
    let s = Setup::new();
    let c = Netns::new("c");
    // A second address of the world, for --outbound-addr.
    must(
        "ip",
        &[
            "-n",
            &s.world.name,
            "addr",
            "add",
            "198.51.100.3/24",
            "dev",
            "w0",
        ],
    );
    let slirp = s.start(
        &[
            "-c",
            "--disable-host-loopback",
            "--outbound-addr=198.51.100.3",
            "--macaddress=02:11:22:33:44:55",
            "--netns-type=path",
            &c.path(),
            "tap0",
        ],
        None,
    );
    let link = stdout(&c.exec(&["ip", "-o", "link", "show", "dev", "tap0"]));
    assert!(link.contains("link/ether 02:11:22:33:44:55"), "{link}");
    let _lo = tcp_serve(&s.world, 9000, "echo host-loopback");
    let r = tcp_line(&c, "10.0.2.2:9000");
    assert!(!r.stdout().contains("host-loopback"), "{r}");
    assert!(c.ping("10.0.2.2"), "the gateway still answers ping");
    // Outbound flows leave from the --outbound-addr address.
    let _srv = tcp_peer(&s.servers, 8080);
    let r = tcp_line(&c, &format!("{FAR_IP}:8080"));
    assert!(
        r.stdout().starts_with("198.51.100.3"),
        "{r}\n{}",
        slirp.log()
    );
}

/// rootlesskit's way: unprivileged, a PID, `tap0` created and configured by the caller
/// before the drop-in starts, no `-c`; the sandbox on.
#[test]
fn rootless_pid_mode_attaches_to_the_callers_tap_in_a_sandbox() {
    if !privileged("rootless_pid_mode_attaches_to_the_callers_tap_in_a_sandbox") {
        return;
    }
    let s = Setup::new();
    let uid = UNPRIVILEGED.to_string();
    let as_user = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "setpriv",
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    // The "child": an unprivileged user + network namespace, inside the world.
    let child_cmd = as_user(&["unshare", "-Urn", "sleep", "120"]);
    let mut child = Command::new("ip")
        .args(["netns", "exec", &s.world.name])
        .args(&child_cmd)
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut sleeper = 0u32;
    assert!(
        wait_until(5, || {
            sleeper = stdout(&cmd("pgrep", &["-P", &pid.to_string()]))
                .trim()
                .parse()
                .unwrap_or(0);
            if sleeper == 0 {
                // setpriv execs unshare, which execs sleep: the PID may be the sleeper itself.
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "sleep" {
                    sleeper = pid;
                }
            }
            sleeper != 0
        }),
        "no sleeper"
    );
    let sp = sleeper.to_string();
    for step in [
        "ip tuntap add name tap0 mode tap",
        "ip link set tap0 up",
        "ip addr add 10.0.2.100/24 dev tap0",
        "ip route add default via 10.0.2.2",
    ] {
        let mut args = vec!["nsenter", "-t", &sp, "-n", "-U", "--preserve-credentials"];
        args.extend(step.split(' '));
        let full = as_user(&args);
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        let out = cmd(full[0], &full[1..]);
        assert!(out.status.success(), "{step}: {}", stderr(&out));
    }
    let sock = s.user_dir().join("s4nn.sock");
    let mut slirp = s.start(
        &[
            "--mtu",
            "1500",
            "--enable-sandbox",
            "--enable-seccomp",
            "--api-socket",
            sock.to_str().unwrap(),
            &sp,
            "tap0",
        ],
        Some(UNPRIVILEGED),
    );
    // Every thread is under seccomp with no_new_privs (the drop-in is the setpriv's exec'd
    // image inside `ip netns exec`: find it by its name).
    let dropin = stdout(&cmd("pgrep", &["-u", &uid, "-x", "slirp4netns"]));
    let dropin = dropin.lines().next().unwrap_or_default().trim().to_string();
    assert!(!dropin.is_empty(), "no slirp4netns process of uid {uid}");
    for task in std::fs::read_dir(format!("/proc/{dropin}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        assert!(status.contains("Seccomp:\t2"), "{status}");
        assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    }
    let ping = cmd(
        "nsenter",
        &["-t", &sp, "-n", "ping", "-c", "2", "-W", "1", "10.0.2.2"],
    );
    assert!(ping.status.success(), "{}\n{}", stdout(&ping), slirp.log());
    let _srv = tcp_peer(&s.servers, 8080);
    let r = cmd(
        "nsenter",
        &[
            "-t",
            &sp,
            "-n",
            "socat",
            "-T5",
            "-",
            &format!("TCP:{FAR_IP}:8080,connect-timeout=4"),
        ],
    );
    assert!(
        stdout(&r).starts_with(WORLD_IP),
        "{}\n{}",
        stderr(&r),
        slirp.log()
    );
    // The API socket works in the sandbox (rootlesskit's port driver).
    assert_eq!(add_hostfwd(&sock, "", 8083, 80)["return"]["id"], 1);
    assert_eq!(slirp.close_exit_fd(), 0, "{}", slirp.log());
    assert!(!sock.exists(), "the sandboxed drop-in left its API socket");
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::SIGKILL,
    );
    let _ = child.wait();
}

#[test]
fn bad_invocations_fail_with_one_line_and_exit_1() {
    if !privileged("bad_invocations_fail_with_one_line_and_exit_1") {
        return;
    }
    let s = Setup::new();
    let run_it = |args: &[&str]| {
        let out = Command::new(&s.bin)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out.status.code(), stderr(&out))
    };
    for (args, want) in [
        (
            vec!["--netns-type=path", "/run/netns/vswitch-no-such-ns", "tap0"],
            "does not exist",
        ),
        (vec!["--cidr=10.0.2.0/26", "1"], "prefix length"),
        (vec!["--mtu=0", "1"], "MTU"),
        (vec![], "missing PID|PATH"),
    ] {
        let (code, err) = run_it(&args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    let help = Command::new(&s.bin).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(stdout(&help).contains("--netns-type"));
    let version = Command::new(&s.bin).arg("--version").output().unwrap();
    assert!(stdout(&version).starts_with("slirp4netns version "));
}

/// Without `-c` the caller may ask slirp's DHCP server; `--disable-dns` closes net+3's port 53.
#[test]
fn dhcp_leases_slirps_range_and_disable_dns_closes_the_resolver() {
    if !privileged("dhcp_leases_slirps_range_and_disable_dns_closes_the_resolver") {
        return;
    }
    let s = Setup::new();
    let _upstream = Upstream::start_in(&s.servers, s.dir.path());
    let c = Netns::new("c");
    let slirp = s.start(
        &[
            "--disable-dns",
            "--mtu=1500",
            "--netns-type=path",
            &c.path(),
            "tap0",
        ],
        None,
    );
    // Created, not configured.
    let addr = stdout(&c.exec(&["ip", "-o", "-4", "addr", "show", "dev", "tap0"]));
    assert!(addr.trim().is_empty(), "configured without -c: {addr}");
    must("ip", &["-n", &c.name, "link", "set", "tap0", "up"]);
    let script = s.dir.path().join("udhcpc.sh");
    let lease = s.dir.path().join("lease.txt");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = bound ] && echo \"ip=$ip mask=$mask router=$router dns=$dns mtu=$mtu\" > {}\nexit 0\n",
            lease.display()
        ),
    )
    .unwrap();
    must("chmod", &["0755", script.to_str().unwrap()]);
    let r = run(
        &c,
        30,
        &format!(
            "busybox udhcpc -f -q -n -t 5 -T 1 -i tap0 -s {}",
            script.display()
        ),
    );
    assert!(r.ok(), "{r}\n{}", slirp.log());
    let got = std::fs::read_to_string(&lease).unwrap_or_default();
    assert!(
        got.contains("ip=10.0.2.15 ")
            && got.contains("mask=24")
            && got.contains("router=10.0.2.2")
            && got.contains("dns=10.0.2.3"),
        "{got}\n{r}"
    );
    // A second client (another MAC) gets the next address of the range.
    must(
        "ip",
        &[
            "-n",
            &c.name,
            "link",
            "set",
            "tap0",
            "address",
            "02:00:00:00:00:42",
        ],
    );
    let r = run(
        &c,
        30,
        &format!(
            "busybox udhcpc -f -q -n -t 5 -T 1 -i tap0 -s {}",
            script.display()
        ),
    );
    assert!(r.ok(), "{r}");
    let got = std::fs::read_to_string(&lease).unwrap_or_default();
    assert!(got.contains("ip=10.0.2.16 "), "{got}");
    // --disable-dns: the DNS address still answers ping, but not DNS.
    must(
        "ip",
        &["-n", &c.name, "addr", "add", "10.0.2.16/24", "dev", "tap0"],
    );
    assert!(c.ping("10.0.2.3"));
    let d = dns::dig(&c, "10.0.2.3", "a.fwd.test");
    assert!(d.addrs().is_empty(), "{}", d.run);
}

/// `--enable-ipv6` (podman passes it by default): fd00::/64 by router advertisement, the
/// gateway fd00::2 and DNS fd00::3 answer, IPv6 egress goes through NAT66.
#[test]
fn enable_ipv6_serves_fd00_by_router_advertisement() {
    if !privileged("enable_ipv6_serves_fd00_by_router_advertisement") {
        return;
    }
    let s = Setup::new();
    let _upstream = Upstream::start_in(&s.servers, s.dir.path());
    let c = Netns::new("c");
    // Podman turns DAD off before it starts slirp4netns.
    must(
        "ip",
        &[
            "netns",
            "exec",
            &c.name,
            "sysctl",
            "-qw",
            "net.ipv6.conf.default.accept_dad=0",
        ],
    );
    let slirp = s.start(&["-c", "-6", "--netns-type=path", &c.path(), "tap0"], None);
    let mut global = String::new();
    assert!(
        wait_until(15, || {
            global = stdout(&c.exec(&[
                "ip", "-o", "-6", "addr", "show", "dev", "tap0", "scope", "global",
            ]));
            global.contains("inet6 fd00::")
        }),
        "no SLAAC address in fd00::/64: {global}\n{}",
        slirp.log()
    );
    let route = stdout(&c.exec(&["ip", "-6", "route", "show", "default"]));
    assert!(route.contains("via fe80::"), "{route}");
    assert!(c.ping("fd00::2"), "IPv6 gateway\n{}", slirp.log());
    assert!(c.ping("fd00::3"), "IPv6 DNS address");
    let _srv = Bg::spawn(
        &s.servers,
        &[
            "socat",
            &format!("TCP6-LISTEN:8080,bind=[{FAR6}],reuseaddr,fork"),
            "SYSTEM:echo $SOCAT_PEERADDR",
        ],
    );
    wait_for("the IPv6 server", || {
        listening_on(&s.servers, "tcp", &format!("[{FAR6}]"), 8080)
    });
    let r = tcp_line(&c, &format!("[{FAR6}]:8080"));
    // socat prints the peer in full: the world's address, WORLD6.
    assert!(
        r.stdout()
            .contains("[2001:0db8:0001:0000:0000:0000:0000:0001]"),
        "{r}\n{}",
        slirp.log()
    );
    let d = dns::dig(&c, "fd00::3", "b.fwd.test");
    assert!(d.resolves_to(&[dns::FWD_ADDR]), "{}", d.run);
    // IPv4 is unchanged.
    assert!(c.ping("10.0.2.2"));
}
