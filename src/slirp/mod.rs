//! The slirp4netns drop-in: `vswitchd` run under the name `slirp4netns` (a symlink or copy;
//! argv[0]'s basename decides) serves one network namespace the way slirp4netns 1.2 does for
//! podman, rootlesskit and dockerd-rootless.sh, with vswitchd's data path and NAT.
//!
//! What a caller sees, in order (slirp4netns's `main.c` and `do_slirp`):
//! 1. the command line ([`args`]) is checked; a bad one gets one line and exit 1;
//! 2. the TAP is opened in the namespace by the netns helper (joining the user namespace
//!    first): attached to when it exists (rootlesskit pre-creates `tap0`), created otherwise,
//!    and with `-c` configured (`lo` up, MTU, MAC, net+100, default route via net+2);
//! 3. the upstream resolvers are read from /etc/resolv.conf and the API socket ([`api`]) is
//!    bound;
//! 4. the sandbox is entered (`--enable-sandbox`, `--enable-seccomp`: [`confine`]), before
//!    any thread starts, so that every thread is in it;
//! 5. the data path starts: a switch with the TAP's port and the gateway, which answers ARP
//!    and ping for net+2 and net+3 (DNS), DHCP (net+15..net+30), with `-6` router
//!    advertisements for fd00::/64 (gateway fd00::2, DNS fd00::3), DNS at net+3, and NAT;
//!    the API socket is served;
//! 6. `1` is written to the ready fd, which is closed;
//! 7. it runs until the exit fd is closed (its writer gone), or SIGTERM/SIGINT, then exits 0
//!    after removing the API socket.
//!
//! Unlike slirp4netns the TAP carries virtio-net headers with offloads (the data path's
//! format), so 64 KiB segments cross at MTU 65520 without being cut up.

pub mod api;
pub mod args;
mod confine;

use std::ffi::OsString;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use nat::{DhcpConfig, Gateway, Ipv6Config, Nat, NatConfig, RaConfig};
use netns_helper::named::{TapConfig, TapSpec};
use netns_helper::{Reply, Request};
use switch::{NetworkConfig, PortId, PortRole};

use crate::datapath::Datapath;
use args::{Invocation, Plan};

/// The name that turns `vswitchd` into the drop-in.
pub const ARGV0: &str = "slirp4netns";

/// Time the netns helper has to open the TAP.
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// slirp4netns's IPv6 network, gateway and DNS address (hard-coded there too).
pub const IPV6_NET: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0);
/// The IPv6 gateway.
pub const IPV6_GATEWAY: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
/// The IPv6 DNS address.
pub const IPV6_DNS: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3);

/// Whether argv[0] asks for the drop-in.
pub fn invoked_as_slirp4netns(argv0: Option<&std::ffi::OsStr>) -> bool {
    argv0
        .map(Path::new)
        .and_then(Path::file_name)
        .is_some_and(|n| n == ARGV0)
}

/// Runs the drop-in with `args` (argv without argv[0]) and exits: 0 after `--help`,
/// `--version` or a clean end, 1 on any error (one line on stderr).
pub fn main(args: impl Iterator<Item = OsString>) -> ! {
    let plan = match args::parse(args) {
        Ok(Invocation::Help) => {
            println!("{}", args::USAGE);
            std::process::exit(0)
        }
        Ok(Invocation::Version) => {
            println!("{}", args::VERSION);
            println!("vswitchd: {}", env!("CARGO_PKG_VERSION"));
            println!("libslirp: none (vswitchd's NAT)");
            std::process::exit(0)
        }
        Ok(Invocation::Serve(plan)) => *plan,
        Err(e) => {
            eprintln!("slirp4netns: {e}");
            std::process::exit(1)
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VSWITCHD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    match run(plan) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("slirp4netns: {e:#}");
            std::process::exit(1)
        }
    }
}

