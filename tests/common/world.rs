//! The world for NAT tests: the daemon's world namespace joined by a veth to a **servers**
//! namespace that plays "the internet". Only documentation addresses are used, and nothing has
//! a default route, so a wrong address fails inside the test instead of leaving the machine.
//!
//! ```text
//!  container c1 ──TAP── vswitchd ┊ WORLD w0 198.51.100.1/24 ══veth══ s0 198.51.100.2/24 ┊ SERVERS
//!  (default route via            ┊ 127.0.0.1 (lo)                      203.0.113.2/24    ┊ socat
//!   the gateway 10.x.x.1)        ┊ route 203.0.113.0/24 via .2         ip_forward=1      ┊ servers
//! ```
//!
//! SERVERS forwards only back out of `s0`, so 203.0.113.99 (nobody) fails ARP there and the
//! world gets "host unreachable" after ~3 s. IPv6 is laid out the same way: the world is
//! 2001:db8:1::1, SERVERS 2001:db8:1::2 and (far) 2001:db8:2::2; 2001:db8:2::99 is nobody. The world allows unprivileged ICMP sockets
//! (`ping_group_range`), a per-namespace sysctl.
//!
//! Background servers and client sessions run in their own process group and are killed by
//! that group's id on drop (socat `fork` children and `SYSTEM:` shells included).

use super::*;
use std::io::{BufRead, BufReader, Write};
use std::ops::Deref;
use std::os::unix::process::CommandExt;
use std::process::ChildStdin;
use std::sync::mpsc;

/// The world's address on the veth: every outbound NAT flow comes from here.
pub const WORLD_IP: &str = "198.51.100.1";
/// The servers namespace on the shared link.
pub const SERVER_IP: &str = "198.51.100.2";
/// The servers namespace on the "far" subnet, reached through a route in the world.
pub const FAR_IP: &str = "203.0.113.2";
/// A far address nobody has.
pub const NOBODY_IP: &str = "203.0.113.99";
/// The world's IPv6 address on the veth (IPv6 documentation prefix 2001:db8::/32).
pub const WORLD6: &str = "2001:db8:1::1";
/// The servers namespace's IPv6 address on the shared link.
pub const SERVER6: &str = "2001:db8:1::2";
/// The servers namespace on the "far" IPv6 subnet, reached through a route in the world.
pub const FAR6: &str = "2001:db8:2::2";
/// A far IPv6 address nobody has.
pub const NOBODY6: &str = "2001:db8:2::99";

/// The network the NAT tests use, and its first container.
pub const NET: &str = "net";

/// The world with network "net" 10.100.1.0/24 (`vswitchd --network ... EXTRA`) and container
/// c1 (10.100.1.2) on it.
pub fn world_with_c1(extra: &[&str]) -> (NatWorld, Netns) {
    let mut args = vec!["--network", "net=10.100.1.0/24"];
    args.extend_from_slice(extra);
    let w = NatWorld::start(&args);
    let c1 = Netns::new("c1");
    assert_eq!(w.connect(NET, &c1, "c1"), "10.100.1.2");
    (w, c1)
}

/// A daemon in its world, plus the servers namespace.
pub struct NatWorld {
    pub d: Daemon,
    pub servers: Netns,
}

impl Deref for NatWorld {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.d
    }
}

impl NatWorld {
    /// Builds SERVERS, then the world with its veth and route, then starts `vswitchd ARGS` in
    /// it. Panics unless the world reaches both server addresses.
    pub fn start(args: &[&str]) -> Self {
        let servers = Netns::new("srv");
        let d = Daemon::start_prepared(args, None, bin("vswitchd"), |world| wire(world, &servers));
        NatWorld { d, servers }
    }

    /// `vswitchctl stats NETWORK`, parsed.
    pub fn stats(&self, network: &str) -> serde_json::Value {
        let out = self.ctl_ok(&["stats", network]);
        serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!(
                "stats {network} is not JSON ({e}): {out}\n--- daemon log ---\n{}",
                self.plain_log()
            )
        })
    }

    /// One number from `stats NETWORK`, e.g. `stat("net", "Flows", "Tcp")`.
    pub fn stat(&self, network: &str, group: &str, key: &str) -> u64 {
        let s = self.stats(network);
        s[group][key]
            .as_u64()
            .unwrap_or_else(|| panic!("stats {network} has no {group}.{key}: {s}"))
    }

    /// A failure message: what ran, its output, time taken, and the daemon log.
    pub fn why(&self, r: &Run) -> String {
        format!("{r}\n--- daemon log ---\n{}", self.plain_log())
    }

    /// The daemon log without terminal colour codes.
    pub fn plain_log(&self) -> String {
        strip_ansi(&self.log())
    }
}

