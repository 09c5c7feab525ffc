//! One switching domain: ports, MAC learning, anti-spoofing and icc policy.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use foldhash::fast::RandomState;

use crate::guard;
use crate::overlay::{OVERLAY, RemoteEndpoint, Remotes};
use crate::{
    DropReason, GATEWAY, Mac, MacTable, PortCounters, PortId, PortRole, SwitchError, Tick,
};

/// Settings of one network.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// The gateway's MAC, pinned to [`GATEWAY`].
    pub gateway_mac: Mac,
    /// Inter-container communication; `false` lets containers reach only the gateway.
    pub icc: bool,
    /// Maximum number of MACs (pinned and learned) in the MAC table; default
    /// [`DEFAULT_MAC_CAPACITY`](Self::DEFAULT_MAC_CAPACITY). Allocated up front.
    pub mac_capacity: usize,
    /// Learned MACs not seen for this many ticks are forgotten by [`Network::age`];
    /// default [`DEFAULT_MAC_MAX_AGE`](Self::DEFAULT_MAC_MAX_AGE).
    pub mac_max_age: Tick,
}

impl NetworkConfig {
    /// Default MAC table capacity: 16384 entries (far more than one host's
    /// containers; bounds what a trunk peer can make us hold).
    pub const DEFAULT_MAC_CAPACITY: usize = 16_384;
    /// Default MAC age limit: 300 ticks (seconds), as in the Linux bridge.
    pub const DEFAULT_MAC_MAX_AGE: Tick = 300;

    /// A configuration with icc enabled and default MAC table limits.
    pub fn new(gateway_mac: Mac) -> Self {
        Self {
            gateway_mac,
            icc: true,
            mac_capacity: Self::DEFAULT_MAC_CAPACITY,
            mac_max_age: Self::DEFAULT_MAC_MAX_AGE,
        }
    }
}

/// Where a frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Write it to this one port.
    Unicast(PortId),
    /// Write it to every port [`Network::for_each_flood_target`] names.
    Flood,
    /// Discard it (already counted on the ingress port).
    Drop(DropReason),
}

/// Ids below this are indexed by a dense vector; larger ones by a hash map.
const DENSE_LIMIT: u32 = 1 << 16;
/// Marks an unused entry of the dense index.
const NO_SLOT: u32 = u32::MAX;

/// Maps a [`PortId`] to its slot in the port vectors in O(1).
///
/// Daemon ids come from a counter starting at 1, so they are small and a dense
/// vector is the fast path; ids of 65536 and above fall back to a hash map.
#[derive(Debug, Default)]
struct PortIndex {
    dense: Vec<u32>,
    sparse: HashMap<u32, u32, RandomState>,
}

impl PortIndex {
    #[inline]
    fn get(&self, id: PortId) -> Option<usize> {
        if let Some(&slot) = self.dense.get(id.0 as usize) {
            return (slot != NO_SLOT).then_some(slot as usize);
        }
        if id.0 < DENSE_LIMIT || self.sparse.is_empty() {
            return None;
        }
        self.sparse.get(&id.0).map(|&slot| slot as usize)
    }

    fn set(&mut self, id: PortId, slot: usize) {
        let slot = u32::try_from(slot).expect("fewer than 2^32 ports");
        if id.0 < DENSE_LIMIT {
            let i = id.0 as usize;
            if i >= self.dense.len() {
                self.dense.resize(i + 1, NO_SLOT);
            }
            self.dense[i] = slot;
        } else {
            self.sparse.insert(id.0, slot);
        }
    }

    fn clear(&mut self, id: PortId) {
        if id.0 < DENSE_LIMIT {
            if let Some(slot) = self.dense.get_mut(id.0 as usize) {
                *slot = NO_SLOT;
            }
        } else {
            self.sparse.remove(&id.0);
        }
    }
}

