//! UDP translation: one connected host socket per container flow, datagrams copied through
//! as they are; published UDP ports share their bound listener for every client.
//!
//! Model, outbound: a datagram from container C:p to D:q is sent from a host socket connected
//! to D:q, created for the 4-tuple on first use; whatever that socket receives comes back to
//! C:p from D:q. To the gateway address it goes to the host's 127.0.0.1 when the network has
//! host_loopback, else the container gets ICMP port unreachable; destinations the context's
//! policy forbids get ICMP administratively prohibited.
//!
//! Model, published: a datagram from client K to the published host port goes to the
//! container from K (the gateway address for loopback clients); the container's replies to K
//! leave through the listener socket, so K sees them come from the port it used.
//!
//! Both families: an IPv6 flow uses an IPv6 host socket (the destination's family); a
//! published port bound on an IPv6 address leads to the container's IPv6 address, and
//! clients that are the host itself appear as the gateway's IPv6 address (see
//! `Ctx::seen_client`).
//!
//! Limits: each flow (either kind) counts against the network's and its endpoint's quota
//! and is forgotten after `udp_timeout` without traffic in either direction. Datagrams that
//! do not fit the network's MTU are dropped (no fragmentation); at most 64 datagrams are read
//! per socket wakeup.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use nix::sys::epoll::EpollFlags;
use smoltcp::wire::{IpProtocol, Ipv4Packet, Ipv6Packet, UdpPacket};

use crate::ctx::{Ctx, Target, Unreachable};
use crate::device::Sink;
use crate::flow::{FlowInfo, FlowKey, FlowProtocol, Handle, Keys, Owner, Table};
use crate::publish::Publish;
use crate::timer::Timers;

/// Datagrams read from one socket per wakeup.
const READ_BATCH: usize = 64;

/// An outbound UDP flow.
struct UdpFlow {
    sock: UdpSocket,
    key: FlowKey,
    last: Instant,
    opened: Instant,
    /// Payload bytes sent to the remote side.
    to_remote: u64,
    /// Payload bytes delivered to the container.
    to_container: u64,
}

/// A client of a published UDP port.
struct PublishedFlow {
    listener: Handle,
    /// The client's real address (where replies go).
    client: SocketAddr,
    last: Instant,
    opened: Instant,
    /// Payload bytes sent to the client.
    to_remote: u64,
    /// Payload bytes delivered to the container.
    to_container: u64,
    /// The deadline booked for it in `published_deadlines` (older entries are stale).
    booked: Instant,
}

/// A published UDP port's bound socket.
pub(crate) struct Listener {
    pub publish: Publish,
    sock: UdpSocket,
}

/// UDP flows of one network.
#[derive(Default)]
pub(crate) struct Udp {
    flows: Table<UdpFlow>,
    keys: Keys,
    listeners: Table<Listener>,
    /// Published-port clients by (container side, client as the container sees it).
    published: HashMap<FlowKey, PublishedFlow, foldhash::fast::RandomState>,
    /// When each flow may have idled out (one entry per flow; see [`Udp::expire`]).
    deadlines: Timers<Handle>,
    published_deadlines: Timers<FlowKey>,
}

impl Udp {
    /// Up to `limit` live flows (outbound and published clients) into `out`; false if some
    /// were left out for the limit.
    pub(crate) fn list(&self, now: Instant, limit: usize, out: &mut Vec<FlowInfo>) -> bool {
        let outbound = self
            .flows
            .iter()
            .map(|(_, f)| (f.key, f.opened, f.to_remote, f.to_container));
        let published = self
            .published
            .iter()
            .map(|(k, f)| (*k, f.opened, f.to_remote, f.to_container));
        for (key, opened, to_remote, to_container) in outbound.chain(published) {
            if out.len() >= limit {
                return false;
            }
            out.push(FlowInfo {
                protocol: FlowProtocol::Udp,
                container: key.container,
                remote: key.peer,
                state: "active",
                age: now.saturating_duration_since(opened),
                to_remote,
                to_container,
            });
        }
        true
    }

    /// Live flows (outbound and published clients).
    pub(crate) fn live(&self) -> usize {
        self.flows.len() + self.published.len()
    }

