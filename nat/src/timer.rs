//! Deadlines of many flows: a binary heap with lazy cancellation.
//!
//! A poll must touch only the flows that have work, so each flow's next deadline (a smoltcp
//! retransmission, a delayed ACK, an idle expiry) is kept here instead of being found by a
//! scan. Moving a deadline later costs nothing: the old entry stays and, when it comes due,
//! the owner sees that the flow's deadline moved (or that the flow is gone; handles carry a
//! generation) and pushes the new one. Moving it earlier pushes a second entry. So each flow
//! holds one live entry plus, at most, entries that have been superseded and will be
//! discarded when they surface; pushes and pops are O(log n).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Deadlines keyed by `K` (a flow handle).
pub struct Timers<K> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Ord + Copy> Default for Timers<K> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Ord + Copy> Timers<K> {
    /// Asks for `key` to come due at `at`.
    pub fn schedule(&mut self, at: Instant, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest deadline (possibly a superseded one).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Takes out one entry due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Idle expiry for owners whose entries each hold "last activity + `timeout`" as of when
    /// they were booked: pops every entry due at `now` and hands it to `idle_since`, which
    /// returns the key's last activity if it is still live (it is booked again at that
    /// plus `timeout` when that lies ahead) and None if it is gone; a key idle for
    /// `timeout` or more is the caller's to remove in `idle_since` (then return None).
    pub fn expire_idle(
        &mut self,
        now: Instant,
        timeout: Duration,
        mut idle_since: impl FnMut(Instant, K) -> Option<Instant>,
    ) {
        while let Some((at, k)) = self.pop_due(now) {
            if let Some(next) = idle_since(at, k).and_then(|last| last.checked_add(timeout))
                && next > now
            {
                self.schedule(next, k);
            }
        }
    }

    /// Entries held, superseded ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Drops superseded entries once they outnumber the live ones `keep` holds for,
    /// so that a flow that keeps moving its deadline earlier cannot grow the heap without
    /// bound. `live` says whether an entry is the current deadline of a live flow.
    pub fn compact(&mut self, live_entries: usize, live: impl Fn(Instant, K) -> bool) {
        if self.heap.len() <= 2 * live_entries + 64 {
            return;
        }
        let entries = std::mem::take(&mut self.heap).into_vec();
        self.heap = entries
            .into_iter()
            .filter(|Reverse((at, k))| live(*at, *k))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_due_in_deadline_order_and_not_before() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.schedule(t0 + Duration::from_secs(3), 3u32);
        t.schedule(t0 + Duration::from_secs(1), 1);
        t.schedule(t0 + Duration::from_secs(2), 2);
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.pop_due(t0), None);
        let due: Vec<u32> =
            std::iter::from_fn(|| t.pop_due(t0 + Duration::from_secs(2)).map(|(_, k)| k)).collect();
        assert_eq!(due, vec![1, 2]);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn compaction_keeps_only_live_entries() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        for i in 0..1000u32 {
            t.schedule(t0 + Duration::from_millis(u64::from(i)), i % 10);
        }
        // Only the latest deadline of each key is live.
        t.compact(10, |at, k| at >= t0 + Duration::from_millis(990) && k < 10);
        assert_eq!(t.len(), 10);
        t.compact(10, |_, _| false);
        assert_eq!(t.len(), 10, "small heaps are left alone");
    }
}