/// Takes ownership of an fd number the command line named (checked open by [`args`]).
fn own_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the fd was checked to be open when the arguments were parsed, and nothing else
    // in this process uses or closes it: from here on the OwnedFd is its only owner.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn run(plan: Plan) -> anyhow::Result<()> {
    // Claimed first, so that no fd the process opens later can take their numbers.
    let ready = plan.ready_fd.map(own_fd);
    let exit = plan.exit_fd.map(own_fd);
    let (tap, mac) = open_tap(&plan)?;
    let dns = if plan.dns {
        crate::daemon::upstreams(&[])
    } else {
        Vec::new()
    };
    let api_listener = plan
        .api_socket
        .as_deref()
        .map(bind_api_socket)
        .transpose()?;
    announce(&plan);
    // Both before any thread starts: the threads started later inherit them.
    if plan.sandbox {
        confine::restrict_files(plan.api_socket.as_deref())?;
    }
    if plan.seccomp || plan.sandbox {
        confine::seccomp()?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let result = runtime.block_on(async {
        let datapath = Arc::new(start_datapath(&plan, mac, dns)?);
        datapath
            .attach(PortId(1), tap, PortRole::Uplink, &plan.tapname)
            .await
            .context("cannot attach the TAP")?;
        if let Some(listener) = api_listener {
            let listener = tokio::net::UnixListener::from_std(listener)
                .context("cannot serve the API socket")?;
            let forwards = Arc::new(api::Forwards::new(plan.cidr, datapath.clone()));
            tokio::spawn(forwards.serve(listener));
        }
        if let Some(fd) = ready {
            nix::unistd::write(&fd, b"1").context("cannot write to the ready fd")?;
            drop(fd);
        }
        wait_for_the_end(exit).await
    });
    if let Some(path) = &plan.api_socket {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Opens the TAP through the netns helper; returns it and its MAC.
fn open_tap(plan: &Plan) -> anyhow::Result<(OwnedFd, [u8; 6])> {
    let exe = std::env::current_exe().context("cannot find own executable")?;
    let spec = TapSpec {
        netns: plan.netns.clone(),
        userns: plan.userns.clone(),
        ifname: plan.tapname.clone(),
        configure: plan.configure.then(|| TapConfig {
            ip: plan.guest(),
            prefix_len: plan.cidr.prefix_len(),
            gateway: plan.gateway(),
            mtu: plan.mtu,
            mac: plan.mac,
        }),
    };
    let (reply, fd) = netns_helper::call_timeout(&exe, &Request::OpenTap(spec), HELPER_TIMEOUT)?;
    match (reply, fd) {
        (Reply::TapOpened { mac, created, .. }, Some(fd)) => {
            tracing::debug!(tap = plan.tapname, created, "TAP open");
            Ok((fd, mac))
        }
        (Reply::Failed(e), _) => Err(e.into()),
        _ => bail!("netns helper: unexpected reply"),
    }
}

/// The data path for the namespace: gateway at net+2 and net+3, NAT, DNS at net+3.
fn start_datapath(
    plan: &Plan,
    guest_mac: [u8; 6],
    upstreams: Vec<std::net::SocketAddr>,
) -> anyhow::Result<Datapath> {
    let gateway_ip = plan.gateway();
    let gw_mac = slirp_mac(gateway_ip);
    let switch_cfg = NetworkConfig::new(gw_mac);
    let mut nat_cfg = NatConfig::new(
        gateway_ip,
        gw_mac,
        (plan.cidr.network(), plan.cidr.prefix_len()),
        plan.mtu,
    );
    nat_cfg.host_loopback = plan.host_loopback;
    nat_cfg.dns.upstreams = upstreams;
    nat_cfg.dns_ip = Some(plan.dns_ip());
    nat_cfg.dns_enabled = plan.dns;
    // One container per instance: whatever MAC it uses (DHCP, SLAAC, a changed MAC) gets
    // its traffic.
    nat_cfg.learn_neighbor = true;
    nat_cfg.outbound_ip = plan.outbound4;
    nat_cfg.outbound_ip6 = plan.outbound6;
    let mut gateway = Gateway::new(gateway_ip, gw_mac)
        .with_alias_v4(plan.dns_ip())
        .with_dhcp(DhcpConfig::slirp(
            plan.cidr.network(),
            plan.cidr.prefix_len(),
            plan.dns_ip(),
        ));
    if plan.ipv6 {
        nat_cfg.ipv6 = Some(Ipv6Config {
            gateway_ip: IPV6_GATEWAY,
            subnet: (IPV6_NET, 64),
        });
        nat_cfg.dns_ip6 = Some(IPV6_DNS);
        gateway = gateway
            .with_ipv6(IPV6_GATEWAY)
            .with_alias_v6(IPV6_DNS)
            .with_router_advert(RaConfig {
                rdnss: if plan.dns { vec![IPV6_DNS] } else { Vec::new() },
                mtu: Some(plan.mtu),
                ..RaConfig::new(IPV6_NET, 64)
            });
    }
    let mut nat = Nat::new(nat_cfg).context("cannot start the NAT")?;
    // Known before the container sends anything, so that a published port reaches it at once.
    nat.set_default_neighbor(guest_mac);
    Datapath::spawn(
        "slirp4netns",
        switch_cfg,
        gateway,
        nat,
        crate::events::Events::default(),
    )
    .context("cannot start the data path")
}

/// slirp's virtual MAC for one of its addresses: 52:55 and the IPv4 address.
fn slirp_mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x52, 0x55, o[0], o[1], o[2], o[3]]
}

