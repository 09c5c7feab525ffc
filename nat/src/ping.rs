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
//! Limits: flows count against the network's and the endpoint's quota and expire after
//! `udp_timeout` idle; at most 64 replies are read per wakeup.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::time::Instant;

use nix::sys::epoll::EpollFlags;
use smoltcp::wire::{
    Icmpv4DstUnreachable, Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Packet, Ipv4Repr,
};
use socket2::{Domain, Protocol, Socket, Type};

use crate::ctx::{Ctx, Target};
use crate::device::Sink;
use crate::flow::{Handle, Owner, Table};
use crate::timer::Timers;

/// (container address, echo identifier, destination).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct EchoKey {
    container: Ipv4Addr,
    ident: u16,
    peer: Ipv4Addr,
}

const READ_BATCH: usize = 64;

/// One echo flow.
struct PingFlow {
    sock: Socket,
    key: EchoKey,
    last: Instant,
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

    /// An ICMP packet from a container to an outside address.
    pub(crate) fn on_packet(&mut self, ctx: &mut Ctx, packet: &[u8], sink: &mut Sink<'_>) {
        let Ok(ip) = Ipv4Packet::new_checked(packet) else {
            return;
        };
        let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else {
            return;
        };
        if icmp.msg_type() != Icmpv4Message::EchoRequest || ip.dst_addr() == ctx.cfg.gateway_ip {
            return;
        }
        let key = EchoKey {
            container: ip.src_addr(),
            ident: icmp.echo_ident(),
            peer: ip.dst_addr(),
        };
        let h = match self.keys.get(&key) {
            Some(&h) => h,
            None => match self.open(ctx, key, packet, sink) {
                Some(h) => h,
                None => return,
            },
        };
        if let Some(f) = self.flows.get_mut(h) {
            f.last = ctx.now;
            // The kernel sets the identifier to the socket's and computes the checksum.
            let _ = (&f.sock).write(ip.payload());
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
                ctx.unreachable(packet, Icmpv4DstUnreachable::HostProhibited, sink);
                return None;
            }
        }
        let ep = IpAddr::V4(key.container);
        ctx.admit(ep).ok()?;
        let sock = match Socket::new(
            Domain::IPV4,
            Type::DGRAM.nonblocking().cloexec(),
            Some(Protocol::ICMPV4),
        ) {
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
        if let Err(e) = sock.connect(&SocketAddrV4::new(key.peer, 0).into()) {
            ctx.release(ep);
            tracing::debug!("ping: cannot reach {}: {e}", key.peer);
            ctx.unreachable(packet, Icmpv4DstUnreachable::HostUnreachable, sink);
            return None;
        }
        let h = self.flows.insert(PingFlow {
            sock,
            key,
            last: ctx.now,
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
            let Some(reply) = ctx.dgram.get_mut(..n) else {
                continue;
            };
            let Ok(mut icmp) = Icmpv4Packet::new_checked(reply) else {
                continue;
            };
            if icmp.msg_type() != Icmpv4Message::EchoReply {
                continue;
            }
            icmp.set_echo_ident(key.ident);
            icmp.fill_checksum();
            let ip = Ipv4Repr {
                src_addr: key.peer,
                dst_addr: key.container,
                next_header: IpProtocol::Icmp,
                payload_len: n,
                hop_limit: 64,
            };
            let dgram = std::mem::take(&mut ctx.dgram);
            ctx.send_ipv4(ip, sink, |buf| {
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
            ctx.release(IpAddr::V4(f.key.container));
            ctx.counters.expired += 1;
            None
        });
    }
}
