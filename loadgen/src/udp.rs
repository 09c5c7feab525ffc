//! `udpflood` and the UDP side of `serve`. Each datagram carries a sequence number in its
//! first 8 bytes (little endian), so the receiver can tell how many were sent (the highest
//! number + 1) and so how many were lost on the way.

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Keepalives of `hold` carry this sequence number; they are not counted as a flood.
pub const KEEPALIVE_SEQ: u64 = u64::MAX;

/// What the receiver saw of one burst.
#[derive(Default)]
pub struct Burst {
    received: u64,
    bytes: u64,
    highest_seq: Option<u64>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Burst {
    /// Counts one datagram received at `now`.
    pub fn add(&mut self, data: &[u8], now: Instant) {
        let seq = data
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes);
        if seq == Some(KEEPALIVE_SEQ) {
            return;
        }
        self.received += 1;
        self.bytes += data.len() as u64;
        if let Some(s) = seq {
            self.highest_seq = Some(self.highest_seq.map_or(s, |h| h.max(s)));
        }
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When the last counted datagram arrived.
    pub fn last(&self) -> Option<Instant> {
        self.last
    }

    /// `received=N bytes=B secs=T pps=X highest_seq=S loss=L%`; loss counts the datagrams
    /// missing below the highest sequence number seen (the tail is the sender's to tell).
    pub fn report(&self) -> String {
        let secs = match (self.first, self.last) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => 0.0,
        };
        let pps = if secs > 0.0 {
            self.received as f64 / secs
        } else {
            0.0
        };
        let (hs, loss) = match self.highest_seq {
            Some(h) => {
                let sent = h.saturating_add(1);
                let lost = sent.saturating_sub(self.received);
                (h.to_string(), 100.0 * lost as f64 / sent as f64)
            }
            None => ("none".into(), 0.0),
        };
        format!(
            "received={} bytes={} secs={:.3} pps={:.0} highest_seq={} loss={:.2}%",
            self.received, self.bytes, secs, pps, hs, loss
        )
    }
}

/// Sends `size`-byte datagrams to `to` for `secs` from `threads` threads (one socket each,
/// one sequence shared by all).
pub fn flood(to: SocketAddr, size: usize, secs: Duration, threads: usize) -> anyhow::Result<()> {
    let bind: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let seq = AtomicU64::new(0);
    let cpu0 = crate::cpu_time();
    let t0 = Instant::now();
    let end = t0 + secs;
    let counts = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                sc.spawn(|| -> std::io::Result<(u64, u64)> {
                    let s = UdpSocket::bind(bind)?;
                    s.connect(to)?;
                    Ok(send_until(&s, size, end, &seq))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("sender panicked")))
            })
            .collect::<std::io::Result<Vec<(u64, u64)>>>()
    })?;
    let (sent, errors) = counts.iter().fold((0, 0), |(a, b), (s, e)| (a + s, b + e));
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "udpflood to={to} size={} secs={secs:.3} threads={} sent={sent} pps={:.0} errors={errors} {}",
        size.max(8),
        threads.max(1),
        sent as f64 / secs,
        crate::cpu_share(cpu0, secs)
    );
    std::io::stdout().flush()?;
    Ok(())
}

/// One sender's loop; returns (sent, errors).
fn send_until(s: &UdpSocket, size: usize, end: Instant, seq: &AtomicU64) -> (u64, u64) {
    let mut buf = vec![0u8; size.max(8)];
    let (mut sent, mut errors) = (0u64, 0u64);
    loop {
        for _ in 0..256 {
            let n = seq.fetch_add(1, Ordering::Relaxed);
            if let Some(head) = buf.get_mut(..8) {
                head.copy_from_slice(&n.to_le_bytes());
            }
            match s.send(&buf) {
                Ok(_) => sent += 1,
                // ICMP port unreachable from an earlier datagram, or a full queue: the
                // datagram is lost, which the receiver reports; go on.
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => errors += 1,
            }
        }
        if Instant::now() >= end {
            return (sent, errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_counts_loss_below_highest_seq_and_skips_keepalives() {
        let mut b = Burst::default();
        let t = Instant::now();
        for seq in [0u64, 1, 3, 4] {
            b.add(&seq.to_le_bytes(), t);
        }
        b.add(&KEEPALIVE_SEQ.to_le_bytes(), t);
        b.add(&[1, 2], t + Duration::from_secs(1)); // too short for a number: counted
        let r = b.report();
        assert!(r.contains("received=5"), "{r}");
        assert!(r.contains("highest_seq=4"), "{r}");
        assert!(r.contains("loss=0.00%"), "{r}"); // 5 received of 5 numbered (0..=4)
        assert!(r.contains("pps=5"), "{r}");
    }

    #[test]
    fn burst_reports_missing_datagrams() {
        let mut b = Burst::default();
        let t = Instant::now();
        b.add(&0u64.to_le_bytes(), t);
        b.add(&9u64.to_le_bytes(), t + Duration::from_millis(10));
        assert!(b.report().contains("loss=80.00%"), "{}", b.report());
    }
}
