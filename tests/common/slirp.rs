//! Fixtures for the slirp4netns drop-in tests: real, unmodified rootless runtimes (Debian's
//! podman 4.3 and rootlesskit 1.1) run by an **unprivileged user** inside a private world the
//! test builds, with the slirp4netns binary under test as their network helper.
//!
//! ```text
//!  podman / rootlesskit (uid vswitch-test)  ┊ WORLD w0 198.51.100.1/24 ══veth══ s0 198.51.100.2/24 ┊ SERVERS
//!   └─ slirp4netns under test ─ tap0 ─ ctr  ┊ 127.0.0.1 (lo)                      dnsmasq :53     ┊ socat
//!      (10.0.2.100, gw .2, DNS .3)          ┊ /etc/resolv.conf → 198.51.100.2     servers         ┊
//! ```
//!
//! - The binary under test is `$VSWITCH_SLIRP4NETNS` if set (e.g. `/usr/bin/slirp4netns`, which
//!   proves the tests right), else the `vswitchd` cargo built. It is copied into the fixture's
//!   own directory as `slirp4netns`, since the repository may live under a 0700 home.
//! - Everything the user runs goes through [`SlirpWorld::user_command`]: it enters the world's
//!   network namespace with `nsenter` and gives the process a private mount namespace where
//!   `/etc/resolv.conf` is the world's (the test's dnsmasq in SERVERS, never a real upstream).
//!   That is what `ip netns exec` does with `/etc/netns/NAME/resolv.conf`, but `ip netns exec`
//!   also remounts `/sys`, which hides the cgroup mounts the OCI runtime needs.
//! - Podman gets a private HOME, XDG_RUNTIME_DIR, vfs storage and a `containers.conf` (via
//!   `CONTAINERS_CONF`) naming the binary under test as `network_cmd_path`; its image is a
//!   busybox rootfs built here from busybox-static and `podman import`ed, never pulled.
//! - Drop removes every container, kills podman's pause process, rootlesskit and any leftover
//!   process of the binary under test, each by PID, then deletes the namespaces and the
//!   directory (storage, image, sockets).
//!
//! The user `vswitch-test` and its subordinate id ranges are created once, under a lock file,
//! so test binaries running at the same time don't race on /etc/passwd and /etc/subuid.

use super::world::*;
use super::*;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;

/// The unprivileged user the runtimes run as.
pub const TEST_USER: &str = "vswitch-test";
/// Its subordinate uid and gid range (first id, count).
const SUBIDS: (u32, u32) = (1_100_000, 65_536);

/// A name only the test's resolver knows, and its answer.
pub const WORLD_NAME: &str = "svc.world.test";
pub const WORLD_NAME_ADDR: &str = "203.0.113.7";

/// The slirp4netns defaults every caller relies on.
pub const GUEST_IP: &str = "10.0.2.100";
pub const SLIRP_GW: &str = "10.0.2.2";
pub const SLIRP_DNS: &str = "10.0.2.3";

/// Tools the fixture runs, with the Debian package that has each.
const TOOLS: &[(&str, &str)] = &[
    ("podman", "podman"),
    ("runc", "runc"),
    ("newuidmap", "uidmap"),
    ("newgidmap", "uidmap"),
    ("rootlesskit", "rootlesskit"),
    ("rootlessctl", "rootlesskit"),
    ("busybox", "busybox-static"),
    ("dnsmasq", "dnsmasq-base"),
    ("socat", "socat"),
    ("nsenter", "util-linux"),
    ("unshare", "util-linux"),
    ("setpriv", "util-linux"),
    ("flock", "util-linux"),
    ("curl", "curl"),
    ("useradd", "passwd"),
];

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(tool).is_file())
}