    /// A UDP datagram from a container (a complete IPv4 or IPv6 packet, UDP right after the
    /// fixed IPv6 header) not meant for the gateway's own services.
    pub(crate) fn on_packet(&mut self, ctx: &mut Ctx, packet: &[u8], sink: &mut Sink<'_>) {
        let ((src, dst), segment): ((IpAddr, IpAddr), &[u8]) = match packet.first().map(|b| b >> 4)
        {
            Some(6) => {
                let Ok(ip) = Ipv6Packet::new_checked(packet) else {
                    return;
                };
                ((ip.src_addr().into(), ip.dst_addr().into()), ip.payload())
            }
            _ => {
                let Ok(ip) = Ipv4Packet::new_checked(packet) else {
                    return;
                };
                ((ip.src_addr().into(), ip.dst_addr().into()), ip.payload())
            }
        };
        let Ok(udp) = UdpPacket::new_checked(segment) else {
            return;
        };
        let payload = udp.payload();
        let key = FlowKey::new(
            SocketAddr::new(src, udp.src_port()),
            SocketAddr::new(dst, udp.dst_port()),
        );
        let now = ctx.now;
        // A reply to a published port's client?
        if let Some(f) = self.published.get_mut(&key) {
            f.last = now;
            f.to_remote += payload.len() as u64;
            if let Some(l) = self.listeners.get(f.listener) {
                let _ = l.sock.send_to(payload, f.client);
            }
            return;
        }
        if let Some(f) = self.keys.get(&key).and_then(|h| self.flows.get_mut(*h)) {
            f.last = now;
            f.to_remote += payload.len() as u64;
            let _ = f.sock.send(payload);
            return;
        }
        let target = match ctx.target(dst) {
            Target::Host(t) => t,
            Target::ClosedGateway => {
                ctx.unreachable(packet, Unreachable::Port, sink);
                return;
            }
            Target::Forbidden => {
                ctx.unreachable(packet, Unreachable::HostProhibited, sink);
                return;
            }
        };
        if ctx.admit(key.endpoint()).is_err() {
            ctx.unreachable(packet, Unreachable::CommProhibited, sink);
            return;
        }
        let dport = udp.dst_port();
        let any: IpAddr = if target.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        let local = ctx.cfg.outbound_for(target).unwrap_or(any);
        let sock = match UdpSocket::bind((local, 0))
            .and_then(|s| s.connect((target, dport)).map(|()| s))
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
        {
            Ok(s) => s,
            Err(e) => {
                ctx.release(key.endpoint());
                tracing::debug!("udp: cannot open a flow to {target}:{dport}: {e}");
                ctx.unreachable(packet, Unreachable::Host, sink);
                return;
            }
        };
        let _ = sock.send(payload);
        let h = self.flows.insert(UdpFlow {
            sock,
            key,
            last: now,
            opened: now,
            to_remote: payload.len() as u64,
            to_container: 0,
        });
        let registered = self
            .flows
            .get(h)
            .map(|f| ctx.register(f.sock.as_fd(), Owner::Udp, h, EpollFlags::EPOLLIN));
        if !matches!(registered, Some(Ok(()))) {
            self.flows.remove(h);
            ctx.release(key.endpoint());
            return;
        }
        self.keys.insert(key, h);
        self.deadlines.schedule(now + ctx.cfg.udp_timeout, h);
        ctx.counters.udp_flows += 1;
    }

