//! Packet capture: the data path copies the frames it moves into a per-capture ring, the
//! control plane drains the ring into a pcap stream (`vswitchctl capture`).
//!
//! Each capture is one preallocated single-producer single-consumer byte ring ([`rtrb`],
//! [`RING_BYTES`]): the data path thread writes whole pcap records into it (the 16-byte record
//! header, then the frame without its virtio-net header, cut to the capture's snaplen), the
//! control plane reads whole records out. Writing a record is a check for room and two
//! copies: no allocation and no lock. When the ring has no room for a record, the frame is dropped for
//! that capture and counted ([`Tap`]'s `dropped`): a slow reader never stalls forwarding.
//!
//! Which frames a capture sees, both directions:
//! - a whole network: every frame entering the switch, from a container port or from the
//!   gateway (what `tcpdump -i docker0` shows);
//! - one endpoint: frames received from its port and frames written to its port.
//!
//! When nobody captures, the data path pays one branch per frame ([`Captures::is_empty`]).
//! Records carry the wall-clock time read when the frame is copied (one clock read per
//! captured frame, none otherwise). GSO frames are recorded as they cross, up to 64 KiB
//! (their IP length may exceed the MTU; tcpdump and tshark read them).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use switch::PortId;
use switch::vnet::LEN as VNET_HDR_LEN;

/// Captures running at once on one network; one more is refused.
pub const MAX_CAPTURES: usize = 8;
/// Bytes of one capture's ring (records included): about 60 full-size GSO frames, or some
/// 25,000 small ones.
pub const RING_BYTES: usize = 4 << 20;
/// Default and largest snapshot length, as tcpdump's.
pub const MAX_SNAPLEN: u32 = 262_144;
/// Size of a pcap record header.
pub const RECORD_HEADER: usize = 16;
/// `LINKTYPE_ETHERNET`.
const LINKTYPE_ETHERNET: u32 = 1;

/// The pcap file header (native byte order, microsecond timestamps, version 2.4).
pub fn file_header(snaplen: u32) -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_ne_bytes());
    h[4..6].copy_from_slice(&2u16.to_ne_bytes());
    h[6..8].copy_from_slice(&4u16.to_ne_bytes());
    // thiszone and sigfigs stay 0.
    h[16..20].copy_from_slice(&snaplen.to_ne_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
    h
}

/// The captured length of the record whose header starts `buf`, if `buf` holds a header.
pub fn record_len(buf: &[u8]) -> Option<usize> {
    let incl: [u8; 4] = buf.get(8..12)?.try_into().ok()?;
    usize::try_from(u32::from_ne_bytes(incl)).ok()
}

/// Counters of one capture, shared by the data path and the control plane.
#[derive(Debug, Default)]
pub struct CaptureStats {
    /// Frames dropped because the ring was full.
    pub dropped: AtomicU64,
}

/// The data path's end of one capture.
pub struct Tap {
    /// Capture id, unique in the daemon.
    pub id: u64,
    /// Only this endpoint's port, or the whole network.
    pub port: Option<PortId>,
    snaplen: usize,
    ring: rtrb::Producer<u8>,
    stats: Arc<CaptureStats>,
}

/// The control plane's end of one capture: whole pcap records, in order.
pub struct CaptureReader {
    ring: rtrb::Consumer<u8>,
    /// Shared counters.
    pub stats: Arc<CaptureStats>,
}

/// A new capture: the data path's [`Tap`] and the control plane's [`CaptureReader`]. The
/// ring is allocated (and touched) here, on the control plane.
pub fn capture(id: u64, port: Option<PortId>, snaplen: u32) -> (Tap, CaptureReader) {
    let (producer, consumer) = rtrb::RingBuffer::new(RING_BYTES);
    let stats = Arc::new(CaptureStats::default());
    let snaplen = usize::try_from(snaplen.clamp(1, MAX_SNAPLEN)).unwrap_or(usize::MAX);
    (
        Tap {
            id,
            port,
            snaplen,
            ring: producer,
            stats: stats.clone(),
        },
        CaptureReader {
            ring: consumer,
            stats,
        },
    )
}

