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
//! Aging (like conntrack), checked once a second: a handshake the container never completes
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
mod local;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::sys::epoll::EpollFlags;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{Socket, State};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Packet, TcpPacket};
use socket2::SockRef;

pub(crate) use accept::Listener;
pub(crate) use dial::{Syn, send_rst};
#[cfg(test)]
pub(crate) use local::MAX_PER_ENDPOINT as MAX_LOCAL_PER_ENDPOINT;

use crate::ctx::Ctx;
use crate::device::{Framer, OneShot, Sink};
use crate::flow::{FlowKey, Handle, Owner, PerEndpoint, Table};

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

/// One TCP flow.
pub(crate) struct TcpFlow {
    socket: SocketHandle,
    key: FlowKey,
    far: Far,
    /// Last time a segment or a byte moved.
    last: Instant,
    /// How fast the container's data drains to the host (receive-buffer growth).
    rx_rate: buffers::Rate,
}

/// TCP flows of one network and the smoltcp interface that terminates them.
pub(crate) struct Tcp {
    iface: Interface,
    sockets: SocketSet<'static>,
    flows: Table<TcpFlow>,
    keys: HashMap<FlowKey, Handle, foldhash::fast::RandomState>,
    listeners: Table<Listener>,
    dials: PerEndpoint,
    local_conns: PerEndpoint,
    messages: Vec<LocalMessage>,
    /// Reused list of flow handles for sweeps.
    scratch: Vec<Handle>,
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
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(gw), prefix));
        });
        let _ = iface.routes_mut().add_default_ipv4_route(gw);
        Self {
            iface,
            sockets: SocketSet::new(Vec::new()),
            flows: Table::default(),
            keys: HashMap::default(),
            listeners: Table::default(),
            dials: PerEndpoint::default(),
            local_conns: PerEndpoint::default(),
            messages: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Live flows (outbound, published and local).
    pub(crate) fn live(&self) -> usize {
        self.flows.len()
    }

    /// Messages received on local-service connections since the last call.
    pub(crate) fn take_messages(&mut self) -> Vec<LocalMessage> {
        std::mem::take(&mut self.messages)
    }

    /// Feeds one IP packet (or none) to smoltcp and lets it transmit.
    fn poll_iface(&mut self, ctx: &mut Ctx, rx: Option<&[u8]>, sink: &mut Sink<'_>) {
        let now = ctx.smol_now();
        let mtu = ctx.cfg.mtu as usize;
        poll_with(
            &mut self.iface,
            &mut self.sockets,
            &mut ctx.framer,
            now,
            mtu,
            rx,
            sink,
        );
    }

    /// How soon smoltcp's timers need a poll.
    pub(crate) fn poll_delay(&mut self, ctx: &Ctx) -> Option<Duration> {
        self.iface
            .poll_delay(ctx.smol_now(), &self.sockets)
            .map(|d| Duration::from_micros(d.total_micros()))
    }

    /// A TCP packet from a container (a complete IPv4 packet whose length the engine checked).
    pub(crate) fn on_packet(&mut self, ctx: &mut Ctx, packet: &[u8], sink: &mut Sink<'_>) {
        let Ok(ip) = Ipv4Packet::new_checked(packet) else {
            return;
        };
        let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
            return;
        };
        let key = FlowKey::new(
            SocketAddr::new(ip.src_addr().into(), tcp.src_port()),
            SocketAddr::new(ip.dst_addr().into(), tcp.dst_port()),
        );
        let existing = self.keys.get(&key).copied();
        if existing.is_none() {
            if !(tcp.syn() && !tcp.ack() && !tcp.rst()) {
                // A stray segment for no flow: smoltcp answers it with RST when fed.
                self.poll_iface(ctx, Some(packet), sink);
                return;
            }
            let Some(syn) = Syn::parse(packet) else {
                return;
            };
            let started = if ip.dst_addr() == ctx.cfg.gateway_ip && tcp.dst_port() == 53 {
                self.open_local(ctx, key, &syn, sink)
            } else {
                self.start_dial(ctx, key, &syn, sink)
            };
            if !started {
                return;
            }
        }
        self.poll_iface(ctx, Some(packet), sink);
        if let Some(h) = existing.or_else(|| self.keys.get(&key).copied()) {
            if let Some(f) = self.flows.get_mut(h) {
                f.last = ctx.now;
            }
            if existing.is_some() {
                self.pump(ctx, h, sink);
            }
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

    /// Timers: pending dials and smoltcp's own.
    ///
    /// Flows are pumped when something happened to them: a segment from the container, an
    /// event on the host socket, an answer for a local connection. What smoltcp's timers do
    /// to a flow on their own (a retransmission giving up) is picked up by [`Tcp::sweep`].
    pub(crate) fn poll(&mut self, ctx: &mut Ctx, sink: &mut Sink<'_>) {
        self.check_dials(ctx, sink);
        self.poll_iface(ctx, None, sink);
    }

    /// Moves bytes between the two sides of one flow and handles closing.
    fn pump(&mut self, ctx: &mut Ctx, h: Handle, sink: &mut Sink<'_>) {
        let Some(flow) = self.flows.get_mut(h) else {
            return;
        };
        let sock = self.sockets.get_mut::<Socket>(flow.socket);
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
            self.poll_iface(ctx, None, sink);
        }
        if done {
            self.remove(ctx, h, reset);
        }
    }

    /// Ends flows whose handshake, close or idleness has lasted too long (see the top of
    /// this file). Call about once a second.
    pub(crate) fn sweep(&mut self, ctx: &mut Ctx, sink: &mut Sink<'_>) {
        let mut handles = std::mem::take(&mut self.scratch);
        handles.clear();
        handles.extend(self.flows.iter().map(|(h, _)| h));
        let now = ctx.now;
        for &h in &handles {
            self.pump(ctx, h, sink);
            let Some(flow) = self.flows.get(h) else {
                continue;
            };
            let idle = now.saturating_duration_since(flow.last);
            let state = self.sockets.get::<Socket>(flow.socket).state();
            let limit = match (&flow.far, state) {
                (
                    Far::Host(HostSide {
                        phase: Phase::Dialing { .. },
                        ..
                    }),
                    _,
                ) => None, // its own deadline
                (_, State::Listen | State::SynReceived | State::SynSent) => {
                    Some(ctx.cfg.connect_timeout)
                }
                (Far::Local { .. }, _) => Some(local::IDLE_TIMEOUT),
                (Far::Host(host), _) if host.peer_fin && !host.host_eof => {
                    Some(ctx.cfg.fin_timeout)
                }
                (Far::Host(host), _) if host.host_eof && !host.peer_fin => {
                    Some(ctx.cfg.close_wait_timeout)
                }
                (Far::Host(_), State::Established) => Some(ctx.cfg.tcp_idle_timeout),
                _ => Some(ctx.cfg.fin_timeout),
            };
            if idle >= IDLE_SHRINK {
                let socket = flow.socket;
                buffers::shrink_idle(ctx, self.sockets.get_mut::<Socket>(socket));
            }
            if limit.is_some_and(|l| idle >= l) {
                tracing::debug!(
                    "tcp: {} -> {} idle {:?} in {state}: expired",
                    flow.key.container,
                    flow.key.peer,
                    idle
                );
                ctx.counters.expired += 1;
                let socket = flow.socket;
                self.sockets.get_mut::<Socket>(socket).abort();
                self.poll_iface(ctx, None, sink);
                self.remove(ctx, h, true);
            }
        }
        self.scratch = handles;
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
        let held = buffers::charged(self.sockets.get::<Socket>(flow.socket));
        ctx.budget.give(held);
        self.sockets.remove(flow.socket);
        self.keys.remove(&flow.key);
        ctx.release(ep);
    }

    fn insert(&mut self, ctx: &mut Ctx, flow: TcpFlow) -> Option<Handle> {
        let key = flow.key;
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
                ctx.budget
                    .give(buffers::charged(self.sockets.get::<Socket>(f.socket)));
                self.sockets.remove(f.socket);
            }
            return None;
        }
        self.keys.insert(key, h);
        Some(h)
    }
}

fn poll_with(
    iface: &mut Interface,
    sockets: &mut SocketSet<'static>,
    framer: &mut Framer,
    now: smoltcp::time::Instant,
    mtu: usize,
    rx: Option<&[u8]>,
    sink: &mut Sink<'_>,
) {
    let mut dev = OneShot {
        rx,
        framer,
        sink,
        mtu,
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

/// True in the states reached only through the container's FIN. `Closed` is not one of
/// them: a reset lands there too, and must reach the host as RST, not FIN.
fn has_finished_receiving(state: State) -> bool {
    matches!(
        state,
        State::CloseWait | State::LastAck | State::Closing | State::TimeWait
    )
}
