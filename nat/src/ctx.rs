//! The narrow context every protocol owner works through: configuration, the clock, the
//! epoll set of host sockets, the frame builder towards containers, the counters, and the
//! two admission rules every new flow passes — the flow quotas (whole network and per
//! endpoint) and the destination policy (what a container may reach at all).
//!
//! Destination policy: a container reaches the world, never the daemon itself. Outbound
//! flows to 0.0.0.0/8, 127.0.0.0/8, multicast, the limited broadcast, 240.0.0.0/4, or any
//! address of the daemon's own network namespace are refused (ICMP administratively
//! prohibited, or RST) and counted. Only `host_loopback` maps anything to loopback, and only
//! the gateway address. Whether an address is the daemon's own is asked of the kernel: a UDP
//! socket connected to it (which sends nothing) gets a local address equal to the
//! destination exactly when the route is local. Answers are cached for a few seconds.
//!
//! IPv6 destinations refused the same way: `::`, `::1`, multicast (ff00::/8), link-local
//! (fe80::/10), site-local (fec0::/10), the IPv4-mapped (::ffff:0:0/96), IPv4-compatible
//! (::/96) and IPv4-translated (::ffff:0:0:0/96) forms (which could name the daemon's IPv4
//! loopback), the network's own IPv6 subnet, and the daemon's own addresses. NAT64's
//! 64:ff9b::/96 is an ordinary destination. `host_loopback` maps the IPv6 gateway address to
//! the host's ::1.
//!
//! Packets to containers of either family are built here ([`Ctx::send_ip`]); ICMP errors are
//! ICMPv4 (quoting the header and 8 bytes, RFC 792) or ICMPv6 (quoting as much of the packet
//! as fits in 1280 bytes, RFC 4443) after the family of the packet they answer.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use smoltcp::phy::{ChecksumCapabilities, PacketMeta};
use smoltcp::wire::{
    Icmpv4DstUnreachable, Icmpv4Packet, Icmpv4Repr, Icmpv6DstUnreachable, Icmpv6Packet, Icmpv6Repr,
    IpProtocol, IpRepr, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
};

use crate::device::{Framer, Sink};
use crate::engine::{NatConfig, NatCounters};
use crate::flow::{Handle, Owner, PerEndpoint, token};

/// How long the kernel's answer "is this address local?" is trusted.
const LOCAL_TTL: Duration = Duration::from_secs(5);
/// Most cached answers (the cache is cleared when full).
const LOCAL_CACHE_MAX: usize = 4096;

/// Where an outbound flow to `dst` goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// Dial this address from the host.
    Host(IpAddr),
    /// The gateway address on a network without host_loopback, or a DNS address other than
    /// the gateway's (its port 53 is the DNS responder's): nothing listens.
    ClosedGateway,
    /// A destination a container may never reach (counted).
    Forbidden,
}

/// Why a packet gets ICMP destination unreachable, in terms both families express.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unreachable {
    /// No route to the network (v4 code 0, v6 code 0 "no route").
    Net,
    /// The host does not answer (v4 code 1, v6 code 3 "address unreachable").
    Host,
    /// Nothing listens on the port (v4 code 3, v6 code 4).
    Port,
    /// The destination is forbidden (v4 code 10, v6 code 1 "administratively prohibited").
    HostProhibited,
    /// The flow is refused by policy or quota (v4 code 13, v6 code 1).
    CommProhibited,
}

impl Unreachable {
    fn v4(self) -> Icmpv4DstUnreachable {
        match self {
            Unreachable::Net => Icmpv4DstUnreachable::NetUnreachable,
            Unreachable::Host => Icmpv4DstUnreachable::HostUnreachable,
            Unreachable::Port => Icmpv4DstUnreachable::PortUnreachable,
            Unreachable::HostProhibited => Icmpv4DstUnreachable::HostProhibited,
            Unreachable::CommProhibited => Icmpv4DstUnreachable::CommProhibited,
        }
    }

    fn v6(self) -> Icmpv6DstUnreachable {
        match self {
            Unreachable::Net => Icmpv6DstUnreachable::NoRoute,
            Unreachable::Host => Icmpv6DstUnreachable::AddrUnreachable,
            Unreachable::Port => Icmpv6DstUnreachable::PortUnreachable,
            Unreachable::HostProhibited | Unreachable::CommProhibited => {
                Icmpv6DstUnreachable::AdminProhibit
            }
        }
    }
}

/// The parsed IP header of a packet from a container (options and extension headers
/// dropped), kept to answer it later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IpHeader {
    V4(Ipv4Repr),
    V6(Ipv6Repr),
}

impl IpHeader {
    pub(crate) fn src_addr(&self) -> IpAddr {
        match self {
            IpHeader::V4(r) => r.src_addr.into(),
            IpHeader::V6(r) => r.src_addr.into(),
        }
    }