impl Tap {
    /// Copies one frame (virtio-net header first) into the ring as a pcap record, or counts
    /// it as dropped when the ring is full.
    fn record(&mut self, buf: &[u8], now: (u32, u32)) {
        let frame = buf.get(VNET_HDR_LEN..).unwrap_or_default();
        let data = frame.get(..self.snaplen).unwrap_or(frame);
        let mut header = [0u8; RECORD_HEADER];
        let fields = [
            now.0,
            now.1,
            u32::try_from(data.len()).unwrap_or(u32::MAX),
            u32::try_from(frame.len()).unwrap_or(u32::MAX),
        ];
        for (dst, v) in header.chunks_exact_mut(4).zip(fields) {
            dst.copy_from_slice(&v.to_ne_bytes());
        }
        // Room for the whole record is checked first, so both pushes succeed; the reader
        // takes a record only once its data is there too.
        if self.ring.slots() < RECORD_HEADER + data.len()
            || self.ring.push_entire_slice(&header).is_err()
            || self.ring.push_entire_slice(data).is_err()
        {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The captures running on one network, as the data path thread holds them.
#[derive(Default)]
pub struct Captures {
    taps: Vec<Tap>,
}

impl Captures {
    /// True when nobody captures: the only cost capturing adds to a frame then.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.taps.is_empty()
    }

    /// Starts a capture; refused when [`MAX_CAPTURES`] are running.
    pub fn start(&mut self, tap: Tap, network: &str) -> Result<(), String> {
        if self.taps.len() >= MAX_CAPTURES {
            return Err(format!(
                "network {network} already has {MAX_CAPTURES} captures running; stop one first"
            ));
        }
        self.taps.push(tap);
        Ok(())
    }

    /// Ends capture `id` (its reader sees the ring abandoned once drained).
    pub fn stop(&mut self, id: u64) {
        self.taps.retain(|t| t.id != id);
    }

    /// Ends the captures of a port being detached.
    pub fn port_gone(&mut self, port: PortId) {
        self.taps.retain(|t| t.port != Some(port));
    }

    /// A frame received from container port `port`: seen by whole-network captures and by
    /// that port's.
    #[inline]
    pub fn ingress(&mut self, port: PortId, buf: &[u8]) {
        self.each(buf, |t| t.port.is_none_or(|p| p == port));
    }

    /// A frame written to port `port`: seen by that port's captures.
    #[inline]
    pub fn egress(&mut self, port: PortId, buf: &[u8]) {
        self.each(buf, |t| t.port == Some(port));
    }

    /// A frame the gateway sends into the switch: seen by whole-network captures.
    #[inline]
    pub fn from_gateway(&mut self, buf: &[u8]) {
        self.each(buf, |t| t.port.is_none());
    }

    fn each(&mut self, buf: &[u8], wants: impl Fn(&Tap) -> bool) {
        if self.taps.is_empty() {
            return;
        }
        let mut now = None;
        for tap in self.taps.iter_mut().filter(|t| wants(t)) {
            let ts = *now.get_or_insert_with(timestamp);
            tap.record(buf, ts);
        }
    }
}

/// Seconds and microseconds since the epoch.
fn timestamp() -> (u32, u32) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (
        u32::try_from(d.as_secs()).unwrap_or(u32::MAX),
        d.subsec_micros(),
    )
}

impl CaptureReader {
    /// Moves whole records (at most `max` of them) from the ring to `out`; returns how many.
    pub fn read_records(&mut self, out: &mut Vec<u8>, max: u64) -> u64 {
        let mut n = 0;
        while n < max {
            let mut header = [0u8; RECORD_HEADER];
            let Ok(chunk) = self.ring.read_chunk(RECORD_HEADER) else {
                break;
            };
            let (a, b) = chunk.as_slices();
            for (d, s) in header.iter_mut().zip(a.iter().chain(b)) {
                *d = *s;
            }
            let Some(len) = record_len(&header) else {
                break;
            };
            // The producer pushes the header, then the data: wait for the data.
            let Ok(chunk) = self.ring.read_chunk(RECORD_HEADER + len) else {
                break;
            };
            let (a, b) = chunk.as_slices();
            out.extend_from_slice(a);
            out.extend_from_slice(b);
            chunk.commit_all();
            n += 1;
        }
        n
    }

