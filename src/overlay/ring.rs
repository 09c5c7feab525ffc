//! The hand-off from the host's VXLAN reader thread to one overlay network's data path: a
//! single-producer single-consumer byte ring ([`rtrb`]) holding one record per datagram,
//! plus an eventfd that wakes the data path's epoll. No allocation and no lock per frame.
//!
//! Record: `len u32 LE | flags u8 | 0 u8 | port u16 LE | IPv6 (or v4-mapped) source 16 bytes`
//! ([`RECORD_HEADER`] bytes), then `len` bytes: what followed the VXLAN header. Bit 0 of
//! `flags`: those bytes start with a virtio-net header. A record is pushed whole (one chunk),
//! so the consumer never sees half of one.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use nix::sys::eventfd::EventFd;
use rtrb::{Consumer, Producer};
use switch::vnet::LEN as VNET_HDR_LEN;

/// Bytes of a record's header.
pub const RECORD_HEADER: usize = 24;

/// Writes the record header for a payload of `len` bytes from `src` into `out`.
pub(crate) fn encode_header(
    out: &mut [u8; RECORD_HEADER],
    len: usize,
    vnet: bool,
    src: SocketAddr,
) {
    let ip = match src.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let [l0, l1, l2, l3] = u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes();
    let [p0, p1] = src.port().to_le_bytes();
    let mut h = [0u8; RECORD_HEADER];
    h[..8].copy_from_slice(&[l0, l1, l2, l3, u8::from(vnet), 0, p0, p1]);
    h[8..].copy_from_slice(&ip.octets());
    *out = h;
}

/// Reads a record header: payload length, virtio-net flag, source.
pub(crate) fn decode_header(h: &[u8; RECORD_HEADER]) -> (usize, bool, SocketAddr) {
    let (head, ip) = h.split_at(8);
    let [l0, l1, l2, l3, flags, _, p0, p1] = head.try_into().unwrap_or([0; 8]);
    let ip: [u8; 16] = ip.try_into().unwrap_or([0; 16]);
    let ip = Ipv6Addr::from(ip);
    let ip = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
    (
        u32::from_le_bytes([l0, l1, l2, l3]) as usize,
        flags & 1 != 0,
        SocketAddr::new(ip, u16::from_le_bytes([p0, p1])),
    )
}

/// The reader thread's end for one network.
pub(crate) struct RingTx {
    pub(crate) producer: Producer<u8>,
    pub(crate) wake: Arc<EventFd>,
    /// Records were pushed since the consumer was last woken.
    pub(crate) pending: bool,
}

impl RingTx {
    /// Wakes the consumer if records were pushed since the last wakeup.
    pub(crate) fn wake_if_pending(&mut self) {
        if std::mem::take(&mut self.pending) {
            let _ = self.wake.write(1);
        }
    }
}

/// A data path's end: datagrams of its VNI from the host's VXLAN socket.
pub struct OverlayRx {
    consumer: Consumer<u8>,
    wake: Arc<EventFd>,
}

impl OverlayRx {
    /// A ring of `capacity` bytes: the reader's end and the data path's.
    pub(crate) fn pair(capacity: usize) -> std::io::Result<(RingTx, OverlayRx)> {
        let wake = Arc::new(EventFd::from_flags(
            nix::sys::eventfd::EfdFlags::EFD_NONBLOCK | nix::sys::eventfd::EfdFlags::EFD_CLOEXEC,
        )?);
        let (producer, consumer) = rtrb::RingBuffer::new(capacity);
        Ok((
            RingTx {
                producer,
                wake: wake.clone(),
                pending: false,
            },
            OverlayRx { consumer, wake },
        ))
    }

    /// The eventfd to poll: readable when records were pushed.
    pub fn wake_fd(&self) -> &EventFd {
        &self.wake
    }

    /// Clears the wakeup (call before draining).
    pub fn ack(&self) {
        let _ = self.wake.read();
    }