    pub(crate) fn dst_addr(&self) -> IpAddr {
        match self {
            IpHeader::V4(r) => r.dst_addr.into(),
            IpHeader::V6(r) => r.dst_addr.into(),
        }
    }
}

/// The smallest IPv6 MTU: ICMPv6 errors are no longer (RFC 4443 2.4 c).
const IPV6_MIN_MTU: usize = 1280;

/// Why a new flow was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The network's flow table is full.
    NetworkFull,
    /// This endpoint holds its whole quota.
    EndpointQuota,
}

/// Bytes of flow buffers the network may hold (`--nat-memory`).
pub(crate) struct Budget {
    used: usize,
    limit: usize,
    /// Bytes given back since [`Nat::take_released`] last asked.
    pub(crate) released: usize,
}

impl Budget {
    /// Takes `n` bytes if they fit.
    pub(crate) fn take(&mut self, n: usize) -> bool {
        if self.used.saturating_add(n) > self.limit {
            return false;
        }
        self.used += n;
        true
    }

    pub(crate) fn give(&mut self, n: usize) {
        self.used = self.used.saturating_sub(n);
        self.released = self.released.saturating_add(n);
    }

    pub(crate) fn used(&self) -> usize {
        self.used
    }
}

/// Flows held per endpoint and in all.
#[derive(Default)]
pub(crate) struct Quota {
    total: usize,
    per_endpoint: PerEndpoint,
}

/// The context shared by the protocol owners of one network's NAT.
pub(crate) struct Ctx {
    pub cfg: NatConfig,
    /// The current time, set when the engine is entered (a fake clock in tests and fuzzing).
    pub now: Instant,
    /// Time zero of smoltcp's clock.
    start: Instant,
    epoll: Epoll,
    pub framer: Framer,
    pub counters: NatCounters,
    pub budget: Budget,
    quota: Quota,
    /// Scratch buffer for one datagram read from a host socket.
    pub dgram: Vec<u8>,
    local_cache: HashMap<IpAddr, (bool, Instant), foldhash::fast::RandomState>,
    probe: Option<UdpSocket>,
    probe6: Option<UdpSocket>,
    /// Errors already logged by [`Ctx::warn_once`], by kind.
    warned: Vec<&'static str>,
}

impl Ctx {
    pub(crate) fn new(cfg: NatConfig, epoll: Epoll, framer: Framer, now: Instant) -> Self {
        Self {
            now,
            start: now,
            epoll,
            framer,
            counters: NatCounters::default(),
            budget: Budget {
                used: 0,
                limit: cfg.nat_memory,
                released: 0,
            },
            quota: Quota::default(),
            dgram: vec![0; 65_536],
            local_cache: HashMap::default(),
            probe: None,
            probe6: None,
            warned: Vec::new(),
            cfg,
        }
    }

    pub(crate) fn epoll(&self) -> &Epoll {
        &self.epoll
    }

    /// smoltcp's notion of now.
    pub(crate) fn smol_now(&self) -> smoltcp::time::Instant {
        let us = self.now.saturating_duration_since(self.start).as_micros();
        smoltcp::time::Instant::from_micros(i64::try_from(us).unwrap_or(i64::MAX))
    }

    /// Admits one more flow for endpoint `ep`, or says why not (and counts the refusal).
    pub(crate) fn admit(&mut self, ep: IpAddr) -> Result<(), Refusal> {
        if self.quota.total >= self.cfg.max_flows {
            self.counters.refused_limit += 1;
            return Err(Refusal::NetworkFull);
        }
        if self.quota.per_endpoint.held_by(ep) >= self.cfg.max_flows_per_endpoint {
            self.counters.refused_endpoint_quota += 1;
            return Err(Refusal::EndpointQuota);
        }
        self.quota.total += 1;
        self.quota.per_endpoint.add(ep);
        Ok(())
    }

    /// Gives back what [`Ctx::admit`] took.
    pub(crate) fn release(&mut self, ep: IpAddr) {
        self.quota.total = self.quota.total.saturating_sub(1);
        self.quota.per_endpoint.sub(ep);
    }

    /// Where an outbound flow from a container to `dst` may go.
    pub(crate) fn target(&mut self, dst: IpAddr) -> Target {
        match dst {
            IpAddr::V4(v4) => self.target4(v4),
            IpAddr::V6(v6) => self.target6(v6),
        }
    }

