//! `vswitchd`: the daemon. Parses flags, starts [`vswitchd::daemon::Daemon`], serves the API
//! until SIGTERM/SIGINT.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use vswitchd::daemon::{Config, DEFAULT_MTU, Daemon};

/// Rootless userspace virtual switch: Docker-style bridge networks for containers, served
/// from one unprivileged process. Runs in the foreground; `vswitchctl` talks to it.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None, after_help = AFTER_HELP)]
struct Args {
    /// Serve this network, creating it if it is new (with V4CIDR, or the next free subnet of
    /// Docker's default pools; an IPv6 subnet after a comma makes it dual stack, e.g.
    /// net=10.60.0.0/24,fd00:60::/64). Repeatable. Networks already in the state directory
    /// are always served; with none given and none in the state, "bridge" 172.17.0.0/16 is
    /// created.
    #[arg(long = "network", value_name = "NAME[=V4CIDR[,V6CIDR]]")]
    networks: Vec<String>,
    /// State directory [default: $XDG_STATE_HOME/vswitchd, or /var/lib/vswitchd as root].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// API socket, mode 0600 [default: $XDG_RUNTIME_DIR/vswitchd.sock, or
    /// /run/vswitchd.sock as root].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Default MTU of new networks.
    #[arg(long, default_value_t = DEFAULT_MTU, value_parser = clap::value_parser!(u32).range(68..=65520))]
    mtu: u32,
    /// Most NAT flows (TCP+UDP+ICMP) per network; new flows beyond are refused.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_flows: u64,
    /// Most NAT flows one container may hold [default: a quarter of --max-flows]; its new
    /// flows beyond are refused (TCP RST, ICMP administratively prohibited) and counted.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_flows_per_endpoint: Option<u64>,
    /// Memory all TCP flows of one network may hold in buffers, e.g. 256M or 1G; flows
    /// start at 8 KiB and grow with their traffic within it.
    #[arg(long, default_value = "256M", value_name = "SIZE", value_parser = parse_memory)]
    nat_memory: u64,
    /// Seconds after which an established TCP flow with no traffic is reset.
    #[arg(long, default_value_t = 7200, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=432_000))]
    tcp_idle_timeout: u64,
    /// Seconds after which an idle UDP or ICMP flow is forgotten.
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    udp_timeout: u64,
    /// Seconds an outbound TCP connection may take to reach its destination before the
    /// container is told it is unreachable.
    #[arg(long, default_value_t = 10, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=600))]
    connect_timeout: u64,
    /// Let members of GROUP use the API socket too (mode 0660, group GROUP, as Docker's
    /// `docker` group); without it the socket is 0600, owner only.
    #[arg(long, value_name = "GROUP")]
    socket_group: Option<String>,
    /// Upstream DNS resolver for names that are not containers' (repeatable)
    /// [default: the nameservers of /etc/resolv.conf].
    #[arg(long = "dns", value_name = "IP")]
    dns: Vec<std::net::IpAddr>,
    /// Also serve Prometheus metrics (text format 0.0.4) at http://IP:PORT/metrics, e.g.
    /// 127.0.0.1:9323 or [::1]:9323 (dockerd's flag; an IP address, not a host name); anyone
    /// who can reach that address can read them. `GET /metrics` on the API socket serves the
    /// same without this flag.
    #[arg(long, value_name = "IP:PORT")]
    metrics_addr: Option<String>,
    /// Seconds to wait for each upstream resolver before trying the next one.
    #[arg(long, default_value_t = 2, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=60))]
    dns_timeout: u64,
    /// Join a cluster whose state lives in etcd (v3 API) at these endpoints, for overlay
    /// networks (`network create --driver overlay`). Needs --cluster-advertise.
    #[arg(
        long,
        value_name = "etcd://HOST:PORT[,HOST:PORT...]",
        requires = "cluster_advertise",
        value_parser = parse_store
    )]
    cluster_store: Option<String>,
    /// This host's address for the others (an address of one of its interfaces), and the
    /// UDP port of its VXLAN socket [default port: 4789]. Overlay networks get that
    /// interface's MTU minus 50. Needs --cluster-store.
    #[arg(long, value_name = "IP[:VXLAN_PORT]", requires = "cluster_store", value_parser = parse_advertise)]
    cluster_advertise: Option<std::net::SocketAddr>,
    /// Seconds this host stays in the cluster after it stops renewing its lease (killed or
    /// cut off from the store); then its containers leave the other hosts' tables and DNS
    /// and their addresses are freed.
    #[arg(long, default_value_t = 15, value_name = "SECS", value_parser = clap::value_parser!(u64).range(2..=3600))]
    cluster_ttl: u64,
}

