//! TCP translation: every container connection is terminated in smoltcp and re-originated
//! from an ordinary host socket, and bytes are copied between the two sockets' buffers.
//!
//! Model, outbound (`dial.rs`): a SYN from a container for a new 4-tuple creates a smoltcp
//! socket that listens on the real destination with its SYN-ACK paused, and starts a
//! non-blocking dial of that destination from the host. The container's handshake completes
//! only once the dial has: if the far side refuses, the container gets an RST; if it is
//! unreachable or does not answer within `connect_timeout`, an ICMP destination-unreachable.
//! The SYN itself is never kept: what the answer needs (addresses, ports, sequence number,
//! the IP header and 8 bytes to quote) is parsed into a [`Syn`] once.
//!
//! Model, published ports (`accept.rs`): an accepted host connection opens a smoltcp
//! connection to the container whose source is the real client address (the gateway
//! address for loopback clients, which a container would drop as martian).
//!
//! Model, local services (`local.rs`): connections to the gateway's DNS port are served in
//! the daemon; their length-prefixed messages are handed to the engine.
//!
//! Both families: the interface holds the IPv4 gateway address and, on networks with an
//! IPv6 side, the IPv6 one (each with a default route through it, which is what any_ip
//! needs to accept segments for far addresses); flows are keyed by their socket addresses,
//! so the rest does not care which family a flow is. smoltcp derives the MSS from the MTU
//! per family (MTU − 40 for IPv4, MTU − 60 for IPv6).
//!
//! Copying: `recv`/`send` hand us slices of smoltcp's ring buffers, which we `write`/`read`
//! to/from the host socket directly: one copy per direction and no allocation per packet.
//! Host sockets are edge-triggered; `host_readable`/`host_writable` remember readiness we
//! could not use yet because smoltcp's buffers were full.
//!
//! Closing: a container FIN becomes `shutdown(Write)` on the host socket and a host EOF
//! becomes a FIN to the container (half-close passes through both ways). An RST from either
//! side aborts the other (host side via SO_LINGER 0). A flow leaves the table (and its
//! quota) as soon as both sides are done; there is no TIME-WAIT retention.
//!
//! Dispatch is O(1) in the number of flows: a segment finds its flow by a hash of its
//! 4-tuple, and each flow's smoltcp socket sits alone in its own `SocketSet`, so that
//! smoltcp's interface (which scans the set it is given, for ingress and egress) touches only
//! that socket. Timers are a heap of per-flow deadlines (`timer.rs`): smoltcp's own
//! (retransmission, delayed ACK), the dial deadline, buffer shrinking and aging; a poll
//! services only the flows that came due.
//!
//! Aging (like conntrack): a handshake the container never completes
//! or answers with RST (it gave up before the dial finished) ends the flow; so do a flow idle
//! in one direction's close for `fin_timeout` (container closed, host did not) or
//! `close_wait_timeout` (host closed, container did not), and an established flow idle for
//! `tcp_idle_timeout`.
//!
//! Limits: buffers start at 4 KiB each way and grow with the traffic up to
//! `tcp_rx_buffer`/`tcp_tx_buffer`, within the network's `nat_memory` budget
//! (`buffers.rs`); every flow counts against the network's and its endpoint's flow quota;
//! at most `MAX_DIALS_PER_ENDPOINT` dials pending per endpoint.

mod accept;
mod buffers;
mod dial;
mod direct;
mod local;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::sys::epoll::EpollFlags;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{Socket, State};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Packet, Ipv6Packet, TcpPacket};
use socket2::SockRef;

pub(crate) use accept::Listener;
pub(crate) use dial::{Syn, send_rst};
#[cfg(test)]
pub(crate) use local::MAX_PER_ENDPOINT as MAX_LOCAL_PER_ENDPOINT;

use crate::ctx::Ctx;
use crate::device::{OneShot, Sink};
use crate::flow::{FlowInfo, FlowKey, FlowProtocol, Handle, Keys, Owner, PerEndpoint, Table};
use crate::timer::Timers;