    fn target4(&mut self, dst: Ipv4Addr) -> Target {
        if self.cfg.is_dns_only(dst.into()) {
            return Target::ClosedGateway;
        }
        if dst == self.cfg.gateway_ip {
            return if self.cfg.host_loopback {
                Target::Host(Ipv4Addr::LOCALHOST.into())
            } else {
                Target::ClosedGateway
            };
        }
        let o = dst.octets();
        let reserved = o[0] == 0
            || dst.is_loopback()
            || dst.is_multicast()
            || dst.is_broadcast()
            || o[0] >= 240
            || self.cfg.in_subnet(dst);
        if reserved || self.is_local(dst.into()) {
            self.counters.forbidden_destination += 1;
            return Target::Forbidden;
        }
        Target::Host(dst.into())
    }

    fn target6(&mut self, dst: Ipv6Addr) -> Target {
        if self.cfg.is_dns_only(dst.into()) {
            return Target::ClosedGateway;
        }
        if self.cfg.is_gateway(dst.into()) {
            return if self.cfg.host_loopback {
                Target::Host(Ipv6Addr::LOCALHOST.into())
            } else {
                Target::ClosedGateway
            };
        }
        if forbidden6(dst) || self.cfg.in_subnet_ip(dst.into()) || self.is_local(dst.into()) {
            self.counters.forbidden_destination += 1;
            return Target::Forbidden;
        }
        Target::Host(dst.into())
    }