    /// Wakes the consumer again if records remain (after a bounded batch).
    pub fn rearm(&self) {
        if !self.consumer.is_empty() {
            let _ = self.wake.write(1);
        }
    }

    /// Takes the next record into `buf` as a TAP would deliver it — virtio-net header (zeroed
    /// for a plain frame) then the Ethernet frame — and returns its length and the sender's
    /// address; `None` when the ring is empty. A record that does not fit `buf` is skipped
    /// and reported with length 0.
    pub fn pop(&mut self, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        let mut h = [0u8; RECORD_HEADER];
        {
            let chunk = self.consumer.read_chunk(RECORD_HEADER).ok()?;
            let (a, b) = chunk.as_slices();
            let (ha, hb) = h.split_at_mut(a.len().min(RECORD_HEADER));
            ha.copy_from_slice(a.get(..ha.len())?);
            hb.copy_from_slice(b.get(..hb.len())?);
            // Not committed: the record is taken whole below.
        }
        let (len, vnet, src) = decode_header(&h);
        let chunk = self.consumer.read_chunk(RECORD_HEADER + len).ok()?;
        let offset = if vnet { 0 } else { VNET_HDR_LEN };
        let total = offset + len;
        let Some(dst) = buf.get_mut(..total) else {
            chunk.commit_all();
            return Some((0, src));
        };
        if !vnet {
            dst.iter_mut().take(VNET_HDR_LEN).for_each(|b| *b = 0);
        }
        let (a, b) = chunk.as_slices();
        // Copy what follows the record header, across the ring's wrap.
        let mut at = offset;
        let mut skip = RECORD_HEADER;
        for part in [a, b] {
            let part = part.get(skip.min(part.len())..).unwrap_or_default();
            skip = skip.saturating_sub(a.len());
            if let Some(d) = dst.get_mut(at..at + part.len()) {
                d.copy_from_slice(part);
            }
            at += part.len();
        }
        chunk.commit_all();
        Some((total, src))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(tx: &mut RingTx, payload: &[u8], vnet: bool, src: SocketAddr) {
        let mut h = [0u8; RECORD_HEADER];
        encode_header(&mut h, payload.len(), vnet, src);
        let mut rec = h.to_vec();
        rec.extend_from_slice(payload);
        tx.producer.push_entire_slice(&rec).unwrap();
    }

    #[test]
    fn records_cross_whole_and_across_the_wrap() {
        let (mut tx, mut rx) = OverlayRx::pair(100).unwrap();
        let src: SocketAddr = "198.51.100.2:4789".parse().unwrap();
        let mut buf = [0xeeu8; 128];
        for round in 0..10u8 {
            let frame = [round; 30];
            push(&mut tx, &frame, false, src);
            let (n, from) = rx.pop(&mut buf).unwrap();
            assert_eq!((n, from), (42, src));
            assert_eq!(&buf[..12], &[0; 12]);
            assert_eq!(&buf[12..42], &frame);
            let with_vnet = [round.wrapping_add(1); 40];
            push(&mut tx, &with_vnet, true, src);
            let (n, _) = rx.pop(&mut buf).unwrap();
            assert_eq!(&buf[..n], &with_vnet);
        }
        assert!(rx.pop(&mut buf).is_none());
    }

    #[test]
    fn a_record_too_big_for_the_buffer_is_skipped() {
        let (mut tx, mut rx) = OverlayRx::pair(200).unwrap();
        let src: SocketAddr = "[2001:db8::2]:4789".parse().unwrap();
        push(&mut tx, &[1; 50], false, src);
        push(&mut tx, &[2; 20], false, src);
        let mut small = [0u8; 40];
        assert_eq!(rx.pop(&mut small), Some((0, src)));
        assert_eq!(rx.pop(&mut small), Some((32, src)));
        assert_eq!(&small[12..32], &[2; 20]);
    }
}
