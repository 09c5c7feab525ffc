//! Local-service connections: TCP to the gateway's DNS port, terminated in smoltcp and
//! served in the daemon instead of being dialled out (DNS over TCP, RFC 7766).
//!
//! Each connection collects length-prefixed messages (at most one whole 65,535-byte
//! message buffered; its socket buffers start small and the send side grows to fit answers) and hands complete ones to the engine as [`LocalMessage`]s; answers
//! come back through [`Tcp::send_local`]. A connection whose container closed its side is
//! closed as soon as no relayed answer is outstanding (a partial message left behind can never
//! complete and is discarded); one idle for [`IDLE_TIMEOUT`] is reset. Each endpoint may hold
//! [`MAX_PER_ENDPOINT`] such connections.

use std::net::IpAddr;
use std::time::Duration;

use smoltcp::socket::tcp::{Socket, State};
use smoltcp::wire::IpListenEndpoint;

use super::{Far, LocalMessage, Tcp, TcpFlow, buffers};
use crate::ctx::Ctx;
use crate::device::Sink;
use crate::flow::{FlowKey, Handle};
use crate::tcp::Syn;

/// A DNS-over-TCP connection idle this long is reset.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// DNS-over-TCP connections one endpoint may hold.
pub(crate) const MAX_PER_ENDPOINT: usize = 16;
/// Largest message plus its length prefix.
const MAX_MSG: usize = 2 + 65_535;
/// Largest send buffer of a local connection: two whole answers.
const TX_MAX: usize = 1 << 17;

impl Tcp {
    /// Accepts a connection to a local service; None if refused (answered with RST).
    pub(super) fn open_local(
        &mut self,
        ctx: &mut Ctx,
        key: FlowKey,
        syn: &Syn,
        sink: &mut Sink<'_>,
    ) -> Option<Handle> {
        let ep = key.endpoint();
        if self.local_conns.held_by(ep) >= MAX_PER_ENDPOINT {
            ctx.counters.refused_endpoint_quota += 1;
            super::send_rst(ctx, syn, sink);
            return None;
        }
        if ctx.admit(ep).is_err() {
            super::send_rst(ctx, syn, sink);
            return None;
        }
        let Some(mut s) = buffers::open(ctx) else {
            ctx.release(ep);
            super::send_rst(ctx, syn, sink);
            return None;
        };
        if s.listen(IpListenEndpoint {
            addr: Some(key.peer.ip().into()),
            port: key.peer.port(),
        })
        .is_err()
        {
            ctx.budget.give(buffers::charged(&s));
            ctx.release(ep);
            super::send_rst(ctx, syn, sink);
            return None;
        }
        let far = Far::Local {
            inbuf: Vec::new(),
            outstanding: 0,
        };
        let Some(h) = self.insert(ctx, key, s, far) else {
            ctx.release(ep);
            return None;
        };
        self.local_conns.add(ep);
        Some(h)
    }

    /// Writes one answer, length-prefixed, on local connection `h` (gone: dropped).
    /// `relayed` says it answers a message handed out earlier as needing a relay.
    pub(crate) fn send_local(
        &mut self,
        ctx: &mut Ctx,
        h: Handle,
        msg: &[u8],
        relayed: bool,
        sink: &mut Sink<'_>,
    ) {
        let Some(flow) = self.flows.get_mut(h) else {
            return;
        };
        let Far::Local { outstanding, .. } = &mut flow.far else {
            return;
        };
        if relayed {
            *outstanding = outstanding.saturating_sub(1);
        }
        let sock = flow.conn.sock_mut();
        let Ok(len) = u16::try_from(msg.len()) else {
            return;
        };
        buffers::fit_tx(ctx, sock, 2 + msg.len(), TX_MAX);
        if sock.send_capacity() - sock.send_queue() >= 2 + msg.len() {
            let _ = sock.send_slice(&len.to_be_bytes());
            let _ = sock.send_slice(msg);
            flow.last = ctx.now;
        }
        self.poll_flow(ctx, h, None, sink);
        self.pump(ctx, h, sink);
    }

    /// Notes that a message of local connection `h` went to the relay: the connection stays
    /// open for its answer even if the container half-closes.
    pub(crate) fn expect_relayed(&mut self, h: Handle) {
        if let Some(TcpFlow {
            far: Far::Local { outstanding, .. },
            ..
        }) = self.flows.get_mut(h)
        {
            *outstanding = outstanding.saturating_add(1);
        }
    }
}

/// Reads whole messages off one local connection; returns (moved, done).
pub(super) fn pump(
    sock: &mut Socket<'_>,
    inbuf: &mut Vec<u8>,
    outstanding: u16,
    h: Handle,
    querier: IpAddr,
    out: &mut Vec<LocalMessage>,
) -> (bool, bool) {
    let mut moved = false;
    while sock.can_recv() && inbuf.len() < MAX_MSG {
        let room = MAX_MSG - inbuf.len();
        let got = sock.recv(|b| {
            let n = b.len().min(room);
            inbuf.extend_from_slice(b.get(..n).unwrap_or(&[]));
            (n, n)
        });
        match got {
            Ok(n) if n > 0 => moved = true,
            _ => break,
        }
    }
    let mut extracted = false;
    while let Some((len, rest)) = split_message(inbuf) {
        out.push(LocalMessage {
            flow: h,
            querier,
            bytes: rest.get(..len).unwrap_or(&[]).to_vec(),
        });
        inbuf.drain(..2 + len);
        extracted = true;
    }
    if !sock.may_recv() && sock.is_open() && !extracted && outstanding == 0 {
        // The container is done sending; a partial message can never complete.
        inbuf.clear();
        sock.close();
        moved = true;
    }
    let done = matches!(sock.state(), State::Closed | State::TimeWait);
    (moved, done)
}

/// The length of the first whole message in `buf` and the bytes after its prefix.
fn split_message(buf: &[u8]) -> Option<(usize, &[u8])> {
    let (prefix, rest) = buf.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*prefix));
    (rest.len() >= len).then_some((len, rest))
}

#[cfg(test)]
mod tests {
    use super::split_message;

    #[test]
    fn messages_split_only_when_whole() {
        assert_eq!(split_message(&[0]), None);
        assert_eq!(split_message(&[0, 3, 1, 2]), None);
        assert_eq!(split_message(&[0, 2, 1, 2, 9]), Some((2, &[1u8, 2, 9][..])));
        assert_eq!(split_message(&[0, 0]), Some((0, &[][..])));
    }
}
