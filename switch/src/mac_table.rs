//! The MAC learning table: which port a MAC address lives behind.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use crate::{Mac, PortId, SwitchError, Tick};

/// One known MAC address.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// When a frame from this MAC was last seen (unused for pinned entries).
    last_seen: Tick,
    /// The port the MAC lives behind.
    port: PortId,
    /// Pinned entries are never moved by learning nor aged out.
    pinned: bool,
}

/// What [`MacTable::learn`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// The MAC was unknown and is now bound to the port.
    New,
    /// The MAC was already on the port; its age was reset.
    Refreshed,
    /// The MAC moved from another port (a learned entry only).
    Moved {
        /// The port the MAC was on before.
        from: PortId,
    },
    /// The MAC is pinned (to this or another port); nothing changed.
    Pinned,
    /// The MAC was unknown and the table is full; nothing changed.
    Full,
}

/// Maps MAC addresses to ports, with a hard capacity and pinned (static) entries.
///
/// MACs are stored as 48-bit integers so a lookup hashes one word. The hasher is
/// foldhash with a per-table random seed, so a trunk peer cannot precompute
/// colliding addresses.
///
/// The backing hash table is allocated up front with room for twice `capacity`
/// entries. Since the table never holds more than `capacity` entries, any internal
/// rehash (to clear tombstones left by removals) happens in place: learning never
/// allocates. Untouched buckets cost only virtual memory plus one control byte.
#[derive(Debug)]
pub struct MacTable {
    map: HashMap<u64, Entry, RandomState>,
    capacity: usize,
}

#[inline]
fn key(mac: &Mac) -> u64 {
    let [a, b, c, d, e, f] = *mac;
    u64::from_le_bytes([a, b, c, d, e, f, 0, 0])
}

#[inline]
fn mac_of(key: u64) -> Mac {
    let [a, b, c, d, e, f, _, _] = key.to_le_bytes();
    [a, b, c, d, e, f]
}