/// `--cluster-store etcd://HOST:PORT[,...]`, checked.
fn parse_store(s: &str) -> Result<String, String> {
    cluster::StoreUrl::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// `--cluster-advertise IP[:PORT]` (IPv6 in brackets with a port).
fn parse_advertise(s: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(std::net::SocketAddr::new(
            ip,
            vswitchd::daemon::overlay::VXLAN_PORT,
        ));
    }
    match s.parse::<std::net::SocketAddr>() {
        Ok(a) if a.port() != 0 && !a.ip().is_unspecified() => Ok(a),
        Ok(_) => Err(format!(
            "{s:?} needs a specific address and a non-zero port"
        )),
        Err(_) => Err(format!(
            "{s:?} is not IP[:PORT], e.g. 198.51.100.11 or 198.51.100.11:4789"
        )),
    }
}

/// A size such as `256M`, `1GiB` or `65536` (bytes), at least 1 MiB.
fn parse_memory(s: &str) -> Result<u64, String> {
    let bytes = parse_size::Config::new()
        .with_binary()
        .parse_size(s)
        .map_err(|e| format!("{s:?} is not a size such as 256M: {e}"))?;
    if bytes < 1 << 20 {
        return Err(format!("{s:?} is less than the 1M minimum"));
    }
    Ok(bytes)
}
const AFTER_HELP: &str = "\
State: DIR/state.json (mode 0600, DIR 0700) is checked at start with the rules the API
applies; if it is unreadable or invalid, vswitchd stops with one line and leaves it as it
is. Each save keeps the file it replaces as DIR/state.json.bak: move that to state.json to
go back to the previous good state.
API: request bodies over 1 MiB get 413; at most 128 connections are kept open (the
longest-idle one is closed to make room), and a request must arrive within 10 s.
Metrics: GET /metrics on the API socket (Prometheus text format 0.0.4); --metrics-addr
serves the same over TCP with the same limits (any other path: 404).
Cluster: with --cluster-store, DIR/host-id names this host in the cluster (made at the first
start; keep it, and a restarted host rejoins with its containers). The store layout is in
README.md, \"Cluster store\".";

/// Test-only: the helper first sleeps for the milliseconds written in this file, when it
/// exists (tests of the helper timeout). The daemon itself never reads it.
const TEST_HELPER_DELAY_FILE: &str = "VSWITCHD_TEST_HELPER_DELAY_FILE";