/// A message received on a local-service connection, for the engine to answer.
pub(crate) struct LocalMessage {
    pub flow: Handle,
    pub querier: IpAddr,
    pub bytes: Vec<u8>,
}

enum Phase {
    /// Waiting for the host dial; the SYN's essentials are kept for the answer.
    Dialing { deadline: Instant, syn: Syn },
    /// Both sides connected (or connecting, for published ports).
    Open,
}

/// The far side of a flow.
enum Far {
    /// A host socket.
    Host(HostSide),
    /// A service in the daemon (DNS over TCP): bytes received and not yet a whole message.
    Local { inbuf: Vec<u8>, outstanding: u16 },
}

struct HostSide {
    stream: TcpStream,
    phase: Phase,
    host_readable: bool,
    host_writable: bool,
    host_eof: bool,
    shut_wr: bool,
    peer_fin: bool,
}

/// A smoltcp socket alone in its own set, so that polling the interface for it is O(1).
pub(crate) struct Conn {
    set: SocketSet<'static>,
    handle: SocketHandle,
}

impl Conn {
    fn new(socket: Socket<'static>) -> Self {
        let mut set = SocketSet::new(Vec::with_capacity(1));
        let handle = set.add(socket);
        Self { set, handle }
    }

    fn sock(&self) -> &Socket<'static> {
        self.set.get::<Socket>(self.handle)
    }

    fn sock_mut(&mut self) -> &mut Socket<'static> {
        self.set.get_mut::<Socket>(self.handle)
    }
}

/// One TCP flow.
pub(crate) struct TcpFlow {
    conn: Conn,
    key: FlowKey,
    /// The deadline this flow holds in the timer heap (`None` while it is being serviced).
    wake: Option<Instant>,
    far: Far,
    /// Last time a segment or a byte moved.
    last: Instant,
    /// How fast the container's data drains to the host (receive-buffer growth).
    rx_rate: buffers::Rate,
    /// When the flow was made.
    opened: Instant,
    /// Payload bytes written to the host socket.
    to_remote: u64,
    /// Payload bytes read from the host socket into the container's stream.
    to_container: u64,
}

/// TCP flows of one network and the smoltcp interface that terminates them.
pub(crate) struct Tcp {
    iface: Interface,
    /// An empty set: segments for no flow are polled against it (smoltcp answers RST).
    strays: SocketSet<'static>,
    flows: Table<TcpFlow>,
    timers: Timers<Handle>,
    keys: Keys,
    listeners: Table<Listener>,
    dials: PerEndpoint,
    local_conns: PerEndpoint,
    messages: Vec<LocalMessage>,
    /// Reused list of the flows that came due.
    scratch: Vec<Handle>,
    /// Reused buffer for segments rewritten by direct receive.
    rewrite: Vec<u8>,
}

/// A flow idle this long gives its buffers back (down to 4 KiB each way).
const IDLE_SHRINK: Duration = Duration::from_secs(2);

const HOST_EVENTS: EpollFlags = EpollFlags::EPOLLIN
    .union(EpollFlags::EPOLLOUT)
    .union(EpollFlags::EPOLLRDHUP)
    .union(EpollFlags::EPOLLET);

