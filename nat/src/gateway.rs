//! The gateway endpoint: dispatches frames to the protocol handlers and counts outcomes.
//!
//! IPv4: ARP (`arp.rs`) and ping (`icmp.rs`) for its address. IPv6, only on a dual-stack
//! network ([`Gateway::with_ipv6`]): Neighbor Discovery (`ndp.rs`) and ping6 (`icmp.rs`) for
//! its configured address and its MAC-derived link-local address. Everything else returns
//! `None`, for the NAT to see.
//!
//! Opt-in services for a network that serves one self-configuring container (slirp4netns's
//! drop-in): aliases answered like the gateway address ([`Gateway::with_alias_v4`],
//! [`Gateway::with_alias_v6`]: ARP/NDP and ping, e.g. slirp's DNS address net+3 / fd00::3), a
//! DHCPv4 server ([`Gateway::with_dhcp`], `dhcp.rs`) and Router Advertisements
//! ([`Gateway::with_router_advert`], `ra.rs`; solicited ones answered here, periodic ones
//! written by [`Gateway::poll_at`] when [`Gateway::next_deadline`] comes). Without them the
//! gateway behaves as before: one extra `Option` check per IPv4 frame.
//!
//! Rate limit: each container (by source MAC, which the switch's anti-spoofing pins to its
//! port) gets at most [`RATE`] answers per second (ARP, Neighbor Advertisements, pings of
//! both families, from one bucket), with bursts up to [`BURST`]; requests beyond are dropped
//! and counted, so a flooding container costs the gateway little and cannot crowd out its
//! neighbours.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol};

use crate::dhcp::{self, DhcpConfig, DhcpServer};
use crate::ndp::{self, Gateway6};
use crate::ra::{Advertiser, RaConfig};
use crate::{arp, icmp};

/// What the gateway did with the frames it was given (in the API as they are here).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "PascalCase", default)
)]
pub struct GatewayCounters {
    /// ARP requests for the gateway address that were answered.
    pub arp_replies: u64,
    /// ICMP (IPv4) echo requests to the gateway that were answered.
    pub echo_replies: u64,
    /// IPv6 Neighbor Solicitations for the gateway's addresses that were answered (DAD probes
    /// included).
    pub neighbor_adverts: u64,
    /// ICMPv6 echo requests to the gateway that were answered.
    pub echo6_replies: u64,
    /// Frames that produced no reply (not for us, unsupported, malformed or no room).
    pub ignored: u64,
    /// ARP, Neighbor Solicitation and ping requests dropped by the per-container rate limit.
    pub rate_limited: u64,
    /// DHCP offers sent.
    pub dhcp_offers: u64,
    /// DHCP ACKs sent (to REQUEST and INFORM).
    pub dhcp_acks: u64,
    /// DHCP NAKs sent.
    pub dhcp_naks: u64,
    /// Router Advertisements sent (solicited and periodic).
    pub router_adverts: u64,
}

/// Answers per second and container.
pub const RATE: u32 = 100;
/// Answers a container may get at once after being quiet.
pub const BURST: u32 = 200;
/// Containers tracked at most (the table is cleared when full).
const TRACKED: usize = 4096;

/// Which kind of answer the gateway wrote.
#[derive(Clone, Copy, Debug)]
enum Reply {
    Arp,
    Echo,
    NeighborAdvert,
    Echo6,
    DhcpOffer,
    DhcpAck,
    DhcpNak,
    RouterAdvert,
}