/// One switching domain: its ports, MAC table and policy.
///
/// Ports live in parallel vectors (ids, roles, counters) so flood iteration walks
/// contiguous memory; a dense index (hash map above id 65535) finds a slot in O(1).
#[derive(Debug)]
pub struct Network {
    config: NetworkConfig,
    index: PortIndex,
    ids: Vec<PortId>,
    roles: Vec<PortRole>,
    counters: Vec<PortCounters>,
    macs: MacTable,
    unknown_port_drops: u64,
    /// Endpoints on other hosts (empty unless the network is an overlay network).
    remotes: Remotes,
}

/// The Ethernet II header fields the switch reads.
struct EthHeader {
    dst: Mac,
    src: Mac,
    ethertype: u16,
}

/// Splits a frame into its Ethernet header and payload; `None` if shorter than 14 bytes.
#[inline]
fn parse_eth(frame: &[u8]) -> Option<(EthHeader, &[u8])> {
    let (hdr, payload) = frame.split_first_chunk::<14>()?;
    let [d0, d1, d2, d3, d4, d5, s0, s1, s2, s3, s4, s5, t0, t1] = *hdr;
    let eth = EthHeader {
        dst: [d0, d1, d2, d3, d4, d5],
        src: [s0, s1, s2, s3, s4, s5],
        ethertype: u16::from_be_bytes([t0, t1]),
    };
    Some((eth, payload))
}

/// Whether the I/G bit is set (broadcast or multicast).
#[inline]
fn is_group(mac: &Mac) -> bool {
    mac[0] & 1 != 0
}

impl Network {
    /// Creates the domain with the gateway port (GATEWAY) already attached and its MAC pinned.
    ///
    /// (With `mac_capacity == 0` nothing can be pinned and the gateway MAC floods.)
    pub fn new(config: NetworkConfig) -> Self {
        let mut net = Self {
            macs: MacTable::new(config.mac_capacity),
            config,
            index: PortIndex::default(),
            ids: Vec::new(),
            roles: Vec::new(),
            counters: Vec::new(),
            unknown_port_drops: 0,
            remotes: Remotes::default(),
        };
        net.attach(GATEWAY, PortRole::Gateway);
        // Only fails with a zero-capacity table, documented above.
        let _ = net.macs.pin(net.config.gateway_mac, GATEWAY);
        net
    }

    /// Attaches a port; a Container port's MAC is pinned to it in the MAC table (cannot be moved by learning).
    pub fn add_port(&mut self, id: PortId, role: PortRole) -> Result<(), SwitchError> {
        if self.index.get(id).is_some() {
            return Err(SwitchError::PortExists(id));
        }
        if let PortRole::Container { mac, .. } = role {
            self.macs.pin(mac, id)?;
        }
        self.attach(id, role);
        Ok(())
    }

    fn attach(&mut self, id: PortId, role: PortRole) {
        self.index.set(id, self.ids.len());
        self.ids.push(id);
        self.roles.push(role);
        self.counters.push(PortCounters::default());
    }

    /// Detaches a port, forgetting every MAC learned on it; returns its final counters.
    pub fn remove_port(&mut self, id: PortId) -> Option<PortCounters> {
        let slot = self.index.get(id)?;
        self.index.clear(id);
        self.ids.swap_remove(slot);
        self.roles.swap_remove(slot);
        let counters = self.counters.swap_remove(slot);
        if let Some(&moved) = self.ids.get(slot) {
            self.index.set(moved, slot);
        }
        self.macs.remove_port(id);
        Some(counters)
    }

    /// Decides where one Ethernet frame (no virtio header) received on `ingress` goes; counts rx and drops; learns the source MAC.
    #[inline]
    pub fn forward(&mut self, ingress: PortId, frame: &[u8], now: Tick) -> Verdict {
        let Some(slot) = self.index.get(ingress) else {
            self.unknown_port_drops += 1;
            return Verdict::Drop(DropReason::UnknownPort);
        };
        let verdict = self.decide(slot, ingress, frame, now);
        let counters = &mut self.counters[slot];
        counters.count_rx(frame.len());
        if let Verdict::Drop(reason) = verdict {
            counters.drops[reason as usize] += 1;
        }
        verdict
    }

