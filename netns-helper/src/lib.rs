//! netns-helper: the only code in vswitchd that enters namespaces, opens `/dev/net/tun` or
//! speaks netlink.
//!
//! `setns(CLONE_NEWUSER)` is refused to multithreaded processes, and the daemon runs tokio, so
//! every namespace operation happens in a short-lived, single-threaded child: the daemon
//! re-executes its own binary with the hidden first argument [`HELPER_ARG`]; that process reads
//! one [`Request`] from its stdin (a unix socket), does the work and answers with one [`Reply`]
//! (plus, for an attach, the TAP fd as `SCM_RIGHTS`) before it exits.
//!
//! Modules:
//! - [`ns`]: resolve and join a container's network namespace (through its owning user
//!   namespace when we are not privileged over it), and create fresh namespaces for `run`;
//! - [`tap`]: create or re-open the container's TAP with the virtio-net header and offloads;
//! - [`netlink`]: address, MTU, MAC, routes and link state through rtnetlink messages;
//! - [`fdpass`]: the request/reply channel and fd passing;
//! - [`named`]: open a TAP by name, as slirp4netns does (the drop-in's way in);
//! - [`fresh`]: the child process of `vswitchctl run`, in its own new namespaces.

pub mod fdpass;
pub mod fresh;
pub mod named;
pub mod netlink;
pub mod ns;
pub mod tap;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The hidden first argument that turns the daemon's binary into the helper.
pub const HELPER_ARG: &str = "__netns-helper";

/// Identity of a namespace file: (device, inode) of the nsfs inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NsId {
    /// `st_dev` of the nsfs inode.
    pub dev: u64,
    /// `st_ino` of the nsfs inode.
    pub ino: u64,
}

/// What the daemon asks the helper to do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    /// Create (or re-open) a container's TAP and configure it.
    Attach(AttachSpec),
    /// Delete a container's interface; a namespace that no longer exists is not an error.
    Detach {
        /// The container's network namespace file.
        netns: PathBuf,
        /// The namespace identity recorded at attach time; a different namespace now at the
        /// same path is left alone.
        ns_id: NsId,
        /// The interface to remove.
        ifname: String,
    },
    /// Open (or create, not persistent) a TAP by name, as slirp4netns does.
    OpenTap(named::TapSpec),
}

/// Everything needed to give a container its `ethN`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttachSpec {
    /// The container's network namespace file (`/proc/PID/ns/net`, `/run/netns/NAME`).
    pub netns: PathBuf,
    /// Re-open this existing persistent TAP (daemon restart) instead of creating one; no
    /// configuration is changed.
    pub reopen: Option<String>,
    /// When re-opening: the namespace identity recorded at attach time.
    pub expect_ns: Option<NsId>,
    /// The interface's MAC address.
    pub mac: [u8; 6],
    /// The container's address on the network.
    pub ip: Ipv4Addr,
    /// Prefix length of the network's subnet.
    pub prefix_len: u8,
    /// The network's gateway, used for the default route.
    pub gateway: Ipv4Addr,
    /// The IPv6 side on a dual-stack network.
    #[serde(default)]
    pub ipv6: Option<Ipv6Spec>,
    /// The link MTU.
    pub mtu: u32,
    /// Name the interface this way instead of the first free `ethN`; it must not exist yet.
    #[serde(default)]
    pub ifname: Option<String>,
    /// Cap the GSO frames the container sends at this many bytes (`gso_max_size`); overlay
    /// networks need it so a GSO frame fits one VXLAN datagram
    /// (`vswitchd::overlay::wire::TAP_GSO_MAX_SIZE`). `None` leaves the kernel's default.
    #[serde(default)]
    pub gso_max_size: Option<u32>,
}

/// A container's IPv6 configuration: address, prefix and the gateway of its default route.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Ipv6Spec {
    /// The container's IPv6 address.
    pub ip: Ipv6Addr,
    /// Prefix length of the network's IPv6 subnet.
    pub prefix_len: u8,
    /// The network's IPv6 gateway.
    pub gateway: Ipv6Addr,
}

