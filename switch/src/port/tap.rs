//! A TAP device held by the daemon, as a [`Port`].

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::Port;

/// An open TAP device (configured without a virtio-net header): one read or write is one frame.
///
/// This is deliberately thin: it does not open or configure the device (the
/// daemon does, inside the container's namespace) and does not poll.
#[derive(Debug)]
pub struct TapPort {
    file: File,
}

impl TapPort {
    /// Wraps an already configured TAP file descriptor.
    pub fn from_fd(fd: OwnedFd) -> Self {
        Self {
            file: File::from(fd),
        }
    }

    /// Reads one frame into `buf`; returns its length (errors such as `WouldBlock` pass through).
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }

    /// Gives the file descriptor back.
    pub fn into_fd(self) -> OwnedFd {
        self.file.into()
    }
}

impl AsFd for TapPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl Port for TapPort {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        let n = self.file.write(frame)?;
        if n == frame.len() {
            Ok(())
        } else {
            Err(io::ErrorKind::WriteZero.into())
        }
    }
}
