//! UDP translation: one connected host socket per container flow, datagrams copied through
//! as they are; published UDP ports share their bound listener for every client.
//!
//! Model, outbound: a datagram from container C:p to D:q is sent from a host socket connected
//! to D:q, created for the 4-tuple on first use; whatever that socket receives comes back to
//! C:p from D:q. To the gateway address it goes to the host's 127.0.0.1 when the network has
//! host_loopback, else the container gets ICMP port unreachable.
//!
//! Model, published: a datagram from client K to the published host port goes to the
//! container from K (the gateway address for loopback clients); the container's replies to K
//! leave through the listener socket, so K sees them come from the port it used.
//!
//! Limits: each flow (either kind) counts against `max_flows` and is forgotten after
//! `udp_timeout` without traffic in either direction. Datagrams that do not fit the
//! network's MTU are dropped (no fragmentation); at most 64 datagrams are read per socket
//! wakeup.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use nix::sys::epoll::EpollFlags;
use smoltcp::wire::{Icmpv4DstUnreachable, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket};

use crate::device::Sink;
use crate::emit::{send_ipv4, unreachable};
use crate::engine::{Nat, Publish, Slot};

/// Container-side 4-tuple of an outbound flow.
pub(crate) type Key = (Ipv4Addr, u16, Ipv4Addr, u16);
/// (container address, container port, client as the container sees it).
pub(crate) type PublishedKey = (Ipv4Addr, u16, SocketAddrV4);

/// Datagrams read from one socket per wakeup.
const READ_BATCH: usize = 64;

/// An outbound UDP flow.
pub(crate) struct UdpFlow {
    sock: UdpSocket,
    key: Key,
    last: Instant,
}

/// A client of a published UDP port.
pub(crate) struct PublishedFlow {
    pub listener: usize,
    client: SocketAddrV4,
    last: Instant,
}

/// A published UDP port's bound socket.
pub(crate) struct Listener {
    pub publish: Publish,
    sock: UdpSocket,
}

impl Listener {
    pub(crate) fn new(publish: Publish, fd: OwnedFd) -> Self {
        Self {
            publish,
            sock: UdpSocket::from(fd),
        }
    }
    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

fn recount(nat: &mut Nat) {
    nat.udp_live = nat.udp_keys.len() + nat.udp_published.len();
}

/// A UDP datagram from a container (a complete IPv4 packet).
pub(crate) fn on_packet(nat: &mut Nat, packet: &[u8], sink: &mut Sink<'_>) {
    let ip = Ipv4Packet::new_unchecked(packet);
    let Ok(udp) = UdpPacket::new_checked(ip.payload()) else {
        return;
    };
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let (sport, dport) = (udp.src_port(), udp.dst_port());
    let payload = udp.payload();
    if dst == nat.cfg.gateway_ip && dport == 53 {
        crate::dns::on_udp(nat, SocketAddrV4::new(src, sport), payload, sink);
        return;
    }
    let now = Instant::now();
    // A reply to a published port's client?
    if let Some(f) = nat
        .udp_published
        .get_mut(&(src, sport, SocketAddrV4::new(dst, dport)))
    {
        f.last = now;
        let (listener, client) = (f.listener, f.client);
        if let Some(Slot::UdpListener(l)) = nat.slots[listener].as_ref() {
            let _ = l.sock.send_to(payload, client);
        }
        return;
    }
    let key = (src, sport, dst, dport);
    if let Some(&token) = nat.udp_keys.get(&key) {
        if let Some(Slot::Udp(f)) = nat.slots[token].as_mut() {
            f.last = now;
            let _ = f.sock.send(payload);
        }
        return;
    }
    let target = if dst == nat.cfg.gateway_ip {
        if !nat.cfg.host_loopback {
            unreachable(nat, packet, Icmpv4DstUnreachable::PortUnreachable, sink);
            return;
        }
        Ipv4Addr::LOCALHOST
    } else {
        dst
    };
    if !nat.admit() {
        unreachable(nat, packet, Icmpv4DstUnreachable::CommProhibited, sink);
        return;
    }
    let sock = match UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.connect((target, dport)).map(|()| s))
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
    {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("udp: cannot open a flow to {target}:{dport}: {e}");
            unreachable(nat, packet, Icmpv4DstUnreachable::HostUnreachable, sink);
            return;
        }
    };
    let _ = sock.send(payload);
    let token = nat.insert_slot(Slot::Udp(UdpFlow {
        sock,
        key,
        last: now,
    }));
    let Some(Slot::Udp(f)) = nat.slots[token].as_ref() else {
        unreachable!("just inserted")
    };
    if nat
        .register(f.sock.as_fd(), token, EpollFlags::EPOLLIN)
        .is_err()
    {
        nat.take_slot(token);
        return;
    }
    nat.udp_keys.insert(key, token);
    nat.counters.udp_flows += 1;
    recount(nat);
}

