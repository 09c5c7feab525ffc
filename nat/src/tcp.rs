//! TCP translation: every container connection is terminated in smoltcp and re-originated
//! from an ordinary host socket, and bytes are copied between the two sockets' buffers.
//!
//! Model, outbound: a SYN from a container for a new 4-tuple creates a smoltcp socket that
//! listens on the real destination with its SYN-ACK paused, and starts a non-blocking dial of
//! that destination from the host. The container's handshake completes only once the dial
//! has: if the far side refuses, the container gets an RST; if it is unreachable or does not
//! answer within `connect_timeout`, an ICMP destination-unreachable (so `connect()` fails at
//! once with the matching errno instead of hanging). The container sees the real destination
//! address; the far side sees the host's.
//!
//! Model, published ports: an accepted host connection opens a smoltcp connection to the
//! container whose source is the real client address (the gateway address for loopback
//! clients, which a container would drop as martian).
//!
//! Copying: `recv`/`send` hand us slices of smoltcp's ring buffers, which we `write`/`read`
//! to/from the host socket directly: one copy per direction and no allocation per packet.
//! Host sockets are edge-triggered; `host_readable`/`host_writable` remember readiness we
//! could not use yet because smoltcp's buffers were full.
//!
//! Closing: a container FIN becomes `shutdown(Write)` on the host socket and a host EOF
//! becomes a FIN to the container (half-close passes through both ways). An RST from either
//! side aborts the other (host side via SO_LINGER 0).
//!
//! Limits: 4 MiB receive and 1 MiB send buffer per flow by default (window scaling lets one
//! flow use them; see `NatConfig::tcp_rx_buffer`); flows count against `max_flows`.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use nix::sys::epoll::EpollFlags;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{Socket, SocketBuffer, State};
use smoltcp::wire::{
    Icmpv4DstUnreachable, IpEndpoint, IpListenEndpoint, IpProtocol, Ipv4Packet, Ipv4Repr,
    TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};
use socket2::{Domain, SockRef, Type};

use crate::device::Sink;
use crate::engine::{Nat, Publish, Slot};

/// Container-side 4-tuple: (container address, container port, peer address, peer port).
pub(crate) type Key = (Ipv4Addr, u16, Ipv4Addr, u16);

/// Bytes of the SYN kept while dialing: IPv4 header (≤ 60) + the first 20 TCP bytes, which an
/// ICMP error quotes and an RST needs.
const SYN_HEAD: usize = 80;

/// Connections accepted per listener wakeup before others get their turn.
const ACCEPT_BATCH: usize = 16;

enum Phase {
    /// Waiting for the host dial; the SYN's head is kept for the answer.
    Dialing {
        deadline: Instant,
        syn: [u8; SYN_HEAD],
        syn_len: usize,
    },
    /// Both sides connected (or connecting, for published ports).
    Open,
}

/// One TCP flow.
pub(crate) struct TcpFlow {
    handle: SocketHandle,
    stream: TcpStream,
    key: Key,
    phase: Phase,
    host_readable: bool,
    host_writable: bool,
    host_eof: bool,
    shut_wr: bool,
    /// The container's FIN was seen (sticky: Closed alone may also mean it reset).
    peer_fin: bool,
}

/// A published TCP port's listener.
pub(crate) struct Listener {
    pub publish: Publish,
    sock: TcpListener,
}

impl Listener {
    pub(crate) fn new(publish: Publish, fd: OwnedFd) -> Self {
        Self {
            publish,
            sock: TcpListener::from(fd),
        }
    }
    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

fn new_socket(rx: usize, tx: usize) -> Socket<'static> {
    let mut s = Socket::new(
        SocketBuffer::new(vec![0; rx]),
        SocketBuffer::new(vec![0; tx]),
    );
    s.set_nagle_enabled(false);
    s.set_ack_delay(None);
    s
}

const HOST_EVENTS: EpollFlags = EpollFlags::EPOLLIN
    .union(EpollFlags::EPOLLOUT)
    .union(EpollFlags::EPOLLRDHUP)
    .union(EpollFlags::EPOLLET);

