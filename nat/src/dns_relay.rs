//! Relaying DNS queries the gateway cannot answer: raw bytes to the first upstream over
//! UDP, again over TCP when the UDP answer is truncated, to the next upstream on timeout or
//! refusal, and SERVFAIL to the container when none answers. Each query in flight owns one
//! non-blocking host socket registered in the context's epoll.
//!
//! Answers are not sent from here: they queue as [`Answer`]s naming their [`Client`], and the
//! engine hands each to the DNS server (UDP) or to the TCP connection it came on. A TCP
//! client is named by its flow's generation-checked handle, so an answer for a connection
//! that has closed meanwhile is dropped, never written to a connection that reused its slot.
//!
//! Limits: at most [`MAX_PENDING`] queries in flight per network and
//! [`MAX_PER_ENDPOINT`] per container (REFUSED beyond); `--dns-timeout` per upstream attempt.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::time::Instant;

use hickory_proto::op::ResponseCode;
use nix::sys::epoll::EpollFlags;

use crate::ctx::Ctx;
use crate::dns::{header_id, is_truncated, rcode_answer};
use crate::flow::{Handle, Owner, PerEndpoint, Table};

/// Relayed queries in flight per network.
pub const MAX_PENDING: usize = 1024;
/// Relayed queries in flight per container.
pub const MAX_PER_ENDPOINT: usize = 64;
/// Largest answer read over UDP.
const UDP_MAX: usize = 4096;

/// Who asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Client {
    /// A UDP query from this container address/port (either family).
    Udp(SocketAddr),
    /// A query on this DNS-over-TCP flow, from `querier`.
    Tcp { flow: Handle, querier: IpAddr },
}

impl Client {
    fn endpoint(&self) -> IpAddr {
        match self {
            Client::Udp(a) => a.ip(),
            Client::Tcp { querier, .. } => *querier,
        }
    }
}

/// An answer for a client, to be delivered by the engine.
pub(crate) struct Answer {
    pub client: Client,
    pub bytes: Vec<u8>,
    /// Largest reply the client's transport takes.
    pub limit: usize,
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
struct Pending {
    client: Client,
    query: Vec<u8>,
    limit: usize,
    upstream: usize,
    deadline: Instant,
    io: Io,
}

/// Queries in flight to upstream resolvers.
#[derive(Default)]
pub(crate) struct Relay {
    pending: Table<Pending>,
    per_endpoint: PerEndpoint,
    answers: Vec<Answer>,
}

impl Relay {
    /// Answers ready for delivery since the last call.
    pub(crate) fn take_answers(&mut self) -> Vec<Answer> {
        std::mem::take(&mut self.answers)
    }

    fn answer(&mut self, client: Client, bytes: Vec<u8>, limit: usize) {
        self.answers.push(Answer {
            client,
            bytes,
            limit,
        });
    }

    /// Relays `query` for `client`, starting with the first upstream.
    pub(crate) fn forward(&mut self, ctx: &mut Ctx, client: Client, query: Vec<u8>, limit: usize) {
        if header_id(&query).is_none() {
            return;
        }
        let ep = client.endpoint();
        let held = self.per_endpoint.held_by(ep);
        if self.pending.len() >= MAX_PENDING || held >= MAX_PER_ENDPOINT {
            ctx.counters.dns_refused += 1;
            let msg = rcode_answer(&query, ResponseCode::Refused);
            self.answer(client, msg, limit);
            return;
        }
        ctx.counters.dns_relayed += 1;
        self.try_upstream(ctx, client, query, limit, 0);
    }

    /// Sends `query` to upstream number `upstream`, or SERVFAIL when none is left.
    fn try_upstream(
        &mut self,
        ctx: &mut Ctx,
        client: Client,
        query: Vec<u8>,
        limit: usize,
        upstream: usize,
    ) {
        let Some(server) = ctx.cfg.dns.upstreams.get(upstream).copied() else {
            ctx.counters.dns_servfail += 1;
            let msg = rcode_answer(&query, ResponseCode::ServFail);
            self.answer(client, msg, limit);
            return;
        };
        let bind: IpAddr = if server.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        };
        let sock = UdpSocket::bind((bind, 0))
            .and_then(|s| s.connect(server).map(|()| s))
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(|s| s.send(&query).map(|_| s));
        let Ok(sock) = sock else {
            return self.try_upstream(ctx, client, query, limit, upstream + 1);
        };
        let pending = Pending {
            client,
            query,
            limit,
            upstream,
            deadline: ctx.now + ctx.cfg.dns.timeout,
            io: Io::Udp(sock),
        };
        self.insert(ctx, pending, EpollFlags::EPOLLIN);
    }

    fn insert(&mut self, ctx: &mut Ctx, pending: Pending, flags: EpollFlags) {
        let ep = pending.client.endpoint();
        let h = self.pending.insert(pending);
        let registered = self.pending.get(h).map(|p| {
            let fd = match &p.io {
                Io::Udp(s) => s.as_fd(),
                Io::Tcp { stream, .. } => stream.as_fd(),
            };
            ctx.register(fd, Owner::Relay, h, flags)
        });
        if !matches!(registered, Some(Ok(()))) {
            if let Some(p) = self.pending.remove(h) {
                ctx.counters.dns_servfail += 1;
                let msg = rcode_answer(&p.query, ResponseCode::ServFail);
                self.answer(p.client, msg, p.limit);
            }
            return;
        }
        self.per_endpoint.add(ep);
    }

