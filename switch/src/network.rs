//! One switching domain: ports, MAC learning, anti-spoofing and icc policy.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use foldhash::fast::RandomState;

use crate::ra_guard;
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
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Length of an Ethernet/IPv4 ARP body.
const ARP_LEN: usize = 28;
/// Length of an IPv4 header without options.
const IPV4_MIN_LEN: usize = 20;

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

/// Anti-spoofing and RA guard for a frame entering on a Container port bound to `mac`/`ipv4`.
///
/// ARP and IPv4 are read at fixed offsets on purpose: this runs for every frame from every
/// container, and only three fields matter. Every access destructures a `first_chunk` (bounds
/// checked once), so a short frame is a `Runt`, never a panic. IPv6 goes through the RA guard
/// ([`ra_guard::check`]), which walks the extension header chain with etherparse's views.
#[inline]
fn check_container(
    eth: &EthHeader,
    payload: &[u8],
    mac: &Mac,
    ipv4: Ipv4Addr,
) -> Result<(), DropReason> {
    if eth.src != *mac {
        return Err(DropReason::SpoofedMac);
    }
    match eth.ethertype {
        ETHERTYPE_VLAN | ETHERTYPE_QINQ => Err(DropReason::VlanTagged),
        ETHERTYPE_ARP => {
            // htype(2) ptype(2) hlen(1) plen(1) oper(2) sha(6) spa(4) tha(6) tpa(4)
            let arp = payload.first_chunk::<ARP_LEN>().ok_or(DropReason::Runt)?;
            let [
                _,
                _,
                _,
                _,
                _,
                _,
                _,
                _,
                h0,
                h1,
                h2,
                h3,
                h4,
                h5,
                p0,
                p1,
                p2,
                p3,
                ..,
            ] = *arp;
            if [h0, h1, h2, h3, h4, h5] != *mac {
                return Err(DropReason::SpoofedMac);
            }
            let spa = [p0, p1, p2, p3];
            if spa != ipv4.octets() && spa != [0u8; 4] {
                return Err(DropReason::SpoofedIp);
            }
            Ok(())
        }
        ETHERTYPE_IPV4 => {
            // Source address at offset 12 of the header.
            let ip = payload
                .first_chunk::<IPV4_MIN_LEN>()
                .ok_or(DropReason::Runt)?;
            let [_, _, _, _, _, _, _, _, _, _, _, _, s0, s1, s2, s3, ..] = *ip;
            if [s0, s1, s2, s3] != ipv4.octets() {
                return Err(DropReason::SpoofedIp);
            }
            Ok(())
        }
        ETHERTYPE_IPV6 => ra_guard::check(payload),
        _ => Ok(()),
    }
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
        let from_container = match self.roles[slot] {
            PortRole::Container { mac, ipv4 } => {
                if let Err(reason) = check_container(&eth, payload, &mac, ipv4) {
                    return Verdict::Drop(reason);
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
        };
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
        if !self.config.icc && from_container && self.roles[dst_slot].is_container() {
            return Verdict::Drop(DropReason::Isolation);
        }
        Verdict::Unicast(dst)
    }

    #[inline]
    fn learn(&mut self, src: Mac, port: PortId, now: Tick) {
        if !is_group(&src) && src != [0; 6] {
            self.macs.learn(src, port, now);
        }
    }

    /// Calls `f` for every port a flooded frame from `ingress` must reach (never `ingress` itself; only GATEWAY when icc=false and ingress is a Container). No allocation.
    #[inline]
    pub fn for_each_flood_target(&self, ingress: PortId, mut f: impl FnMut(PortId)) {
        let from_container = self
            .index
            .get(ingress)
            .is_some_and(|slot| self.roles[slot].is_container());
        if !self.config.icc && from_container {
            if ingress != GATEWAY && self.index.get(GATEWAY).is_some() {
                f(GATEWAY);
            }
            return;
        }
        for &id in &self.ids {
            if id != ingress {
                f(id);
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
mod tests {
    use super::*;
    use crate::BROADCAST;
    use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder, VlanId};

    const GW_MAC: Mac = [0x02, 0x42, 0, 0, 0, 0x01];
    const MAC1: Mac = [0x02, 0x42, 0, 0, 0, 0x11];
    const MAC2: Mac = [0x02, 0x42, 0, 0, 0, 0x12];
    const MAC3: Mac = [0x02, 0x42, 0, 0, 0, 0x13];
    const REMOTE_X: Mac = [0x02, 0x99, 0, 0, 0, 0x01];
    const REMOTE_Y: Mac = [0x02, 0x99, 0, 0, 0, 0x02];
    const UNKNOWN: Mac = [0x02, 0x77, 0, 0, 0, 0x01];
    const GW_IP: [u8; 4] = [172, 18, 0, 1];
    const IP1: [u8; 4] = [172, 18, 0, 11];
    const IP2: [u8; 4] = [172, 18, 0, 12];
    const IP3: [u8; 4] = [172, 18, 0, 13];
    const C1: PortId = PortId(1);
    const C2: PortId = PortId(2);
    const C3: PortId = PortId(3);
    const UP: PortId = PortId(9);

    fn container(mac: Mac, ip: [u8; 4]) -> PortRole {
        PortRole::Container {
            mac,
            ipv4: Ipv4Addr::from(ip),
        }
    }

    /// A network with the gateway, three containers and one uplink.
    fn network(icc: bool) -> Network {
        let mut config = NetworkConfig::new(GW_MAC);
        config.icc = icc;
        let mut net = Network::new(config);
        net.add_port(C1, container(MAC1, IP1)).unwrap();
        net.add_port(C2, container(MAC2, IP2)).unwrap();
        net.add_port(C3, container(MAC3, IP3)).unwrap();
        net.add_port(UP, PortRole::Uplink).unwrap();
        net
    }

    fn udp(src: Mac, dst: Mac, src_ip: [u8; 4], dst_ip: [u8; 4]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(src, dst)
            .ipv4(src_ip, dst_ip, 64)
            .udp(5000, 53)
            .write(&mut v, b"payload")
            .unwrap();
        v
    }

    fn arp(src: Mac, dst: Mac, sha: Mac, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
        let packet = ArpPacket::new(
            ArpHardwareId::ETHERNET,
            EtherType::IPV4,
            ArpOperation::REQUEST,
            &sha,
            &spa,
            &[0; 6],
            &tpa,
        )
        .unwrap();
        let mut v = Vec::new();
        PacketBuilder::ethernet2(src, dst)
            .arp(packet)
            .write(&mut v)
            .unwrap();
        v
    }

    fn flood_targets(net: &Network, ingress: PortId) -> Vec<PortId> {
        let mut v = Vec::new();
        net.for_each_flood_target(ingress, |p| v.push(p));
        v.sort();
        v
    }

    #[test]
    fn gateway_is_attached_and_pinned() {
        let net = Network::new(NetworkConfig::new(GW_MAC));
        assert!(matches!(net.role(GATEWAY), Some(PortRole::Gateway)));
        assert_eq!(net.mac_table().lookup(&GW_MAC), Some(GATEWAY));
        assert_eq!(net.port_count(), 1);
        assert_eq!(net.config().mac_capacity, 16_384);
        assert_eq!(net.config().mac_max_age, 300);
        assert!(net.config().icc);
    }

    #[test]
    fn two_containers_unicast_both_ways() {
        let mut net = network(true);
        let f12 = udp(MAC1, MAC2, IP1, IP2);
        let f21 = udp(MAC2, MAC1, IP2, IP1);
        assert_eq!(net.forward(C1, &f12, 0), Verdict::Unicast(C2));
        assert_eq!(net.forward(C2, &f21, 0), Verdict::Unicast(C1));
        let c1 = net.counters(C1).unwrap();
        assert_eq!(c1.rx_frames, 1);
        assert_eq!(c1.rx_bytes, f12.len() as u64);
        assert_eq!(c1.dropped_total(), 0);
    }

    #[test]
    fn container_reaches_gateway_and_back() {
        let mut net = network(true);
        let out = udp(MAC1, GW_MAC, IP1, [8, 8, 8, 8]);
        assert_eq!(net.forward(C1, &out, 0), Verdict::Unicast(GATEWAY));
        // Gateway ingress is unfiltered: any source IP passes.
        let back = udp(GW_MAC, MAC1, [8, 8, 8, 8], IP1);
        assert_eq!(net.forward(GATEWAY, &back, 0), Verdict::Unicast(C1));
    }

    #[test]
    fn broadcast_arp_floods_to_every_other_port() {
        let mut net = network(true);
        let f = arp(MAC1, BROADCAST, MAC1, IP1, GW_IP);
        assert_eq!(net.forward(C1, &f, 0), Verdict::Flood);
        assert_eq!(flood_targets(&net, C1), vec![GATEWAY, C2, C3, UP]);
        assert_eq!(flood_targets(&net, GATEWAY), vec![C1, C2, C3, UP]);
    }

    #[test]
    fn multicast_floods() {
        let mut net = network(true);
        let f = udp(MAC1, [0x01, 0x00, 0x5e, 0, 0, 0xfb], IP1, [224, 0, 0, 251]);
        assert_eq!(net.forward(C1, &f, 0), Verdict::Flood);
    }

    #[test]
    fn unknown_unicast_floods() {
        let mut net = network(true);
        let f = udp(MAC1, UNKNOWN, IP1, IP2);
        assert_eq!(net.forward(C1, &f, 0), Verdict::Flood);
    }

    #[test]
    fn spoofed_source_mac_is_dropped_and_counted() {
        let mut net = network(true);
        let f = udp(UNKNOWN, MAC2, IP1, IP2);
        assert_eq!(
            net.forward(C1, &f, 0),
            Verdict::Drop(DropReason::SpoofedMac)
        );
        // Impersonating another container is the same.
        let f = udp(MAC3, MAC2, IP3, IP2);
        assert_eq!(
            net.forward(C1, &f, 0),
            Verdict::Drop(DropReason::SpoofedMac)
        );
        let c = net.counters(C1).unwrap();
        assert_eq!(c.rx_frames, 2);
        assert_eq!(c.dropped(DropReason::SpoofedMac), 2);
        assert_eq!(c.dropped_total(), 2);
        // Nothing was learned from the spoofed frames.
        assert_eq!(net.mac_table().lookup(&UNKNOWN), None);
        assert_eq!(net.mac_table().lookup(&MAC3), Some(C3));
    }

    #[test]
    fn spoofed_arp_sender_mac_is_dropped() {
        let mut net = network(true);
        let f = arp(MAC1, BROADCAST, MAC3, IP1, GW_IP);
        assert_eq!(
            net.forward(C1, &f, 0),
            Verdict::Drop(DropReason::SpoofedMac)
        );
    }

    #[test]
    fn spoofed_arp_sender_ip_is_dropped() {
        let mut net = network(true);
        let f = arp(MAC1, BROADCAST, MAC1, IP2, GW_IP);
        assert_eq!(net.forward(C1, &f, 0), Verdict::Drop(DropReason::SpoofedIp));
        assert_eq!(net.counters(C1).unwrap().dropped(DropReason::SpoofedIp), 1);
    }

    #[test]
    fn arp_probe_is_allowed() {
        let mut net = network(true);
        let f = arp(MAC1, BROADCAST, MAC1, [0, 0, 0, 0], IP1);
        assert_eq!(net.forward(C1, &f, 0), Verdict::Flood);
    }

    #[test]
    fn spoofed_ipv4_source_is_dropped() {
        let mut net = network(true);
        let f = udp(MAC1, MAC2, IP3, IP2);
        assert_eq!(net.forward(C1, &f, 0), Verdict::Drop(DropReason::SpoofedIp));
        let f = udp(MAC1, GW_MAC, [0, 0, 0, 0], [255, 255, 255, 255]);
        assert_eq!(net.forward(C1, &f, 0), Verdict::Drop(DropReason::SpoofedIp));
    }

    #[test]
    fn ipv6_gets_the_mac_check_only() {
        let mut net = network(true);
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC1, MAC2)
            .ipv6([0xfe; 16], [0xfd; 16], 64)
            .udp(1, 2)
            .write(&mut f, b"x")
            .unwrap();
        assert_eq!(net.forward(C1, &f, 0), Verdict::Unicast(C2));
        f[6..12].copy_from_slice(&MAC3);
        assert_eq!(
            net.forward(C1, &f, 0),
            Verdict::Drop(DropReason::SpoofedMac)
        );
    }

    /// An all-nodes Router Advertisement from `src` (ICMPv6 type 134, no options).
    fn router_advertisement(src: Mac) -> Vec<u8> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(src, [0x33, 0x33, 0, 0, 0, 1])
            .ipv6(
                [0xfe; 16],
                [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                255,
            )
            .icmpv6(etherparse::Icmpv6Type::Unknown {
                type_u8: 134,
                code_u8: 0,
                bytes5to8: [64, 0, 0x07, 0x08],
            })
            .write(&mut f, &[0; 8])
            .unwrap();
        f
    }

    #[test]
    fn ra_guard_drops_container_router_advertisements_only() {
        let mut net = network(true);
        let ra = router_advertisement(MAC1);
        assert_eq!(net.forward(C1, &ra, 0), Verdict::Drop(DropReason::RaGuard));
        let c = net.counters(C1).unwrap();
        assert_eq!((c.rx_frames, c.dropped(DropReason::RaGuard)), (1, 1));
        // A truncated chain hiding the upper layer is malformed.
        let cut = &ra[..14 + 40];
        assert_eq!(
            net.forward(C1, cut, 0),
            Verdict::Drop(DropReason::Malformed)
        );
        assert_eq!(net.counters(C1).unwrap().dropped(DropReason::Malformed), 1);
        // The gateway and trunks are trusted.
        assert_eq!(
            net.forward(GATEWAY, &router_advertisement(GW_MAC), 0),
            Verdict::Flood
        );
        assert_eq!(
            net.forward(UP, &router_advertisement(REMOTE_X), 0),
            Verdict::Flood
        );
    }

    #[test]
    fn vlan_tagged_frames_from_containers_are_dropped() {
        let mut net = network(true);
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC1, MAC2)
            .single_vlan(VlanId::try_new(5).unwrap())
            .ipv4(IP1, IP2, 64)
            .udp(1, 2)
            .write(&mut f, b"x")
            .unwrap();
        assert_eq!(
            net.forward(C1, &f, 0),
            Verdict::Drop(DropReason::VlanTagged)
        );
        // 802.1ad outer tag too.
        f[12..14].copy_from_slice(&0x88a8u16.to_be_bytes());
        assert_eq!(
            net.forward(C1, &f, 0),
            Verdict::Drop(DropReason::VlanTagged)
        );
        assert_eq!(net.counters(C1).unwrap().dropped(DropReason::VlanTagged), 2);
        // Trunks are unfiltered.
        f[6..12].copy_from_slice(&REMOTE_X);
        assert_eq!(net.forward(UP, &f, 0), Verdict::Unicast(C2));
    }

    #[test]
    fn icc_disabled_isolates_containers_but_not_the_gateway() {
        let mut net = network(false);
        let f12 = udp(MAC1, MAC2, IP1, IP2);
        assert_eq!(
            net.forward(C1, &f12, 0),
            Verdict::Drop(DropReason::Isolation)
        );
        assert_eq!(net.counters(C1).unwrap().dropped(DropReason::Isolation), 1);

        let bcast = arp(MAC1, BROADCAST, MAC1, IP1, IP2);
        assert_eq!(net.forward(C1, &bcast, 0), Verdict::Flood);
        assert_eq!(flood_targets(&net, C1), vec![GATEWAY]);

        let to_gw = udp(MAC1, GW_MAC, IP1, GW_IP);
        assert_eq!(net.forward(C1, &to_gw, 0), Verdict::Unicast(GATEWAY));
        let from_gw = udp(GW_MAC, MAC1, GW_IP, IP1);
        assert_eq!(net.forward(GATEWAY, &from_gw, 0), Verdict::Unicast(C1));
        assert_eq!(flood_targets(&net, GATEWAY), vec![C1, C2, C3, UP]);

        net.set_icc(true);
        assert_eq!(net.forward(C1, &f12, 0), Verdict::Unicast(C2));
        assert_eq!(flood_targets(&net, C1), vec![GATEWAY, C2, C3, UP]);
    }

    #[test]
    fn remove_port_forgets_its_macs() {
        let mut net = network(true);
        let from_x = udp(REMOTE_X, BROADCAST, [10, 1, 0, 1], [10, 1, 255, 255]);
        assert_eq!(net.forward(UP, &from_x, 0), Verdict::Flood);
        let to_x = udp(MAC1, REMOTE_X, IP1, [10, 1, 0, 1]);
        assert_eq!(net.forward(C1, &to_x, 1), Verdict::Unicast(UP));

        let final_counters = net.remove_port(UP).unwrap();
        assert_eq!(final_counters.rx_frames, 1);
        assert_eq!(net.mac_table().lookup(&REMOTE_X), None);
        assert_eq!(net.forward(C1, &to_x, 2), Verdict::Flood);
        assert!(net.remove_port(UP).is_none());

        // Removing a container unpins its MAC; the remaining ports still resolve.
        net.remove_port(C1).unwrap();
        assert_eq!(net.mac_table().lookup(&MAC1), None);
        let to_1 = udp(MAC2, MAC1, IP2, IP1);
        assert_eq!(net.forward(C2, &to_1, 3), Verdict::Flood);
        assert_eq!(flood_targets(&net, C2), vec![GATEWAY, C3]);
        assert_eq!(
            net.forward(C3, &udp(MAC3, MAC2, IP3, IP2), 3),
            Verdict::Unicast(C2)
        );
        assert_eq!(net.counters(C2).unwrap().rx_frames, 1);
        assert!(net.counters(C1).is_none());
        assert_eq!(
            net.forward(C1, &to_x, 4),
            Verdict::Drop(DropReason::UnknownPort)
        );
        assert_eq!(net.unknown_port_drops(), 1);

        // The id and the MAC can be reused.
        net.add_port(C1, container(MAC1, IP1)).unwrap();
        assert_eq!(net.forward(C2, &to_1, 5), Verdict::Unicast(C1));
    }

    #[test]
    fn hairpin_is_dropped() {
        let mut net = network(true);
        net.mac_table_mut().learn(REMOTE_Y, UP, 0);
        let f = udp(REMOTE_X, REMOTE_Y, [10, 1, 0, 1], [10, 1, 0, 2]);
        assert_eq!(net.forward(UP, &f, 0), Verdict::Drop(DropReason::Hairpin));
        assert_eq!(net.counters(UP).unwrap().dropped(DropReason::Hairpin), 1);
        // Source was still learned.
        assert_eq!(net.mac_table().lookup(&REMOTE_X), Some(UP));
        // A container sending to itself.
        let f = udp(MAC1, MAC1, IP1, IP1);
        assert_eq!(net.forward(C1, &f, 0), Verdict::Drop(DropReason::Hairpin));
    }

    #[test]
    fn runts_are_dropped() {
        let mut net = network(true);
        let f = udp(MAC1, MAC2, IP1, IP2);
        assert_eq!(
            net.forward(C1, &f[..13], 0),
            Verdict::Drop(DropReason::Runt)
        );
        assert_eq!(net.forward(C1, &[], 0), Verdict::Drop(DropReason::Runt));
        // Truncated IPv4 header.
        assert_eq!(
            net.forward(C1, &f[..14 + 19], 0),
            Verdict::Drop(DropReason::Runt)
        );
        // Truncated ARP body.
        let a = arp(MAC1, BROADCAST, MAC1, IP1, GW_IP);
        assert_eq!(
            net.forward(C1, &a[..14 + 27], 0),
            Verdict::Drop(DropReason::Runt)
        );
        // Trunk runts too.
        assert_eq!(
            net.forward(UP, &f[..10], 0),
            Verdict::Drop(DropReason::Runt)
        );
        let c = net.counters(C1).unwrap();
        assert_eq!(c.rx_frames, 4);
        assert_eq!(c.rx_bytes, 13 + 33 + 41);
        assert_eq!(c.dropped(DropReason::Runt), 4);
    }

    #[test]
    fn uplink_learns_and_moves_but_never_steals_pinned_macs() {
        let mut net = network(true);
        let up2 = PortId(10);
        net.add_port(up2, PortRole::Uplink).unwrap();
        let f = udp(REMOTE_X, MAC1, [10, 1, 0, 1], IP1);
        assert_eq!(net.forward(UP, &f, 0), Verdict::Unicast(C1));
        assert_eq!(net.mac_table().lookup(&REMOTE_X), Some(UP));
        assert_eq!(net.forward(up2, &f, 1), Verdict::Unicast(C1));
        assert_eq!(net.mac_table().lookup(&REMOTE_X), Some(up2));
        // An uplink claiming a container's MAC does not move it.
        let f = udp(MAC2, MAC1, IP2, IP1);
        assert_eq!(net.forward(UP, &f, 1), Verdict::Unicast(C1));
        assert_eq!(net.mac_table().lookup(&MAC2), Some(C2));
        // Nor the gateway's.
        let f = udp(GW_MAC, MAC1, GW_IP, IP1);
        net.forward(UP, &f, 1);
        assert_eq!(net.mac_table().lookup(&GW_MAC), Some(GATEWAY));
        // Group source addresses are not learned.
        let f = udp(BROADCAST, MAC1, GW_IP, IP1);
        net.forward(UP, &f, 1);
        assert_eq!(net.mac_table().lookup(&BROADCAST), None);
    }

    #[test]
    fn add_port_rejects_duplicates() {
        let mut net = network(true);
        assert_eq!(
            net.add_port(C1, PortRole::Uplink),
            Err(SwitchError::PortExists(C1))
        );
        assert_eq!(
            net.add_port(GATEWAY, PortRole::Gateway),
            Err(SwitchError::PortExists(GATEWAY))
        );
        assert_eq!(
            net.add_port(PortId(20), container(MAC1, IP1)),
            Err(SwitchError::MacInUse {
                mac: MAC1,
                port: C1
            })
        );
        assert_eq!(
            net.add_port(PortId(20), container(GW_MAC, IP1)),
            Err(SwitchError::MacInUse {
                mac: GW_MAC,
                port: GATEWAY
            })
        );
        assert!(net.role(PortId(20)).is_none());
        assert_eq!(net.ports().count(), 5);
        assert_eq!(
            SwitchError::MacInUse {
                mac: MAC1,
                port: C1
            }
            .to_string(),
            "MAC 02:42:00:00:00:11 is already in use on port 1"
        );
    }

    #[test]
    fn count_tx_records_writes_and_errors() {
        let mut net = network(true);
        net.count_tx(C2, 100, true);
        net.count_tx(C2, 60, true);
        net.count_tx(C2, 60, false);
        net.count_tx(PortId(999), 60, true);
        let c = net.counters(C2).unwrap();
        assert_eq!((c.tx_frames, c.tx_bytes, c.tx_errors), (2, 160, 1));
    }

    #[test]
    fn aging_uses_the_configured_max_age() {
        let mut net = network(true);
        let f = udp(REMOTE_X, MAC1, [10, 1, 0, 1], IP1);
        net.forward(UP, &f, 100);
        assert_eq!(net.age(399), 0);
        assert_eq!(net.age(400), 1);
        assert_eq!(net.mac_table().lookup(&REMOTE_X), None);
        assert_eq!(net.mac_table().lookup(&MAC1), Some(C1));
        net.set_mac_max_age(10);
        net.forward(UP, &f, 500);
        assert_eq!(net.age(510), 1);
    }

    #[test]
    fn large_port_ids_use_the_sparse_index() {
        let mut net = network(true);
        let big = PortId(100_000);
        let huge = PortId(u32::MAX - 1);
        let m: Mac = [0x02, 0x42, 0, 1, 0, 0];
        net.add_port(big, container(m, [172, 18, 1, 0])).unwrap();
        net.add_port(huge, PortRole::Uplink).unwrap();
        let f = udp(m, MAC1, [172, 18, 1, 0], IP1);
        assert_eq!(net.forward(big, &f, 0), Verdict::Unicast(C1));
        let back = udp(MAC1, m, IP1, [172, 18, 1, 0]);
        assert_eq!(net.forward(C1, &back, 0), Verdict::Unicast(big));
        assert_eq!(flood_targets(&net, huge).len(), 6);
        net.remove_port(big).unwrap();
        assert_eq!(net.forward(C1, &back, 0), Verdict::Flood);
        assert!(net.counters(huge).is_some());
        assert_eq!(
            net.add_port(huge, PortRole::Uplink),
            Err(SwitchError::PortExists(huge))
        );
    }
}