/// Binds the API socket (removing a stale file first, as slirp4netns does).
fn bind_api_socket(path: &Path) -> anyhow::Result<std::os::unix::net::UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("cannot remove stale API socket {}: {e}", path.display()),
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("cannot bind API socket {}", path.display()))?;
    listener
        .set_nonblocking(true)
        .context("cannot make the API socket non-blocking")?;
    Ok(listener)
}

/// slirp4netns's start-up block on stdout (podman shows the log when something fails).
fn announce(plan: &Plan) {
    let lines = [
        "Starting slirp (vswitchd)".to_string(),
        format!("* MTU:             {}", plan.mtu),
        format!("* Network:         {}", plan.cidr.network()),
        format!("* Netmask:         {}", plan.cidr.netmask()),
        format!("* Gateway:         {}", plan.gateway()),
        format!("* DNS:             {}", plan.dns_ip()),
        format!("* DHCP begin:      {}", plan.host(15)),
        format!("* DHCP end:        {}", plan.host(30)),
        format!("* Recommended IP:  {}", plan.guest()),
    ];
    let mut out = lines.join("\n");
    if let Some(p) = &plan.api_socket {
        out += &format!("\n* API Socket:      {}", p.display());
    }
    if plan.ipv6 {
        out += &format!(
            "\n* IPv6 Network:    {IPV6_NET}/64\n* IPv6 Gateway:    {IPV6_GATEWAY}\n* IPv6 DNS:        {IPV6_DNS}"
        );
    }
    if plan.host_loopback {
        out += &format!(
            "\nWARNING: 127.0.0.1:* on the host is accessible as {} (set --disable-host-loopback to prohibit connecting to 127.0.0.1:*)",
            plan.gateway()
        );
    }
    println!("{out}");
}

/// Returns when the exit fd reports hang-up or end of file, or on SIGTERM/SIGINT.
async fn wait_for_the_end(exit: Option<OwnedFd>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot catch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot catch SIGINT")?;
    let closed = match exit {
        Some(fd) => {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::Builder::new()
                .name("exit-fd".into())
                .spawn(move || {
                    watch_exit_fd(&fd);
                    let _ = tx.send(());
                })
                .context("cannot watch the exit fd")?;
            Some(rx)
        }
        None => None,
    };
    let exit_closed = async {
        match closed {
            Some(rx) => {
                let _ = rx.await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: exiting"),
        _ = int.recv() => tracing::info!("SIGINT: exiting"),
        () = exit_closed => tracing::info!("exit fd closed: exiting"),
    }
    Ok(())
}

/// Blocks until `fd` hangs up, errs or reaches end of file (data written to it is ignored).
fn watch_exit_fd(fd: &OwnedFd) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut buf = [0u8; 64];
    loop {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::POLLHUP);
        if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
            return;
        }
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => return,
            Ok(_) | Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
            Err(_) => return,
        }
    }
}

/// The directory a path is in (for the sandbox's one writable place).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
