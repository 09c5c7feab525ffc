//! Relaying DNS queries the gateway cannot answer: raw bytes to the first upstream over
//! UDP, again over TCP when the UDP answer is truncated, to the next upstream on timeout or
//! refusal, and SERVFAIL to the container when none answers. Each query in flight owns one
//! non-blocking host socket registered in the engine's epoll; at most
//! [`MAX_PENDING`](crate::dns::MAX_PENDING) per network.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::time::Instant;

use nix::sys::epoll::EpollFlags;

use crate::device::Sink;
use crate::dns::{MAX_PENDING, deliver, servfail};
use crate::engine::{Nat, Slot};

/// Who asked.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Client {
    /// A UDP query from this container address/port.
    Udp(SocketAddrV4),
    /// A query on the DNS-over-TCP flow in this slot.
    Tcp(usize),
}

enum Io {
    Udp(UdpSocket),
    Tcp {
        stream: TcpStream,
        out: Vec<u8>,
        written: usize,
        inbuf: Vec<u8>,
    },
}

/// A query relayed to an upstream, waiting for its answer.
pub(crate) struct Pending {
    client: Client,
    query: Vec<u8>,
    limit: usize,
    upstream: usize,
    deadline: Instant,
    io: Io,
}

/// Relays `query` to upstream number `upstream` (or answers SERVFAIL when none is left).
pub(crate) fn forward(
    nat: &mut Nat,
    client: Client,
    query: Vec<u8>,
    limit: usize,
    upstream: usize,
    sink: &mut Sink<'_>,
) {
    if query.len() < 12 {
        return;
    }
    let Some(&server) = nat.dns.cfg.upstreams.get(upstream) else {
        let msg = servfail(&query);
        deliver(nat, client, msg, limit, sink);
        return;
    };
    if nat.dns.pending >= MAX_PENDING {
        let mut msg = servfail(&query);
        if msg.len() >= 4 {
            msg[3] = (msg[3] & 0xf0) | 5; // REFUSED
        }
        deliver(nat, client, msg, limit, sink);
        return;
    }
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.connect(server).map(|()| s))
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .and_then(|s| s.send(&query).map(|_| s));
    let Ok(sock) = sock else {
        return forward(nat, client, query, limit, upstream + 1, sink);
    };
    let pending = Pending {
        client,
        query,
        limit,
        upstream,
        deadline: Instant::now() + nat.dns.cfg.timeout,
        io: Io::Udp(sock),
    };
    insert(nat, pending, EpollFlags::EPOLLIN);
}

fn insert(nat: &mut Nat, pending: Pending, flags: EpollFlags) {
    let token = nat.insert_slot(Slot::Dns(pending));
    let Some(Slot::Dns(p)) = nat.slots[token].as_ref() else {
        unreachable!("just inserted")
    };
    let fd = match &p.io {
        Io::Udp(s) => s.as_fd(),
        Io::Tcp { stream, .. } => stream.as_fd(),
    };
    if nat.register(fd, token, flags).is_err() {
        nat.take_slot(token);
        return;
    }
    nat.dns.pending += 1;
}

fn take(nat: &mut Nat, token: usize) -> Option<Pending> {
    match nat.slots.get(token) {
        Some(Some(Slot::Dns(_))) => {}
        _ => return None,
    }
    let Some(Slot::Dns(p)) = nat.take_slot(token) else {
        return None;
    };
    match &p.io {
        Io::Udp(s) => nat.deregister(s.as_fd()),
        Io::Tcp { stream, .. } => nat.deregister(stream.as_fd()),
    }
    nat.dns.pending -= 1;
    Some(p)
}

/// An upstream socket is ready.
pub(crate) fn on_upstream(nat: &mut Nat, token: usize, sink: &mut Sink<'_>) {
    let Some(Some(Slot::Dns(p))) = nat.slots.get_mut(token) else {
        return;
    };
    let id = [p.query[0], p.query[1]];
    match &mut p.io {
        Io::Udp(sock) => {
            let mut buf = [0u8; 4096];
            match sock.recv(&mut buf) {
                Ok(n) if n >= 12 && buf[..2] == id => {
                    let truncated = buf[2] & 0x02 != 0;
                    let p = take(nat, token).expect("present");
                    if truncated {
                        retry_tcp(nat, p, sink);
                    } else {
                        deliver(nat, p.client, buf[..n].to_vec(), p.limit, sink);
                    }
                }
                Ok(_) => {} // not our answer
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    // Refused (nothing listens there): next upstream.
                    let p = take(nat, token).expect("present");
                    forward(nat, p.client, p.query, p.limit, p.upstream + 1, sink);
                }
            }
        }
        Io::Tcp {
            stream,
            out,
            written,
            inbuf,
        } => {
            let mut failed = false;
            while *written < out.len() {
                match stream.write(&out[*written..]) {
                    Ok(n) => *written += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            let mut chunk = [0u8; 4096];
            while !failed {
                match stream.read(&mut chunk) {
                    Ok(0) => {
                        failed = true;
                    }
                    Ok(n) => inbuf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => break,
                    Err(_) => failed = true,
                }
            }
            let complete = inbuf.len() >= 2
                && inbuf.len() >= 2 + usize::from(u16::from_be_bytes([inbuf[0], inbuf[1]]));
            if complete {
                let p = take(nat, token).expect("present");
                if let Io::Tcp { inbuf, .. } = p.io {
                    let len = usize::from(u16::from_be_bytes([inbuf[0], inbuf[1]]));
                    deliver(nat, p.client, inbuf[2..2 + len].to_vec(), p.limit, sink);
                }
            } else if failed {
                let p = take(nat, token).expect("present");
                forward(nat, p.client, p.query, p.limit, p.upstream + 1, sink);
            }
        }
    }
}

/// Asks the same upstream again over TCP (its UDP answer was truncated).
fn retry_tcp(nat: &mut Nat, p: Pending, sink: &mut Sink<'_>) {
    let server = nat.dns.cfg.upstreams[p.upstream];
    let sock = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM.nonblocking().cloexec(),
        None,
    );
    let started = sock.and_then(|s| match s.connect(&server.into()) {
        Ok(()) => Ok(s),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(s),
        Err(e) => Err(e),
    });
    let Ok(sock) = started else {
        return forward(nat, p.client, p.query, p.limit, p.upstream + 1, sink);
    };
    let mut out = (p.query.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&p.query);
    let pending = Pending {
        io: Io::Tcp {
            stream: TcpStream::from(std::os::fd::OwnedFd::from(sock)),
            out,
            written: 0,
            inbuf: Vec::new(),
        },
        deadline: Instant::now() + nat.dns.cfg.timeout,
        ..p
    };
    insert(nat, pending, EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT);
}

/// Moves timed-out relays to the next upstream (or SERVFAIL).
pub(crate) fn expire(nat: &mut Nat, now: Instant, sink: &mut Sink<'_>) {
    if nat.dns.pending == 0 {
        return;
    }
    let late: Vec<usize> = nat
        .slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Some(Slot::Dns(p)) if p.deadline <= now => Some(i),
            _ => None,
        })
        .collect();
    for token in late {
        if let Some(p) = take(nat, token) {
            forward(nat, p.client, p.query, p.limit, p.upstream + 1, sink);
        }
    }
}

/// Earliest relay deadline, if any.
pub(crate) fn next_deadline(nat: &Nat) -> Option<Instant> {
    if nat.dns.pending == 0 {
        return None;
    }
    nat.slots
        .iter()
        .filter_map(|s| match s {
            Some(Slot::Dns(p)) => Some(p.deadline),
            _ => None,
        })
        .min()
}
