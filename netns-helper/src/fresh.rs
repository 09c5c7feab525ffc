//! Fresh namespaces for `vswitchctl run`: a child process that moves itself into a new user
//! and network namespace, reports that it is ready, waits until the caller has attached it to
//! its networks, and only then executes the command (so the command never starts without its
//! interfaces).
//!
//! The child also gets private mount and UTS namespaces: before executing it shows the
//! [`Setup`] the parent sends (its own /etc/resolv.conf and /etc/hosts, its hostname), as a
//! container runtime would.
//!
//! The parent and child talk over a socket pair whose child end is inherited under the fd
//! number named in [`FD_ENV`]; stdin, stdout and stderr pass through to the command untouched.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

/// The hidden first argument that makes a binary act as the fresh-namespace child.
pub const CHILD_ARG: &str = "__run-child";
/// Environment variable carrying the control fd number to the child.
pub const FD_ENV: &str = "VSWITCH_RUN_CTL_FD";

const READY: u8 = b'r';

/// What the command's world looks like, sent once the child is attached.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Setup {
    /// Contents of /etc/resolv.conf (empty: leave it alone).
    pub resolv_conf: String,
    /// Contents of /etc/hosts (empty: leave it alone).
    pub hosts: String,
    /// Hostname (empty: leave it alone).
    pub hostname: String,
}

/// The parent's handle on a child waiting in its fresh namespace.
pub struct FreshChild {
    /// The child process (its PID names the namespace: `/proc/PID/ns/net`).
    pub child: Child,
    ctl: UnixStream,
}

impl FreshChild {
    /// Starts `exe CHILD_ARG CMD...` and waits until it is inside its new namespaces.
    ///
    /// # Errors
    /// The child could not start or could not create its namespaces (it has printed why and
    /// exited; the error carries its exit status).
    pub fn spawn(exe: &Path, cmd: &[OsString]) -> io::Result<Self> {
        let (ours, theirs) = UnixStream::pair()?;
        // The child's end must survive exec: clear its close-on-exec flag.
        fcntl(&theirs, FcntlArg::F_SETFD(FdFlag::empty()))?;
        let child = Command::new(exe)
            .arg(CHILD_ARG)
            .arg("--")
            .args(cmd)
            .env(FD_ENV, theirs.as_raw_fd().to_string())
            .spawn();
        drop(theirs);
        let mut child = child?;
        let mut ctl = ours;
        let mut b = [0u8; 1];
        match ctl.read(&mut b) {
            Ok(1) if b[0] == READY => Ok(Self { child, ctl }),
            _ => {
                let status = child.wait()?;
                Err(io::Error::other(format!(
                    "could not create a user and network namespace ({status})"
                )))
            }
        }
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lets the child set up its files and hostname and execute its command.
    ///
    /// # Errors
    /// The child is gone.
    pub fn start(&mut self, setup: &Setup) -> io::Result<()> {
        let body = serde_json::to_vec(setup).map_err(io::Error::other)?;
        self.ctl.write_all(&body)?;
        self.ctl.shutdown(std::net::Shutdown::Write)
    }
}

/// Entry point of the child: `args` are what follows [`CHILD_ARG`] (`-- CMD...`). Never
/// returns: it executes CMD or exits with 125 (namespace failure), 126 (cannot execute) or 127
/// (not found), as `docker run` does. Must run before any thread is started.
pub fn child_main(args: Vec<OsString>) -> ! {
    let cmd: Vec<OsString> = args.into_iter().skip_while(|a| a != "--").skip(1).collect();
    let Some(fd) = std::env::var(FD_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        eprintln!("vswitchctl run: internal: {FD_ENV} not set");
        std::process::exit(125);
    };
    // SAFETY: the parent passed us this fd number for exactly this socket, and nothing else in
    // this fresh process uses it.
    let mut ctl = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    if let Err(e) = crate::ns::unshare_container() {
        eprintln!("vswitchctl run: cannot create the command's namespaces: {e}");
        std::process::exit(125);
    }
    let mut body = Vec::new();
    if ctl.write_all(&[READY]).is_err() || ctl.read_to_end(&mut body).is_err() || body.is_empty() {
        // The parent gave up (attach failed); it reports why.
        std::process::exit(125);
    }
    drop(ctl);
    let setup: Setup = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vswitchctl run: internal: bad setup: {e}");
            std::process::exit(125);
        }
    };
    if let Err(e) = apply(&setup) {
        eprintln!("vswitchctl run: {e}");
        std::process::exit(125);
    }
    let Some((prog, rest)) = cmd.split_first() else {
        eprintln!("vswitchctl run: no command given");
        std::process::exit(125);
    };
    let err = Command::new(prog).args(rest).env_remove(FD_ENV).exec();
    eprintln!(
        "vswitchctl run: cannot run {}: {err}",
        prog.to_string_lossy()
    );
    std::process::exit(if err.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    });
}

/// Applies the setup inside the child's private namespaces.
fn apply(setup: &Setup) -> io::Result<()> {
    if !setup.resolv_conf.is_empty() {
        crate::ns::overlay_file("/etc/resolv.conf", &setup.resolv_conf)?;
    }
    if !setup.hosts.is_empty() {
        crate::ns::overlay_file("/etc/hosts", &setup.hosts)?;
    }
    if !setup.hostname.is_empty() {
        nix::unistd::sethostname(&setup.hostname).map_err(|e| {
            io::Error::other(format!("cannot set hostname {}: {e}", setup.hostname))
        })?;
    }
    Ok(())
}