/// The helper's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Reply {
    /// Attach done; the TAP fd travels with this reply.
    Attached {
        /// Name of the interface inside the container (`eth0`, `eth1`, ...).
        ifname: String,
        /// Identity of the namespace that was joined.
        ns_id: NsId,
        /// Whether the default route now points at this interface's gateway.
        default_route: bool,
    },
    /// The named TAP is open; its fd travels with this reply.
    TapOpened {
        /// Its name.
        ifname: String,
        /// Its MAC address (after `-c`'s `--macaddress`, if any).
        mac: [u8; 6],
        /// Whether it was created (false: it existed and was attached to).
        created: bool,
    },
    /// Detach done.
    Detached {
        /// False when the namespace or interface was already gone.
        removed: bool,
    },
    /// The request failed; nothing was left half-made.
    Failed(HelperError),
}

/// Why a helper request failed. Each variant carries the value at fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum HelperError {
    /// The namespace file does not exist.
    #[error("network namespace {0} does not exist")]
    NoSuchNetns(PathBuf),
    /// The file exists but is not a network namespace.
    #[error("{0} is not a network namespace")]
    NotANetns(PathBuf),
    /// Opening or joining the namespace was refused.
    #[error("cannot enter network namespace {path}: {reason}")]
    Enter {
        /// The namespace file.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The namespace at the path is not the one recorded earlier (the container is gone).
    #[error("network namespace {0} now belongs to another container")]
    NetnsReplaced(PathBuf),
    /// `/dev/net/tun` could not be used.
    #[error("cannot create TAP device {ifname}: {reason}")]
    Tap {
        /// The interface name tried.
        ifname: String,
        /// The OS error, explained.
        reason: String,
    },
    /// The interface name asked for is already taken in the container.
    #[error("interface {ifname} already exists in {netns}")]
    InterfaceExists {
        /// The name asked for.
        ifname: String,
        /// The container's namespace.
        netns: PathBuf,
    },
    /// Every name eth0..eth255 is taken.
    #[error("no free interface name ethN in {0}")]
    NoFreeName(PathBuf),
    /// The interface to re-open is gone.
    #[error("interface {0} no longer exists in the container")]
    InterfaceGone(String),
    /// A netlink request failed.
    #[error("cannot configure {what}: {reason}")]
    Netlink {
        /// What was being configured.
        what: String,
        /// The kernel's answer.
        reason: String,
    },
    /// The helper did not answer in time; it was killed.
    #[error("netns helper did not answer within {secs} s and was killed")]
    TimedOut {
        /// The time allowed, in whole seconds (at least 1).
        secs: u64,
    },
    /// Spawning or talking to the helper failed.
    #[error("netns helper: {0}")]
    Channel(String),
}

/// Runs one request in a fresh helper process (`exe` re-executed with [`HELPER_ARG`]) and
/// returns its reply and, for an attach, the TAP fd. Blocking; call it off the async runtime.
///
/// # Errors
/// [`HelperError::Channel`] when the helper cannot be started or dies; otherwise the error the
/// helper reported.
pub fn call(exe: &Path, request: &Request) -> Result<(Reply, Option<OwnedFd>), HelperError> {
    fdpass::call(exe, request, None)
}

/// Like [`call`], but a helper that has not answered within `timeout` is killed (and
/// reaped) and [`HelperError::TimedOut`] is returned.
///
/// # Errors
/// As [`call`], plus [`HelperError::TimedOut`].
pub fn call_timeout(
    exe: &Path,
    request: &Request,
    timeout: std::time::Duration,
) -> Result<(Reply, Option<OwnedFd>), HelperError> {
    fdpass::call(exe, request, Some(timeout))
}

/// Entry point of the helper process: serves the one request on stdin and exits.
/// Must run before any thread is started.
pub fn helper_main() -> ! {
    let code = match fdpass::serve() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("netns helper: {e}");
            1
        }
    };
    std::process::exit(code)
}

/// Does the work of one request inside this (single-threaded) helper process.
pub(crate) fn handle(request: Request) -> (Reply, Option<OwnedFd>) {
    match request {
        Request::Attach(spec) => match attach(&spec) {
            Ok((reply, fd)) => (reply, Some(fd)),
            Err(e) => (Reply::Failed(e), None),
        },
        Request::Detach {
            netns,
            ns_id,
            ifname,
        } => match detach(&netns, ns_id, &ifname) {
            Ok(removed) => (Reply::Detached { removed }, None),
            Err(e) => (Reply::Failed(e), None),
        },
        Request::OpenTap(spec) => match named::open(&spec) {
            Ok((reply, fd)) => (reply, Some(fd)),
            Err(e) => (Reply::Failed(e), None),
        },
    }
}

