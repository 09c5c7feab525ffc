//! DNS over TCP from containers to the gateway's port 53 (RFC 7766): the connection is
//! terminated in smoltcp like any other, but served here instead of being dialled out:
//! length-prefixed queries are answered locally or relayed (`dns_relay.rs`), answers written
//! back on the same connection, which stays open for more queries until the container closes.
//! Limits: one message of at most 65,535 bytes buffered per connection; connections count
//! against `max_flows`.

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{Socket, SocketBuffer, State};
use smoltcp::wire::IpListenEndpoint;

use crate::device::Sink;
use crate::engine::{Nat, Slot};
use crate::tcp::{Key, send_rst};

/// A DNS-over-TCP connection from a container to the gateway's port 53: served here, no
/// host socket.
pub(crate) struct DnsTcp {
    handle: SocketHandle,
    key: Key,
    /// Bytes received and not yet a whole length-prefixed query.
    inbuf: Vec<u8>,
}

/// Largest DNS-over-TCP message plus its length prefix.
const DNS_TCP_MAX: usize = 2 + 65_535;

/// Accepts a DNS-over-TCP connection to the gateway; false if refused.
pub(crate) fn start(nat: &mut Nat, key: Key, syn: &[u8], sink: &mut Sink<'_>) -> bool {
    if !nat.admit() {
        send_rst(nat, syn, sink);
        return false;
    }
    let mut s = Socket::new(
        SocketBuffer::new(vec![0; 1 << 16]),
        SocketBuffer::new(vec![0; 1 << 17]),
    );
    s.set_nagle_enabled(false);
    s.set_ack_delay(None);
    if s.listen(IpListenEndpoint {
        addr: Some(key.2.into()),
        port: 53,
    })
    .is_err()
    {
        send_rst(nat, syn, sink);
        return false;
    }
    let handle = nat.sockets.add(s);
    let token = nat.insert_slot(Slot::DnsTcp(DnsTcp {
        handle,
        key,
        inbuf: Vec::new(),
    }));
    nat.tcp_keys.insert(key, token);
    nat.tcp_live += 1;
    true
}

/// Reads whole queries from a DNS-over-TCP connection and answers or relays them.
pub(crate) fn pump(nat: &mut Nat, token: usize, sink: &mut Sink<'_>) {
    let mut queries: Vec<Vec<u8>> = Vec::new();
    let (querier, state) = {
        let Nat { slots, sockets, .. } = &mut *nat;
        let Some(Slot::DnsTcp(flow)) = slots[token].as_mut() else {
            return;
        };
        let sock = sockets.get_mut::<Socket>(flow.handle);
        while sock.can_recv() && flow.inbuf.len() < DNS_TCP_MAX {
            let room = DNS_TCP_MAX - flow.inbuf.len();
            let inbuf = &mut flow.inbuf;
            let _ = sock.recv(|b| {
                let n = b.len().min(room);
                inbuf.extend_from_slice(&b[..n]);
                (n, ())
            });
        }
        while flow.inbuf.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([flow.inbuf[0], flow.inbuf[1]]));
            if flow.inbuf.len() < 2 + len {
                break;
            }
            queries.push(flow.inbuf[2..2 + len].to_vec());
            flow.inbuf.drain(..2 + len);
        }
        if !sock.may_recv() && sock.is_open() && flow.inbuf.is_empty() && queries.is_empty() {
            sock.close();
        }
        (flow.key.0, sock.state())
    };
    for q in queries {
        match crate::dns::local(nat, querier, &q, Some(65_535)) {
            crate::dns::Outcome::Reply(b) => reply(nat, token, &b, sink),
            crate::dns::Outcome::Drop => {}
            crate::dns::Outcome::Forward => {
                crate::dns_relay::forward(
                    nat,
                    crate::dns_relay::Client::Tcp(token),
                    q,
                    65_535,
                    0,
                    sink,
                );
            }
        }
    }
    nat.poll_iface(None, sink);
    if matches!(state, State::Closed | State::TimeWait)
        && let Some(Slot::DnsTcp(flow)) = nat.take_slot(token)
    {
        nat.sockets.remove(flow.handle);
        nat.tcp_keys.remove(&flow.key);
        nat.tcp_live -= 1;
    }
}

/// Writes one length-prefixed DNS answer on a DNS-over-TCP connection.
pub(crate) fn reply(nat: &mut Nat, token: usize, msg: &[u8], sink: &mut Sink<'_>) {
    let Some(Slot::DnsTcp(flow)) = nat.slots.get(token).and_then(Option::as_ref) else {
        return;
    };
    let sock = nat.sockets.get_mut::<Socket>(flow.handle);
    if sock.send_capacity() - sock.send_queue() >= 2 + msg.len() {
        let _ = sock.send_slice(&(msg.len() as u16).to_be_bytes());
        let _ = sock.send_slice(msg);
    }
    nat.poll_iface(None, sink);
}