/// True when the test can run: root, every tool installed and busybox statically linked.
/// Outside CI a missing piece is a loud skip; under `CI=true` it is a failure.
pub fn ready(test: &str) -> bool {
    if !privileged(test) {
        return false;
    }
    let mut missing: Vec<String> = TOOLS
        .iter()
        .filter(|(t, _)| !on_path(t))
        .map(|(t, p)| format!("{t} ({p})"))
        .collect();
    // The image is busybox's binary alone, so it must not need a dynamic loader.
    if on_path("busybox")
        && cmd("sh", &["-c", r#"ldd "$(command -v busybox)""#])
            .status
            .success()
    {
        missing.push("a static busybox (busybox-static)".to_string());
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{test}: missing tools: {}", missing.join(", "));
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg}; under CI=true a skipped test is a failure (.ci/run installs them)");
    }
    eprintln!("\n*** SKIPPED {msg} ***\n");
    false
}

/// The unprivileged test user (uid, gid), created with its subordinate id ranges if missing.
pub fn test_user() -> (u32, u32) {
    let (first, count) = SUBIDS;
    let last = first + count - 1;
    let script = format!(
        "getent passwd {u} >/dev/null || useradd --system --no-create-home --home-dir /nonexistent \
           --shell /usr/sbin/nologin {u} || exit 1
         grep -q '^{u}:' /etc/subuid 2>/dev/null || usermod --add-subuids {first}-{last} {u} || exit 1
         grep -q '^{u}:' /etc/subgid 2>/dev/null || usermod --add-subgids {first}-{last} {u} || exit 1",
        u = TEST_USER
    );
    must(
        "flock",
        &["/run/vswitch-test-user.lock", "sh", "-c", &script],
    );
    let id = |flag: &str| -> u32 {
        must("id", &[flag, TEST_USER])
            .trim()
            .parse()
            .expect("numeric id")
    };
    (id("-u"), id("-g"))
}

/// The slirp4netns binary under test: `$VSWITCH_SLIRP4NETNS`, else cargo's vswitchd.
pub fn binary_under_test() -> PathBuf {
    match std::env::var_os("VSWITCH_SLIRP4NETNS") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => bin("vswitchd"),
    }
}

/// The world (with SERVERS and their resolver), the test user and a directory the user owns,
/// holding the binary under test as `bin/slirp4netns`.
pub struct SlirpWorld {
    pub world: Netns,
    pub servers: Netns,
    pub dir: tempfile::TempDir,
    pub uid: u32,
    pub gid: u32,
    /// The copy of the binary under test, named `slirp4netns`.
    pub slirp: PathBuf,
    /// The user's HOME, XDG_RUNTIME_DIR.
    pub home: PathBuf,
    pub runtime_dir: PathBuf,
    resolv: PathBuf,
    _dns: Bg,
}

