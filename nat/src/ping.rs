//! ICMP echo translation: pings from containers to outside addresses leave through
//! unprivileged ICMP sockets (`SOCK_DGRAM`/`IPPROTO_ICMP`), one per (container, identifier,
//! destination); replies come back with the container's identifier restored.
//!
//! The host must allow such sockets (`net.ipv4.ping_group_range` covering the daemon's gid;
//! many distributions do, Debian's default `1 0` does not). Only a failure to *create* the
//! socket means ping is unavailable, and that is logged once with the fix; a failed
//! `connect` (EACCES for a broadcast address, say) concerns that destination alone and is
//! logged at debug. Pings to the gateway are answered by the gateway itself either way.
//!
//! IPv6: echo requests (ICMPv6 type 128) leave through unprivileged ICMPv6 sockets
//! (`SOCK_DGRAM`/`IPPROTO_ICMPV6`, governed by the same sysctl); replies (type 129) come back
//! with the identifier restored and the checksum computed over the IPv6 pseudo-header.
//! Echoes to the gateway's IPv6 address are the gateway's (`icmp.rs`), never translated here.
//!
//! Limits: flows count against the network's and the endpoint's quota and expire after
//! `udp_timeout` idle; at most 64 replies are read per wakeup.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::time::Instant;

use nix::sys::epoll::EpollFlags;
use smoltcp::wire::{
    Icmpv4Message, Icmpv4Packet, Icmpv6Message, Icmpv6Packet, IpProtocol, Ipv4Packet, Ipv6Packet,
};
use socket2::{Domain, Protocol, Socket, Type};

use crate::ctx::{Ctx, Target, Unreachable};
use crate::device::Sink;
use crate::flow::{FlowInfo, FlowProtocol, Handle, Owner, Table};
use crate::timer::Timers;

/// (container address, echo identifier, destination).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct EchoKey {
    container: IpAddr,
    ident: u16,
    peer: IpAddr,
}

const READ_BATCH: usize = 64;

/// One echo flow.
struct PingFlow {
    sock: Socket,
    key: EchoKey,
    last: Instant,
    opened: Instant,
    /// ICMP message bytes sent to the remote side.
    to_remote: u64,
    /// ICMP message bytes delivered to the container.
    to_container: u64,
}

/// ICMP echo flows of one network.
#[derive(Default)]
pub(crate) struct Ping {
    flows: Table<PingFlow>,
    keys: HashMap<EchoKey, Handle, foldhash::fast::RandomState>,
    /// When each flow may have idled out (see `Udp::expire`, which works the same way).
    deadlines: Timers<Handle>,
}

impl Ping {
    pub(crate) fn live(&self) -> usize {
        self.flows.len()
    }

    /// Up to `limit` live echo flows into `out` (the container's port is its echo
    /// identifier, the remote's 0); false if some were left out for the limit.
    pub(crate) fn list(&self, now: Instant, limit: usize, out: &mut Vec<FlowInfo>) -> bool {
        for (_, f) in self.flows.iter() {
            if out.len() >= limit {
                return false;
            }
            out.push(FlowInfo {
                protocol: FlowProtocol::Icmp,
                container: SocketAddr::new(f.key.container, f.key.ident),
                remote: SocketAddr::new(f.key.peer, 0),
                state: "active",
                age: now.saturating_duration_since(f.opened),
                to_remote: f.to_remote,
                to_container: f.to_container,
            });
        }
        true
    }

    /// An ICMP packet from a container to an outside address.
    pub(crate) fn on_packet(&mut self, ctx: &mut Ctx, packet: &[u8], sink: &mut Sink<'_>) {
        let Ok(ip) = Ipv4Packet::new_checked(packet) else {
            return;
        };
        let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else {
            return;
        };
        if icmp.msg_type() != Icmpv4Message::EchoRequest || ctx.cfg.is_service(ip.dst_addr().into())
        {
            return;
        }
        let key = EchoKey {
            container: ip.src_addr().into(),
            ident: icmp.echo_ident(),
            peer: ip.dst_addr().into(),
        };
        self.echo(ctx, key, packet, ip.payload(), sink);
    }

    /// An ICMPv6 packet from a container (ICMPv6 right after the fixed header) to an
    /// outside address: echo requests are translated, the rest ignored.
    pub(crate) fn on_packet6(&mut self, ctx: &mut Ctx, packet: &[u8], sink: &mut Sink<'_>) {
        let Ok(ip) = Ipv6Packet::new_checked(packet) else {
            return;
        };
        let Ok(icmp) = Icmpv6Packet::new_checked(ip.payload()) else {
            return;
        };
        if icmp.msg_type() != Icmpv6Message::EchoRequest
            || icmp.msg_code() != 0
            || ctx.cfg.is_service(ip.dst_addr().into())
        {
            return;
        }
        let key = EchoKey {
            container: ip.src_addr().into(),
            ident: icmp.echo_ident(),
            peer: ip.dst_addr().into(),
        };
        self.echo(ctx, key, packet, ip.payload(), sink);
    }