    /// True once the data path has let go of the capture (stopped, port detached, network
    /// removed) and every record has been read.
    pub fn finished(&self) -> bool {
        self.ring.is_abandoned() && self.ring.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize, fill: u8) -> Vec<u8> {
        let mut b = vec![0u8; VNET_HDR_LEN];
        b.extend(std::iter::repeat_n(fill, len));
        b
    }

    #[test]
    fn records_are_whole_cut_to_snaplen_and_filtered_by_port() {
        let mut caps = Captures::default();
        let (tap, mut all) = capture(1, None, 100);
        caps.start(tap, "n").unwrap();
        let (tap, mut one) = capture(2, Some(PortId(3)), MAX_SNAPLEN);
        caps.start(tap, "n").unwrap();
        caps.ingress(PortId(3), &frame(60, 0xaa));
        caps.ingress(PortId(4), &frame(200, 0xbb));
        caps.egress(PortId(3), &frame(70, 0xcc));
        caps.from_gateway(&frame(80, 0xdd));

        let mut out = Vec::new();
        assert_eq!(all.read_records(&mut out, u64::MAX), 3);
        let lens: Vec<(usize, u32)> = walk(&out);
        assert_eq!(lens, vec![(60, 60), (100, 200), (80, 80)]);

        let mut out = Vec::new();
        assert_eq!(one.read_records(&mut out, u64::MAX), 2);
        assert_eq!(walk(&out), vec![(60, 60), (70, 70)]);
        assert!(!one.finished());
        caps.port_gone(PortId(3));
        assert!(one.finished());
        assert!(!all.finished());
    }

    #[test]
    fn a_full_ring_drops_and_counts_and_wraps_cleanly() {
        let mut caps = Captures::default();
        let (tap, mut r) = capture(1, None, MAX_SNAPLEN);
        caps.start(tap, "n").unwrap();
        let big = frame(65_000, 1);
        for _ in 0..100 {
            caps.ingress(PortId(1), &big);
        }
        let dropped = r.stats.dropped.load(Ordering::Relaxed);
        assert!(dropped > 0);
        let mut out = Vec::new();
        let got = r.read_records(&mut out, u64::MAX);
        assert_eq!(got + dropped, 100);
        // After draining, records that wrap around the ring's end read back whole.
        for _ in 0..10 {
            caps.ingress(PortId(1), &frame(1000, 7));
            caps.ingress(PortId(1), &big);
            out.clear();
            assert_eq!(r.read_records(&mut out, u64::MAX), 2);
            assert_eq!(walk(&out), vec![(1000, 1000), (65_000, 65_000)]);
            assert!(
                out[RECORD_HEADER..RECORD_HEADER + 1000]
                    .iter()
                    .all(|&b| b == 7)
            );
        }
        assert_eq!(r.read_records(&mut out, 1), 0);
    }

    #[test]
    fn the_ninth_capture_is_refused() {
        let mut caps = Captures::default();
        for id in 0..MAX_CAPTURES as u64 {
            caps.start(capture(id, None, 64).0, "n").unwrap();
        }
        let err = caps.start(capture(99, None, 64).0, "net1").unwrap_err();
        assert!(err.contains("already has 8 captures"), "{err}");
        caps.stop(3);
        assert!(caps.start(capture(99, None, 64).0, "n").is_ok());
    }

    /// (captured, original) length of each record.
    fn walk(mut buf: &[u8]) -> Vec<(usize, u32)> {
        let mut v = Vec::new();
        while !buf.is_empty() {
            let len = record_len(buf).unwrap();
            let orig = u32::from_ne_bytes(buf[12..16].try_into().unwrap());
            v.push((len, orig));
            buf = &buf[RECORD_HEADER + len..];
        }
        v
    }
}
