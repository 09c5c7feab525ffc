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

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use smoltcp::phy::{ChecksumCapabilities, PacketMeta};
use smoltcp::wire::{
    Icmpv4DstUnreachable, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr,
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
    Host(Ipv4Addr),
    /// The gateway address on a network without host_loopback: nothing listens.
    ClosedGateway,
    /// A destination a container may never reach (counted).
    Forbidden,
}

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
    local_cache: HashMap<Ipv4Addr, (bool, Instant), foldhash::fast::RandomState>,
    probe: Option<UdpSocket>,
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
    pub(crate) fn target(&mut self, dst: Ipv4Addr) -> Target {
        if dst == self.cfg.gateway_ip {
            return if self.cfg.host_loopback {
                Target::Host(Ipv4Addr::LOCALHOST)
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
        if reserved || self.is_local(dst) {
            self.counters.forbidden_destination += 1;
            return Target::Forbidden;
        }
        Target::Host(dst)
    }

    /// Whether `ip` is an address of the daemon's own network namespace.
    fn is_local(&mut self, ip: Ipv4Addr) -> bool {
        if let Some(&(local, at)) = self.local_cache.get(&ip)
            && self.now.saturating_duration_since(at) < LOCAL_TTL
        {
            return local;
        }
        if self.probe.is_none() {
            self.probe = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok();
        }
        // Fails closed: what cannot be checked counts as the daemon's own. An address with no
        // route is not ours (and its dial fails on its own).
        let local = match self.probe.as_ref() {
            None => true,
            Some(p) => match p.connect((ip, 9)) {
                Err(_) => false,
                Ok(()) => !matches!(p.local_addr(), Ok(SocketAddr::V4(a)) if *a.ip() != ip),
            },
        };
        if self.local_cache.len() >= LOCAL_CACHE_MAX {
            self.local_cache.clear();
        }
        self.local_cache.insert(ip, (local, self.now));
        local
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

    /// Sends one IPv4 packet to a container: `ip` gives addresses, protocol and payload
    /// length; `fill` writes the payload (with its checksum; TCP gets a partial one from the
    /// framer). Packets larger than the MTU are not sent.
    pub(crate) fn send_ipv4(
        &mut self,
        ip: Ipv4Repr,
        sink: &mut Sink<'_>,
        fill: impl FnOnce(&mut [u8]),
    ) {
        let hdr = ip.buffer_len();
        let total = hdr + ip.payload_len;
        if total > self.cfg.mtu as usize {
            return;
        }
        self.framer.send(total, PacketMeta::default(), sink, |buf| {
            ip.emit(
                &mut Ipv4Packet::new_unchecked(&mut *buf),
                &ChecksumCapabilities::default(),
            );
            if let Some(payload) = buf.get_mut(hdr..) {
                fill(payload);
            }
        });
    }

    /// Answers `packet` (an IPv4 packet from a container) with ICMP destination unreachable
    /// from the gateway, quoting its header and first 8 payload bytes as RFC 792 asks.
    pub(crate) fn unreachable(
        &mut self,
        packet: &[u8],
        reason: Icmpv4DstUnreachable,
        sink: &mut Sink<'_>,
    ) {
        let Ok(orig) = Ipv4Packet::new_checked(packet) else {
            return;
        };
        let Ok(header) = Ipv4Repr::parse(&orig, &ChecksumCapabilities::ignored()) else {
            return;
        };
        let payload = orig.payload();
        let quoted = payload.get(..payload.len().min(8)).unwrap_or(&[]);
        self.unreachable_from(header, quoted, reason, sink);
    }

    /// ICMP destination unreachable for a packet known by its parsed header and the first
    /// bytes of its payload.
    pub(crate) fn unreachable_from(
        &mut self,
        header: Ipv4Repr,
        quoted: &[u8],
        reason: Icmpv4DstUnreachable,
        sink: &mut Sink<'_>,
    ) {
        let icmp = Icmpv4Repr::DstUnreachable {
            reason,
            header,
            data: quoted,
        };
        let ip = Ipv4Repr {
            src_addr: self.cfg.gateway_ip,
            dst_addr: header.src_addr,
            next_header: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            hop_limit: 64,
        };
        self.send_ipv4(ip, sink, |buf| {
            icmp.emit(
                &mut Icmpv4Packet::new_unchecked(buf),
                &ChecksumCapabilities::default(),
            );
        });
    }
}