    /// Whether `ip` is an address of the daemon's own network namespace.
    fn is_local(&mut self, ip: IpAddr) -> bool {
        if let Some(&(local, at)) = self.local_cache.get(&ip)
            && self.now.saturating_duration_since(at) < LOCAL_TTL
        {
            return local;
        }
        let probe = match ip {
            IpAddr::V4(_) => {
                if self.probe.is_none() {
                    self.probe = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok();
                }
                self.probe.as_ref()
            }
            IpAddr::V6(_) => {
                if self.probe6.is_none() {
                    self.probe6 = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).ok();
                }
                self.probe6.as_ref()
            }
        };
        // Fails closed: what cannot be checked counts as the daemon's own. An address with no
        // route is not ours (and its dial fails on its own).
        let local = match probe {
            None => true,
            Some(p) => match p.connect((ip, 9)) {
                Err(_) => false,
                Ok(()) => !matches!(p.local_addr(), Ok(a) if a.ip() != ip),
            },
        };
        if self.local_cache.len() >= LOCAL_CACHE_MAX {
            self.local_cache.clear();
        }
        self.local_cache.insert(ip, (local, self.now));
        local
    }

    /// How a published port's client at `ip` appears to the container: itself, or the
    /// gateway address of its family when it is the host (loopback, or for IPv6 one of the
    /// daemon's own addresses or a link-local one, which the container would look for on its
    /// own link).
    pub(crate) fn seen_client(&mut self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) if v4.is_loopback() => self.cfg.gateway_for(ip),
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => {
                if forbidden6(v6) || self.cfg.in_subnet_ip(ip) || self.is_local(ip) {
                    self.cfg.gateway_for(ip)
                } else {
                    ip
                }
            }
        }
    }

    /// Registers a host socket for `owner`'s entry `h`.
    pub(crate) fn register(
        &self,
        fd: BorrowedFd<'_>,
        owner: Owner,
        h: Handle,
        flags: EpollFlags,
    ) -> io::Result<()> {
        self.epoll
            .add(fd, EpollEvent::new(flags, token(owner, h)))
            .map_err(io::Error::from)
    }

    pub(crate) fn deregister(&self, fd: BorrowedFd<'_>) {
        let _ = self.epoll.delete(fd);
    }

    /// Logs `what` once per kind of problem (`kind`), at warn level.
    pub(crate) fn warn_once(&mut self, kind: &'static str, what: std::fmt::Arguments<'_>) {
        if !self.warned.contains(&kind) {
            self.warned.push(kind);
            tracing::warn!("{what}");
        }
    }

    /// Sends one IP packet to a container, from `src` to `dst` (one family; mixed families
    /// send nothing): `fill` writes the payload of `payload_len` bytes (with its checksum;
    /// TCP gets a partial one from the framer). Packets larger than the MTU are not sent.
    pub(crate) fn send_ip(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        next_header: IpProtocol,
        payload_len: usize,
        sink: &mut Sink<'_>,
        fill: impl FnOnce(&mut [u8]),
    ) {
        let ip = match (src, dst) {
            (IpAddr::V4(src_addr), IpAddr::V4(dst_addr)) => IpRepr::Ipv4(Ipv4Repr {
                src_addr,
                dst_addr,
                next_header,
                payload_len,
                hop_limit: 64,
            }),
            (IpAddr::V6(src_addr), IpAddr::V6(dst_addr)) => IpRepr::Ipv6(Ipv6Repr {
                src_addr,
                dst_addr,
                next_header,
                payload_len,
                hop_limit: 64,
            }),
            _ => return,
        };
        let hdr = ip.header_len();
        let total = hdr + payload_len;
        if total > self.cfg.mtu as usize {
            return;
        }
        self.framer.send(total, PacketMeta::default(), sink, |buf| {
            ip.emit(&mut *buf, &ChecksumCapabilities::default());
            if let Some(payload) = buf.get_mut(hdr..) {
                fill(payload);
            }
        });
    }

    /// Answers `packet` (an IP packet from a container, either family) with destination
    /// unreachable from the gateway: ICMP quoting its header and first 8 payload bytes (RFC
    /// 792), or ICMPv6 quoting as much of it as fits in 1280 bytes (RFC 4443).
    pub(crate) fn unreachable(&mut self, packet: &[u8], reason: Unreachable, sink: &mut Sink<'_>) {
        match packet.first().map(|b| b >> 4) {
            Some(4) => {
                let Ok(orig) = Ipv4Packet::new_checked(packet) else {
                    return;
                };
                let Ok(header) = Ipv4Repr::parse(&orig, &ChecksumCapabilities::ignored()) else {
                    return;
                };
                let payload = orig.payload();
                let quoted = payload.get(..payload.len().min(8)).unwrap_or(&[]);
                self.unreachable_from(IpHeader::V4(header), quoted, reason, sink);
            }
            Some(6) => {
                let Ok(orig) = Ipv6Packet::new_checked(packet) else {
                    return;
                };
                let Ok(header) = Ipv6Repr::parse(&orig) else {
                    return;
                };
                self.unreachable_from(IpHeader::V6(header), orig.payload(), reason, sink);
            }
            _ => {}
        }
    }

    /// Destination unreachable for a packet known by its parsed header and the first bytes
    /// of its payload (ICMPv4 quotes 8 of them, ICMPv6 what fits in 1280 bytes).
    pub(crate) fn unreachable_from(
        &mut self,
        header: IpHeader,
        quoted: &[u8],
        reason: Unreachable,
        sink: &mut Sink<'_>,
    ) {
        match header {
            IpHeader::V4(header) => {
                let icmp = Icmpv4Repr::DstUnreachable {
                    reason: reason.v4(),
                    header,
                    data: quoted.get(..quoted.len().min(8)).unwrap_or(&[]),
                };
                let gw = self.answering(header.dst_addr.into(), header.src_addr.into());
                self.send_ip(
                    gw,
                    header.src_addr.into(),
                    IpProtocol::Icmp,
                    icmp.buffer_len(),
                    sink,
                    |buf| {
                        icmp.emit(
                            &mut Icmpv4Packet::new_unchecked(buf),
                            &ChecksumCapabilities::default(),
                        );
                    },
                );
            }
            IpHeader::V6(header) => {
                let IpAddr::V6(gw) = self.answering(header.dst_addr.into(), header.src_addr.into())
                else {
                    return;
                };
                // Our IPv6 header, the ICMPv6 header, the quoted header: the rest of 1280
                // bytes (and of the MTU, which is at least that on IPv6 networks) is quoted.
                let room = IPV6_MIN_MTU
                    .min(self.cfg.mtu as usize)
                    .saturating_sub(40 + 8 + 40);
                let icmp = Icmpv6Repr::DstUnreachable {
                    reason: reason.v6(),
                    header,
                    data: quoted.get(..quoted.len().min(room)).unwrap_or(&[]),
                };
                let dst = header.src_addr;
                self.send_ip(
                    gw.into(),
                    dst.into(),
                    IpProtocol::Icmpv6,
                    icmp.buffer_len(),
                    sink,
                    |buf| {
                        icmp.emit(
                            &gw,
                            &dst,
                            &mut Icmpv6Packet::new_unchecked(buf),
                            &ChecksumCapabilities::default(),
                        );
                    },
                );
            }
        }
    }
}

impl Ctx {
    /// The source of an ICMP error about a packet from `src` to `dst`: `dst` itself when it is
    /// one of the network's service addresses (the gateway, the DNS address), else the
    /// gateway of the family.
    fn answering(&self, dst: IpAddr, src: IpAddr) -> IpAddr {
        if self.cfg.is_service(dst) {
            dst
        } else {
            self.cfg.gateway_for(src)
        }
    }
}

/// IPv6 destinations no container may reach (see the top of this file).
pub(crate) fn forbidden6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    let ipv4_forms = seg[..5] == [0; 5] && (seg[5] == 0 || seg[5] == 0xffff) // ::/96, ::ffff:0:0/96
        || seg[..4] == [0; 4] && seg[4] == 0xffff && seg[5] == 0; // ::ffff:0:0:0/96
    ipv4_forms
        || ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || seg[0] & 0xffc0 == 0xfe80 // link-local
        || seg[0] & 0xffc0 == 0xfec0 // site-local
}