    #[inline]
    fn decide(&mut self, slot: usize, ingress: PortId, frame: &[u8], now: Tick) -> Verdict {
        let Some((eth, payload)) = parse_eth(frame) else {
            return Verdict::Drop(DropReason::Runt);
        };
        let from_endpoint = match &self.roles[slot] {
            PortRole::Container { mac, ipv4, ipv6 } => {
                if eth.src != *mac {
                    return Verdict::Drop(DropReason::SpoofedMac);
                }
                let checked = guard::check_container(eth.ethertype, payload, mac, *ipv4, ipv6);
                if let Err(reason) = checked {
                    return Verdict::Drop(reason);
                }
                if !self.remotes.is_empty() && self.asks_for_remote(eth.ethertype, payload) {
                    // ARP suppression: the gateway answers for remote endpoints.
                    return Verdict::Unicast(GATEWAY);
                }
                // The source is the container's own MAC, pinned at add_port.
                true
            }
            PortRole::Gateway => {
                if eth.src != self.config.gateway_mac {
                    self.learn(eth.src, ingress, now);
                }
                false
            }
            PortRole::Uplink => {
                self.learn(eth.src, ingress, now);
                false
            }
            // Frames from the overlay enter through forward_from_vtep, which checks them
            // against the store; offered here they carry no VTEP to check against.
            PortRole::Overlay => return Verdict::Drop(DropReason::SpoofedMac),
        };
        self.destination(ingress, &eth, from_endpoint)
    }

    /// Where a frame whose source passed its checks goes.
    #[inline]
    fn destination(&self, ingress: PortId, eth: &EthHeader, from_endpoint: bool) -> Verdict {
        if is_group(&eth.dst) {
            return Verdict::Flood;
        }
        let Some(dst) = self.macs.lookup(&eth.dst) else {
            return Verdict::Flood;
        };
        if dst == ingress {
            return Verdict::Drop(DropReason::Hairpin);
        }
        // A MAC on a port no longer attached (only possible via mac_table_mut) is unknown.
        let Some(dst_slot) = self.index.get(dst) else {
            return Verdict::Flood;
        };
        // The gateway is per host: it never talks across the overlay.
        if (ingress == OVERLAY && dst == GATEWAY) || (ingress == GATEWAY && dst == OVERLAY) {
            return Verdict::Drop(DropReason::Isolation);
        }
        if !self.config.icc && from_endpoint && self.roles[dst_slot].is_endpoint() {
            return Verdict::Drop(DropReason::Isolation);
        }
        Verdict::Unicast(dst)
    }

    /// Whether a (checked) frame from a local container asks for a remote endpoint: an ARP
    /// request for its IPv4 address, or a multicast Neighbor Solicitation (no extension
    /// headers) for its IPv6 address.
    #[inline]
    fn asks_for_remote(&self, ethertype: u16, payload: &[u8]) -> bool {
        const ETHERTYPE_ARP: u16 = 0x0806;
        const ETHERTYPE_IPV6: u16 = 0x86dd;
        match ethertype {
            ETHERTYPE_ARP => {
                // htype(2) ptype(2) hlen(1) plen(1) oper(2) sha(6) spa(4) tha(6) tpa(4)
                let Some(arp) = payload.first_chunk::<28>() else {
                    return false;
                };
                let [_, _, _, _, _, _, o0, o1, .., t0, t1, t2, t3] = *arp;
                u16::from_be_bytes([o0, o1]) == 1
                    && self
                        .remotes
                        .by_ipv4
                        .contains_key(&Ipv4Addr::new(t0, t1, t2, t3))
            }
            ETHERTYPE_IPV6 if !self.remotes.by_ipv6.is_empty() => {
                // IPv6 header (40): next header at 6, destination at 24; then ICMPv6 type
                // at 40 and the solicitation's target at 48..64.
                let Some(ns) = payload.first_chunk::<64>() else {
                    return false;
                };
                let (head, target) = ns.split_at(48);
                let is_ns = head.get(6) == Some(&58)
                    && head.get(24) == Some(&0xff)
                    && head.get(40) == Some(&135);
                let target = <[u8; 16]>::try_from(target).map(Ipv6Addr::from);
                is_ns && target.is_ok_and(|t| self.remotes.by_ipv6.contains_key(&t))
            }
            _ => false,
        }
    }