impl Tcp {
    pub(crate) fn new(ctx: &mut Ctx) -> Self {
        let mut sink = |_: &[u8]| {};
        let mut dev = OneShot {
            rx: None,
            framer: &mut ctx.framer,
            sink: &mut sink,
            mtu: ctx.cfg.mtu as usize,
        };
        let mut iface = Interface::new(
            Config::new(HardwareAddress::Ip),
            &mut dev,
            smoltcp::time::Instant::ZERO,
        );
        iface.set_any_ip(true);
        let gw = ctx.cfg.gateway_ip;
        let prefix = ctx.cfg.subnet.1;
        let v6 = ctx.cfg.ipv6;
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(gw), prefix));
            if let Some(v6) = v6 {
                let _ = a.push(IpCidr::new(IpAddress::Ipv6(v6.gateway_ip), v6.subnet.1));
            }
        });
        let _ = iface.routes_mut().add_default_ipv4_route(gw);
        if let Some(v6) = v6 {
            let _ = iface.routes_mut().add_default_ipv6_route(v6.gateway_ip);
        }
        Self {
            iface,
            strays: SocketSet::new(Vec::new()),
            flows: Table::default(),
            timers: Timers::default(),
            keys: HashMap::default(),
            listeners: Table::default(),
            dials: PerEndpoint::default(),
            local_conns: PerEndpoint::default(),
            messages: Vec::new(),
            scratch: Vec::new(),
            rewrite: Vec::new(),
        }
    }

    /// Live flows (outbound, published and local).
    pub(crate) fn live(&self) -> usize {
        self.flows.len()
    }

    /// Up to `limit` live NAT flows into `out` (connections to the gateway's own DNS service
    /// are not NAT flows and are left out); false if some were left out for the limit.
    pub(crate) fn list(&self, now: Instant, limit: usize, out: &mut Vec<FlowInfo>) -> bool {
        for (_, f) in self.flows.iter() {
            let Far::Host(host) = &f.far else { continue };
            if out.len() >= limit {
                return false;
            }
            let state = match host.phase {
                Phase::Dialing { .. } => "DIALING",
                Phase::Open => state_name(f.conn.sock().state()),
            };
            out.push(FlowInfo {
                protocol: FlowProtocol::Tcp,
                container: f.key.container,
                remote: f.key.peer,
                state,
                age: now.saturating_duration_since(f.opened),
                to_remote: f.to_remote,
                to_container: f.to_container,
            });
        }
        true
    }

    /// (flows, 4-tuple index entries, table slots, timer entries): what churn must not grow.
    #[cfg(test)]
    pub(crate) fn sizes(&self) -> (usize, usize, usize, usize) {
        (
            self.flows.len(),
            self.keys.len(),
            self.flows.slots(),
            self.timers.len(),
        )
    }

    /// Messages received on local-service connections since the last call.
    pub(crate) fn take_messages(&mut self) -> Vec<LocalMessage> {
        std::mem::take(&mut self.messages)
    }

    /// Feeds one IP packet (or none) to flow `h`'s socket, lets it transmit, and books its
    /// next deadline.
    fn poll_flow(&mut self, ctx: &mut Ctx, h: Handle, rx: Option<&[u8]>, sink: &mut Sink<'_>) {
        let Some(flow) = self.flows.get_mut(h) else {
            return;
        };
        poll_with(&mut self.iface, &mut flow.conn.set, ctx, rx, sink);
        self.reschedule(ctx, h);
    }

    /// Feeds a segment that belongs to no flow to smoltcp, which answers it with RST.
    fn poll_stray(&mut self, ctx: &mut Ctx, packet: &[u8], sink: &mut Sink<'_>) {
        poll_with(&mut self.iface, &mut self.strays, ctx, Some(packet), sink);
    }

    /// Books flow `h`'s next deadline: the earliest of smoltcp's timers, its dial deadline,
    /// buffer shrinking and aging. A deadline later than the one booked is left for when
    /// the booked one comes due (see `timer.rs`).
    fn reschedule(&mut self, ctx: &Ctx, h: Handle) {
        let Some(flow) = self.flows.get_mut(h) else {
            return;
        };
        let smol_now = ctx.smol_now();
        let mut at = match self.iface.poll_at(smol_now, &flow.conn.set) {
            Some(t) if t <= smol_now => Some(ctx.now),
            Some(t) => ctx
                .now
                .checked_add(Duration::from_micros((t - smol_now).total_micros())),
            None => None,
        };
        let mut sooner = |t: Option<Instant>| {
            if let Some(t) = t {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
        };
        sooner(limit(ctx, flow).and_then(|l| flow.last.checked_add(l)));
        if let Far::Host(HostSide {
            phase: Phase::Dialing { deadline, .. },
            ..
        }) = &flow.far
        {
            sooner(Some(*deadline));
        }
        if buffers::charged(flow.conn.sock()) > 2 * buffers::MIN {
            sooner(Some(flow.last + IDLE_SHRINK));
        }
        let Some(at) = at else {
            return;
        };
        if flow.wake.is_none_or(|w| at < w) {
            flow.wake = Some(at);
            self.timers.schedule(at, h);
        }
    }

    /// How soon a flow comes due.
    pub(crate) fn poll_delay(&self, ctx: &Ctx) -> Option<Duration> {
        self.timers
            .next()
            .map(|t| t.saturating_duration_since(ctx.now))
    }

    /// A TCP packet from a container (a complete IPv4 packet whose length the engine checked).
    pub(crate) fn on_packet(&mut self, ctx: &mut Ctx, packet: &[u8], sink: &mut Sink<'_>) {
        let Ok(ip) = Ipv4Packet::new_checked(packet) else {
            return;
        };
        let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
            return;
        };
        let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
        let ihl = usize::from(ip.header_len());
        self.on_segment(ctx, packet, (src, dst), ihl, &tcp, sink);
    }

    /// A TCP packet from a container over IPv6 (a complete packet, TCP right after the fixed
    /// header, as the engine checked).
    pub(crate) fn on_packet6(&mut self, ctx: &mut Ctx, packet: &[u8], sink: &mut Sink<'_>) {
        let Ok(ip) = Ipv6Packet::new_checked(packet) else {
            return;
        };
        let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
            return;
        };
        let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
        self.on_segment(ctx, packet, (src, dst), ip.header_len(), &tcp, sink);
    }

    /// A segment of either family: `packet` is the whole IP packet, `ihl` its IP header's
    /// length, `tcp` the segment after it.
    #[inline]
    fn on_segment(
        &mut self,
        ctx: &mut Ctx,
        packet: &[u8],
        (src, dst): (IpAddr, IpAddr),
        ihl: usize,
        tcp: &TcpPacket<&[u8]>,
        sink: &mut Sink<'_>,
    ) {
        let key = FlowKey::new(
            SocketAddr::new(src, tcp.src_port()),
            SocketAddr::new(dst, tcp.dst_port()),
        );
        if let Some(&h) = self.keys.get(&key) {
            if let Some(f) = self.flows.get_mut(h) {
                f.last = ctx.now;
            }
            if !self.direct(ctx, h, packet, ihl, tcp, sink) {
                self.poll_flow(ctx, h, Some(packet), sink);
            }
            self.pump(ctx, h, sink);
            return;
        }
        if !(tcp.syn() && !tcp.ack() && !tcp.rst()) {
            self.poll_stray(ctx, packet, sink);
            return;
        }
        let Some(syn) = Syn::parse(packet) else {
            return;
        };
        let started = if tcp.dst_port() == 53 && ctx.cfg.serves_dns(dst) {
            self.open_local(ctx, key, &syn, sink)
        } else {
            self.start_dial(ctx, key, &syn, sink)
        };
        if let Some(h) = started {
            self.poll_flow(ctx, h, Some(packet), sink);
        }
    }

    /// Readiness of a flow's host socket.
    pub(crate) fn on_host_event(
        &mut self,
        ctx: &mut Ctx,
        h: Handle,
        flags: EpollFlags,
        sink: &mut Sink<'_>,
    ) {
        let Some(TcpFlow {
            far: Far::Host(host),
            ..
        }) = self.flows.get_mut(h)
        else {
            return;
        };
        if flags.intersects(
            EpollFlags::EPOLLIN
                | EpollFlags::EPOLLRDHUP
                | EpollFlags::EPOLLHUP
                | EpollFlags::EPOLLERR,
        ) {
            host.host_readable = true;
        }
        if flags.intersects(EpollFlags::EPOLLOUT | EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP) {
            host.host_writable = true;
        }
        if matches!(host.phase, Phase::Dialing { .. }) {
            self.finish_dial(ctx, h, sink);
        } else {
            self.pump(ctx, h, sink);
        }
    }

    /// Services the flows whose deadline has come: smoltcp's timers, dial deadlines,
    /// buffer shrinking and aging. Flows are otherwise pumped when something happens to
    /// them: a segment from the container, an event on the host socket, an answer for a
    /// local connection.
    pub(crate) fn poll(&mut self, ctx: &mut Ctx, sink: &mut Sink<'_>) {
        let mut due = std::mem::take(&mut self.scratch);
        due.clear();
        while let Some((at, h)) = self.timers.pop_due(ctx.now) {
            if let Some(f) = self.flows.get_mut(h)
                && f.wake == Some(at)
            {
                f.wake = None;
                due.push(h);
            }
        }
        for &h in &due {
            self.service(ctx, h, sink);
        }
        self.scratch = due;
        let flows = &self.flows;
        self.timers.compact(flows.len(), |at, h| {
            flows.get(h).is_some_and(|f| f.wake == Some(at))
        });
    }

    /// One flow's deadline came: runs smoltcp's timers for it, moves what can move, and
    /// ends it if its dial, handshake, close or idleness has lasted too long (see the top of
    /// this file).
    fn service(&mut self, ctx: &mut Ctx, h: Handle, sink: &mut Sink<'_>) {
        if let Some(TcpFlow {
            far:
                Far::Host(HostSide {
                    phase: Phase::Dialing { deadline, syn },
                    ..
                }),
            ..
        }) = self.flows.get(h)
            && *deadline <= ctx.now
        {
            let syn = *syn;
            self.remove(ctx, h, false);
            let e = io::Error::from_raw_os_error(libc::ETIMEDOUT);
            dial::dial_failed(ctx, &syn, &e, sink);
            return;
        }
        self.poll_flow(ctx, h, None, sink);
        self.pump(ctx, h, sink);
        let now = ctx.now;
        let Some(flow) = self.flows.get_mut(h) else {
            return;
        };
        let idle = now.saturating_duration_since(flow.last);
        if idle >= IDLE_SHRINK {
            buffers::shrink_idle(ctx, flow.conn.sock_mut());
        }
        if limit(ctx, flow).is_some_and(|l| idle >= l) {
            tracing::debug!(
                "tcp: {} -> {} idle {:?} in {}: expired",
                flow.key.container,
                flow.key.peer,
                idle,
                flow.conn.sock().state()
            );
            ctx.counters.expired += 1;
            flow.conn.sock_mut().abort();
            self.poll_flow(ctx, h, None, sink);
            self.remove(ctx, h, true);
            return;
        }
        self.reschedule(ctx, h);
    }

    /// Moves bytes between the two sides of one flow and handles closing.
    fn pump(&mut self, ctx: &mut Ctx, h: Handle, sink: &mut Sink<'_>) {
        let Some(flow) = self.flows.get_mut(h) else {
            return;
        };
        let sock = flow.conn.sock_mut();
        let dialing = matches!(
            flow.far,
            Far::Host(HostSide {
                phase: Phase::Dialing { .. },
                ..
            })
        );
        if sock.state() == State::Listen && !dialing {
            // The SYN was processed when the flow was made, so Listen means the container
            // reset the handshake (it gave up before the dial finished and answered our
            // SYN-ACK with RST) and smoltcp went back to listening.
            self.remove(ctx, h, true);
            return;
        }
        let (moved, done, reset) = match &mut flow.far {
            Far::Local { inbuf, outstanding } => {
                let querier = flow.key.endpoint();
                let (moved, done) =
                    local::pump(sock, inbuf, *outstanding, h, querier, &mut self.messages);
                (moved, done, false)
            }
            Far::Host(host) => {
                if matches!(host.phase, Phase::Dialing { .. }) {
                    return;
                }
                let queued = sock.recv_queue();
                let p = pump_host(sock, host);
                flow.to_remote += p.to_host as u64;
                flow.to_container += p.to_container as u64;
                if host.host_writable {
                    buffers::grow_rx(ctx, sock, queued, &mut flow.rx_rate, p.to_host);
                }
                if host.host_readable && !sock.can_send() {
                    buffers::grow_tx(ctx, sock, p.to_container);
                }
                (p.moved, p.done, p.reset)
            }
        };
        if moved {
            flow.last = ctx.now;
            self.poll_flow(ctx, h, None, sink);
        }
        if done {
            self.remove(ctx, h, reset);
        }
    }

    /// Drops a flow; `reset` closes the host side with RST (SO_LINGER 0).
    fn remove(&mut self, ctx: &mut Ctx, h: Handle, reset: bool) {
        let Some(flow) = self.flows.remove(h) else {
            return;
        };
        let ep = flow.key.endpoint();
        match &flow.far {
            Far::Host(host) => {
                ctx.deregister(host.stream.as_fd());
                if reset {
                    let _ = SockRef::from(&host.stream).set_linger(Some(Duration::ZERO));
                }
                if matches!(host.phase, Phase::Dialing { .. }) {
                    self.dials.sub(ep);
                }
            }
            Far::Local { .. } => self.local_conns.sub(ep),
        }
        ctx.budget.give(buffers::charged(flow.conn.sock()));
        self.keys.remove(&flow.key);
        ctx.release(ep);
        if self.flows.is_empty() {
            // The table gave its slots back; so do the index and the deadline heap.
            self.keys = Keys::default();
            self.timers = Timers::default();
        }
    }

    /// Enters a new flow (socket, key, host side) in the table and the epoll set; None if
    /// its host socket cannot be watched (the flow is dropped and its buffers given back).
    fn insert(
        &mut self,
        ctx: &mut Ctx,
        key: FlowKey,
        socket: Socket<'static>,
        far: Far,
    ) -> Option<Handle> {
        let flow = TcpFlow {
            conn: Conn::new(socket),
            key,
            wake: None,
            far,
            last: ctx.now,
            rx_rate: buffers::Rate::new(ctx.now),
            opened: ctx.now,
            to_remote: 0,
            to_container: 0,
        };
        let h = self.flows.insert(flow);
        if let Some(TcpFlow {
            far: Far::Host(host),
            ..
        }) = self.flows.get(h)
            && ctx
                .register(host.stream.as_fd(), Owner::Tcp, h, HOST_EVENTS)
                .is_err()
        {
            if let Some(f) = self.flows.remove(h) {
                ctx.budget.give(buffers::charged(f.conn.sock()));
            }
            return None;
        }
        self.keys.insert(key, h);
        self.reschedule(ctx, h);
        Some(h)
    }
}