fn main() {
    // The netns helper must run before any thread exists (setns into a user namespace).
    if std::env::args_os().nth(1).as_deref() == Some(netns_helper::HELPER_ARG.as_ref()) {
        if let Some(file) = std::env::var_os(TEST_HELPER_DELAY_FILE)
            && let Ok(text) = std::fs::read_to_string(file)
            && let Ok(ms) = text.trim().parse::<u64>()
        {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        netns_helper::helper_main();
    }
    let mut argv = std::env::args_os();
    if vswitchd::slirp::invoked_as_slirp4netns(argv.next().as_deref()) {
        vswitchd::slirp::main(argv);
    }
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VSWITCHD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    raise_fd_limit();
    if let Err(e) = run(args) {
        eprintln!("vswitchd: error: {e:#}");
        std::process::exit(1);
    }
}

/// Every NAT flow holds a host socket, so the common soft limit of 1024 descriptors would cap
/// a network far below `--max-flows`: raise the soft limit to the hard one (as Go and systemd
/// services do). Unprivileged processes may do this; failure only means fewer flows.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("open-file limit stays at {soft}: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot read the open-file limit: {e}"),
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let state_dir = args.state_dir.unwrap_or_else(vswitchd::paths::state_dir);
    let socket = args.socket.unwrap_or_else(vswitchd::paths::socket);
    let socket_group = args.socket_group.as_deref().map(group_id).transpose()?;
    let mut wanted = Vec::new();
    for spec in &args.networks {
        let (name, subnet) = match spec.split_once('=') {
            Some((n, s)) => (n.to_string(), Some(s.to_string())),
            None => (spec.clone(), None),
        };
        wanted.push((name, subnet));
    }
    let metrics_addr = args
        .metrics_addr
        .as_deref()
        .map(parse_metrics_addr)
        .transpose()?;
    // Checked before anything is touched: an address of no interface stops the daemon.
    let underlay_mtu = args
        .cluster_advertise
        .map(|a| vswitchd::daemon::overlay::underlay_mtu(a.ip()).map_err(anyhow::Error::msg))
        .transpose()?;
    private_dir(&state_dir)?;
    let _lock = lock_state_dir(&state_dir)?;
    // Bound before the daemon starts: a port in use stops it with one line, having done nothing.
    let metrics_listener = metrics_addr
        .map(|addr| {
            std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .with_context(|| format!("cannot listen on --metrics-addr {addr}"))
        })
        .transpose()?;
    // Bound before the daemon starts, as the metrics listener: a VXLAN port in use stops it
    // with one line, having served nothing.
    let vxlan = args
        .cluster_advertise
        .map(|a| {
            vswitchd::overlay::Vxlan::bind(a)
                .with_context(|| format!("cannot bind the VXLAN socket on {a}"))
        })
        .transpose()?;
    // Checked before anything else happens: a bad state stops the daemon untouched.
    let (state, replayed) = vswitchd::state::State::load_replayed(&state_dir)?;
    if replayed.records > 0 {
        tracing::info!(records = replayed.records, "state journal replayed");
    }
    if replayed.torn {
        tracing::warn!("the state journal's last record was torn by a crash; it is ignored");
    }
    remove_stale_temp_files(&state_dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = bind(&socket, socket_group)?;
        let host_id_dir = state_dir.clone();
        let config = Config {
            state_dir,
            mtu: args.mtu,
            helper_exe: std::env::current_exe().context("cannot find own executable")?,
            max_flows: args.max_flows as usize,
            max_flows_per_endpoint: args
                .max_flows_per_endpoint
                .map_or((args.max_flows as usize / 4).max(1), |n| n as usize),
            tcp_idle_timeout: std::time::Duration::from_secs(args.tcp_idle_timeout),
            nat_memory: usize::try_from(args.nat_memory).unwrap_or(usize::MAX),
            udp_timeout: std::time::Duration::from_secs(args.udp_timeout),
            connect_timeout: std::time::Duration::from_secs(args.connect_timeout),
            dns: nat::DnsConfig {
                upstreams: vswitchd::daemon::upstreams(&args.dns),
                timeout: std::time::Duration::from_secs(args.dns_timeout),
            },
        };
        let daemon = match Daemon::start(config, state, &wanted).await {
            Ok(d) => d,
            Err(e) => {
                let _ = std::fs::remove_file(&socket);
                return Err(e);
            }
        };
        let shared = Arc::new(tokio::sync::Mutex::new(daemon));
        if let (Some(store), Some(advertise), Some(mtu), Some(vxlan)) = (
            &args.cluster_store,
            args.cluster_advertise,
            underlay_mtu,
            vxlan,
        ) {
            let member = (advertise, mtu, vxlan);
            join_cluster(&shared, store, member, args.cluster_ttl, &host_id_dir).await?;
        }
        let reaper = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(vswitchd::daemon::REAP_EVERY);
            loop {
                tick.tick().await;
                vswitchd::daemon::reap(&reaper).await;
            }
        });
        tracing::info!(socket = %socket.display(), "vswitchd ready");
        let (stop_metrics, metrics_stopped) = tokio::sync::watch::channel(false);
        if let Some(l) = metrics_listener {
            let listener = tokio::net::TcpListener::from_std(l)?;
            tracing::info!(addr = %listener.local_addr()?, "serving metrics");
            let app = vswitchd::metrics::router(shared.clone());
            let mut stopped = metrics_stopped.clone();
            tokio::spawn(async move {
                let until = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                vswitchd::api::serve::serve(listener, app, until).await
            });
        }
        let app = vswitchd::api::router(shared.clone());
        let events = shared.lock().await.events().clone();
        let shutdown = async move {
            shutdown_signal().await;
            // Streams (events, captures) end now, so the API does not wait for them.
            events.close();
        };
        let served = vswitchd::api::serve::serve(listener, app, shutdown).await;
        let _ = std::fs::remove_file(&socket);
        let _ = stop_metrics.send(true);
        // A clean shutdown folds the journal into a fresh snapshot.
        if let Err(e) = shared.lock().await.checkpoint() {
            tracing::warn!("state not compacted at exit (the journal keeps it): {e}");
        }
        drop(shared);
        served.context("API server failed")
    })
}

