//! The flow table: a slab whose handles carry a generation, the hash index from a 4-tuple to
//! a handle, and the epoll token that names a flow's host socket. Public for the criterion
//! benches (`nat/benches/flows.rs`); the rest of the crate is its only other user.
//!
//! Why generations: a flow's slot is reused as soon as the flow ends, while references to it
//! may still be in flight (an epoll event already returned, a DNS answer relayed for a
//! DNS-over-TCP connection that has since closed). Each slot counts how often it was filled;
//! a [`Handle`] remembers the count it was issued with, so a stale handle finds nothing
//! instead of reaching the flow that reused the slot.
//!
//! Tokens: the 64-bit epoll data of a host socket is `owner (8 bits) | generation (24 bits)
//! | index (32 bits)`. Generations wrap at 2^24; a handle would have to survive 16 million
//! reuses of its slot to alias, and no handle outlives one poll of the table's owner except
//! relay clients, which expire within seconds.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// A reference to one entry of a [`Table`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Handle {
    index: u32,
    generation: u32,
}

const GEN_MASK: u32 = (1 << 24) - 1;

/// Entries with stable, generation-checked handles; freed slots are reused.
pub struct Table<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
    /// Generation of slots made from now on: above every generation a released slot had,
    /// so handles into storage given back never match the entries that come after.
    floor: u32,
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            floor: 0,
        }
    }
}

impl<T> Table<T> {
    /// Stores `value`; its handle is valid until [`Table::remove`].
    pub fn insert(&mut self, value: T) -> Handle {
        self.len += 1;
        if let Some(index) = self.free.pop()
            && let Some(slot) = self.slots.get_mut(index as usize)
        {
            slot.generation = (slot.generation + 1) & GEN_MASK;
            slot.value = Some(value);
            return Handle {
                index,
                generation: slot.generation,
            };
        }
        let index = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        self.slots.push(Slot {
            generation: self.floor,
            value: Some(value),
        });
        Handle {
            index,
            generation: self.floor,
        }
    }

    pub fn get(&self, h: Handle) -> Option<&T> {
        match self.slots.get(h.index as usize) {
            Some(s) if s.generation == h.generation => s.value.as_ref(),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, h: Handle) -> Option<&mut T> {
        match self.slots.get_mut(h.index as usize) {
            Some(s) if s.generation == h.generation => s.value.as_mut(),
            _ => None,
        }
    }

    /// Takes the entry out; the handle (and every copy of it) is dead from now on.
    pub fn remove(&mut self, h: Handle) -> Option<T> {
        let slot = self.slots.get_mut(h.index as usize)?;
        if slot.generation != h.generation {
            return None;
        }
        let value = slot.value.take()?;
        self.free.push(h.index);
        self.len -= 1;
        if self.len == 0 {
            self.release();
        }
        Some(value)
    }

    /// Gives the storage of an empty table back (10,000 flows leave megabytes of slots),
    /// keeping every generation it issued out of reach of later handles.
    fn release(&mut self) {
        let top = self.slots.iter().map(|s| s.generation).max().unwrap_or(0);
        self.floor = self.floor.max(top.wrapping_add(1) & GEN_MASK);
        self.slots = Vec::new();
        self.free = Vec::new();
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes out every entry for which `doomed` holds (its handles die with it).
    pub fn remove_where(&mut self, doomed: impl Fn(&T) -> bool) -> Vec<T> {
        let mut out = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.value.as_ref().is_some_and(&doomed)
                && let Some(v) = slot.value.take()
            {
                self.free.push(i as u32);
                self.len -= 1;
                out.push(v);
            }
        }
        if self.len == 0 && !out.is_empty() {
            self.release();
        }
        out
    }

    /// Slots ever filled: the most entries held at once.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Handle, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.value.as_ref().map(|v| {
                (
                    Handle {
                        index: i as u32,
                        generation: s.generation,
                    },
                    v,
                )
            })
        })
    }
}

/// How many of something (flows, dials, connections, queries) each endpoint holds.
#[derive(Default)]
pub(crate) struct PerEndpoint(HashMap<IpAddr, usize, foldhash::fast::RandomState>);

impl PerEndpoint {
    pub(crate) fn held_by(&self, ep: IpAddr) -> usize {
        self.0.get(&ep).copied().unwrap_or(0)
    }

    pub(crate) fn add(&mut self, ep: IpAddr) {
        *self.0.entry(ep).or_insert(0) += 1;
    }

    /// Gives one back; an endpoint holding nothing is forgotten.
    pub(crate) fn sub(&mut self, ep: IpAddr) {
        if let Some(n) = self.0.get_mut(&ep) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.0.remove(&ep);
            }
        }
    }
}