/// Wires a fresh world namespace to SERVERS (the layout at the top of this file) and waits
/// until the world reaches both server addresses (panics otherwise).
pub fn wire(world: &Netns, servers: &Netns) {
    let srv = servers.name.clone();
    let w = world.name.as_str();
    must(
        "ip",
        &[
            "-n", w, "link", "add", "w0", "type", "veth", "peer", "name", "s0", "netns", &srv,
        ],
    );
    must(
        "ip",
        &["-n", w, "addr", "add", "198.51.100.1/24", "dev", "w0"],
    );
    must("ip", &["-n", w, "link", "set", "w0", "up"]);
    must(
        "ip",
        &["-n", &srv, "addr", "add", "198.51.100.2/24", "dev", "s0"],
    );
    must(
        "ip",
        &["-n", &srv, "addr", "add", "203.0.113.2/24", "dev", "s0"],
    );
    must("ip", &["-n", &srv, "link", "set", "s0", "up"]);
    must(
        "ip",
        &[
            "-n",
            w,
            "route",
            "add",
            "203.0.113.0/24",
            "via",
            "198.51.100.2",
        ],
    );
    must(
        "ip",
        &[
            "netns",
            "exec",
            w,
            "sysctl",
            "-qw",
            "net.ipv4.ping_group_range=0 2147483647",
        ],
    );
    must(
        "ip",
        &[
            "netns",
            "exec",
            &srv,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ],
    );
    // The same over IPv6 (addresses without DAD, so they are usable at once).
    for (ns, dev, addr) in [
        (w, "w0", "2001:db8:1::1/64"),
        (srv.as_str(), "s0", "2001:db8:1::2/64"),
        (srv.as_str(), "s0", "2001:db8:2::2/64"),
    ] {
        must(
            "ip",
            &["-n", ns, "-6", "addr", "add", addr, "dev", dev, "nodad"],
        );
    }
    must(
        "ip",
        &[
            "-n",
            w,
            "-6",
            "route",
            "add",
            "2001:db8:2::/64",
            "via",
            SERVER6,
        ],
    );
    must(
        "ip",
        &[
            "netns",
            "exec",
            &srv,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.forwarding=1",
        ],
    );
    assert!(
        wait_until(10, || world.ping(FAR_IP)
            && world.ping(SERVER_IP)
            && world.ping(FAR6)),
        "fixture: the world does not reach the servers namespace"
    );
}