    fn take(&mut self, ctx: &mut Ctx, h: Handle) -> Option<Pending> {
        let p = self.pending.remove(h)?;
        match &p.io {
            Io::Udp(s) => ctx.deregister(s.as_fd()),
            Io::Tcp { stream, .. } => ctx.deregister(stream.as_fd()),
        }
        let ep = p.client.endpoint();
        self.per_endpoint.sub(ep);
        Some(p)
    }

    /// Moves a failed attempt on to the next upstream.
    fn next(&mut self, ctx: &mut Ctx, h: Handle) {
        if let Some(p) = self.take(ctx, h) {
            self.try_upstream(ctx, p.client, p.query, p.limit, p.upstream + 1);
        }
    }

    /// An upstream socket is ready.
    pub(crate) fn on_upstream(&mut self, ctx: &mut Ctx, h: Handle) {
        let Some(p) = self.pending.get_mut(h) else {
            return;
        };
        let id = header_id(&p.query);
        match &mut p.io {
            Io::Udp(sock) => {
                let mut buf = [0u8; UDP_MAX];
                match sock.recv(&mut buf) {
                    Ok(n) => {
                        let answer = buf.get(..n).unwrap_or(&[]);
                        if header_id(answer).is_none() || header_id(answer) != id {
                            return; // not our answer
                        }
                        let answer = answer.to_vec();
                        let Some(p) = self.take(ctx, h) else {
                            return;
                        };
                        if is_truncated(&answer) {
                            self.retry_tcp(ctx, p);
                        } else {
                            self.answer(p.client, answer, p.limit);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => self.next(ctx, h), // refused: nothing listens there
                }
            }
            Io::Tcp {
                stream,
                out,
                written,
                inbuf,
            } => {
                let failed = exchange(stream, out, written, inbuf);
                if let Some(msg) = whole_message(inbuf) {
                    let msg = msg.to_vec();
                    if let Some(p) = self.take(ctx, h) {
                        self.answer(p.client, msg, p.limit);
                    }
                } else if failed {
                    self.next(ctx, h);
                }
            }
        }
    }

    /// Asks the same upstream again over TCP (its UDP answer was truncated).
    fn retry_tcp(&mut self, ctx: &mut Ctx, p: Pending) {
        let Some(server) = ctx.cfg.dns.upstreams.get(p.upstream).copied() else {
            return self.try_upstream(ctx, p.client, p.query, p.limit, p.upstream + 1);
        };
        let domain = socket2::Domain::for_address(server);
        let started =
            socket2::Socket::new(domain, socket2::Type::STREAM.nonblocking().cloexec(), None)
                .and_then(|s| match s.connect(&server.into()) {
                    Ok(()) => Ok(s),
                    Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(s),
                    Err(e) => Err(e),
                });
        let (Ok(sock), Ok(len)) = (started, u16::try_from(p.query.len())) else {
            return self.try_upstream(ctx, p.client, p.query, p.limit, p.upstream + 1);
        };
        let mut out = len.to_be_bytes().to_vec();
        out.extend_from_slice(&p.query);
        let pending = Pending {
            io: Io::Tcp {
                stream: TcpStream::from(std::os::fd::OwnedFd::from(sock)),
                out,
                written: 0,
                inbuf: Vec::new(),
            },
            deadline: ctx.now + ctx.cfg.dns.timeout,
            ..p
        };
        self.insert(ctx, pending, EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT);
    }

    /// Moves timed-out relays to the next upstream (or SERVFAIL).
    pub(crate) fn expire(&mut self, ctx: &mut Ctx) {
        if self.pending.is_empty() {
            return;
        }
        let now = ctx.now;
        let late: Vec<Handle> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(h, _)| h)
            .collect();
        for h in late {
            self.next(ctx, h);
        }
    }

    /// Earliest relay deadline, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|(_, p)| p.deadline).min()
    }
}

/// Writes what is left of `out` and reads what has arrived; true if the connection failed.
fn exchange(stream: &mut TcpStream, out: &[u8], written: &mut usize, inbuf: &mut Vec<u8>) -> bool {
    while let Some(rest) = out.get(*written..).filter(|r| !r.is_empty()) {
        match stream.write(rest) {
            Ok(n) => *written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(_) => return true,
        }
    }
    let mut chunk = [0u8; 4096];
    loop {
        if inbuf.len() > 2 + usize::from(u16::MAX) {
            return true;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(n) => inbuf.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => return false,
            Err(_) => return true,
        }
    }
}

/// The first whole length-prefixed message of `buf`, if complete.
fn whole_message(buf: &[u8]) -> Option<&[u8]> {
    let (prefix, rest) = buf.split_first_chunk::<2>()?;
    rest.get(..usize::from(u16::from_be_bytes(*prefix)))
}