/// Joins the cluster of `--cluster-store`: this host's id, its lease kept alive, the store
/// watched and every change applied to the daemon.
async fn join_cluster(
    shared: &vswitchd::daemon::Shared,
    store: &str,
    (advertise, underlay_mtu, vxlan): (std::net::SocketAddr, u32, vswitchd::overlay::Vxlan),
    ttl: u64,
    state_dir: &Path,
) -> anyhow::Result<()> {
    use vswitchd::daemon::overlay;
    let host_id = host_id(state_dir)?;
    let record = cluster::HostRecord {
        advertise: advertise.ip(),
        vxlan_port: advertise.port(),
    };
    let store = cluster::Store::new(
        store,
        host_id.clone(),
        record,
        std::time::Duration::from_secs(ttl),
    )
    .await
    .map_err(|e| anyhow::anyhow!("--cluster-store: {e}"))?;
    let member = overlay::Cluster::new(store.clone(), advertise.ip(), underlay_mtu, vxlan);
    shared.lock().await.set_cluster(member).await;
    tracing::info!(host = host_id, %advertise, underlay_mtu, "cluster member");
    tokio::spawn(store.clone().keep_membership());
    let (tx, rx) = tokio::sync::watch::channel(None);
    tokio::spawn(store.watch(tx));
    tokio::spawn(overlay::follow(shared.clone(), rx));
    Ok(())
}

/// This host's id in the cluster: DIR/host-id, made (32 random hex digits) at the first
/// start.
fn host_id(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("host-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            anyhow::ensure!(
                (8..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{} does not hold a host id (8-64 hex digits)",
                path.display()
            );
            Ok(id.to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 16];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
                .context("cannot read /dev/urandom")?;
            let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            std::io::Write::write_all(&mut f, format!("{id}\n").as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// `--metrics-addr`: an IP address and port, such as 127.0.0.1:9323 or [::1]:9323.
fn parse_metrics_addr(s: &str) -> anyhow::Result<std::net::SocketAddr> {
    s.parse().map_err(|_| {
        anyhow::anyhow!(
            "invalid --metrics-addr {s:?}: expected IP:PORT such as 127.0.0.1:9323 or [::1]:9323"
        )
    })
}

/// Removes the temp files of saves cut short by a crash (`.state.json.tmp.PID`,
/// `.state.json.bak.tmp.PID`, `.state.journal.tmp.PID`); we hold the directory's lock, so no
/// save is under way.
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".state.json.tmp.")
            || name.starts_with(".state.json.bak.tmp.")
            || name.starts_with(".state.journal.tmp.")
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The gid of a group name (or number).
fn group_id(name: &str) -> anyhow::Result<nix::unistd::Gid> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(nix::unistd::Gid::from_raw(n));
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid),
        Ok(None) => anyhow::bail!("unknown group {name:?} for --socket-group"),
        Err(e) => anyhow::bail!("cannot look up group {name:?} for --socket-group: {e}"),
    }
}

/// Creates the state directory if needed and makes it (and every file in it) owner-only.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create state directory {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict state directory {}", dir.display()))?;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let meta = entry.path().symlink_metadata();
        if meta.is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o077 != 0) {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot restrict {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Holds an exclusive lock on the state directory so two daemons never share it.
fn lock_state_dir(dir: &Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let path = dir.join("lock");
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        anyhow::anyhow!(
            "state directory {} is in use by another vswitchd",
            dir.display()
        )
    })
}

/// Binds the API socket, replacing a stale file left by a crash but never a live daemon's.
/// The socket is 0600, or 0660 with group `group`; it never exists with wider permissions.
fn bind(
    socket: &Path,
    group: Option<nix::unistd::Gid>,
) -> anyhow::Result<tokio::net::UnixListener> {
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            anyhow::bail!(
                "another vswitchd is already serving {} (stop it or use --socket)",
                socket.display()
            );
        }
        std::fs::remove_file(socket)
            .with_context(|| format!("cannot remove stale socket {}", socket.display()))?;
        tracing::info!(socket = %socket.display(), "removed stale socket");
    }
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // The socket file is created by bind() with the umask applied: make it owner-only from
    // its first instant (no other thread creates files at this point).
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = tokio::net::UnixListener::bind(socket);
    nix::sys::stat::umask(old);
    let listener = listener.with_context(|| format!("cannot listen on {}", socket.display()))?;
    let mode = match group {
        Some(gid) => {
            nix::unistd::chown(socket, None, Some(gid))
                .with_context(|| format!("cannot give {} to group {gid}", socket.display()))?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot restrict {}", socket.display()))?;
    Ok(listener)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down; containers keep their interfaces for the next start");
}