    /// Sends echo request `message` (the ICMP part of `packet`) on `key`'s flow, opening it
    /// first if it is new.
    fn echo(
        &mut self,
        ctx: &mut Ctx,
        key: EchoKey,
        packet: &[u8],
        message: &[u8],
        sink: &mut Sink<'_>,
    ) {
        let h = match self.keys.get(&key) {
            Some(&h) => h,
            None => match self.open(ctx, key, packet, sink) {
                Some(h) => h,
                None => return,
            },
        };
        if let Some(f) = self.flows.get_mut(h) {
            f.last = ctx.now;
            f.to_remote += message.len() as u64;
            // The kernel sets the identifier to the socket's and computes the checksum.
            let _ = (&f.sock).write(message);
            ctx.counters.icmp_echoes += 1;
        }
    }

    fn open(
        &mut self,
        ctx: &mut Ctx,
        key: EchoKey,
        packet: &[u8],
        sink: &mut Sink<'_>,
    ) -> Option<Handle> {
        match ctx.target(key.peer) {
            Target::Host(ip) if ip == key.peer => {}
            Target::Host(_) | Target::ClosedGateway => return None,
            Target::Forbidden => {
                ctx.unreachable(packet, Unreachable::HostProhibited, sink);
                return None;
            }
        }
        let ep = key.container;
        ctx.admit(ep).ok()?;
        let (domain, proto) = if key.peer.is_ipv4() {
            (Domain::IPV4, Protocol::ICMPV4)
        } else {
            (Domain::IPV6, Protocol::ICMPV6)
        };
        let sock = match Socket::new(domain, Type::DGRAM.nonblocking().cloexec(), Some(proto)) {
            Ok(s) => s,
            Err(e) => {
                ctx.release(ep);
                ctx.warn_once(
                    "ping-socket",
                    format_args!(
                        "ping to outside addresses unavailable: cannot open an unprivileged ICMP \
                         socket ({e}); allow it with sysctl net.ipv4.ping_group_range=\"0 2147483647\""
                    ),
                );
                return None;
            }
        };
        let bound = match ctx.cfg.outbound_for(key.peer) {
            Some(local) => sock.bind(&SocketAddr::new(local, 0).into()),
            None => Ok(()),
        };
        if let Err(e) = bound.and_then(|()| sock.connect(&SocketAddr::new(key.peer, 0).into())) {
            ctx.release(ep);
            tracing::debug!("ping: cannot reach {}: {e}", key.peer);
            ctx.unreachable(packet, Unreachable::Host, sink);
            return None;
        }
        let h = self.flows.insert(PingFlow {
            sock,
            key,
            last: ctx.now,
            opened: ctx.now,
            to_remote: 0,
            to_container: 0,
        });
        let registered = self
            .flows
            .get(h)
            .map(|f| ctx.register(f.sock.as_fd(), Owner::Ping, h, EpollFlags::EPOLLIN));
        if !matches!(registered, Some(Ok(()))) {
            self.flows.remove(h);
            ctx.release(ep);
            return None;
        }
        self.keys.insert(key, h);
        self.deadlines.schedule(ctx.now + ctx.cfg.udp_timeout, h);
        Some(h)
    }

    /// Echo replies on a flow's socket.
    pub(crate) fn on_host_readable(&mut self, ctx: &mut Ctx, h: Handle, sink: &mut Sink<'_>) {
        for _ in 0..READ_BATCH {
            let Some(f) = self.flows.get_mut(h) else {
                return;
            };
            let key = f.key;
            let n = match (&f.sock).read(&mut ctx.dgram) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => continue,
            };
            f.last = ctx.now;
            f.to_container += n as u64;
            let Some(reply) = ctx.dgram.get_mut(..n) else {
                continue;
            };
            let proto = match (key.container, key.peer) {
                (IpAddr::V4(_), _) => {
                    let Ok(mut icmp) = Icmpv4Packet::new_checked(reply) else {
                        continue;
                    };
                    if icmp.msg_type() != Icmpv4Message::EchoReply {
                        continue;
                    }
                    icmp.set_echo_ident(key.ident);
                    icmp.fill_checksum();
                    IpProtocol::Icmp
                }
                (IpAddr::V6(container), IpAddr::V6(peer)) => {
                    let Ok(mut icmp) = Icmpv6Packet::new_checked(reply) else {
                        continue;
                    };
                    if icmp.msg_type() != Icmpv6Message::EchoReply {
                        continue;
                    }
                    icmp.set_echo_ident(key.ident);
                    icmp.fill_checksum(&peer, &container);
                    IpProtocol::Icmpv6
                }
                _ => continue,
            };
            let dgram = std::mem::take(&mut ctx.dgram);
            ctx.send_ip(key.peer, key.container, proto, n, sink, |buf| {
                if let (Some(d), Some(s)) = (buf.get_mut(..n), dgram.get(..n)) {
                    d.copy_from_slice(s);
                }
            });
            ctx.dgram = dgram;
        }
    }

    /// Forgets echo flows idle for longer than `udp_timeout` (touching only flows whose
    /// deadline came; see `Udp::expire`).
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
            ctx.release(f.key.container);
            ctx.counters.expired += 1;
            None
        });
    }
}