impl MacTable {
    /// Creates an empty table holding at most `capacity` MACs (learned and pinned).
    pub fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::with_capacity_and_hasher(
                capacity.saturating_mul(2),
                RandomState::default(),
            ),
            capacity,
        }
    }

    /// Learns/refreshes `mac` on `port`; moves a learned MAC to the new port; never
    /// moves a pinned one; refuses new entries when full.
    #[inline]
    pub fn learn(&mut self, mac: Mac, port: PortId, now: Tick) -> Learned {
        // get_mut + insert rather than the entry API: `entry` reserves room for a
        // vacant key even when the table is full and the key will be refused.
        let k = key(&mac);
        if let Some(e) = self.map.get_mut(&k) {
            return if e.pinned {
                Learned::Pinned
            } else if e.port == port {
                e.last_seen = now;
                Learned::Refreshed
            } else {
                let from = e.port;
                e.port = port;
                e.last_seen = now;
                Learned::Moved { from }
            };
        }
        if self.map.len() >= self.capacity {
            return Learned::Full;
        }
        self.map.insert(
            k,
            Entry {
                last_seen: now,
                port,
                pinned: false,
            },
        );
        Learned::New
    }

    /// Binds `mac` to `port` permanently (until [`forget`](Self::forget) or
    /// [`remove_port`](Self::remove_port)); replaces a learned entry, and evicts the
    /// stalest learned entry if the table is full.
    pub fn pin(&mut self, mac: Mac, port: PortId) -> Result<(), SwitchError> {
        let k = key(&mac);
        if let Some(e) = self.map.get_mut(&k) {
            if e.pinned && e.port != port {
                return Err(SwitchError::MacInUse { mac, port: e.port });
            }
            e.pinned = true;
            e.port = port;
            return Ok(());
        }
        if self.map.len() >= self.capacity {
            let victim = self
                .map
                .iter()
                .filter(|(_, e)| !e.pinned)
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(k, _)| *k)
                .ok_or(SwitchError::MacTableFull)?;
            self.map.remove(&victim);
        }
        self.map.insert(
            k,
            Entry {
                last_seen: 0,
                port,
                pinned: true,
            },
        );
        Ok(())
    }

    /// Removes `mac` (learned or pinned); returns whether it was present.
    pub fn forget(&mut self, mac: &Mac) -> bool {
        self.map.remove(&key(mac)).is_some()
    }

    /// The port `mac` lives behind, if known.
    #[inline]
    pub fn lookup(&self, mac: &Mac) -> Option<PortId> {
        self.map.get(&key(mac)).map(|e| e.port)
    }

    /// Forgets every MAC (learned or pinned) on `port`.
    pub fn remove_port(&mut self, port: PortId) {
        self.map.retain(|_, e| e.port != port);
    }

    /// Forgets learned MACs last seen `max_age` or more ticks before `now`; returns how many.
    pub fn age(&mut self, now: Tick, max_age: Tick) -> usize {
        let before = self.map.len();
        self.map
            .retain(|_, e| e.pinned || now.saturating_sub(e.last_seen) < max_age);
        before - self.map.len()
    }

    /// Number of MACs in the table (learned and pinned).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the table holds no MACs.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Maximum number of MACs the table holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Every entry as `(mac, port, pinned)`, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (Mac, PortId, bool)> + '_ {
        self.map.iter().map(|(k, e)| (mac_of(*k), e.port, e.pinned))
    }

    /// Every entry as `(mac, port, age)` at tick `now`, in no particular order; the age of a
    /// pinned entry is `None` (it never ages).
    pub fn iter_aged(&self, now: Tick) -> impl Iterator<Item = (Mac, PortId, Option<Tick>)> + '_ {
        self.map.iter().map(move |(k, e)| {
            let age = (!e.pinned).then(|| now.saturating_sub(e.last_seen));
            (mac_of(*k), e.port, age)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = [0x02, 0, 0, 0, 0, 0xa];
    const B: Mac = [0x02, 0, 0, 0, 0, 0xb];
    const C: Mac = [0x02, 0, 0, 0, 0, 0xc];
    const P1: PortId = PortId(1);
    const P2: PortId = PortId(2);

    #[test]
    fn learns_and_looks_up() {
        let mut t = MacTable::new(8);
        assert!(t.is_empty());
        assert_eq!(t.lookup(&A), None);
        assert_eq!(t.learn(A, P1, 10), Learned::New);
        assert_eq!(t.learn(B, P2, 10), Learned::New);
        assert_eq!(t.lookup(&A), Some(P1));
        assert_eq!(t.lookup(&B), Some(P2));
        assert_eq!(t.len(), 2);
        let mut all: Vec<_> = t.iter().collect();
        all.sort();
        assert_eq!(all, vec![(A, P1, false), (B, P2, false)]);
    }

    #[test]
    fn ages_count_from_the_last_frame_and_pinned_entries_have_none() {
        let mut t = MacTable::new(8);
        t.learn(A, P1, 10);
        t.learn(B, P2, 10);
        t.learn(A, P1, 30);
        t.pin(C, P2).unwrap();
        let mut all: Vec<_> = t.iter_aged(45).collect();
        all.sort();
        assert_eq!(
            all,
            vec![(A, P1, Some(15)), (B, P2, Some(35)), (C, P2, None)]
        );
    }

    #[test]
    fn refresh_resets_age() {
        let mut t = MacTable::new(8);
        t.learn(A, P1, 0);
        t.learn(B, P1, 0);
        assert_eq!(t.learn(A, P1, 250), Learned::Refreshed);
        // B last seen at 0, A at 250; max_age 300.
        assert_eq!(t.age(299, 300), 0);
        assert_eq!(t.age(300, 300), 1);
        assert_eq!(t.lookup(&B), None);
        assert_eq!(t.lookup(&A), Some(P1));
        assert_eq!(t.age(549, 300), 0);
        assert_eq!(t.age(550, 300), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn aging_keeps_pinned_entries() {
        let mut t = MacTable::new(8);
        t.pin(A, P1).unwrap();
        t.learn(B, P2, 5);
        assert_eq!(t.age(1_000_000, 300), 1);
        assert_eq!(t.lookup(&A), Some(P1));
        assert_eq!(t.lookup(&B), None);
    }

    #[test]
    fn learned_mac_moves_between_ports() {
        let mut t = MacTable::new(8);
        t.learn(A, P1, 1);
        assert_eq!(t.learn(A, P2, 2), Learned::Moved { from: P1 });
        assert_eq!(t.lookup(&A), Some(P2));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn pinned_mac_is_never_moved() {
        let mut t = MacTable::new(8);
        t.pin(A, P1).unwrap();
        assert_eq!(t.learn(A, P2, 1), Learned::Pinned);
        assert_eq!(t.learn(A, P1, 1), Learned::Pinned);
        assert_eq!(t.lookup(&A), Some(P1));
        assert_eq!(
            t.pin(A, P2),
            Err(SwitchError::MacInUse { mac: A, port: P1 })
        );
        assert_eq!(t.pin(A, P1), Ok(()));
        assert_eq!(t.iter().collect::<Vec<_>>(), vec![(A, P1, true)]);
    }

    #[test]
    fn pin_replaces_learned_entry() {
        let mut t = MacTable::new(8);
        t.learn(A, P2, 1);
        t.pin(A, P1).unwrap();
        assert_eq!(t.lookup(&A), Some(P1));
        assert_eq!(t.learn(A, P2, 2), Learned::Pinned);
    }

    #[test]
    fn full_table_refuses_new_macs_but_refreshes_known() {
        let mut t = MacTable::new(2);
        assert_eq!(t.learn(A, P1, 1), Learned::New);
        assert_eq!(t.learn(B, P1, 1), Learned::New);
        assert_eq!(t.learn(C, P1, 1), Learned::Full);
        assert_eq!(t.lookup(&C), None);
        assert_eq!(t.learn(A, P1, 2), Learned::Refreshed);
        assert_eq!(t.learn(B, P2, 2), Learned::Moved { from: P1 });
        assert_eq!(t.len(), 2);
        // After aging, there is room again.
        assert_eq!(t.age(400, 300), 2);
        assert_eq!(t.learn(C, P1, 400), Learned::New);
    }

    #[test]
    fn pin_evicts_stalest_learned_entry_when_full() {
        let mut t = MacTable::new(2);
        t.learn(A, P2, 5);
        t.learn(B, P2, 3);
        t.pin(C, P1).unwrap();
        assert_eq!(t.lookup(&B), None);
        assert_eq!(t.lookup(&A), Some(P2));
        assert_eq!(t.lookup(&C), Some(P1));
        t.pin(B, P1).unwrap();
        assert_eq!(t.lookup(&A), None);
        assert_eq!(t.pin(A, P1), Err(SwitchError::MacTableFull));
    }

    #[test]
    fn remove_port_and_forget() {
        let mut t = MacTable::new(8);
        t.pin(A, P1).unwrap();
        t.learn(B, P1, 0);
        t.learn(C, P2, 0);
        t.remove_port(P1);
        assert_eq!(t.len(), 1);
        assert_eq!(t.lookup(&C), Some(P2));
        assert!(t.forget(&C));
        assert!(!t.forget(&C));
        assert!(t.is_empty());
    }

    #[test]
    fn zero_capacity_learns_nothing() {
        let mut t = MacTable::new(0);
        assert_eq!(t.learn(A, P1, 0), Learned::Full);
        assert_eq!(t.pin(A, P1), Err(SwitchError::MacTableFull));
    }
}