fn attach(spec: &AttachSpec) -> Result<(Reply, OwnedFd), HelperError> {
    let target = ns::NetnsFile::open(&spec.netns)?;
    if let Some(expected) = spec.expect_ns
        && expected != target.id()
    {
        return Err(HelperError::NetnsReplaced(spec.netns.clone()));
    }
    target.enter()?;
    let nl = netlink::Netlink::open()?;
    if let Some(name) = &spec.reopen {
        if nl.link_index(name)?.is_none() {
            return Err(HelperError::InterfaceGone(name.clone()));
        }
        let fd = tap::open(name, tap::Mode::Reopen)?;
        let reply = Reply::Attached {
            ifname: name.clone(),
            ns_id: target.id(),
            default_route: false,
        };
        return Ok((reply, fd));
    }
    let ifname = match &spec.ifname {
        Some(name) if nl.link_index(name)?.is_some() => {
            return Err(HelperError::InterfaceExists {
                ifname: name.clone(),
                netns: spec.netns.clone(),
            });
        }
        Some(name) => name.clone(),
        None => first_free_name(&nl, &spec.netns)?,
    };
    let fd = tap::open(&ifname, tap::Mode::Create)?;
    // From here on a failure must not leave a half-configured persistent TAP behind.
    match configure(&nl, &ifname, spec) {
        Ok(default_route) => Ok((
            Reply::Attached {
                ifname,
                ns_id: target.id(),
                default_route,
            },
            fd,
        )),
        Err(e) => {
            let _ = tap::set_persist(&fd, false);
            drop(fd);
            Err(e)
        }
    }
}

/// Brings `lo` up and returns the index of `ifname`: the first step of configuring a
/// container's interface (an attach, or the slirp4netns drop-in's `-c`).
pub(crate) fn lo_up_and_index(nl: &netlink::Netlink, ifname: &str) -> Result<u32, HelperError> {
    let lo = nl
        .link_index("lo")?
        .ok_or_else(|| HelperError::InterfaceGone("lo".into()))?;
    nl.set_link_up(lo, None, None)?;
    nl.link_index(ifname)?
        .ok_or_else(|| HelperError::InterfaceGone(ifname.into()))
}

fn configure(nl: &netlink::Netlink, ifname: &str, spec: &AttachSpec) -> Result<bool, HelperError> {
    let index = lo_up_and_index(nl, ifname)?;
    if let Some(size) = spec.gso_max_size {
        nl.set_gso_max_size(index, size)?;
    }
    nl.set_link_up(index, Some(spec.mac), Some(spec.mtu))?;
    nl.add_address(index, spec.ip.into(), spec.prefix_len)?;
    let default_route = nl.add_default_route(index, spec.gateway.into())?;
    if let Some(v6) = &spec.ipv6 {
        nl.add_address(index, v6.ip.into(), v6.prefix_len)?;
        nl.add_default_route(index, v6.gateway.into())?;
    }
    Ok(default_route)
}

fn first_free_name(nl: &netlink::Netlink, netns: &Path) -> Result<String, HelperError> {
    for n in 0..256 {
        let name = format!("eth{n}");
        if nl.link_index(&name)?.is_none() {
            return Ok(name);
        }
    }
    Err(HelperError::NoFreeName(netns.to_path_buf()))
}

fn detach(netns: &Path, ns_id: NsId, ifname: &str) -> Result<bool, HelperError> {
    let target = match ns::NetnsFile::open(netns) {
        Ok(t) => t,
        Err(HelperError::NoSuchNetns(_)) => return Ok(false),
        Err(e) => return Err(e),
    };
    if target.id() != ns_id {
        return Ok(false);
    }
    target.enter()?;
    let nl = netlink::Netlink::open()?;
    match nl.link_index(ifname)? {
        Some(index) => {
            nl.delete_link(index)?;
            Ok(true)
        }
        None => Ok(false),
    }
}