    /// Decides where a frame that arrived over VXLAN from `vtep` goes (the caller has
    /// already removed the VXLAN and outer headers and checked the VNI and that `vtep` is a
    /// cluster member). The inner source must be a remote endpoint the store places on
    /// `vtep` (else [`DropReason::SpoofedMac`]; the gateway's MAC never comes from the
    /// overlay) and pass the anti-spoofing checks of a container port with that endpoint's
    /// MAC and addresses. Counted on [`OVERLAY`]; `Drop(UnknownPort)` when the network is
    /// not an overlay network.
    #[inline]
    pub fn forward_from_vtep(&mut self, vtep: SocketAddr, frame: &[u8]) -> Verdict {
        let Some(slot) = self.index.get(OVERLAY) else {
            self.unknown_port_drops += 1;
            return Verdict::Drop(DropReason::UnknownPort);
        };
        let verdict = self.decide_from_vtep(vtep, frame);
        let counters = &mut self.counters[slot];
        counters.count_rx(frame.len());
        if let Verdict::Drop(reason) = verdict {
            counters.drops[reason as usize] += 1;
        }
        verdict
    }

    #[inline]
    fn decide_from_vtep(&self, vtep: SocketAddr, frame: &[u8]) -> Verdict {
        let Some((eth, payload)) = parse_eth(frame) else {
            return Verdict::Drop(DropReason::Runt);
        };
        if eth.src == self.config.gateway_mac {
            return Verdict::Drop(DropReason::SpoofedMac);
        }
        let Some(remote) = self.remotes.by_mac.get(&eth.src) else {
            return Verdict::Drop(DropReason::SpoofedMac);
        };
        if remote.vtep != vtep {
            return Verdict::Drop(DropReason::SpoofedMac);
        }
        let checked =
            guard::check_container(eth.ethertype, payload, &remote.mac, remote.ip, &remote.ip6);
        if let Err(reason) = checked {
            return Verdict::Drop(reason);
        }
        self.destination(OVERLAY, &eth, true)
    }

    /// Makes this network span hosts: attaches the [`OVERLAY`] port (once; again is a no-op).
    pub fn enable_overlay(&mut self) {
        if self.index.get(OVERLAY).is_none() {
            self.attach(OVERLAY, PortRole::Overlay);
        }
    }

    /// Replaces the endpoints on other hosts: their MACs are pinned to [`OVERLAY`] (the
    /// previous ones are forgotten). An endpoint whose MAC is pinned to a local port, or is
    /// the gateway's, is left out; those MACs are returned. Does nothing but return every
    /// MAC when the overlay is not enabled.
    pub fn set_remote_endpoints(&mut self, endpoints: &[RemoteEndpoint]) -> Vec<Mac> {
        if self.index.get(OVERLAY).is_none() {
            return endpoints.iter().map(|ep| ep.mac).collect();
        }
        let stale: Vec<Mac> = self.remotes.by_mac.keys().copied().collect();
        for mac in stale {
            if self.macs.lookup(&mac) == Some(OVERLAY) {
                self.macs.forget(&mac);
            }
        }
        self.remotes.clear();
        let mut refused = Vec::new();
        for ep in endpoints {
            if ep.mac == self.config.gateway_mac || is_group(&ep.mac) {
                refused.push(ep.mac);
                continue;
            }
            match self.macs.pin(ep.mac, OVERLAY) {
                Ok(()) => self.remotes.insert(*ep),
                Err(_) => refused.push(ep.mac),
            }
        }
        refused
    }

    /// The VTEP a remote endpoint's MAC lives behind (for [`Verdict::Unicast(OVERLAY)`]).
    #[inline]
    pub fn remote_vtep(&self, mac: &Mac) -> Option<SocketAddr> {
        self.remotes.by_mac.get(mac).map(|ep| ep.vtep)
    }