/// How long flow `f` may stay idle in its present state before it is ended (None while it
/// dials: a dial has its own deadline).
fn limit(ctx: &Ctx, f: &TcpFlow) -> Option<Duration> {
    let state = f.conn.sock().state();
    Some(match (&f.far, state) {
        (
            Far::Host(HostSide {
                phase: Phase::Dialing { .. },
                ..
            }),
            _,
        ) => return None,
        (_, State::Listen | State::SynReceived | State::SynSent) => ctx.cfg.connect_timeout,
        (Far::Local { .. }, _) => local::IDLE_TIMEOUT,
        (Far::Host(host), _) if host.peer_fin && !host.host_eof => ctx.cfg.fin_timeout,
        (Far::Host(host), _) if host.host_eof && !host.peer_fin => ctx.cfg.close_wait_timeout,
        (Far::Host(_), State::Established) => ctx.cfg.tcp_idle_timeout,
        _ => ctx.cfg.fin_timeout,
    })
}

/// Feeds `rx` (or nothing) to smoltcp for the sockets in `sockets` and lets them transmit.
fn poll_with(
    iface: &mut Interface,
    sockets: &mut SocketSet<'static>,
    ctx: &mut Ctx,
    rx: Option<&[u8]>,
    sink: &mut Sink<'_>,
) {
    let now = ctx.smol_now();
    let mut dev = OneShot {
        rx,
        framer: &mut ctx.framer,
        sink,
        mtu: ctx.cfg.mtu as usize,
    };
    iface.poll(now, &mut dev, sockets);
}