impl SlirpWorld {
    pub fn new() -> Self {
        let (uid, gid) = test_user();
        let servers = Netns::new("srv");
        let world = Netns::new("world");
        let (w, s) = (world.name.as_str(), servers.name.as_str());
        must(
            "ip",
            &[
                "-n", w, "link", "add", "w0", "type", "veth", "peer", "name", "s0", "netns", s,
            ],
        );
        must(
            "ip",
            &["-n", w, "addr", "add", "198.51.100.1/24", "dev", "w0"],
        );
        must(
            "ip",
            &["-n", s, "addr", "add", "198.51.100.2/24", "dev", "s0"],
        );
        must("ip", &["-n", w, "link", "set", "w0", "up"]);
        must("ip", &["-n", s, "link", "set", "s0", "up"]);
        // pasta and some runtimes want a default route to copy; it leads only to SERVERS.
        must(
            "ip",
            &["-n", w, "route", "add", "default", "via", SERVER_IP],
        );

        let dir = tempfile::Builder::new()
            .prefix("vsw-slirp.")
            .tempdir()
            .expect("tempdir");
        let root = dir.path();
        let home = root.join("home");
        let runtime_dir = root.join("run");
        for d in [&home, &runtime_dir, &root.join("bin")] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        let slirp = root.join("bin/slirp4netns");
        let src = binary_under_test();
        std::fs::copy(&src, &slirp)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), slirp.display()));
        let resolv = root.join("resolv.conf");
        std::fs::write(&resolv, format!("nameserver {SERVER_IP}\n")).expect("resolv.conf");
        must(
            "chmod",
            &["0755", path_str(root), path_str(&root.join("bin"))],
        );
        must("chmod", &["0755", path_str(&slirp)]);
        must("chmod", &["0644", path_str(&resolv)]);
        let owner = format!("{uid}:{gid}");
        must("chown", &[&owner, path_str(&home), path_str(&runtime_dir)]);
        must("chmod", &["0700", path_str(&home), path_str(&runtime_dir)]);

        let log = root.join("dnsmasq.log");
        let dns = Bg::sh(
            &servers,
            &format!(
                "exec dnsmasq --keep-in-foreground --log-facility=- --log-queries --user=root \
                 --pid-file= --no-resolv --no-hosts --listen-address={SERVER_IP} \
                 --bind-interfaces --port=53 --address=/{WORLD_NAME}/{WORLD_NAME_ADDR} 2>>{}",
                log.display()
            ),
        );
        wait_for("dnsmasq in SERVERS", || {
            listening_on(&servers, "udp", SERVER_IP, 53)
        });
        SlirpWorld {
            world,
            servers,
            dir,
            uid,
            gid,
            slirp,
            home,
            runtime_dir,
            resolv,
            _dns: dns,
        }
    }

    /// `ARGS` as the test user, in the world's network namespace, with the world's
    /// resolv.conf, a private HOME/XDG_RUNTIME_DIR and `env` added to a clean environment.
    pub fn user_command(&self, env: &[(&str, String)], args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.world.path()))
            .args(["unshare", "--mount", "--propagation", "private", "--"])
            .args([
                "sh",
                "-c",
                "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"",
                path_str(&self.resolv),
            ])
            .arg("setpriv")
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--clear-groups", "env", "-i"])
            .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .arg(format!("HOME={}", self.home.display()))
            .arg(format!("XDG_RUNTIME_DIR={}", self.runtime_dir.display()))
            .arg(format!(
                "XDG_CONFIG_HOME={}",
                self.home.join(".config").display()
            ))
            .arg(format!(
                "XDG_DATA_HOME={}",
                self.home.join(".local/share").display()
            ))
            .args(env.iter().map(|(k, v)| format!("{k}={v}")))
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }

    /// PIDs of running processes whose executable is the copy of the binary under test.
    pub fn slirp_pids(&self) -> Vec<u32> {
        let Ok(want) = std::fs::metadata(&self.slirp) else {
            return Vec::new();
        };
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::metadata(format!("/proc/{pid}/exe"))
                    .map(|m| m.dev() == want.dev() && m.ino() == want.ino())
                    .unwrap_or(false)
                    && !is_zombie(*pid)
            })
            .collect()
    }

    /// `/proc/PID/cmdline` of each running process of the binary under test.
    pub fn slirp_cmdlines(&self) -> Vec<String> {
        self.slirp_pids()
            .iter()
            .map(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// A TCP server in SERVERS on `port` answering one line: the peer's address.
    pub fn server_peer(&self, port: u16) -> Bg {
        tcp_peer(&self.servers, port)
    }

    /// A TCP server on the world's 127.0.0.1:`port` only, answering one line.
    pub fn loopback_server(&self, port: u16, line: &str) -> Bg {
        let bg = Bg::spawn(
            &self.world,
            &[
                "socat",
                &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"),
                &format!("SYSTEM:echo {line}"),
            ],
        );
        wait_for("a server on the world's loopback", || {
            listening_on(&self.world, "tcp", "127.0.0.1", port)
        });
        bg
    }

    /// Connects from SERVERS to `addr:port` and returns the first line answered ("" if none).
    pub fn fetch_from_servers(&self, addr: &str, port: u16) -> String {
        let r = run(
            &self.servers,
            15,
            &format!("socat -T 5 -u TCP:{addr}:{port},connect-timeout=5 - | head -n 1"),
        );
        r.stdout().trim().to_string()
    }

    /// Kills leftover processes of the binary under test (by PID, they are this fixture's).
    fn kill_leftovers(&self) {
        for pid in self.slirp_pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::SIGKILL,
            );
        }
    }
}