    /// Replies arriving on an outbound flow's host socket.
    pub(crate) fn on_host_readable(&mut self, ctx: &mut Ctx, h: Handle, sink: &mut Sink<'_>) {
        for _ in 0..READ_BATCH {
            let Some(f) = self.flows.get_mut(h) else {
                return;
            };
            let n = match f.sock.recv(&mut ctx.dgram) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => continue, // e.g. ECONNREFUSED from an earlier ICMP error
            };
            f.last = ctx.now;
            f.to_container += n as u64;
            let (c, d) = (f.key.container, f.key.peer);
            deliver(ctx, d, c, n, sink);
        }
    }

    /// Serves a published port on a bound socket.
    pub(crate) fn add_listener(
        &mut self,
        ctx: &Ctx,
        publish: Publish,
        fd: OwnedFd,
    ) -> std::io::Result<Handle> {
        let h = self.listeners.insert(Listener {
            publish,
            sock: UdpSocket::from(fd),
        });
        let registered = match self.listeners.get(h) {
            Some(l) => ctx.register(l.sock.as_fd(), Owner::UdpListener, h, EpollFlags::EPOLLIN),
            None => Err(std::io::Error::other("listener vanished")),
        };
        if let Err(e) = registered {
            self.listeners.remove(h);
            return Err(e);
        }
        Ok(h)
    }

    /// Stops a published port and forgets its clients.
    pub(crate) fn remove_listener(&mut self, ctx: &mut Ctx, h: Handle) {
        if let Some(l) = self.listeners.remove(h) {
            ctx.deregister(l.sock.as_fd());
        }
        let gone: Vec<FlowKey> = self
            .published
            .iter()
            .filter(|(_, f)| f.listener == h)
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            self.published.remove(&k);
            ctx.release(k.endpoint());
        }
    }

    pub(crate) fn listener(&self, h: Handle) -> Option<&Listener> {
        self.listeners.get(h)
    }

    /// Datagrams from clients of a published port.
    pub(crate) fn on_listener_readable(&mut self, ctx: &mut Ctx, h: Handle, sink: &mut Sink<'_>) {
        for _ in 0..READ_BATCH {
            let Some(l) = self.listeners.get(h) else {
                return;
            };
            let publish = l.publish;
            let (n, client) = match l.sock.recv_from(&mut ctx.dgram) {
                Ok(r) => r,
                Err(_) => return,
            };
            let seen = SocketAddr::new(ctx.seen_client(client.ip()), client.port());
            let to = publish.container();
            if seen.is_ipv4() != to.is_ipv4() {
                continue;
            }
            let key = FlowKey::new(to, seen);
            match self.published.get_mut(&key) {
                Some(f) => {
                    f.last = ctx.now;
                    f.client = client;
                    f.to_container += n as u64;
                }
                None => {
                    if ctx.admit(key.endpoint()).is_err() {
                        continue;
                    }
                    self.published.insert(
                        key,
                        PublishedFlow {
                            listener: h,
                            client,
                            last: ctx.now,
                            opened: ctx.now,
                            to_remote: 0,
                            to_container: n as u64,
                            booked: ctx.now + ctx.cfg.udp_timeout,
                        },
                    );
                    self.published_deadlines
                        .schedule(ctx.now + ctx.cfg.udp_timeout, key);
                    ctx.counters.udp_flows += 1;
                }
            }
            deliver(ctx, seen, to, n, sink);
        }
    }

    /// Forgets flows idle for longer than `udp_timeout`. Each flow holds one deadline, its
    /// last activity plus the timeout as of when the deadline was booked; a flow that was
    /// active since is booked again instead of removed, so this touches only flows whose
    /// deadline came.
    pub(crate) fn expire(&mut self, ctx: &mut Ctx) {
        let (now, timeout) = (ctx.now, ctx.cfg.udp_timeout);
        let (flows, keys) = (&mut self.flows, &mut self.keys);
        self.deadlines.expire_idle(now, timeout, |_, h| {
            let last = flows.get(h)?.last;
            if now.saturating_duration_since(last) < timeout {
                return Some(last);
            }
            let f = flows.remove(h)?;
            ctx.deregister(f.sock.as_fd());
            keys.remove(&f.key);
            ctx.release(f.key.endpoint());
            ctx.counters.expired += 1;
            None
        });
        if self.flows.is_empty() && self.keys.capacity() > 0 {
            // The table gave its slots back; so do the index and the deadline heap.
            self.keys = Keys::default();
            self.deadlines = Timers::default();
        }
        let published = &mut self.published;
        self.published_deadlines.expire_idle(now, timeout, |at, k| {
            // A client forgotten and seen again holds a newer entry; this one is stale.
            let f = published.get_mut(&k).filter(|f| f.booked == at)?;
            if now.saturating_duration_since(f.last) < timeout {
                f.booked = f.last + timeout;
                return Some(f.last);
            }
            published.remove(&k);
            ctx.release(k.endpoint());
            ctx.counters.expired += 1;
            None
        });
    }
}

/// Sends the first `len` bytes of the context's datagram buffer to a container as UDP
/// from `from` (both of one family).
fn deliver(ctx: &mut Ctx, from: SocketAddr, to: SocketAddr, len: usize, sink: &mut Sink<'_>) {
    let Ok(udp_len) = u16::try_from(8 + len) else {
        return;
    };
    let dgram = std::mem::take(&mut ctx.dgram);
    let (src, dst) = (from.ip(), to.ip());
    ctx.send_ip(
        src,
        dst,
        IpProtocol::Udp,
        usize::from(udp_len),
        sink,
        |buf| {
            let mut pkt = UdpPacket::new_unchecked(buf);
            pkt.set_src_port(from.port());
            pkt.set_dst_port(to.port());
            pkt.set_len(udp_len);
            if let (Some(dst), Some(src)) = (pkt.payload_mut().get_mut(..len), dgram.get(..len)) {
                dst.copy_from_slice(src);
            }
            pkt.fill_checksum(&src.into(), &dst.into());
        },
    );
    ctx.dgram = dgram;
}