/// What one pump did.
struct Pumped {
    moved: bool,
    /// Bytes read from the host into the send buffer.
    to_container: usize,
    /// Bytes written from the receive buffer to the host.
    to_host: usize,
    done: bool,
    reset: bool,
}

/// Moves bytes between a smoltcp socket and its host socket.
fn pump_host(sock: &mut Socket<'_>, host: &mut HostSide) -> Pumped {
    let mut moved = false;
    let mut to_container = 0;
    let mut to_host = 0;
    let mut broken = false;
    // Container → host.
    while host.host_writable && sock.can_recv() {
        let stream = &mut host.stream;
        match sock.recv(|buf| match stream.write(buf) {
            Ok(n) => (n, Ok(n)),
            Err(e) => (0, Err(e)),
        }) {
            Ok(Ok(n)) if n > 0 => {
                to_host += n;
                moved = true;
            }
            Ok(Ok(_)) => break,
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => host.host_writable = false,
            Ok(Err(_)) => {
                broken = true;
                break;
            }
            Err(_) => break,
        }
    }
    host.peer_fin |= has_finished_receiving(sock.state());
    if !host.shut_wr && host.peer_fin && sock.recv_queue() == 0 {
        let _ = host.stream.shutdown(std::net::Shutdown::Write);
        host.shut_wr = true;
    }
    // Host → container.
    while !broken && host.host_readable && !host.host_eof && sock.can_send() {
        let stream = &mut host.stream;
        match sock.send(|buf| match stream.read(buf) {
            Ok(n) => (n, Ok(n)),
            Err(e) => (0, Err(e)),
        }) {
            Ok(Ok(0)) => {
                host.host_eof = true;
                sock.close();
                moved = true;
            }
            Ok(Ok(n)) => {
                to_container += n;
                moved = true;
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => host.host_readable = false,
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(_)) => broken = true,
            Err(_) => break,
        }
    }
    if broken {
        sock.abort();
        moved = true;
    }
    // Bytes the container sent before closing must reach the host first: a flow whose
    // receive buffer is not yet flushed stays until EPOLLOUT lets us write the rest.
    let unflushed = !broken && sock.recv_queue() > 0;
    let closed = matches!(sock.state(), State::Closed | State::TimeWait);
    let done = closed && !unflushed;
    let clean = host.shut_wr && host.host_eof;
    Pumped {
        moved,
        to_container,
        to_host,
        done,
        reset: !clean,
    }
}

/// smoltcp's name of a TCP state (its `Display`, without formatting).
fn state_name(state: State) -> &'static str {
    match state {
        State::Closed => "CLOSED",
        State::Listen => "LISTEN",
        State::SynSent => "SYN-SENT",
        State::SynReceived => "SYN-RECEIVED",
        State::Established => "ESTABLISHED",
        State::FinWait1 => "FIN-WAIT-1",
        State::FinWait2 => "FIN-WAIT-2",
        State::CloseWait => "CLOSE-WAIT",
        State::Closing => "CLOSING",
        State::LastAck => "LAST-ACK",
        State::TimeWait => "TIME-WAIT",
    }
}

/// True in the states reached only through the container's FIN. `Closed` is not one of
/// them: a reset lands there too, and must reach the host as RST, not FIN.
fn has_finished_receiving(state: State) -> bool {
    matches!(
        state,
        State::CloseWait | State::LastAck | State::Closing | State::TimeWait
    )
}