/// A token bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: u32,
    refilled: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled);
        let new = (elapsed.as_millis() * u128::from(RATE) / 1000) as u64;
        if new > 0 {
            self.tokens = (u64::from(self.tokens) + new).min(u64::from(BURST)) as u32;
            self.refilled = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// The virtual gateway endpoint of one network.
#[derive(Debug)]
pub struct Gateway {
    ip: Ipv4Addr,
    mac: EthernetAddress,
    /// The IPv6 side, on a dual-stack network.
    ip6: Option<Gateway6>,
    /// Further IPv4 addresses answered like `ip`.
    aliases4: Vec<Ipv4Addr>,
    /// Further IPv6 addresses answered like the IPv6 address (kept for [`Gateway::with_ipv6`]
    /// called after [`Gateway::with_alias_v6`]).
    aliases6: Vec<Ipv6Addr>,
    dhcp: Option<DhcpServer>,
    ra: Option<Advertiser>,
    counters: GatewayCounters,
    buckets: HashMap<[u8; 6], Bucket, foldhash::fast::RandomState>,
    /// Overlay networks: endpoints on other hosts whose ARP requests this gateway answers.
    remote_neighbors: HashMap<Ipv4Addr, EthernetAddress, foldhash::fast::RandomState>,
    /// The same for IPv6 (Neighbor Solicitations), on a dual-stack overlay network.
    remote_neighbors6: HashMap<Ipv6Addr, EthernetAddress, foldhash::fast::RandomState>,
}

impl Gateway {
    /// Creates the gateway for `ip` answering from `mac`.
    pub fn new(ip: Ipv4Addr, mac: [u8; 6]) -> Self {
        Self {
            ip,
            mac: EthernetAddress(mac),
            ip6: None,
            aliases4: Vec::new(),
            aliases6: Vec::new(),
            dhcp: None,
            ra: None,
            counters: GatewayCounters::default(),
            buckets: HashMap::default(),
            remote_neighbors: HashMap::default(),
            remote_neighbors6: HashMap::default(),
        }
    }

    /// Overlay networks: replaces the IPv4 addresses (and MACs) of the endpoints on other
    /// hosts, for which the gateway answers broadcast ARP requests itself (ARP suppression);
    /// the gateway's own address is never overridden.
    pub fn set_remote_neighbors(
        &mut self,
        neighbors: impl IntoIterator<Item = (Ipv4Addr, [u8; 6])>,
    ) {
        self.remote_neighbors.clear();
        for (ip, mac) in neighbors {
            if ip != self.ip {
                self.remote_neighbors.insert(ip, EthernetAddress(mac));
            }
        }
    }

    /// Serves a dual-stack network: the gateway also answers Neighbor Discovery and ping6
    /// for `ip6` and for its link-local address.
    pub fn with_ipv6(mut self, ip6: Ipv6Addr) -> Self {
        self.ip6 = Some(Gateway6 {
            global: ip6,
            link_local: self.link_local(),
            aliases: self.aliases6.clone(),
            mac: self.mac,
        });
        self
    }

    /// Also answers ARP and ping for `ip` (slirp4netns's DNS address net+3), as for the
    /// gateway address; replies come from `ip`. Other addresses stay unanswered.
    pub fn with_alias_v4(mut self, ip: Ipv4Addr) -> Self {
        if ip != self.ip && !self.aliases4.contains(&ip) {
            self.aliases4.push(ip);
        }
        self
    }

    /// Also answers Neighbor Discovery and ping6 for `ip` (slirp4netns's fd00::3), as for the
    /// gateway's IPv6 address (only on a dual-stack gateway, [`Gateway::with_ipv6`], before
    /// or after this call).
    pub fn with_alias_v6(mut self, ip: Ipv6Addr) -> Self {
        if !self.aliases6.contains(&ip) {
            self.aliases6.push(ip);
            if let Some(gw) = self.ip6.as_mut() {
                gw.aliases.push(ip);
            }
        }
        self
    }

    /// Serves DHCPv4 (see `dhcp.rs`): leases from `cfg`'s pool, the gateway as router and
    /// server identifier. For a network serving one container (the slirp4netns drop-in).
    pub fn with_dhcp(mut self, cfg: DhcpConfig) -> Self {
        self.dhcp = Some(DhcpServer::new(cfg));
        self
    }

    /// Sends Router Advertisements (see `ra.rs`): answers Router Solicitations, and writes
    /// periodic ones from [`Gateway::poll_at`]. Only on a dual-stack gateway
    /// ([`Gateway::with_ipv6`]): the advertisements come from its link-local address.
    pub fn with_router_advert(mut self, cfg: RaConfig) -> Self {
        self.ra = Some(Advertiser::new(cfg));
        self
    }

    /// When [`Gateway::poll_at`] has something to send (a periodic Router Advertisement):
    /// None when nothing is ever due (no advertising, or no IPv6 side); a time already passed
    /// (`now` at the latest) when one is due at once.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.ip6.as_ref()?;
        let ra = self.ra.as_ref()?;
        Some(ra.next().unwrap_or_else(Instant::now))
    }

    /// Starts the unsolicited Router Advertisements over (the first due at once, then the
    /// short initial intervals): call when a port joins the link, so it hears one without
    /// waiting for the next period. Nothing happens without advertising.
    pub fn restart_router_adverts(&mut self) {
        if let Some(ra) = self.ra.as_mut() {
            ra.restart();
        }
    }

    /// Writes the frame due at `now` into `out` (a periodic Router Advertisement to all
    /// nodes), if one is due; returns its length. Call when [`Gateway::next_deadline`] has
    /// come; calling earlier is harmless (returns None).
    pub fn poll_at(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        let gw = self.ip6.as_ref()?;
        let n = self.ra.as_mut()?.poll_at(now, gw.link_local, gw.mac, out)?;
        self.counters.router_adverts += 1;
        Some(n)
    }

    /// The gateway's IPv4 address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The gateway's IPv6 address, on a dual-stack network.
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.ip6.as_ref().map(|gw| gw.global)
    }

    /// The gateway's link-local IPv6 address: `fe80::` + the modified EUI-64 of its MAC
    /// (answered only on a dual-stack network).
    pub fn link_local(&self) -> Ipv6Addr {
        switch::MacAddr(self.mac.0).link_local_ipv6()
    }

    /// The gateway's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac.0
    }

    /// Handles one Ethernet frame (no virtio header) that the switch delivered to the gateway (unicast to its MAC, or broadcast/multicast).
    /// If the gateway answers, writes the complete reply Ethernet frame into `out` and returns Some(len). Never allocates, never panics on malformed input.
    pub fn on_frame(&mut self, frame: &[u8], out: &mut [u8]) -> Option<usize> {
        self.on_frame_at(frame, out, Instant::now())
    }

    /// [`Gateway::on_frame`] at a given time (for tests).
    pub fn on_frame_at(&mut self, frame: &[u8], out: &mut [u8], now: Instant) -> Option<usize> {
        let reply = EthernetFrame::new_checked(frame)
            .ok()
            .and_then(|eth| match eth.ethertype() {
                EthernetProtocol::Arp => {
                    let remote = &self.remote_neighbors;
                    arp::answer(self.ip, &self.aliases4, self.mac, &eth, out, |ip| {
                        remote.get(&ip).copied()
                    })
                    .map(|n| (Reply::Arp, n))
                }
                EthernetProtocol::Ipv4 => match self.dhcp.as_mut() {
                    Some(dhcp) if DhcpServer::is_for_server(&eth) => dhcp
                        .answer(self.ip, self.mac, &eth, out, now)
                        .map(|(answer, n)| match answer {
                            dhcp::Answer::Offer => (Reply::DhcpOffer, n),
                            dhcp::Answer::Ack => (Reply::DhcpAck, n),
                            dhcp::Answer::Nak => (Reply::DhcpNak, n),
                        }),
                    _ => icmp::answer(self.ip, &self.aliases4, self.mac, &eth, out)
                        .map(|n| (Reply::Echo, n)),
                },
                EthernetProtocol::Ipv6 => {
                    let gw = self.ip6.as_ref()?;
                    let remote = &self.remote_neighbors6;
                    ndp::answer(gw, self.ra.as_ref(), &eth, out, |ip| {
                        remote.get(&ip).copied()
                    })
                    .map(|(answer, n)| match answer {
                        ndp::Answer::NeighborAdvert => (Reply::NeighborAdvert, n),
                        ndp::Answer::EchoReply => (Reply::Echo6, n),
                        ndp::Answer::RouterAdvert => (Reply::RouterAdvert, n),
                    })
                }
                _ => None,
            });
        let Some((kind, len)) = reply else {
            self.counters.ignored += 1;
            return None;
        };
        if !self.admit(frame, now) {
            self.counters.rate_limited += 1;
            return None;
        }
        let counter = match kind {
            Reply::Arp => &mut self.counters.arp_replies,
            Reply::Echo => &mut self.counters.echo_replies,
            Reply::NeighborAdvert => &mut self.counters.neighbor_adverts,
            Reply::Echo6 => &mut self.counters.echo6_replies,
            Reply::DhcpOffer => &mut self.counters.dhcp_offers,
            Reply::DhcpAck => &mut self.counters.dhcp_acks,
            Reply::DhcpNak => &mut self.counters.dhcp_naks,
            Reply::RouterAdvert => &mut self.counters.router_adverts,
        };
        *counter += 1;
        Some(len)
    }

    /// Overlay networks, IPv6: replaces the IPv6 addresses (and MACs) of the endpoints on
    /// other hosts, for which the gateway answers multicast Neighbor Solicitations itself
    /// (on a dual-stack network only); the gateway's own addresses are never overridden.
    pub fn set_remote_neighbors6(
        &mut self,
        neighbors: impl IntoIterator<Item = (Ipv6Addr, [u8; 6])>,
    ) {
        self.remote_neighbors6.clear();
        for (ip, mac) in neighbors {
            if self.ip6.as_ref().is_none_or(|gw| !gw.owns(ip)) {
                self.remote_neighbors6.insert(ip, EthernetAddress(mac));
            }
        }
    }

    /// Takes a token from the sender's bucket.
    fn admit(&mut self, frame: &[u8], now: Instant) -> bool {
        let Some(src) = frame.get(6..12).and_then(|s| <[u8; 6]>::try_from(s).ok()) else {
            return false;
        };
        if self.buckets.len() >= TRACKED && !self.buckets.contains_key(&src) {
            self.buckets.clear();
        }
        self.buckets
            .entry(src)
            .or_insert(Bucket {
                tokens: BURST,
                refilled: now,
            })
            .take(now)
    }

    /// What the gateway has done so far.
    pub fn counters(&self) -> &GatewayCounters {
        &self.counters
    }
}

