//! A cluster of vswitchd hosts for the overlay tests, all in namespaces the test makes:
//!
//! ```text
//!   ETCD 198.51.100.2 ─┐                 ┌─ h1: WORLD 198.51.100.11  vswitchd --cluster-advertise .11
//!   (etcd-server,       ├── LAN (br0) ───┼─ h2: WORLD 198.51.100.12  vswitchd --cluster-advertise .12
//!    its own data dir)  │                └─ h3: WORLD 198.51.100.13  vswitchd --cluster-advertise .13
//! ```
//!
//! Only 198.51.100.0/24 (documentation) is used and nothing has a default route. etcd is
//! Debian's etcd-server, listening on its namespace's address only, with its data in the
//! test's temp dir; it can be stopped and started again (same data) for outage tests.
//! Everything (daemons, etcd by PID, namespaces) goes on drop.

use super::*;

/// etcd's address on the LAN.
pub const ETCD_IP: &str = "198.51.100.2";
/// `--cluster-store` of every host.
pub const STORE: &str = "etcd://198.51.100.2:2379";
/// The lease TTL the tests run with (seconds).
pub const TTL: u64 = 3;

/// The address of host `i` (1-based) on the LAN.
pub fn host_ip(i: usize) -> String {
    format!("198.51.100.{}", 10 + i)
}

/// etcd in its own namespace.
pub struct Etcd {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub ns: Netns,
}

impl Etcd {
    fn start_in(ns: Netns) -> Self {
        let mut e = Etcd {
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            ns,
        };
        e.start();
        e
    }

    /// Starts etcd (again, on the same data) and waits until it is healthy.
    pub fn start(&mut self) {
        let data = self.dir.path().join("data");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))
            .expect("etcd log");
        let client = format!("http://{ETCD_IP}:2379");
        let peer = format!("http://{ETCD_IP}:2380");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns.name, "etcd", "--name", "e0"])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("e0={peer}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start etcd (Debian's etcd-server; .ci/run installs it)");
        self.child = Some(child);
        let healthy = wait_until(20, || {
            self.ns
                .exec(&[
                    "curl",
                    "-sf",
                    "--max-time",
                    "1",
                    &format!("http://{ETCD_IP}:2379/health"),
                ])
                .status
                .success()
        });
        assert!(healthy, "etcd did not become healthy:\n{}", self.log());
    }

    /// Stops etcd (SIGKILL, by PID): the store becomes unreachable.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// etcd's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Hosts, etcd and the LAN (dropped in that order).
pub struct Cluster {
    pub hosts: Vec<Daemon>,
    pub etcd: Etcd,
    pub lan: Netns,
}

impl Cluster {
    /// The LAN, etcd, and `n` hosts each running `vswitchd --cluster-store ...
    /// --cluster-advertise 198.51.100.1N --cluster-ttl TTL EXTRA`.
    pub fn start(n: usize, extra: &[&str]) -> Self {
        let lan = Netns::new("lan");
        must(
            "ip",
            &["-n", &lan.name, "link", "add", "br0", "type", "bridge"],
        );
        must("ip", &["-n", &lan.name, "link", "set", "br0", "up"]);
        let etcd_ns = Netns::new("etcd");
        plug(&lan, &etcd_ns, "pe", ETCD_IP);
        let etcd = Etcd::start_in(etcd_ns);
        let mut hosts = Vec::new();
        for i in 1..=n {
            let ip = host_ip(i);
            let ttl = TTL.to_string();
            let mut args = vec![
                "--cluster-store",
                STORE,
                "--cluster-advertise",
                &ip,
                "--cluster-ttl",
                &ttl,
            ];
            args.extend_from_slice(extra);
            let lan_ref = &lan;
            let d = Daemon::start_prepared(&args, None, bin("vswitchd"), |world| {
                plug(lan_ref, world, &format!("p{i}"), &ip);
                world.exec(&["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"]);
            });
            hosts.push(d);
        }
        Cluster { hosts, etcd, lan }
    }

    /// Host `i` (1-based).
    pub fn h(&self, i: usize) -> &Daemon {
        &self.hosts[i - 1]
    }

    /// Everything a failure message needs: every host's log and etcd's.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, h) in self.hosts.iter().enumerate() {
            out.push_str(&format!(
                "--- h{} log ---\n{}\n",
                i + 1,
                world::strip_ansi(&h.log())
            ));
        }
        let etcd = self.etcd.log();
        let tail: Vec<&str> = etcd.lines().rev().take(15).collect();
        out.push_str("--- etcd log (tail) ---\n");
        for l in tail.into_iter().rev() {
            out.push_str(l);
            out.push('\n');
        }
        out
    }
}

/// A veth from `ns` (eth0, ADDR/24) to the LAN's bridge.
fn plug(lan: &Netns, ns: &Netns, port: &str, addr: &str) {
    must(
        "ip",
        &[
            "-n", &lan.name, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns",
            &ns.name,
        ],
    );
    must(
        "ip",
        &["-n", &lan.name, "link", "set", port, "master", "br0", "up"],
    );
    must(
        "ip",
        &[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ],
    );
    must("ip", &["-n", &ns.name, "link", "set", "eth0", "up"]);
}