/// A TCP packet from a container (a complete IPv4 packet).
pub(crate) fn on_packet(nat: &mut Nat, packet: &[u8], sink: &mut Sink<'_>) {
    let ip = Ipv4Packet::new_unchecked(packet);
    let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
        return;
    };
    let key = (ip.src_addr(), tcp.src_port(), ip.dst_addr(), tcp.dst_port());
    let new_syn = tcp.syn() && !tcp.ack() && !tcp.rst() && !nat.tcp_keys.contains_key(&key);
    if new_syn {
        let started = if key.2 == nat.cfg.gateway_ip && key.3 == 53 {
            crate::dns_tcp::start(nat, key, packet, sink)
        } else {
            start_dial(nat, key, packet, sink)
        };
        if !started {
            return;
        }
    }
    nat.poll_iface(Some(packet), sink);
    if !new_syn && let Some(&token) = nat.tcp_keys.get(&key) {
        pump(nat, token, sink);
    }
}

/// Begins an outbound flow; false if the SYN was answered (refused) instead.
fn start_dial(nat: &mut Nat, key: Key, syn: &[u8], sink: &mut Sink<'_>) -> bool {
    let (_, _, dst, dport) = key;
    let target = if dst == nat.cfg.gateway_ip {
        if !nat.cfg.host_loopback {
            send_rst(nat, syn, sink);
            return false;
        }
        Ipv4Addr::LOCALHOST
    } else {
        dst
    };
    if !nat.admit() {
        send_rst(nat, syn, sink);
        return false;
    }
    let sock = match socket2::Socket::new(Domain::IPV4, Type::STREAM.nonblocking().cloexec(), None)
    {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("tcp: cannot create host socket: {e}");
            send_rst(nat, syn, sink);
            return false;
        }
    };
    let _ = sock.set_tcp_nodelay(true);
    match sock.connect(&SocketAddrV4::new(target, dport).into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => {
            dial_failed(nat, syn, &e, sink);
            return false;
        }
    }
    let mut s = new_socket(nat.cfg.tcp_rx_buffer, nat.cfg.tcp_tx_buffer);
    s.pause_synack(true);
    if s.listen(IpListenEndpoint {
        addr: Some(dst.into()),
        port: dport,
    })
    .is_err()
    {
        send_rst(nat, syn, sink);
        return false;
    }
    let handle = nat.sockets.add(s);
    let mut head = [0u8; SYN_HEAD];
    let syn_len = syn.len().min(SYN_HEAD);
    head[..syn_len].copy_from_slice(&syn[..syn_len]);
    let flow = TcpFlow {
        handle,
        stream: TcpStream::from(OwnedFd::from(sock)),
        key,
        phase: Phase::Dialing {
            deadline: Instant::now() + nat.cfg.connect_timeout,
            syn: head,
            syn_len,
        },
        host_readable: false,
        host_writable: false,
        host_eof: false,
        shut_wr: false,
        peer_fin: false,
    };
    insert_flow(nat, flow)
}

fn insert_flow(nat: &mut Nat, flow: TcpFlow) -> bool {
    let key = flow.key;
    let handle = flow.handle;
    let token = nat.insert_slot(Slot::Tcp(flow));
    let Some(Slot::Tcp(f)) = &nat.slots[token] else {
        unreachable!("just inserted")
    };
    if nat.register(f.stream.as_fd(), token, HOST_EVENTS).is_err() {
        nat.take_slot(token);
        nat.sockets.remove(handle);
        return false;
    }
    nat.tcp_keys.insert(key, token);
    nat.tcp_live += 1;
    true
}

/// Readiness of a flow's host socket.
pub(crate) fn on_host_event(nat: &mut Nat, token: usize, flags: EpollFlags, sink: &mut Sink<'_>) {
    let Some(Slot::Tcp(flow)) = nat.slots[token].as_mut() else {
        return;
    };
    if flags.intersects(
        EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR,
    ) {
        flow.host_readable = true;
    }
    if flags.intersects(EpollFlags::EPOLLOUT | EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP) {
        flow.host_writable = true;
    }
    if matches!(flow.phase, Phase::Dialing { .. }) {
        finish_dial(nat, token, sink);
    } else {
        pump(nat, token, sink);
    }
}

/// A dial made progress: connected, or failed.
fn finish_dial(nat: &mut Nat, token: usize, sink: &mut Sink<'_>) {
    let Some(Slot::Tcp(flow)) = nat.slots[token].as_mut() else {
        return;
    };
    let err = match SockRef::from(&flow.stream).take_error() {
        Ok(Some(e)) => Some(e),
        Ok(None) => match flow.stream.peer_addr() {
            Ok(_) => None,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                if !flow.host_writable {
                    return; // not yet
                }
                Some(e)
            }
            Err(e) => Some(e),
        },
        Err(e) => Some(e),
    };
    match err {
        None => {
            flow.phase = Phase::Open;
            let handle = flow.handle;
            nat.sockets.get_mut::<Socket>(handle).pause_synack(false);
            nat.counters.tcp_opened += 1;
            nat.poll_iface(None, sink);
        }
        Some(e) => {
            let Phase::Dialing { syn, syn_len, .. } = flow.phase else {
                return;
            };
            remove_flow(nat, token, false);
            dial_failed(nat, &syn[..syn_len], &e, sink);
        }
    }
}