/// Sends `payload` to a container as a UDP datagram from `from`.
fn deliver(nat: &mut Nat, from: SocketAddrV4, to: SocketAddrV4, len: usize, sink: &mut Sink<'_>) {
    let udp_len = 8 + len;
    let ip = Ipv4Repr {
        src_addr: *from.ip(),
        dst_addr: *to.ip(),
        next_header: IpProtocol::Udp,
        payload_len: udp_len,
        hop_limit: 64,
    };
    let dgram = std::mem::take(&mut nat.dgram);
    send_ipv4(nat, ip, sink, |buf| {
        let mut pkt = UdpPacket::new_unchecked(buf);
        pkt.set_src_port(from.port());
        pkt.set_dst_port(to.port());
        pkt.set_len(udp_len as u16);
        pkt.payload_mut()[..len].copy_from_slice(&dgram[..len]);
        pkt.fill_checksum(&(*from.ip()).into(), &(*to.ip()).into());
    });
    nat.dgram = dgram;
}

/// Replies arriving on an outbound flow's host socket.
pub(crate) fn on_host_readable(nat: &mut Nat, token: usize, sink: &mut Sink<'_>) {
    for _ in 0..READ_BATCH {
        let Some(Slot::Udp(f)) = nat.slots[token].as_mut() else {
            return;
        };
        let (c, cport, d, dport) = f.key;
        let n = match f.sock.recv(&mut nat.dgram) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(_) => continue, // e.g. ECONNREFUSED from an earlier ICMP error
        };
        f.last = Instant::now();
        deliver(
            nat,
            SocketAddrV4::new(d, dport),
            SocketAddrV4::new(c, cport),
            n,
            sink,
        );
    }
}

/// Datagrams from clients of a published port.
pub(crate) fn on_listener_readable(nat: &mut Nat, token: usize, sink: &mut Sink<'_>) {
    for _ in 0..READ_BATCH {
        let Some(Slot::UdpListener(l)) = nat.slots[token].as_ref() else {
            return;
        };
        let publish = l.publish;
        let (n, client) = match l.sock.recv_from(&mut nat.dgram) {
            Ok((n, std::net::SocketAddr::V4(c))) => (n, c),
            Ok(_) => continue,
            Err(_) => return,
        };
        let src_ip = if client.ip().is_loopback() {
            nat.cfg.gateway_ip
        } else {
            *client.ip()
        };
        let seen = SocketAddrV4::new(src_ip, client.port());
        let key = (publish.container_ip, publish.container_port, seen);
        let now = Instant::now();
        match nat.udp_published.get_mut(&key) {
            Some(f) => {
                f.last = now;
                f.client = client;
            }
            None => {
                if !nat.admit() {
                    continue;
                }
                nat.udp_published.insert(
                    key,
                    PublishedFlow {
                        listener: token,
                        client,
                        last: now,
                    },
                );
                nat.counters.udp_flows += 1;
                recount(nat);
            }
        }
        let to = SocketAddrV4::new(publish.container_ip, publish.container_port);
        deliver(nat, seen, to, n, sink);
    }
}

/// Forgets flows idle for longer than `udp_timeout`.
pub(crate) fn expire(nat: &mut Nat, now: Instant) {
    let timeout = nat.cfg.udp_timeout;
    let idle: Vec<(Key, usize)> = nat
        .udp_keys
        .iter()
        .filter(|(_, t)| matches!(nat.slots[**t].as_ref(), Some(Slot::Udp(f)) if now.duration_since(f.last) >= timeout))
        .map(|(k, t)| (*k, *t))
        .collect();
    for (key, token) in idle {
        nat.udp_keys.remove(&key);
        if let Some(Slot::Udp(f)) = nat.take_slot(token) {
            nat.deregister(f.sock.as_fd());
        }
        nat.counters.expired += 1;
    }
    let before = nat.udp_published.len();
    nat.udp_published
        .retain(|_, f| now.duration_since(f.last) < timeout);
    nat.counters.expired += (before - nat.udp_published.len()) as u64;
    recount(nat);
}
