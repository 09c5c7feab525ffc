//! An in-memory port for tests and benchmarks.

use std::io;

use super::Port;

/// A port that copies sent frames into a preallocated ring of fixed-size slots.
///
/// Sending never allocates: the ring is allocated once in [`MemPort::new`], and a
/// frame larger than a slot is refused with [`io::ErrorKind::InvalidInput`].
#[derive(Clone, Debug)]
pub struct MemPort {
    buf: Vec<u8>,
    lens: Vec<usize>,
    slot_size: usize,
    sent: u64,
}

impl MemPort {
    /// Creates a port remembering the last `slots` frames (at least one) of up to `slot_size` bytes.
    pub fn new(slots: usize, slot_size: usize) -> Self {
        let slots = slots.max(1);
        Self {
            buf: vec![0; slots * slot_size],
            lens: vec![0; slots],
            slot_size,
            sent: 0,
        }
    }

    /// Number of frames sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// The most recently sent frame.
    pub fn last(&self) -> Option<&[u8]> {
        self.sent.checked_sub(1).map(|n| self.slot(n))
    }

    /// The retained frames (at most `slots`), oldest first.
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let kept = self.sent.min(self.lens.len() as u64);
        (self.sent - kept..self.sent).map(|n| self.slot(n))
    }

    /// Forgets every sent frame.
    pub fn clear(&mut self) {
        self.sent = 0;
    }

    fn slot(&self, n: u64) -> &[u8] {
        let i = (n % self.lens.len() as u64) as usize;
        let start = i * self.slot_size;
        &self.buf[start..start + self.lens[i]]
    }
}

impl Port for MemPort {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        if frame.len() > self.slot_size {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let i = (self.sent % self.lens.len() as u64) as usize;
        let start = i * self.slot_size;
        self.buf[start..start + frame.len()].copy_from_slice(frame);
        self.lens[i] = frame.len();
        self.sent += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_frames() {
        let mut p = MemPort::new(2, 4);
        assert_eq!(p.last(), None);
        p.send(&[1]).unwrap();
        p.send(&[2, 2]).unwrap();
        p.send(&[3, 3, 3]).unwrap();
        assert_eq!(p.sent(), 3);
        assert_eq!(p.last(), Some(&[3, 3, 3][..]));
        let kept: Vec<_> = p.frames().collect();
        assert_eq!(kept, vec![&[2, 2][..], &[3, 3, 3][..]]);
        assert_eq!(
            p.send(&[0; 5]).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(p.sent(), 3);
        p.clear();
        assert_eq!(p.frames().count(), 0);
    }
}