/// Fails dials past their deadline.
pub(crate) fn check_dials(nat: &mut Nat, sink: &mut Sink<'_>) {
    let now = Instant::now();
    let expired: Vec<usize> = Vec::new();
    let mut expired = expired;
    for (i, s) in nat.slots.iter().enumerate() {
        if let Some(Slot::Tcp(TcpFlow {
            phase: Phase::Dialing { deadline, .. },
            ..
        })) = s
            && *deadline <= now
        {
            expired.push(i);
        }
    }
    for token in expired {
        if let Some(Slot::Tcp(TcpFlow {
            phase: Phase::Dialing { syn, syn_len, .. },
            ..
        })) = nat.slots[token].as_ref()
        {
            let (syn, syn_len) = (*syn, *syn_len);
            remove_flow(nat, token, false);
            dial_failed(
                nat,
                &syn[..syn_len],
                &io::Error::from_raw_os_error(libc::ETIMEDOUT),
                sink,
            );
        }
    }
}

/// Tells the container why its connection cannot be made.
fn dial_failed(nat: &mut Nat, syn: &[u8], e: &io::Error, sink: &mut Sink<'_>) {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => {
            nat.counters.tcp_refused += 1;
            send_rst(nat, syn, sink);
        }
        Some(libc::ENETUNREACH) => {
            nat.counters.tcp_unreachable += 1;
            crate::emit::unreachable(nat, syn, Icmpv4DstUnreachable::NetUnreachable, sink);
        }
        _ => {
            nat.counters.tcp_unreachable += 1;
            crate::emit::unreachable(nat, syn, Icmpv4DstUnreachable::HostUnreachable, sink);
        }
    }
    tracing::debug!("tcp: dial failed: {e}");
}

/// Answers a SYN (or any segment) with RST+ACK, without a socket.
pub(crate) fn send_rst(nat: &mut Nat, packet: &[u8], sink: &mut Sink<'_>) {
    let ip = Ipv4Packet::new_unchecked(packet);
    let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
        return;
    };
    let seg_len = tcp.payload().len() + usize::from(tcp.syn()) + usize::from(tcp.fin());
    let repr = TcpRepr {
        src_port: tcp.dst_port(),
        dst_port: tcp.src_port(),
        control: TcpControl::Rst,
        seq_number: if tcp.ack() {
            tcp.ack_number()
        } else {
            TcpSeqNumber(0)
        },
        ack_number: Some(tcp.seq_number() + seg_len),
        window_len: 0,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None, None, None],
        timestamp: None,
        payload: &[],
    };
    let ip_repr = Ipv4Repr {
        src_addr: ip.dst_addr(),
        dst_addr: ip.src_addr(),
        next_header: IpProtocol::Tcp,
        payload_len: repr.buffer_len(),
        hop_limit: 64,
    };
    crate::emit::send_ipv4(nat, ip_repr, sink, |buf| {
        let mut pkt = TcpPacket::new_unchecked(buf);
        let caps = smoltcp::phy::ChecksumCapabilities::default();
        repr.emit(
            &mut pkt,
            &ip_repr.src_addr.into(),
            &ip_repr.dst_addr.into(),
            &caps,
        );
    });
}

/// Accepts connections on a published port and opens their container side.
pub(crate) fn on_accept(nat: &mut Nat, token: usize, sink: &mut Sink<'_>) {
    for _ in 0..ACCEPT_BATCH {
        let Some(Slot::TcpListener(l)) = nat.slots[token].as_ref() else {
            return;
        };
        let publish = l.publish;
        let (stream, peer) = match l.sock.accept() {
            Ok((s, std::net::SocketAddr::V4(p))) => (s, p),
            Ok(_) => continue,
            Err(_) => return,
        };
        if !nat.admit() {
            let _ = SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
            continue;
        }
        let _ = stream.set_nonblocking(true);
        let _ = stream.set_nodelay(true);
        // A container drops packets from 127/8 as martians: loopback clients appear as the
        // gateway.
        let src = if peer.ip().is_loopback() {
            nat.cfg.gateway_ip
        } else {
            *peer.ip()
        };
        let key = (
            publish.container_ip,
            publish.container_port,
            src,
            peer.port(),
        );
        if nat.tcp_keys.contains_key(&key) {
            continue;
        }
        let mut s = new_socket(nat.cfg.tcp_rx_buffer, nat.cfg.tcp_tx_buffer);
        let remote = IpEndpoint::new(publish.container_ip.into(), publish.container_port);
        let local = IpListenEndpoint {
            addr: Some(src.into()),
            port: peer.port(),
        };
        if s.connect(nat.iface.context(), remote, local).is_err() {
            continue;
        }
        let handle = nat.sockets.add(s);
        let flow = TcpFlow {
            handle,
            stream,
            key,
            phase: Phase::Open,
            host_readable: false,
            host_writable: true,
            host_eof: false,
            shut_wr: false,
            peer_fin: false,
        };
        if insert_flow(nat, flow) {
            nat.counters.tcp_opened += 1;
        }
    }
    nat.poll_iface(None, sink);
}

