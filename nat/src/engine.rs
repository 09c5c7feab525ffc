//! `Nat`: the translating half of one network's gateway, for IPv4 and (when the network has
//! an IPv6 side, [`NatConfig::ipv6`]) IPv6. It terminates containers' TCP in a smoltcp
//! `Interface` (Medium::Ip, any_ip, one address per family), re-originates each flow from an
//! ordinary host socket of the same family, and carries UDP datagrams and ICMP/ICMPv6 echoes
//! through per-flow host sockets. It runs
//! inside the network's data path thread: frames come in through [`Nat::on_frame`], host
//! socket readiness through its own epoll fd (which the data path polls), and everything it
//! sends to containers goes straight to the caller's sink.
//!
//! Structure: the engine only dispatches. Each protocol has one owner (`tcp/`, `udp.rs`,
//! `ping.rs`, the DNS server in `dns.rs`, the upstream relay in `dns_relay.rs`); owners work
//! through the narrow [`Ctx`] (config, clock, epoll, frame builder, counters, quotas,
//! destination policy) and generation-checked flow handles (`flow.rs`), and never call the
//! engine or each other: what one produces for another (a DNS-over-TCP message, a relayed
//! answer) is handed back here and routed.
//!
//! Limits: at most `max_flows` TCP+UDP+ICMP flows per network and `max_flows_per_endpoint`
//! per container; a new flow beyond either is refused at once (TCP RST, ICMP
//! administratively-prohibited for UDP/ICMP) and counted, while existing flows go on. UDP and
//! ICMP flows expire after `udp_timeout` without traffic; TCP flows end when both sides have
//! closed or one reset, or when they age out (see `tcp/mod.rs`). smoltcp matches sockets by a
//! linear scan, so per-packet cost grows with the number of live TCP flows.
//!
//! IPv6: a frame (EtherType 0x86DD) is translated when its source is in the network's IPv6
//! subnet (not the gateway) and its destination is outside it or the gateway's IPv6 address;
//! the rules, limits and refusals are IPv4's, with ICMPv6 destination-unreachable in place of
//! ICMP. Extension headers are not walked: a packet whose first next-header is not TCP, UDP or
//! ICMPv6 (hop-by-hop, routing, fragment, destination options, ...) is dropped, as IPv4
//! fragments are. A network without an IPv6 side drops every IPv6 frame.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent};
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv6Packet, UdpPacket,
};

pub use crate::config::{Ipv6Config, NatConfig, NatCounters, NatError, NatStats};
use crate::ctx::{Ctx, Unreachable};
use crate::device::{Framer, Sink};
use crate::dns;
use crate::dns::{DnsServer, Outcome};
use crate::dns_relay::{Client, Relay};
use crate::flow::{FlowInfo, Handle, Owner, untoken};
use crate::ping::Ping;
use crate::publish::{Protocol, Publish};
use crate::tcp::Tcp;
use crate::udp::Udp;

/// How often aging rules run.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The translation engine of one network.
pub struct Nat {
    ctx: Ctx,
    tcp: Tcp,
    udp: Udp,
    ping: Ping,
    dns: DnsServer,
    relay: Relay,
    /// Published host ports and the listener serving each.
    publishes: HashMap<(SocketAddr, Protocol), Handle, foldhash::fast::RandomState>,
    events: Vec<EpollEvent>,
    last_sweep: Instant,
    clock: fn() -> Instant,
}

impl Nat {
    /// Builds the engine.
    ///
    /// # Errors
    /// When the epoll instance cannot be created.
    pub fn new(cfg: NatConfig) -> io::Result<Self> {
        Self::with_clock(cfg, Instant::now)
    }