/// A command's output and how long it took.
pub struct Run {
    pub what: String,
    pub out: Output,
    pub took: Duration,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.out.status.success()
    }
    pub fn stdout(&self) -> String {
        stdout(&self.out)
    }
    pub fn stderr(&self) -> String {
        stderr(&self.out)
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` -> {} after {:.2?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what,
            self.out.status,
            self.took,
            truncate(&self.stdout()),
            truncate(&self.stderr())
        )
    }
}

/// Removes `ESC [ ... letter` sequences.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn truncate(s: &str) -> String {
    if s.len() > 2000 {
        format!("{}… ({} bytes)", &s[..2000], s.len())
    } else {
        s.to_string()
    }
}

/// Runs `sh -c SCRIPT` inside `ns`, killed (with its process group) after `secs`.
pub fn run(ns: &Netns, secs: u64, script: &str) -> Run {
    let start = Instant::now();
    let out = ns.exec(&["timeout", "-k", "2", &secs.to_string(), "sh", "-c", script]);
    Run {
        what: format!("[{}] {script}", ns.name),
        out,
        took: start.elapsed(),
    }
}

/// A background process in its own process group, killed by group id on drop.
pub struct Bg {
    child: Child,
    pub what: String,
}

impl Bg {
    /// `ip netns exec NS ARGS...` in the background, stdio to /dev/null.
    pub fn spawn(ns: &Netns, args: &[&str]) -> Self {
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {args:?} in {}: {e}", ns.name));
        Bg {
            child,
            what: format!("[{}] {}", ns.name, args.join(" ")),
        }
    }

    /// Any command in the background, in its own process group, stdio to /dev/null.
    pub fn from_command(mut c: Command, what: &str) -> Self {
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Bg {
            child,
            what: what.to_string(),
        }
    }

    /// `sh -c SCRIPT` in the background inside `ns`.
    pub fn sh(ns: &Netns, script: &str) -> Self {
        Self::spawn(ns, &["sh", "-c", script])
    }

    /// True while the process has not exited.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        kill_group(self.child.id());
        let _ = self.child.wait();
    }
}

fn kill_group(pgid: u32) {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid as i32),
        nix::sys::signal::SIGKILL,
    );
}

/// True when something in `ns` listens on `addr:port` (`addr` "*" for any).
pub fn listening_on(ns: &Netns, proto: &str, addr: &str, port: u16) -> bool {
    let flag = if proto == "udp" { "-Hlun" } else { "-Hltn" };
    let filter = if addr == "*" {
        format!("sport = :{port}")
    } else {
        format!("src {addr}:{port}")
    };
    let out = ns.exec(&["ss", flag, &filter]);
    !stdout(&out).trim().is_empty()
}

fn serve(ns: &Netns, proto: &str, addr: &str, port: u16, args: &[&str]) -> Bg {
    let mut v = vec!["socat"];
    v.extend_from_slice(args);
    let bg = Bg::spawn(ns, &v);
    wait_for(&format!("{} to listen", bg.what), || {
        listening_on(ns, proto, addr, port)
    });
    bg
}

/// A TCP echo server on `port` in `ns`.
pub fn tcp_echo(ns: &Netns, port: u16) -> Bg {
    let listen = format!("TCP-LISTEN:{port},reuseaddr,fork");
    serve(ns, "tcp", "*", port, &[&listen, "EXEC:cat"])
}

/// A TCP server on `port` in `ns` that runs the shell command `system` per connection (its
/// stdio is the connection).
pub fn tcp_serve(ns: &Netns, port: u16, system: &str) -> Bg {
    let listen = format!("TCP-LISTEN:{port},reuseaddr,fork");
    let sys = format!("SYSTEM:{system}");
    serve(ns, "tcp", "*", port, &[&listen, &sys])
}

/// A TCP server on `port` in `ns` that answers one line "PEERADDR LOCALADDR" and closes.
pub fn tcp_peer(ns: &Netns, port: u16) -> Bg {
    tcp_serve(ns, port, "echo $SOCAT_PEERADDR $SOCAT_SOCKADDR")
}

/// A UDP echo server on `port` in `ns`, bound to `bind` ("*" for any). Bind to one address
/// when the namespace has several, so that replies leave from the address that was asked.
pub fn udp_echo(ns: &Netns, bind: &str, port: u16) -> Bg {
    let listen = if bind == "*" {
        format!("UDP-RECVFROM:{port},fork")
    } else {
        format!("UDP-RECVFROM:{port},bind={bind},fork")
    };
    serve(ns, "udp", bind, port, &[&listen, "EXEC:cat"])
}

/// An interactive TCP client (`socat - TCP:TARGET`) inside a namespace: send lines, read
/// lines. Killed by process group on drop.
pub struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    pub what: String,
}

impl Session {
    /// Connects from `ns` to `target` ("IP:PORT").
    pub fn tcp(ns: &Netns, target: &str) -> Self {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "socat", "-t", "5"])
            .arg("-")
            .arg(format!("TCP:{target}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start socat session");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Session {
            child,
            stdin,
            lines,
            what: format!("[{}] socat - TCP:{target}", ns.name),
        }
    }

    /// Sends one line (false if the session's stdin is gone).
    pub fn send(&mut self, line: &str) -> bool {
        match self.stdin.as_mut() {
            Some(s) => writeln!(s, "{line}").and_then(|_| s.flush()).is_ok(),
            None => false,
        }
    }

    /// The next line received, or None after `secs`.
    pub fn recv(&self, secs: u64) -> Option<String> {
        self.lines.recv_timeout(Duration::from_secs(secs)).ok()
    }

    /// Sends `line` and expects it back (echo server) within 5 s.
    pub fn echoes(&mut self, line: &str) -> bool {
        self.send(line) && self.recv(5).as_deref() == Some(line)
    }

    /// Closes our write side (socat then half-closes the connection).
    pub fn close_write(&mut self) {
        self.stdin = None;
    }

    /// True while socat has not exited.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stdin = None;
        kill_group(self.child.id());
        let _ = self.child.wait();
    }
}