impl Drop for SlirpWorld {
    fn drop(&mut self) {
        self.kill_leftovers();
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.trim_start().to_string();
            rest.chars().next()
        })
        .is_none_or(|state| state == 'Z' || state == 'X')
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn kill_pid(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// Rootless podman 4 as the test user, with the binary under test as its slirp4netns.
pub struct Podman {
    pub w: SlirpWorld,
    conf: PathBuf,
    storage: PathBuf,
}

impl std::ops::Deref for Podman {
    type Target = SlirpWorld;
    fn deref(&self) -> &SlirpWorld {
        &self.w
    }
}

/// The image every container runs: busybox, built here.
pub const IMAGE: &str = "localhost/vswitch-busybox";

impl Podman {
    /// A fresh podman setup in a fresh [`SlirpWorld`], with the busybox image imported.
    /// `network_cmd_options` is the containers.conf list (e.g. `["allow_host_loopback=true"]`).
    pub fn start(network_cmd_options: &[&str]) -> Self {
        let w = SlirpWorld::new();
        let root = w.dir.path().to_path_buf();
        let conf = root.join("containers.conf");
        let storage = root.join("storage.conf");
        let opts: Vec<String> = network_cmd_options
            .iter()
            .map(|o| format!("{o:?}"))
            .collect();
        std::fs::write(
            &conf,
            format!(
                "[containers]\nnetns = \"slirp4netns\"\n\n[network]\n\n[engine]\n\
                 cgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 events_logfile_path = \"{home}/events.log\"\nruntime = \"runc\"\n\
                 network_cmd_path = \"{slirp}\"\nnetwork_cmd_options = [{opts}]\n",
                home = w.home.display(),
                slirp = w.slirp.display(),
                opts = opts.join(", ")
            ),
        )
        .expect("containers.conf");
        std::fs::write(
            &storage,
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                w.home.join("storage").display(),
                w.runtime_dir.join("storage").display()
            ),
        )
        .expect("storage.conf");
        must("chmod", &["0644", path_str(&conf), path_str(&storage)]);
        let p = Podman { w, conf, storage };
        p.import_busybox();
        p
    }

    /// Builds a rootfs from busybox-static (the binary and one symlink per applet), tars it and
    /// `podman import`s it as [`IMAGE`].
    fn import_busybox(&self) {
        let root = self.w.dir.path();
        let rootfs = root.join("rootfs");
        let tar = root.join("busybox.tar");
        let script = format!(
            "set -e; b=$(command -v busybox); mkdir -p {r}/bin {r}/etc {r}/tmp {r}/proc {r}/sys \
             {r}/dev {r}/root {r}/www/cgi-bin; cp \"$b\" {r}/bin/busybox; \
             for a in $({r}/bin/busybox --list); do [ \"$a\" = busybox ] || ln -sf busybox {r}/bin/$a; done; \
             tar -C {r} -cf {t} .; chmod 0644 {t}",
            r = rootfs.display(),
            t = tar.display()
        );
        must("sh", &["-c", &script]);
        let out = self.podman(&["import", path_str(&tar), IMAGE]);
        assert!(
            out.status.success(),
            "podman import failed: {}",
            stderr(&out)
        );
    }

    /// `podman ARGS` as the test user (killed after 120 s).
    pub fn podman(&self, args: &[&str]) -> Output {
        let env = [
            ("CONTAINERS_CONF", self.conf.display().to_string()),
            (
                "CONTAINERS_STORAGE_CONF",
                self.storage.display().to_string(),
            ),
        ];
        let mut v = vec!["timeout", "-k", "5", "120", "podman"];
        v.extend_from_slice(args);
        self.w.user_command(&env, &v).output().expect("run podman")
    }

    /// `podman run --rm --network NETWORK [EXTRA...] IMAGE sh -c SCRIPT`.
    pub fn run_sh(&self, network: &str, extra: &[&str], script: &str) -> Output {
        let mut v = vec!["run", "--rm", "--network", network];
        v.extend_from_slice(extra);
        v.extend_from_slice(&[IMAGE, "sh", "-c", script]);
        self.podman(&v)
    }

    /// `podman exec NAME sh -c SCRIPT`.
    pub fn exec_sh(&self, name: &str, script: &str) -> Output {
        self.podman(&["exec", name, "sh", "-c", script])
    }

    /// Starts a detached container NAME (`podman run -d`) serving HTTP on port 80 with a
    /// CGI `/cgi-bin/peer` that answers the client's address as the container sees it.
    pub fn start_server(&self, name: &str, network: &str, extra: &[&str]) {
        let mut v = vec!["run", "-d", "--name", name, "--network", network];
        v.extend_from_slice(extra);
        v.extend_from_slice(&[
            IMAGE,
            "sh",
            "-c",
            "printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' \
             > /www/cgi-bin/peer && chmod 0755 /www/cgi-bin/peer && exec httpd -f -p 80 -h /www",
        ]);
        let out = self.podman(&v);
        assert!(
            out.status.success(),
            "podman run -d {name} failed: {}{}",
            stdout(&out),
            stderr(&out)
        );
        let ok = wait_until(20, || {
            stdout(&self.exec_sh(name, "netstat -ltn 2>/dev/null")).contains(":80 ")
        });
        assert!(ok, "httpd in {name} does not listen on :80");
    }

    /// Fetches `http://ADDR:PORT/cgi-bin/peer` from SERVERS; the body (the client address
    /// the container saw), or "" when nothing answered.
    pub fn peer_from_servers(&self, addr: &str, port: u16) -> String {
        plain_addr(&http_get(
            &self.w.servers,
            &format!("http://{addr}:{port}/cgi-bin/peer"),
        ))
    }

    /// Fetches the same from the world itself (e.g. through 127.0.0.1).
    pub fn peer_from_world(&self, addr: &str, port: u16) -> String {
        plain_addr(&http_get(
            &self.w.world,
            &format!("http://{addr}:{port}/cgi-bin/peer"),
        ))
    }

    fn pause_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.w.runtime_dir.join("libpod/tmp/pause.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// busybox httpd's REMOTE_ADDR on a dual-stack socket, `[::ffff:10.0.2.2]`, as `10.0.2.2`.
fn plain_addr(s: &str) -> String {
    let s = s.trim().trim_start_matches('[').trim_end_matches(']');
    s.strip_prefix("::ffff:").unwrap_or(s).to_string()
}

/// GET `url` with curl inside `ns` (5 s timeout); the body trimmed, "" on failure.
pub fn http_get(ns: &Netns, url: &str) -> String {
    let r = run(ns, 15, &format!("curl -sf -m 5 {url}"));
    if r.ok() {
        r.stdout().trim().to_string()
    } else {
        String::new()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "--all", "--force", "--time", "0"]);
        if let Some(pid) = self.pause_pid() {
            kill_pid(pid, nix::sys::signal::SIGKILL);
        }
        // conmon of a container podman could not remove, if any, is ours too.
        let root = self.w.dir.path().to_path_buf();
        for pid in pids_with_cmdline_containing(&root.to_string_lossy()) {
            kill_pid(pid, nix::sys::signal::SIGKILL);
        }
    }
}