#[cfg(test)]
mod ipv6_tests;
#[cfg(test)]
mod slirp_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{
        ArpEthIpv4Packet, ArpOperation, EtherType, Icmpv4Type, LinkSlice, NetSlice, PacketBuilder,
        SlicedPacket, TransportSlice,
    };
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, Ipv4Packet, Ipv4Repr};

    const GW_IP: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 1);
    const GW_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x12, 0x00, 0x01];
    const C1_IP: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 2);
    const C1_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x12, 0x00, 0x02];
    const BCAST: [u8; 6] = [0xff; 6];

    fn gateway() -> Gateway {
        Gateway::new(GW_IP, GW_MAC)
    }

    fn arp_frame(eth_dst: [u8; 6], op: ArpOperation, target_ip: Ipv4Addr) -> Vec<u8> {
        let arp = ArpEthIpv4Packet {
            operation: op,
            sender_mac: C1_MAC,
            sender_ipv4: C1_IP.octets(),
            target_mac: [0; 6],
            target_ipv4: target_ip.octets(),
        };
        let mut v = Vec::new();
        PacketBuilder::ethernet2(C1_MAC, eth_dst)
            .arp(arp.into())
            .write(&mut v)
            .unwrap();
        v
    }

    fn ping_frame(eth_dst: [u8; 6], dst_ip: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(C1_MAC, eth_dst)
            .ipv4(C1_IP.octets(), dst_ip.octets(), 17)
            .icmpv4_echo_request(0x1234, 7)
            .write(&mut v, payload)
            .unwrap();
        v
    }

    fn run(gw: &mut Gateway, frame: &[u8]) -> Option<Vec<u8>> {
        let mut out = [0u8; 2048];
        gw.on_frame(frame, &mut out).map(|n| out[..n].to_vec())
    }

    #[test]
    fn a_flooding_container_is_rate_limited_and_refills() {
        let mut gw = gateway();
        let t0 = Instant::now();
        let frame = ping_frame(GW_MAC, GW_IP, b"flood");
        let mut out = [0u8; 2048];
        let answered = (0..BURST + 50)
            .filter(|_| gw.on_frame_at(&frame, &mut out, t0).is_some())
            .count();
        assert_eq!(answered, BURST as usize, "a burst, then nothing");
        assert_eq!(gw.counters().rate_limited, 50);
        assert_eq!(gw.counters().echo_replies, u64::from(BURST));
        let later = t0 + std::time::Duration::from_millis(100);
        let refilled = (0..50)
            .filter(|_| gw.on_frame_at(&frame, &mut out, later).is_some())
            .count();
        assert_eq!(refilled, (RATE / 10) as usize, "RATE per second come back");
        // Another container is not affected.
        let mut other = frame.clone();
        other[6..12].copy_from_slice(&[0x02, 0x42, 0xac, 0x12, 0x00, 0x09]);
        assert!(gw.on_frame_at(&other, &mut out, later).is_some());
    }

    #[test]
    fn arp_request_for_gateway_is_answered() {
        let mut gw = gateway();
        let reply = run(&mut gw, &arp_frame(BCAST, ArpOperation::REQUEST, GW_IP)).unwrap();
        let p = SlicedPacket::from_ethernet(&reply).unwrap();
        let Some(LinkSlice::Ethernet2(eth)) = &p.link else {
            panic!("no ethernet header")
        };
        assert_eq!(eth.source(), GW_MAC);
        assert_eq!(eth.destination(), C1_MAC);
        assert_eq!(eth.ether_type(), EtherType::ARP);
        let Some(NetSlice::Arp(arp)) = &p.net else {
            panic!("no ARP payload")
        };
        let arp = arp.to_packet().try_eth_ipv4().unwrap();
        assert_eq!(arp.operation, ArpOperation::REPLY);
        assert_eq!(arp.sender_mac, GW_MAC);
        assert_eq!(arp.sender_ipv4_addr(), GW_IP);
        assert_eq!(arp.target_mac, C1_MAC);
        assert_eq!(arp.target_ipv4_addr(), C1_IP);
        assert_eq!(gw.counters().arp_replies, 1);
        assert_eq!(gw.counters().ignored, 0);
    }

    #[test]
    fn arp_for_a_remote_endpoint_is_answered_locally() {
        const R_IP: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 30);
        const R_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x12, 0x00, 0x1e];
        let mut gw = gateway();
        assert_eq!(
            run(&mut gw, &arp_frame(BCAST, ArpOperation::REQUEST, R_IP)),
            None
        );
        // The store places R on another host; a remote entry cannot take the gateway's IP.
        gw.set_remote_neighbors([(R_IP, R_MAC), (GW_IP, R_MAC)]);
        let reply = run(&mut gw, &arp_frame(BCAST, ArpOperation::REQUEST, R_IP)).unwrap();
        let p = SlicedPacket::from_ethernet(&reply).unwrap();
        let Some(LinkSlice::Ethernet2(eth)) = &p.link else {
            panic!("not ethernet")
        };
        assert_eq!(eth.source(), R_MAC);
        assert_eq!(eth.destination(), C1_MAC);
        let Some(NetSlice::Arp(arp)) = &p.net else {
            panic!("not ARP")
        };
        let arp = arp.to_packet().try_eth_ipv4().unwrap();
        assert_eq!(arp.operation, ArpOperation::REPLY);
        assert_eq!(arp.sender_mac, R_MAC);
        assert_eq!(arp.sender_ipv4_addr(), R_IP);
        assert_eq!(arp.target_mac, C1_MAC);
        assert_eq!(arp.target_ipv4_addr(), C1_IP);
        let own = run(&mut gw, &arp_frame(BCAST, ArpOperation::REQUEST, GW_IP)).unwrap();
        assert_eq!(&own[6..12], &GW_MAC);
        // Forgotten when the store no longer has it.
        gw.set_remote_neighbors([]);
        assert_eq!(
            run(&mut gw, &arp_frame(BCAST, ArpOperation::REQUEST, R_IP)),
            None
        );
    }

    #[test]
    fn unicast_arp_refresh_is_answered() {
        let mut gw = gateway();
        assert!(run(&mut gw, &arp_frame(GW_MAC, ArpOperation::REQUEST, GW_IP)).is_some());
    }

    #[test]
    fn other_arp_is_ignored() {
        let mut gw = gateway();
        let other = Ipv4Addr::new(172, 18, 0, 3);
        assert_eq!(
            run(&mut gw, &arp_frame(BCAST, ArpOperation::REQUEST, other)),
            None
        );
        assert_eq!(
            run(&mut gw, &arp_frame(BCAST, ArpOperation::REPLY, GW_IP)),
            None
        );
        // Unicast to somebody else's MAC is not ours to answer.
        assert_eq!(
            run(&mut gw, &arp_frame(C1_MAC, ArpOperation::REQUEST, GW_IP)),
            None
        );
        assert_eq!(gw.counters().arp_replies, 0);
        assert_eq!(gw.counters().ignored, 3);
    }

    #[test]
    fn ping_to_gateway_gets_valid_echo_reply() {
        let mut gw = gateway();
        let payload: Vec<u8> = (0..56u8).collect();
        let reply = run(&mut gw, &ping_frame(GW_MAC, GW_IP, &payload)).unwrap();

        let p = SlicedPacket::from_ethernet(&reply).unwrap();
        let Some(LinkSlice::Ethernet2(eth)) = &p.link else {
            panic!("no ethernet header")
        };
        assert_eq!(eth.source(), GW_MAC);
        assert_eq!(eth.destination(), C1_MAC);
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!("no IPv4 header")
        };
        let hdr = ip.header();
        assert_eq!(hdr.source_addr(), GW_IP);
        assert_eq!(hdr.destination_addr(), C1_IP);
        assert_eq!(hdr.ttl(), 64);
        assert!(!hdr.more_fragments());
        assert_eq!(
            hdr.header_checksum(),
            hdr.to_header().calc_header_checksum(),
            "IPv4 header checksum"
        );
        let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
            panic!("no ICMP")
        };
        let Icmpv4Type::EchoReply(echo) = icmp.icmp_type() else {
            panic!("not an echo reply: {:?}", icmp.icmp_type())
        };
        assert_eq!((echo.id, echo.seq), (0x1234, 7));
        assert_eq!(icmp.payload(), &payload[..]);
        assert_eq!(
            icmp.checksum(),
            icmp.icmp_type().calc_checksum(icmp.payload()),
            "ICMP checksum"
        );

        // Independent check with smoltcp's verifying parser.
        let caps = ChecksumCapabilities::default();
        let ipp = Ipv4Packet::new_checked(&reply[14..]).unwrap();
        assert!(Ipv4Repr::parse(&ipp, &caps).is_ok());
        let icmpp = Icmpv4Packet::new_checked(ipp.payload()).unwrap();
        assert!(matches!(
            Icmpv4Repr::parse(&icmpp, &caps),
            Ok(Icmpv4Repr::EchoReply {
                ident: 0x1234,
                seq_no: 7,
                ..
            })
        ));
        assert_eq!(reply.len(), 14 + 20 + 8 + payload.len());
        assert_eq!(gw.counters().echo_replies, 1);
    }

    #[test]
    fn ping_not_for_gateway_is_ignored() {
        let mut gw = gateway();
        let other = Ipv4Addr::new(8, 8, 8, 8);
        assert_eq!(run(&mut gw, &ping_frame(GW_MAC, other, b"hi")), None);
        // Right IP, but broadcast Ethernet destination.
        assert_eq!(run(&mut gw, &ping_frame(BCAST, GW_IP, b"hi")), None);
        assert_eq!(gw.counters().echo_replies, 0);
        assert_eq!(gw.counters().ignored, 2);
    }

    #[test]
    fn bad_checksums_fragments_and_replies_are_ignored() {
        let mut gw = gateway();
        let good = ping_frame(GW_MAC, GW_IP, b"abcdefgh");
        assert!(run(&mut gw, &good).is_some());

        let mut bad_ip = good.clone();
        bad_ip[14 + 10] ^= 0xff; // IPv4 header checksum
        assert_eq!(run(&mut gw, &bad_ip), None);

        let mut bad_icmp = good.clone();
        *bad_icmp.last_mut().unwrap() ^= 0xff; // payload no longer matches ICMP checksum
        assert_eq!(run(&mut gw, &bad_icmp), None);

        let mut frag = good.clone();
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut frag[14..]);
            ip.set_more_frags(true);
            ip.fill_checksum();
        }
        assert_eq!(run(&mut gw, &frag), None);

        let mut v = Vec::new();
        PacketBuilder::ethernet2(C1_MAC, GW_MAC)
            .ipv4(C1_IP.octets(), GW_IP.octets(), 64)
            .icmpv4_echo_reply(1, 1)
            .write(&mut v, b"x")
            .unwrap();
        assert_eq!(run(&mut gw, &v), None);

        let mut v6 = Vec::new();
        PacketBuilder::ethernet2(C1_MAC, GW_MAC)
            .ipv6([0xfe; 16], [0xfd; 16], 64)
            .icmpv6_echo_request(1, 1)
            .write(&mut v6, b"x")
            .unwrap();
        assert_eq!(run(&mut gw, &v6), None);

        assert_eq!(gw.counters().echo_replies, 1);
        assert_eq!(gw.counters().ignored, 5);
    }

    #[test]
    fn small_output_buffer_yields_none() {
        let mut gw = gateway();
        let ping = ping_frame(GW_MAC, GW_IP, &[0u8; 100]);
        let mut out = [0u8; 14 + 20 + 8 + 99];
        assert_eq!(gw.on_frame(&ping, &mut out), None);
        let mut out = [0u8; 14 + 20 + 8 + 100];
        assert_eq!(gw.on_frame(&ping, &mut out), Some(out.len()));

        let arp = arp_frame(BCAST, ArpOperation::REQUEST, GW_IP);
        let mut out = [0u8; 41];
        assert_eq!(gw.on_frame(&arp, &mut out), None);
    }

    #[test]
    fn truncated_frames_are_ignored_without_panic() {
        let mut gw = gateway();
        let mut pad = arp_frame(BCAST, ArpOperation::REQUEST, GW_IP);
        pad.resize(60, 0);
        for frame in [
            arp_frame(BCAST, ArpOperation::REQUEST, GW_IP),
            ping_frame(GW_MAC, GW_IP, &[0xab; 32]),
        ] {
            assert!(run(&mut gw, &frame).is_some());
            for n in 0..frame.len().min(60) {
                assert_eq!(run(&mut gw, &frame[..n]), None, "prefix of {n} bytes");
            }
        }
        // Ethernet padding after a complete ARP packet is fine.
        assert!(run(&mut gw, &pad).is_some());
    }

    #[test]
    fn garbage_never_panics() {
        let mut gw = gateway();
        let valid = [
            arp_frame(BCAST, ArpOperation::REQUEST, GW_IP),
            ping_frame(GW_MAC, GW_IP, &[7; 24]),
        ];
        let mut out = [0u8; 2048];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut frame = valid[(rand() % 2) as usize].clone();
            // Flip a few random bytes, then maybe cut.
            for _ in 0..(rand() % 4 + 1) {
                let i = (rand() as usize) % frame.len();
                frame[i] = rand() as u8;
            }
            let cut = (rand() as usize) % (frame.len() + 1);
            let _ = gw.on_frame(&frame[..cut], &mut out);
        }
        // Pure noise of every length up to 60 bytes.
        for len in 0..=60 {
            let noise: Vec<u8> = (0..len).map(|_| rand() as u8).collect();
            let _ = gw.on_frame(&noise, &mut out);
        }
        let c = gw.counters();
        assert_eq!(c.arp_replies + c.echo_replies + c.ignored, 20_000 + 61);
    }
}