/// Moves data for every open flow (after smoltcp ran).
pub(crate) fn pump_all(nat: &mut Nat, sink: &mut Sink<'_>) {
    for token in 0..nat.slots.len() {
        match nat.slots[token] {
            Some(Slot::Tcp(TcpFlow {
                phase: Phase::Open, ..
            })) => pump(nat, token, sink),
            Some(Slot::DnsTcp(_)) => crate::dns_tcp::pump(nat, token, sink),
            _ => {}
        }
    }
}

/// Moves bytes between the two sides of one flow and handles closing.
fn pump(nat: &mut Nat, token: usize, sink: &mut Sink<'_>) {
    if matches!(nat.slots[token], Some(Slot::DnsTcp(_))) {
        return crate::dns_tcp::pump(nat, token, sink);
    }
    let Nat { slots, sockets, .. } = nat;
    let Some(Slot::Tcp(flow)) = slots[token].as_mut() else {
        return;
    };
    if matches!(flow.phase, Phase::Dialing { .. }) {
        return;
    }
    let sock = sockets.get_mut::<Socket>(flow.handle);
    let mut moved = false;
    let mut broken = false;
    // Container → host.
    while flow.host_writable && sock.can_recv() {
        let stream = &mut flow.stream;
        match sock.recv(|buf| match stream.write(buf) {
            Ok(n) => (n, Ok(n)),
            Err(e) => (0, Err(e)),
        }) {
            Ok(Ok(n)) if n > 0 => moved = true,
            Ok(Ok(_)) => break,
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => flow.host_writable = false,
            Ok(Err(_)) => {
                broken = true;
                break;
            }
            Err(_) => break,
        }
    }
    flow.peer_fin |= has_finished_receiving(sock.state());
    if !flow.shut_wr && flow.peer_fin && sock.recv_queue() == 0 {
        let _ = flow.stream.shutdown(std::net::Shutdown::Write);
        flow.shut_wr = true;
    }
    // Host → container.
    while !broken && flow.host_readable && !flow.host_eof && sock.can_send() {
        let stream = &mut flow.stream;
        match sock.send(|buf| match stream.read(buf) {
            Ok(n) => (n, Ok(n)),
            Err(e) => (0, Err(e)),
        }) {
            Ok(Ok(0)) => {
                flow.host_eof = true;
                sock.close();
                moved = true;
            }
            Ok(Ok(_)) => moved = true,
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => flow.host_readable = false,
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(_)) => broken = true,
            Err(_) => break,
        }
    }
    if broken {
        sock.abort();
        moved = true;
    }
    let state = sock.state();
    // Bytes the container sent before closing must reach the host first: a flow whose
    // receive buffer is not yet flushed stays until EPOLLOUT lets us write the rest.
    let unflushed = !broken && sock.recv_queue() > 0;
    if moved {
        nat.poll_iface(None, sink);
    }
    if matches!(state, State::Closed | State::TimeWait) && !unflushed {
        let Some(Slot::Tcp(flow)) = nat.slots[token].as_ref() else {
            return;
        };
        let clean = flow.shut_wr && flow.host_eof;
        remove_flow(nat, token, !clean);
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

/// Drops a flow; `reset` closes the host side with RST (SO_LINGER 0).
fn remove_flow(nat: &mut Nat, token: usize, reset: bool) {
    if let Some(Slot::Tcp(flow)) = nat.take_slot(token) {
        nat.deregister(flow.stream.as_fd());
        if reset {
            let _ = SockRef::from(&flow.stream).set_linger(Some(std::time::Duration::ZERO));
        }
        nat.sockets.remove(flow.handle);
        nat.tcp_keys.remove(&flow.key);
        nat.tcp_live -= 1;
    }
}
