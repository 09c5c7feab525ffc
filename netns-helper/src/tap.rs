//! The container side of a port: a TAP device that carries a 12-byte virtio-net header on
//! every frame, with checksum and TSO offloads on, so that 64 KiB GSO frames cross the switch
//! unsegmented (the difference between ~2 and 8–14 Gbit/s on our machines; see
//! research/crates.md §1.4). No crate adopts such an fd (tun-rs refuses IFF_VNET_HDR fds,
//! tun-tap lacks the flag), hence these few ioctls.
//!
//! The TAP is made persistent so that it outlives a daemon restart: the restarted daemon
//! re-opens it by name. Detach deletes it by netlink.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode as FileMode;

use crate::HelperError;
use switch::vnet::LEN as VNET_HDR_LEN;

/// How to get the TAP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Create a new device; fails if the name exists.
    Create,
    /// Attach to the existing persistent device of that name.
    Reopen,
    /// Create a new device that is not persistent: it disappears with its last fd (the
    /// slirp4netns drop-in's TAP).
    CreateTransient,
}

/// Offloads the daemon accepts from the container: partial checksums and TSO for IPv4/IPv6.
const OFFLOADS: libc::c_uint = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;

/// Opens `/dev/net/tun` in the current network namespace and binds it to TAP `name`, with
/// `IFF_VNET_HDR` (header size 12), offloads, `O_NONBLOCK` and, when creating, persistence.
///
/// # Errors
/// [`HelperError::Tap`] with the reason explained (permissions of /dev/net/tun, name taken).
pub fn open(name: &str, mode: Mode) -> Result<OwnedFd, HelperError> {
    let fail = |reason: String| HelperError::Tap {
        ifname: name.to_string(),
        reason,
    };
    let fd = nix::fcntl::open(
        "/dev/net/tun",
        OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        FileMode::empty(),
    )
    .map_err(|e| match e {
        Errno::EACCES => fail(
            "permission denied on /dev/net/tun (it must be mode 0666, as on stock distributions)"
                .into(),
        ),
        Errno::ENOENT => fail("/dev/net/tun does not exist (is the tun module loaded?)".into()),
        e => fail(format!("/dev/net/tun: {}", e.desc())),
    })?;
    let mut ifr = ifreq(name).map_err(|why| fail(why.into()))?;
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
    if mode != Mode::Reopen {
        flags |= libc::IFF_TUN_EXCL;
    }
    ifr.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one `ifreq`, which lives on our stack for the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) };
    if rc < 0 {
        let e = Errno::last();
        return Err(fail(match e {
            Errno::EBUSY => "an interface with this name already exists".into(),
            Errno::EINVAL => "the name belongs to a non-TAP interface".into(),
            Errno::EPERM => "operation not permitted in this network namespace".into(),
            e => e.desc().to_string(),
        }));
    }
    let hdr_len: libc::c_int = VNET_HDR_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one c_int through the pointer, valid for the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &hdr_len) };
    if rc < 0 {
        return Err(fail(format!("TUNSETVNETHDRSZ: {}", Errno::last().desc())));
    }
    // SAFETY: TUNSETOFFLOAD takes its argument by value.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            OFFLOADS as libc::c_ulong,
        )
    };
    if rc < 0 {
        return Err(fail(format!("TUNSETOFFLOAD: {}", Errno::last().desc())));
    }
    if mode == Mode::Create {
        set_persist(&fd, true)?;
    }
    Ok(fd)
}

/// An all-zero `ifreq` naming interface `name`.
///
/// # Errors
/// Why the name does not fit: a NUL byte, or longer than 15 bytes.
pub(crate) fn ifreq(name: &str) -> Result<libc::ifreq, &'static str> {
    let cname = CString::new(name).map_err(|_| "name contains a NUL byte")?;
    let bytes = cname.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return Err("name longer than 15 bytes");
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(ifr)
}

/// Sets or clears `TUNSETPERSIST`; a non-persistent TAP disappears with its last fd.
///
/// # Errors
/// [`HelperError::Tap`] with the OS reason.
pub fn set_persist(fd: &OwnedFd, on: bool) -> Result<(), HelperError> {
    // SAFETY: TUNSETPERSIST takes its argument by value.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, libc::c_ulong::from(on)) };
    if rc < 0 {
        return Err(HelperError::Tap {
            ifname: String::new(),
            reason: format!("TUNSETPERSIST: {}", Errno::last().desc()),
        });
    }
    Ok(())
}