/// PIDs whose command line mentions `needle` (used only with this fixture's unique directory).
fn pids_with_cmdline_containing(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// rootlesskit 1.1 as the test user, `--net=slirp4netns --slirp4netns-binary=<under test>`,
/// its child a long sleep; clients and servers run in the child's network namespace.
pub struct RootlessKit {
    pub w: SlirpWorld,
    child: Child,
    pub state_dir: PathBuf,
    child_pid: u32,
    log: PathBuf,
}

impl std::ops::Deref for RootlessKit {
    type Target = SlirpWorld;
    fn deref(&self) -> &SlirpWorld {
        &self.w
    }
}

impl RootlessKit {
    /// Starts `rootlesskit --net=slirp4netns --slirp4netns-binary=X FLAGS... sleep` and waits
    /// until its child namespace has tap0 configured.
    pub fn start(flags: &[&str]) -> Self {
        let w = SlirpWorld::new();
        let state_dir = w.home.join("rootlesskit");
        let log = w.dir.path().join("rootlesskit.log");
        let binary = format!("--slirp4netns-binary={}", w.slirp.display());
        let state = format!("--state-dir={}", state_dir.display());
        let mut v = vec!["rootlesskit", "--net=slirp4netns", &binary, &state];
        v.extend_from_slice(flags);
        v.extend_from_slice(&["sleep", "3600"]);
        let child = w
            .user_command(&[], &v)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .process_group(0)
            .spawn()
            .expect("start rootlesskit");
        let mut rk = RootlessKit {
            w,
            child,
            state_dir,
            child_pid: 0,
            log,
        };
        let ok = wait_until(30, || {
            if let Some(pid) = std::fs::read_to_string(rk.state_dir.join("child_pid"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                rk.child_pid = pid;
            }
            rk.child_pid != 0
                && stdout(&rk.exec(&["ip", "-4", "addr", "show", "tap0"])).contains("inet ")
                && rk.state_dir.join("api.sock").exists()
        });
        assert!(ok, "rootlesskit did not come up: {}", rk.log());
        rk
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs ARGS (as root) in the child's network namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        let net = format!("--net=/proc/{}/ns/net", self.child_pid);
        let mut v = vec![net.as_str(), "timeout", "-k", "2", "20"];
        v.extend_from_slice(args);
        cmd("nsenter", &v)
    }

    /// `sh -c SCRIPT` in the child's network namespace; stdout trimmed, "" on failure.
    pub fn sh(&self, script: &str) -> String {
        let out = self.exec(&["sh", "-c", script]);
        if out.status.success() {
            stdout(&out).trim().to_string()
        } else {
            String::new()
        }
    }

    /// A background process (as root) in the child's network namespace.
    pub fn spawn(&self, args: &[&str]) -> Bg {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/proc/{}/ns/net", self.child_pid))
            .args(args);
        Bg::from_command(c, &format!("[rootlesskit child] {}", args.join(" ")))
    }

    /// `rootlessctl --socket STATE/api.sock ARGS` as the test user.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let sock = format!("--socket={}", self.state_dir.join("api.sock").display());
        let mut v = vec!["rootlessctl", sock.as_str()];
        v.extend_from_slice(args);
        self.w.user_command(&[], &v).output().expect("rootlessctl")
    }
}

impl Drop for RootlessKit {
    fn drop(&mut self) {
        // SIGTERM lets rootlesskit take its slirp4netns and child down; then make sure.
        kill_pid(self.child.id(), nix::sys::signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let cmdline =
            std::fs::read(format!("/proc/{}/cmdline", self.child_pid)).unwrap_or_default();
        if self.child_pid != 0 && cmdline == b"sleep\x003600\x00" {
            kill_pid(self.child_pid, nix::sys::signal::SIGKILL);
        }
    }
}