/// Which owner a host socket belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Owner {
    Tcp = 1,
    TcpListener = 2,
    Udp = 3,
    UdpListener = 4,
    Ping = 5,
    Relay = 6,
}

/// Encodes an owner and a handle as epoll data.
pub(crate) fn token(owner: Owner, h: Handle) -> u64 {
    (u64::from(owner as u8) << 56) | (u64::from(h.generation) << 32) | u64::from(h.index)
}

/// Decodes epoll data written by [`token`].
pub(crate) fn untoken(data: u64) -> Option<(Owner, Handle)> {
    let owner = match (data >> 56) as u8 {
        1 => Owner::Tcp,
        2 => Owner::TcpListener,
        3 => Owner::Udp,
        4 => Owner::UdpListener,
        5 => Owner::Ping,
        6 => Owner::Relay,
        _ => return None,
    };
    Some((
        owner,
        Handle {
            index: data as u32,
            generation: ((data >> 32) as u32) & GEN_MASK,
        },
    ))
}

/// The index from a flow's 4-tuple to its handle.
pub type Keys = HashMap<FlowKey, Handle, foldhash::fast::RandomState>;

/// A transport flow as the container sees it: its own address and port, and the peer's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowKey {
    /// The container's side.
    pub container: SocketAddr,
    /// The far side, as the container addresses it.
    pub peer: SocketAddr,
}

impl FlowKey {
    pub fn new(container: SocketAddr, peer: SocketAddr) -> Self {
        Self { container, peer }
    }

    /// The endpoint a flow is charged to.
    pub fn endpoint(&self) -> IpAddr {
        self.container.ip()
    }
}

/// The transport of a live flow, as `vswitchctl flows` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum FlowProtocol {
    /// TCP, terminated in smoltcp.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP or ICMPv6 echo.
    Icmp,
}

impl std::fmt::Display for FlowProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FlowProtocol::Tcp => "tcp",
            FlowProtocol::Udp => "udp",
            FlowProtocol::Icmp => "icmp",
        })
    }
}

/// One live NAT flow at the moment it was listed ([`crate::Nat::flows`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowInfo {
    /// Its transport.
    pub protocol: FlowProtocol,
    /// The container's address and port (ICMP: the echo identifier the container uses).
    pub container: SocketAddr,
    /// The far side as the container addresses it (ICMP: port 0); for a published port's
    /// client, the client as the container sees it.
    pub remote: SocketAddr,
    /// TCP: `DIALING` while the host dial is pending, else smoltcp's state as it names it
    /// (`SYN-RECEIVED`, `ESTABLISHED`, `FIN-WAIT-1`, ...); UDP and ICMP: `active`.
    pub state: &'static str,
    /// Time since the flow was opened.
    pub age: std::time::Duration,
    /// Payload bytes moved from the container towards the remote side.
    pub to_remote: u64,
    /// Payload bytes moved from the remote side to the container.
    pub to_container: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_handle_never_reaches_the_entry_that_reused_its_slot() {
        let mut t = Table::default();
        let a = t.insert("A");
        assert_eq!(t.remove(a), Some("A"));
        let b = t.insert("B");
        assert_eq!(t.get(a), None, "A's handle is dead");
        assert_eq!(t.remove(a), None);
        assert_eq!(t.get(b), Some(&"B"));
        assert_eq!(t.len(), 1);
        assert_eq!(t.remove_where(|v| *v == "B"), vec!["B"]);
        assert_eq!((t.get(b), t.len()), (None, 0));
        let c = t.insert("C");
        assert_eq!(
            t.get(b),
            None,
            "B's handle stays dead after its slot is reused"
        );
        assert_eq!(t.get(c), Some(&"C"));
    }

    #[test]
    fn an_emptied_table_gives_its_storage_back_and_old_handles_stay_dead() {
        let mut t = Table::default();
        let old: Vec<Handle> = (0..1000).map(|i| t.insert(i)).collect();
        for h in &old {
            t.remove(*h);
        }
        assert_eq!(t.slots(), 0, "storage given back");
        let fresh: Vec<Handle> = (0..1000).map(|i| t.insert(i + 5000)).collect();
        for (o, f) in old.iter().zip(&fresh) {
            assert_eq!(
                t.get(*o),
                None,
                "a handle from before the release finds nothing"
            );
            assert_eq!(t.get(*f).map(|v| *v >= 5000), Some(true));
        }
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let mut t = Table::default();
        for i in 0..5 {
            let h = t.insert(i);
            t.remove(h);
        }
        let h = t.insert(99);
        let tok = token(Owner::Relay, h);
        assert_eq!(untoken(tok), Some((Owner::Relay, h)));
        assert_eq!(untoken(0), None);
        assert_eq!(untoken(u64::MAX), None);
    }
}
