//! The daemon ↔ helper channel: one JSON request from the daemon, one JSON reply from the
//! helper with the TAP fd attached as `SCM_RIGHTS`, over a unix socket that is the helper's
//! stdin.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

use crate::{HELPER_ARG, HelperError, Reply, Request};

/// Largest reply we accept (replies are a few hundred bytes).
const MAX_REPLY: usize = 64 * 1024;

fn channel(e: impl std::fmt::Display) -> HelperError {
    HelperError::Channel(e.to_string())
}

pub(crate) fn call(
    exe: &Path,
    request: &Request,
    timeout: Option<Duration>,
) -> Result<(Reply, Option<OwnedFd>), HelperError> {
    let deadline = timeout.map(|t| (Instant::now() + t, t));
    let (mut ours, theirs) = UnixStream::pair().map_err(channel)?;
    let mut child = Command::new(exe)
        .arg(HELPER_ARG)
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| channel(format!("cannot start {}: {e}", exe.display())))?;
    // From here on the child must not outlive a failure: it is killed and reaped.
    let fail = |child: &mut Child, e: HelperError| {
        let _ = child.kill();
        let _ = child.wait();
        e
    };
    if let Some((_, t)) = deadline
        && let Err(e) = ours
            .set_read_timeout(Some(t))
            .and_then(|()| ours.set_write_timeout(Some(t)))
    {
        return Err(fail(&mut child, channel(e)));
    }
    let body = serde_json::to_vec(request).map_err(channel)?;
    if let Err(e) = ours
        .write_all(&body)
        .and_then(|()| ours.shutdown(std::net::Shutdown::Write))
    {
        return Err(fail(&mut child, channel(e)));
    }

    let mut buf = vec![0u8; MAX_REPLY];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = match recvmsg::<()>(
        ours.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    ) {
        Ok(m) => m,
        Err(nix::errno::Errno::EAGAIN) if deadline.is_some() => {
            let secs = deadline.map(|(_, t)| t.as_secs().max(1)).unwrap_or(1);
            return Err(fail(&mut child, HelperError::TimedOut { secs }));
        }
        Err(e) => return Err(fail(&mut child, channel(e))),
    };
    let mut fd = None;
    for c in msg.cmsgs().map_err(channel)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for raw in fds {
                // SAFETY: the kernel installed these fds in our table for this message; we
                // take sole ownership of each exactly once.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                fd.get_or_insert(owned);
            }
        }
    }
    let n = msg.bytes;
    let status = match deadline {
        None => child.wait().map_err(channel)?,
        Some((end, _)) => wait_until(&mut child, end)?,
    };
    if n == 0 {
        return Err(channel(format!("helper exited without a reply ({status})")));
    }
    let reply: Reply = serde_json::from_slice(&buf[..n]).map_err(channel)?;
    Ok((reply, fd))
}

/// Waits for the helper to exit until `end`; kills it then. Either way it is reaped.
fn wait_until(child: &mut Child, end: Instant) -> Result<std::process::ExitStatus, HelperError> {
    loop {
        if let Some(status) = child.try_wait().map_err(channel)? {
            return Ok(status);
        }
        if Instant::now() >= end {
            let _ = child.kill();
            return child.wait().map_err(channel);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub(crate) fn serve() -> Result<(), HelperError> {
    // SAFETY: fd 0 is the socket the daemon passed as our stdin; we own it from here on.
    let mut sock = unsafe { UnixStream::from_raw_fd(0) };
    let mut body = Vec::new();
    sock.read_to_end(&mut body).map_err(channel)?;
    let request: Request = serde_json::from_slice(&body).map_err(channel)?;
    let (reply, fd) = crate::handle(request);
    let out = serde_json::to_vec(&reply).map_err(channel)?;
    let iov = [IoSlice::new(&out)];
    let raw;
    let cmsgs: &[ControlMessage] = match &fd {
        Some(fd) => {
            raw = [fd.as_raw_fd()];
            &[ControlMessage::ScmRights(&raw)]
        }
        None => &[],
    };
    sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None).map_err(channel)?;
    let _ = sock.flush();
    Ok(())
}
