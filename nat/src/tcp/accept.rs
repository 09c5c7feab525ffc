//! Published TCP ports: a host listener whose accepted connections become smoltcp
//! connections into the container, from the real client address (the gateway address for
//! loopback clients, which a container drops as martian). IPv6 listeners ([::]:P, bound
//! V6ONLY by the daemon) lead to the container's IPv6 address; a client that is the host
//! itself (::1, one of the daemon's addresses, a link-local address) appears as the
//! gateway's IPv6 address.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use nix::sys::epoll::EpollFlags;
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};
use socket2::SockRef;

use super::{Far, HostSide, Phase, Tcp, buffers};
use crate::ctx::Ctx;
use crate::device::Sink;
use crate::flow::{FlowKey, Handle, Owner};
use crate::publish::Publish;

/// Connections accepted per listener wakeup before others get their turn.
const ACCEPT_BATCH: usize = 16;

/// A published TCP port's listener.
pub(crate) struct Listener {
    pub publish: Publish,
    sock: TcpListener,
}

impl Tcp {
    /// Serves a published port on a listening socket.
    pub(crate) fn add_listener(
        &mut self,
        ctx: &Ctx,
        publish: Publish,
        fd: OwnedFd,
    ) -> std::io::Result<Handle> {
        let h = self.listeners.insert(Listener {
            publish,
            sock: TcpListener::from(fd),
        });
        let fd = self.listeners.get(h).map(|l| l.sock.as_fd());
        let registered = match fd {
            Some(fd) => ctx.register(fd, Owner::TcpListener, h, EpollFlags::EPOLLIN),
            None => Err(std::io::Error::other("listener vanished")),
        };
        if let Err(e) = registered {
            self.listeners.remove(h);
            return Err(e);
        }
        Ok(h)
    }

    /// Stops a published port (its connections go on).
    pub(crate) fn remove_listener(&mut self, ctx: &Ctx, h: Handle) {
        if let Some(l) = self.listeners.remove(h) {
            ctx.deregister(l.sock.as_fd());
        }
    }

    pub(crate) fn listener(&self, h: Handle) -> Option<&Listener> {
        self.listeners.get(h)
    }

    /// Accepts connections on a published port and opens their container side.
    pub(crate) fn on_accept(&mut self, ctx: &mut Ctx, h: Handle, sink: &mut Sink<'_>) {
        for _ in 0..ACCEPT_BATCH {
            let Some(l) = self.listeners.get(h) else {
                return;
            };
            let publish = l.publish;
            let (stream, peer) = match l.sock.accept() {
                Ok(a) => a,
                Err(_) => break,
            };
            let refuse = |s: &std::net::TcpStream| {
                let _ = SockRef::from(s).set_linger(Some(Duration::ZERO));
            };
            let container = publish.container();
            let src = ctx.seen_client(peer.ip());
            if src.is_ipv4() != container.is_ipv4() {
                refuse(&stream);
                continue;
            }
            let key = FlowKey::new(container, SocketAddr::new(src, peer.port()));
            if self.keys.contains_key(&key) || ctx.admit(key.endpoint()).is_err() {
                refuse(&stream);
                continue;
            }
            let _ = stream.set_nonblocking(true);
            let _ = stream.set_nodelay(true);
            let Some(mut s) = buffers::open(ctx) else {
                ctx.release(key.endpoint());
                refuse(&stream);
                continue;
            };
            let remote = IpEndpoint::new(container.ip().into(), container.port());
            let local = IpListenEndpoint {
                addr: Some(src.into()),
                port: peer.port(),
            };
            if s.connect(self.iface.context(), remote, local).is_err() {
                ctx.budget.give(buffers::charged(&s));
                ctx.release(key.endpoint());
                refuse(&stream);
                continue;
            }
            let far = Far::Host(HostSide {
                stream,
                phase: Phase::Open,
                host_readable: false,
                host_writable: true,
                host_eof: false,
                shut_wr: false,
                peer_fin: false,
            });
            if let Some(h) = self.insert(ctx, key, s, far) {
                ctx.counters.tcp_opened += 1;
                self.poll_flow(ctx, h, None, sink);
            } else {
                ctx.release(key.endpoint());
            }
        }
    }
}
