//! Resolving and joining network namespaces, and making fresh ones for `vswitchctl run`.
//!
//! A privileged caller (root, or anyone with CAP_SYS_ADMIN over the target) joins the network
//! namespace directly. An unprivileged caller first joins the user namespace that owns it
//! (found with `NS_GET_USERNS`), where it holds every capability when it is that namespace's
//! owner, and then the network namespace. Both calls need a single-threaded process.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns, unshare};

use crate::{HelperError, NsId};

// ioctl numbers from <linux/nsfs.h>: _IO(0xb7, n). libc does not export them.
const NS_GET_USERNS: libc::c_ulong = 0xb701;
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// An open network namespace file.
#[derive(Debug)]
pub struct NetnsFile {
    path: PathBuf,
    file: File,
    id: NsId,
}

impl NetnsFile {
    /// Opens `path` and checks that it is a network namespace.
    ///
    /// # Errors
    /// [`HelperError::NoSuchNetns`], [`HelperError::NotANetns`], or [`HelperError::Enter`] when
    /// the file cannot be read.
    pub fn open(path: &Path) -> Result<Self, HelperError> {
        let file = File::open(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => HelperError::NoSuchNetns(path.to_path_buf()),
            _ => HelperError::Enter {
                path: path.to_path_buf(),
                reason: e.to_string(),
            },
        })?;
        // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd, which is open for the
        // duration of the call; a non-nsfs file makes it fail with ENOTTY.
        let ty = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE) };
        if ty != libc::CLONE_NEWNET {
            return Err(HelperError::NotANetns(path.to_path_buf()));
        }
        let meta = file.metadata().map_err(|e| HelperError::Enter {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let id = NsId {
            dev: meta.dev(),
            ino: meta.ino(),
        };
        Ok(Self {
            path: path.to_path_buf(),
            file,
            id,
        })
    }

    /// The namespace's identity.
    pub fn id(&self) -> NsId {
        self.id
    }

    /// Moves the calling (single-threaded) process into this network namespace, through its
    /// owning user namespace when a direct join is not permitted.
    ///
    /// # Errors
    /// [`HelperError::Enter`] with the OS reason.
    pub fn enter(&self) -> Result<(), HelperError> {
        let fail = |e: Errno| HelperError::Enter {
            path: self.path.clone(),
            reason: e.desc().to_string(),
        };
        match setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET) {
            Ok(()) => return Ok(()),
            Err(Errno::EPERM) => {}
            Err(e) => return Err(fail(e)),
        }
        // SAFETY: NS_GET_USERNS takes no argument; on success it returns a new fd that we own
        // and wrap immediately.
        let raw = unsafe { libc::ioctl(self.file.as_raw_fd(), NS_GET_USERNS) };
        if raw < 0 {
            return Err(fail(Errno::last()));
        }
        // SAFETY: `raw` is a fresh, valid fd returned by the kernel and owned by nobody else.
        let userns = unsafe { OwnedFd::from_raw_fd(raw) };
        let own = std::fs::metadata("/proc/self/ns/user").map_err(|e| HelperError::Enter {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        let theirs = File::from(userns);
        let theirs_meta = theirs.metadata().map_err(|e| HelperError::Enter {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        if theirs_meta.ino() == own.ino() && theirs_meta.dev() == own.dev() {
            // Same user namespace and still refused: we simply lack the privilege.
            return Err(fail(Errno::EPERM));
        }
        setns(theirs.as_fd(), CloneFlags::CLONE_NEWUSER).map_err(fail)?;
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(fail)
    }
}

/// Joins the user namespace at `path` (slirp4netns's `--userns-path`), unless it is the one
/// we are in already (joining one's own user namespace is refused by the kernel).
///
/// # Errors
/// [`HelperError::Enter`] with the reason (missing file, not a user namespace, refused).
pub fn enter_userns(path: &Path) -> Result<(), HelperError> {
    if crate::named::is_own_userns(path) {
        return Ok(());
    }
    let fail = |reason: String| HelperError::Enter {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|e| fail(e.to_string()))?;
    setns(file.as_fd(), CloneFlags::CLONE_NEWUSER).map_err(|e| match e {
        Errno::EINVAL => fail("not a user namespace".into()),
        e => fail(e.desc().to_string()),
    })
}

/// Moves the calling (single-threaded) process into new user, network, mount and UTS
/// namespaces, mapping uid and gid 0 inside to the caller's effective ids outside (as
/// `unshare -Ur` does). Mounts are made private so later bind mounts stay inside.
///
/// # Errors
/// The OS error of `unshare`, of writing the id maps or of changing mount propagation.
pub fn unshare_container() -> io::Result<()> {
    let uid = nix::unistd::geteuid();
    let gid = nix::unistd::getegid();
    unshare(
        CloneFlags::CLONE_NEWUSER
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWUTS,
    )
    .map_err(io::Error::from)?;
    std::fs::write("/proc/self/setgroups", "deny")?;
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1\n"))?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1\n"))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(io::Error::from)?;
    Ok(())
}

/// Shows `contents` at `target` for this mount namespace only (a bind mount of a private
/// copy; the copy's name is removed at once, the mount keeps it alive).
///
/// # Errors
/// Writing the copy or mounting it.
pub fn overlay_file(target: &str, contents: &str) -> io::Result<()> {
    let dir = std::env::temp_dir();
    let copy = dir.join(format!(
        ".vswitch-run-{}-{}",
        std::process::id(),
        target.replace('/', "_")
    ));
    std::fs::write(&copy, contents)?;
    let res = nix::mount::mount(
        Some(&copy),
        target,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    );
    let _ = std::fs::remove_file(&copy);
    res.map_err(|e| io::Error::other(format!("cannot bind a private {target}: {e}")))
}