    /// Builds the engine reading time from `clock` (tests and fuzzing use a fake one).
    ///
    /// # Errors
    /// When the epoll instance cannot be created.
    pub fn with_clock(cfg: NatConfig, clock: fn() -> Instant) -> io::Result<Self> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let framer = Framer::new(cfg.gateway_mac);
        let now = clock();
        let mut ctx = Ctx::new(cfg, epoll, framer, now);
        let tcp = Tcp::new(&mut ctx);
        Ok(Self {
            ctx,
            tcp,
            udp: Udp::default(),
            ping: Ping::default(),
            dns: DnsServer::default(),
            relay: Relay::default(),
            publishes: HashMap::default(),
            events: vec![EpollEvent::empty(); 64],
            last_sweep: now,
            clock,
        })
    }

    /// The fd the data path must poll for readability; then call [`Nat::poll`].
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.ctx.epoll().0.as_fd()
    }

    /// Records that container `ip` (either family) has `mac` (frames to it are addressed
    /// there).
    pub fn set_neighbor(&mut self, ip: IpAddr, mac: [u8; 6]) {
        self.ctx.framer.set_neighbor(ip, mac);
    }

    /// Sets the MAC that frames to any container address without a MAC of its own (from
    /// [`Nat::set_neighbor`]) are addressed to: for a network serving one container whose
    /// MAC may change or whose addresses come from DHCP or SLAAC (never on a shared network).
    /// [`NatConfig::learn_neighbor`] keeps it up to date from received frames.
    pub fn set_default_neighbor(&mut self, mac: [u8; 6]) {
        self.ctx.framer.default_neighbor = Some(mac);
    }

    /// Forgets a container address.
    pub fn forget_neighbor(&mut self, ip: IpAddr) {
        self.ctx.framer.forget_neighbor(ip);
    }

    /// Handles one Ethernet frame (no virtio header) sent to the gateway MAC that the
    /// gateway's own services did not answer; replies and translated traffic go to `sink`.
    pub fn on_frame(&mut self, frame: &[u8], sink: &mut Sink<'_>) {
        self.ctx.now = (self.clock)();
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return;
        };
        if eth.dst_addr().0 != self.ctx.cfg.gateway_mac {
            return;
        }
        if self.ctx.cfg.learn_neighbor {
            let src = eth.src_addr();
            if src.is_unicast() && src.0 != self.ctx.cfg.gateway_mac {
                self.ctx.framer.default_neighbor = Some(src.0);
            }
        }
        match eth.ethertype() {
            EthernetProtocol::Ipv4 => self.on_ipv4(eth.payload(), sink),
            EthernetProtocol::Ipv6 => self.on_ipv6(eth.payload(), sink),
            _ => {}
        }
    }

    /// An IPv4 packet (the rest of the Ethernet frame).
    fn on_ipv4(&mut self, payload: &[u8], sink: &mut Sink<'_>) {
        let Ok(ip) = Ipv4Packet::new_checked(payload) else {
            return;
        };
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let cfg = &self.ctx.cfg;
        if !cfg.in_subnet(src)
            || src == cfg.gateway_ip
            || cfg.in_subnet(dst) && dst != cfg.gateway_ip && !cfg.is_dns(dst.into())
        {
            return;
        }
        if ip.more_frags() || ip.frag_offset() != 0 {
            return;
        }
        let len = usize::from(ip.total_len()).min(payload.len());
        let Some(packet) = payload.get(..len) else {
            return;
        };
        if self.ctx.cfg.internal && !self.ctx.cfg.is_service(dst.into()) {
            self.ctx.counters.internal_drops += 1;
            self.ctx
                .unreachable(packet, Unreachable::CommProhibited, sink);
            return;
        }
        match ip.next_header() {
            IpProtocol::Tcp => self.tcp.on_packet(&mut self.ctx, packet, sink),
            IpProtocol::Udp => self.on_udp(packet, sink),
            IpProtocol::Icmp => self.ping.on_packet(&mut self.ctx, packet, sink),
            _ => {}
        }
        self.route(sink);
    }

    /// An IPv6 packet (the rest of the Ethernet frame); dropped when the network has no
    /// IPv6 side. Extension headers are not walked (see the top of this file).
    fn on_ipv6(&mut self, payload: &[u8], sink: &mut Sink<'_>) {
        let Some(v6) = self.ctx.cfg.ipv6 else {
            return;
        };
        let Ok(ip) = Ipv6Packet::new_checked(payload) else {
            return;
        };
        if ip.version() != 6 {
            return;
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if !v6.in_subnet(src)
            || src == v6.gateway_ip
            || v6.in_subnet(dst) && dst != v6.gateway_ip && !self.ctx.cfg.is_dns(dst.into())
        {
            return;
        }
        // new_checked made sure the buffer holds the header and the payload length it claims.
        let len = ip.header_len() + usize::from(ip.payload_len());
        let Some(packet) = payload.get(..len) else {
            return;
        };
        let proto = ip.next_header();
        if !matches!(
            proto,
            IpProtocol::Tcp | IpProtocol::Udp | IpProtocol::Icmpv6
        ) {
            return;
        }
        if self.ctx.cfg.internal && !self.ctx.cfg.is_service(dst.into()) {
            self.ctx.counters.internal_drops += 1;
            self.ctx
                .unreachable(packet, Unreachable::CommProhibited, sink);
            return;
        }
        match proto {
            IpProtocol::Tcp => self.tcp.on_packet6(&mut self.ctx, packet, sink),
            IpProtocol::Udp => self.on_udp6(packet, sink),
            _ => self.ping.on_packet6(&mut self.ctx, packet, sink),
        }
        self.route(sink);
    }

    /// UDP: the DNS responder's port is served here, the rest is translated.
    fn on_udp(&mut self, packet: &[u8], sink: &mut Sink<'_>) {
        let Ok(ip) = Ipv4Packet::new_checked(packet) else {
            return;
        };
        let Ok(udp) = UdpPacket::new_checked(ip.payload()) else {
            return;
        };
        if udp.dst_port() != 53 || !self.ctx.cfg.serves_dns(ip.dst_addr().into()) {
            return self.udp.on_packet(&mut self.ctx, packet, sink);
        }
        let from = SocketAddr::new(ip.src_addr().into(), udp.src_port());
        self.on_dns_udp(from, udp.payload(), sink);
    }

    /// UDP over IPv6, as [`Nat::on_udp`].
    fn on_udp6(&mut self, packet: &[u8], sink: &mut Sink<'_>) {
        let Ok(ip) = Ipv6Packet::new_checked(packet) else {
            return;
        };
        let Ok(udp) = UdpPacket::new_checked(ip.payload()) else {
            return;
        };
        if udp.dst_port() != 53 || !self.ctx.cfg.serves_dns(ip.dst_addr().into()) {
            return self.udp.on_packet(&mut self.ctx, packet, sink);
        }
        let from = SocketAddr::new(ip.src_addr().into(), udp.src_port());
        self.on_dns_udp(from, udp.payload(), sink);
    }

    /// A DNS query over UDP to the DNS address (either family) from `from`.
    fn on_dns_udp(&mut self, from: SocketAddr, query: &[u8], sink: &mut Sink<'_>) {
        match self.dns.lookup(&mut self.ctx, from.ip(), query, None) {
            Outcome::Reply(b) => DnsServer::reply_udp(&mut self.ctx, from, b, usize::MAX, sink),
            Outcome::Drop => {}
            Outcome::Forward => {
                let limit = DnsServer::udp_limit(&self.ctx, from, query);
                self.relay
                    .forward(&mut self.ctx, Client::Udp(from), query.to_vec(), limit);
            }
        }
    }

    /// Hands what one owner produced for another to its destination: DNS-over-TCP messages
    /// to the DNS server (and on to the relay), relayed answers to their clients.
    fn route(&mut self, sink: &mut Sink<'_>) {
        loop {
            let messages = self.tcp.take_messages();
            let answers = self.relay.take_answers();
            if messages.is_empty() && answers.is_empty() {
                return;
            }
            for m in messages {
                match self
                    .dns
                    .lookup(&mut self.ctx, m.querier, &m.bytes, Some(65_535))
                {
                    Outcome::Reply(b) => {
                        self.tcp.send_local(&mut self.ctx, m.flow, &b, false, sink)
                    }
                    Outcome::Drop => {}
                    Outcome::Forward => {
                        self.tcp.expect_relayed(m.flow);
                        let client = Client::Tcp {
                            flow: m.flow,
                            querier: m.querier,
                        };
                        self.relay.forward(&mut self.ctx, client, m.bytes, 65_535);
                    }
                }
            }
            for a in answers {
                match a.client {
                    Client::Udp(to) => {
                        DnsServer::reply_udp(&mut self.ctx, to, a.bytes, a.limit, sink);
                    }
                    Client::Tcp { flow, .. } => {
                        self.tcp
                            .send_local(&mut self.ctx, flow, &a.bytes, true, sink);
                    }
                }
            }
        }
    }

    /// Serves host sockets that are ready, moves data between the two sides of every TCP
    /// flow, and runs the aging rules. Call when [`Nat::as_fd`] is readable and after
    /// [`Nat::poll_delay`] has passed.
    pub fn poll(&mut self, sink: &mut Sink<'_>) {
        self.ctx.now = (self.clock)();
        let mut events = std::mem::take(&mut self.events);
        // Bounded: at most 64 events per call; the epoll fd stays readable if more wait.
        let n = self.ctx.epoll().wait(&mut events, 0u8).unwrap_or(0);
        for ev in events.iter().take(n) {
            let Some((owner, h)) = untoken(ev.data()) else {
                continue;
            };
            let ctx = &mut self.ctx;
            match owner {
                Owner::Tcp => self.tcp.on_host_event(ctx, h, ev.events(), sink),
                Owner::TcpListener => self.tcp.on_accept(ctx, h, sink),
                Owner::Udp => self.udp.on_host_readable(ctx, h, sink),
                Owner::UdpListener => self.udp.on_listener_readable(ctx, h, sink),
                Owner::Ping => self.ping.on_host_readable(ctx, h, sink),
                Owner::Relay => self.relay.on_upstream(ctx, h),
            }
        }
        self.events = events;
        self.relay.expire(&mut self.ctx);
        self.tcp.poll(&mut self.ctx, sink);
        if self.ctx.now.saturating_duration_since(self.last_sweep) >= SWEEP_EVERY {
            self.last_sweep = self.ctx.now;
            self.udp.expire(&mut self.ctx);
            self.ping.expire(&mut self.ctx);
        }
        self.route(sink);
    }

    /// How soon [`Nat::poll`] must run again even without host events (smoltcp timers,
    /// pending dials and relays, aging).
    pub fn poll_delay(&mut self) -> Duration {
        let now = (self.clock)();
        let smol = self.tcp.poll_delay(&self.ctx).unwrap_or(SWEEP_EVERY);
        let relay = self
            .relay
            .next_deadline()
            .map_or(SWEEP_EVERY, |d| d.saturating_duration_since(now));
        smol.min(relay).min(SWEEP_EVERY)
    }

    /// Replaces what each querier may resolve (pushed by the daemon on every change).
    pub fn set_dns_view(&mut self, view: dns::DnsView) {
        self.dns.set_view(view);
    }

    /// Starts serving a published port on an already bound host socket (a listening TCP
    /// socket or a bound UDP socket, non-blocking).
    ///
    /// # Errors
    /// [`NatError::AlreadyPublished`], [`NatError::Internal`], or registration failure.
    pub fn add_publish(&mut self, p: Publish, socket: OwnedFd) -> Result<(), NatError> {
        if self.ctx.cfg.internal {
            return Err(NatError::Internal);
        }
        if p.host().is_ipv4() != p.container_ip.is_ipv4() {
            return Err(NatError::Family(format!(
                "{} and container address {} differ in family",
                p.host(),
                p.container_ip
            )));
        }
        if p.container_ip.is_ipv6() && self.ctx.cfg.ipv6.is_none() {
            return Err(NatError::Family(format!(
                "{}: the network has no IPv6 side",
                p.host()
            )));
        }
        let key = (p.host(), p.mapping.protocol);
        if self.publishes.contains_key(&key) {
            return Err(NatError::AlreadyPublished(format!("{}", p.host())));
        }
        let h = match p.mapping.protocol {
            Protocol::Tcp => self.tcp.add_listener(&self.ctx, p, socket)?,
            Protocol::Udp => self.udp.add_listener(&self.ctx, p, socket)?,
        };
        self.publishes.insert(key, h);
        Ok(())
    }

    /// Stops serving a published port (existing connections go on). Returns whether it was
    /// published.
    pub fn remove_publish(&mut self, host: SocketAddr, protocol: Protocol) -> bool {
        let Some(h) = self.publishes.remove(&(host, protocol)) else {
            return false;
        };
        match protocol {
            Protocol::Tcp => self.tcp.remove_listener(&self.ctx, h),
            Protocol::Udp => self.udp.remove_listener(&mut self.ctx, h),
        }
        true
    }

    /// Removes every published port leading to `ip` (the container left).
    pub fn remove_publishes_to(&mut self, ip: IpAddr) {
        let doomed: Vec<(SocketAddr, Protocol)> = self
            .publishes
            .iter()
            .filter(|((_, proto), h)| {
                let publish = match proto {
                    Protocol::Tcp => self.tcp.listener(**h).map(|l| l.publish),
                    Protocol::Udp => self.udp.listener(**h).map(|l| l.publish),
                };
                publish.is_some_and(|p| p.container_ip == ip)
            })
            .map(|(k, _)| *k)
            .collect();
        for (host, proto) in doomed {
            self.remove_publish(host, proto);
        }
    }

    /// Flow buffer bytes freed since the last call: the caller may ask the allocator to give
    /// memory back to the system once much was freed (10,000 closed flows free ~80 MiB).
    pub fn take_released(&mut self) -> usize {
        std::mem::take(&mut self.ctx.budget.released)
    }

    /// Sends a DNS answer to a UDP querier as the gateway would (tests of the IPv6 reply
    /// path, which the DNS view cannot reach yet).
    #[cfg(test)]
    pub(crate) fn reply_dns_udp(&mut self, to: SocketAddr, msg: Vec<u8>, sink: &mut Sink<'_>) {
        DnsServer::reply_udp(&mut self.ctx, to, msg, usize::MAX, sink);
    }

    #[cfg(test)]
    pub(crate) fn tcp_sizes(&self) -> (usize, usize, usize, usize) {
        self.tcp.sizes()
    }

    /// Up to `limit` live NAT flows (TCP, UDP, ICMP echo), and whether that is all of them.
    /// Called on request by the data path thread, never per packet.
    pub fn flows(&self, limit: usize) -> (Vec<FlowInfo>, bool) {
        let now = (self.clock)();
        let live = self.tcp.live() + self.udp.live() + self.ping.live();
        let mut out = Vec::with_capacity(live.min(limit));
        let complete = self.tcp.list(now, limit, &mut out)
            && self.udp.list(now, limit, &mut out)
            && self.ping.list(now, limit, &mut out);
        (out, complete)
    }

    /// Live flows and counters.
    pub fn stats(&self) -> NatStats {
        NatStats {
            tcp_flows: self.tcp.live(),
            udp_flows: self.udp.live(),
            icmp_flows: self.ping.live(),
            max_flows: self.ctx.cfg.max_flows,
            buffer_bytes: self.ctx.budget.used(),
            buffer_limit: self.ctx.cfg.nat_memory,
            counters: self.ctx.counters.clone(),
        }
    }
}
