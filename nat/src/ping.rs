//! ICMP echo translation: pings from containers to outside addresses leave through
//! unprivileged ICMP sockets (`SOCK_DGRAM`/`IPPROTO_ICMP`), one per (container, identifier,
//! destination); replies come back with the container's identifier restored.
//!
//! The host must allow such sockets (`net.ipv4.ping_group_range` covering the daemon's gid;
//! many distributions do, Debian's default `1 0` does not). Where it does not, the first
//! attempt logs one clear warning and pings to outside addresses go unanswered; pings to the
//! gateway are answered by the gateway itself either way.
//!
//! Limits: flows count against `max_flows` and expire after `udp_timeout` idle; at most 64
//! replies are read per wakeup.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::time::Instant;

use nix::sys::epoll::EpollFlags;
use smoltcp::wire::{Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Packet, Ipv4Repr};
use socket2::{Domain, Protocol, Socket, Type};

use crate::device::Sink;
use crate::emit::send_ipv4;
use crate::engine::{Nat, Slot};

/// (container address, echo identifier, destination).
pub(crate) type Key = (Ipv4Addr, u16, Ipv4Addr);

const READ_BATCH: usize = 64;

/// One echo flow.
pub(crate) struct PingFlow {
    sock: Socket,
    key: Key,
    last: Instant,
}

/// An ICMP packet from a container to an outside address.
pub(crate) fn on_packet(nat: &mut Nat, packet: &[u8], _sink: &mut Sink<'_>) {
    let ip = Ipv4Packet::new_unchecked(packet);
    let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else {
        return;
    };
    if icmp.msg_type() != Icmpv4Message::EchoRequest || ip.dst_addr() == nat.cfg.gateway_ip {
        return;
    }
    let key = (ip.src_addr(), icmp.echo_ident(), ip.dst_addr());
    let now = Instant::now();
    let token = match nat.ping_keys.get(&key) {
        Some(&t) => t,
        None => {
            if !nat.admit() {
                return;
            }
            let sock = match Socket::new(
                Domain::IPV4,
                Type::DGRAM.nonblocking().cloexec(),
                Some(Protocol::ICMPV4),
            )
            .and_then(|s| s.connect(&SocketAddrV4::new(key.2, 0).into()).map(|()| s))
            {
                Ok(s) => s,
                Err(e) => {
                    nat.log_ping_unavailable(&e);
                    return;
                }
            };
            let t = nat.insert_slot(Slot::Ping(PingFlow {
                sock,
                key,
                last: now,
            }));
            let Some(Slot::Ping(f)) = nat.slots[t].as_ref() else {
                unreachable!("just inserted")
            };
            if nat
                .register(f.sock.as_fd(), t, EpollFlags::EPOLLIN)
                .is_err()
            {
                nat.take_slot(t);
                return;
            }
            nat.ping_keys.insert(key, t);
            nat.ping_live = nat.ping_keys.len();
            t
        }
    };
    if let Some(Slot::Ping(f)) = nat.slots[token].as_mut() {
        f.last = now;
        // The kernel sets the identifier to the socket's and computes the checksum.
        let _ = (&f.sock).write(ip.payload());
        nat.counters.icmp_echoes += 1;
    }
}

/// Echo replies on a flow's socket.
pub(crate) fn on_host_readable(nat: &mut Nat, token: usize, sink: &mut Sink<'_>) {
    for _ in 0..READ_BATCH {
        let Some(Slot::Ping(f)) = nat.slots[token].as_mut() else {
            return;
        };
        let (container, ident, dst) = f.key;
        let n = match (&f.sock).read(&mut nat.dgram) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(_) => continue,
        };
        f.last = Instant::now();
        let Ok(mut icmp) = Icmpv4Packet::new_checked(&mut nat.dgram[..n]) else {
            continue;
        };
        if icmp.msg_type() != Icmpv4Message::EchoReply {
            continue;
        }
        icmp.set_echo_ident(ident);
        icmp.fill_checksum();
        let ip = Ipv4Repr {
            src_addr: dst,
            dst_addr: container,
            next_header: IpProtocol::Icmp,
            payload_len: n,
            hop_limit: 64,
        };
        let dgram = std::mem::take(&mut nat.dgram);
        send_ipv4(nat, ip, sink, |buf| buf[..n].copy_from_slice(&dgram[..n]));
        nat.dgram = dgram;
    }
}

/// Forgets echo flows idle for longer than `udp_timeout`.
pub(crate) fn expire(nat: &mut Nat, now: Instant) {
    let timeout = nat.cfg.udp_timeout;
    let idle: Vec<(Key, usize)> = nat
        .ping_keys
        .iter()
        .filter(|(_, t)| matches!(nat.slots[**t].as_ref(), Some(Slot::Ping(f)) if now.duration_since(f.last) >= timeout))
        .map(|(k, t)| (*k, *t))
        .collect();
    for (key, token) in idle {
        nat.ping_keys.remove(&key);
        if let Some(Slot::Ping(f)) = nat.take_slot(token) {
            nat.deregister(f.sock.as_fd());
        }
        nat.counters.expired += 1;
    }
    nat.ping_live = nat.ping_keys.len();
}
