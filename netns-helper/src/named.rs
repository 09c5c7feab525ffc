//! The slirp4netns drop-in's way in: open a TAP *by name* in a namespace, the way
//! slirp4netns does. The TAP may already exist (rootlesskit creates `tap0` itself, with
//! `ip tuntap add`, and configures it) or not (podman passes `-c`, and the TAP is then
//! created here, not persistent, so it disappears with the drop-in's last fd, and
//! configured as slirp4netns's `-c` configures it).

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use serde::{Deserialize, Serialize};

use crate::{HelperError, Reply, netlink, ns, tap};

/// Which TAP to open, and where.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TapSpec {
    /// The network namespace file.
    pub netns: PathBuf,
    /// Join this user namespace first (`--userns-path`, or `/proc/PID/ns/user` for a PID);
    /// without it, or when it is our own, the owning user namespace of `netns` is joined
    /// only if a direct join is refused.
    pub userns: Option<PathBuf>,
    /// The TAP's name (`tap0`).
    pub ifname: String,
    /// Configure the interface (slirp4netns `-c`); None leaves it as it is.
    pub configure: Option<TapConfig>,
}

/// slirp4netns's `-c`: `lo` up; the TAP up with this MTU (and MAC); its address and the
/// default route.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct TapConfig {
    /// The address (slirp's "recommended IP", net+100).
    pub ip: Ipv4Addr,
    /// Prefix length of the subnet.
    pub prefix_len: u8,
    /// The default route's gateway (net+2).
    pub gateway: Ipv4Addr,
    /// Link MTU.
    pub mtu: u32,
    /// MAC address (`--macaddress`); None keeps the kernel's.
    pub mac: Option<[u8; 6]>,
}

/// Serves [`crate::Request::OpenTap`].
pub(crate) fn open(spec: &TapSpec) -> Result<(Reply, OwnedFd), HelperError> {
    let target = ns::NetnsFile::open(&spec.netns)?;
    if let Some(userns) = &spec.userns {
        ns::enter_userns(userns)?;
    }
    target.enter()?;
    let nl = netlink::Netlink::open()?;
    let existing = nl.link_index(&spec.ifname)?;
    let created = existing.is_none();
    let fd = if created {
        tap::open(&spec.ifname, tap::Mode::CreateTransient)?
    } else {
        tap::open(&spec.ifname, tap::Mode::Reopen)?
    };
    if let Some(c) = &spec.configure {
        configure(&nl, &spec.ifname, c)?;
    }
    let mac = link_mac(&spec.ifname)?;
    Ok((
        Reply::TapOpened {
            ifname: spec.ifname.clone(),
            mac,
            created,
        },
        fd,
    ))
}

fn configure(nl: &netlink::Netlink, ifname: &str, c: &TapConfig) -> Result<(), HelperError> {
    let index = crate::lo_up_and_index(nl, ifname)?;
    nl.set_link_up(index, c.mac, Some(c.mtu))?;
    nl.add_address(index, c.ip.into(), c.prefix_len)?;
    nl.add_default_route(index, c.gateway.into())?;
    Ok(())
}

/// The interface's MAC, asked of the kernel through a socket of the current namespace
/// (sysfs would show the namespace it was mounted in).
fn link_mac(ifname: &str) -> Result<[u8; 6], HelperError> {
    let fail = |e: Errno| HelperError::Netlink {
        what: format!("MAC address of {ifname}"),
        reason: e.desc().into(),
    };
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(fail)?;
    let mut ifr = tap::ifreq(ifname).map_err(|why| HelperError::Netlink {
        what: format!("MAC address of {ifname}"),
        reason: why.into(),
    })?;
    // SAFETY: SIOCGIFHWADDR reads the name and writes the address into the `ifreq` on our
    // stack, valid for the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut ifr) };
    if rc < 0 {
        return Err(fail(Errno::last()));
    }
    // SAFETY: after a successful SIOCGIFHWADDR the union holds `ifru_hwaddr`.
    let data = unsafe { ifr.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(data.iter()) {
        *dst = *src as u8;
    }
    Ok(mac)
}

/// Whether `path` names the user namespace we are already in.
pub(crate) fn is_own_userns(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(path),
        std::fs::metadata("/proc/self/ns/user"),
    ) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