    /// The current remote endpoints, in no particular order.
    pub fn remote_endpoints(&self) -> impl Iterator<Item = &RemoteEndpoint> {
        self.remotes.by_mac.values()
    }

    #[inline]
    fn learn(&mut self, src: Mac, port: PortId, now: Tick) {
        if !is_group(&src) && src != [0; 6] {
            self.macs.learn(src, port, now);
        }
    }

    /// Calls `f` for every port a flooded frame from `ingress` must reach (never `ingress` itself; only GATEWAY when icc=false and ingress is a Container). No allocation.
    /// Calls `f` for every port a flooded frame from `ingress` must reach: never `ingress`
    /// itself; only GATEWAY when icc=false and ingress is a Container; from the gateway never
    /// [`OVERLAY`]; from the overlay only the Container and Uplink ports (none of them when
    /// icc=false). No allocation.
    #[inline]
    pub fn for_each_flood_target(&self, ingress: PortId, mut f: impl FnMut(PortId)) {
        let ingress_role = self.index.get(ingress).map(|slot| &self.roles[slot]);
        match ingress_role {
            Some(PortRole::Container { .. }) if !self.config.icc => {
                if self.index.get(GATEWAY).is_some() {
                    f(GATEWAY);
                }
            }
            Some(PortRole::Overlay) => {
                for (&id, role) in self.ids.iter().zip(&self.roles) {
                    let to = match role {
                        PortRole::Container { .. } => self.config.icc,
                        PortRole::Uplink => true,
                        PortRole::Gateway | PortRole::Overlay => false,
                    };
                    if to {
                        f(id);
                    }
                }
            }
            Some(PortRole::Gateway) => {
                for &id in &self.ids {
                    if id != ingress && id != OVERLAY {
                        f(id);
                    }
                }
            }
            _ => {
                for &id in &self.ids {
                    if id != ingress {
                        f(id);
                    }
                }
            }
        }
    }

    /// Records a transmit on `port` (ok = written, !ok = tx error).
    #[inline]
    pub fn count_tx(&mut self, port: PortId, bytes: usize, ok: bool) {
        if let Some(slot) = self.index.get(port) {
            self.counters[slot].count_tx(bytes, ok);
        }
    }

    /// Forgets learned (unpinned) MACs not seen for mac_max_age; returns how many.
    pub fn age(&mut self, now: Tick) -> usize {
        self.macs.age(now, self.config.mac_max_age)
    }

    /// The counters of port `id`, if attached.
    pub fn counters(&self, id: PortId) -> Option<&PortCounters> {
        self.index.get(id).map(|slot| &self.counters[slot])
    }

    /// Every attached port with its role, in no particular order.
    pub fn ports(&self) -> impl Iterator<Item = (PortId, &PortRole)> {
        self.ids.iter().copied().zip(self.roles.iter())
    }

    /// The role of port `id`, if attached.
    pub fn role(&self, id: PortId) -> Option<&PortRole> {
        self.index.get(id).map(|slot| &self.roles[slot])
    }

    /// Number of attached ports (including the gateway).
    pub fn port_count(&self) -> usize {
        self.ids.len()
    }

    /// The MAC table.
    pub fn mac_table(&self) -> &MacTable {
        &self.macs
    }

    /// The MAC table, for static entries and tests.
    pub fn mac_table_mut(&mut self) -> &mut MacTable {
        &mut self.macs
    }

    /// The current configuration.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// Enables or disables inter-container communication; takes effect on the next frame.
    pub fn set_icc(&mut self, icc: bool) {
        self.config.icc = icc;
    }

    /// Changes the MAC age limit used by [`age`](Self::age).
    pub fn set_mac_max_age(&mut self, max_age: Tick) {
        self.config.mac_max_age = max_age;
    }

    /// Frames offered on a port that is not attached (counted here, on no port).
    pub fn unknown_port_drops(&self) -> u64 {
        self.unknown_port_drops
    }
}

#[cfg(test)]
mod ipv6_tests;
#[cfg(test)]
mod overlay_tests;
#[cfg(test)]
mod tests;
