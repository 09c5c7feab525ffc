//! How much memory a TCP flow holds: its smoltcp buffers start at [`MIN`] bytes each way and
//! grow with the traffic, within the network's budget (`--nat-memory`), and shrink back
//! when the flow is idle. This is what makes a flow's cost follow the data it buffers rather
//! than a fixed reservation (4 MiB + 1 MiB per flow before).
//!
//! Growth signals, checked after each pump: the receive buffer (container → far side)
//! doubles when the container filled a quarter of it before we drained it, or drained a whole
//! buffer's worth within 10 ms, while the host socket still took everything — the window,
//! not the far side, was the limit; a container
//! pushing into a far side that does not read fills its buffer once and gets no more. The
//! send buffer (far side → container) doubles when the host had more to give than fitted
//! and a quarter of the buffer moved in one pump; a container that does not read stalls it.
//! The window scale is negotiated for the largest receive buffer up front (a patched smoltcp,
//! see third_party/smoltcp/VSWITCHD-PATCH.md), so growth needs no new handshake.
//!
//! Accounting: the budget is charged the buffers' capacities exactly — on open, on every
//! resize, and given back on removal.

use std::time::{Duration, Instant};

use smoltcp::socket::tcp::{Socket, SocketBuffer};

use crate::ctx::Ctx;

/// Bytes each way of a new or idle flow.
pub(crate) const MIN: usize = 4096;

/// A new smoltcp socket with the smallest buffers, charged to the budget; None (counted) if
/// the budget cannot take even that.
pub(super) fn open(ctx: &mut Ctx) -> Option<Socket<'static>> {
    if !ctx.budget.take(2 * MIN) {
        ctx.counters.refused_memory += 1;
        return None;
    }
    let mut s = Socket::new(
        SocketBuffer::new(vec![0; MIN]),
        SocketBuffer::new(vec![0; MIN]),
    );
    let _ = s.set_max_rx_window(ctx.cfg.tcp_rx_buffer);
    s.set_nagle_enabled(false);
    s.set_ack_delay(None);
    Some(s)
}

/// What a socket's buffers hold from the budget.
pub(super) fn charged(s: &Socket<'_>) -> usize {
    s.recv_capacity() + s.send_capacity()
}

/// Resizes one direction to `to` bytes, settling the budget; false if refused.
fn resize(ctx: &mut Ctx, s: &mut Socket<'_>, rx: bool, to: usize) -> bool {
    let from = if rx {
        s.recv_capacity()
    } else {
        s.send_capacity()
    };
    if to == from {
        return false;
    }
    if to > from && !ctx.budget.take(to - from) {
        return false;
    }
    let done = if rx {
        s.resize_rx_buffer(to)
    } else {
        s.resize_tx_buffer(to)
    };
    match (done, to > from) {
        (Ok(()), true) => true,
        (Ok(()), false) => {
            ctx.budget.give(from - to);
            true
        }
        (Err(()), true) => {
            ctx.budget.give(to - from);
            false
        }
        (Err(()), false) => false,
    }
}

/// How much of a flow's data drained to the host within a short interval.
pub(crate) struct Rate {
    bytes: usize,
    since: Instant,
}

impl Rate {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            bytes: 0,
            since: now,
        }
    }
}

/// A flow that drains a whole receive buffer within this interval is limited by its window.
const RATE_INTERVAL: Duration = Duration::from_millis(10);

/// Doubles the receive buffer (up to `tcp_rx_buffer`) when the window was the limit:
/// `queued_before` bytes were waiting when we drained (a quarter of the buffer or more), or
/// the container's data drained at a buffer's worth per [`RATE_INTERVAL`] (large segments
/// arrive one at a time, so the queue alone never shows a full window).
pub(super) fn grow_rx(
    ctx: &mut Ctx,
    s: &mut Socket<'_>,
    queued_before: usize,
    rate: &mut Rate,
    drained: usize,
) {
    let cap = s.recv_capacity();
    if ctx.now.saturating_duration_since(rate.since) > RATE_INTERVAL {
        *rate = Rate::new(ctx.now);
    }
    rate.bytes += drained;
    let window_bound = queued_before * 4 >= cap || rate.bytes >= cap;
    if window_bound && cap < ctx.cfg.tcp_rx_buffer {
        resize(ctx, s, true, (cap * 2).min(ctx.cfg.tcp_rx_buffer));
        *rate = Rate::new(ctx.now);
    }
}

/// Doubles the send buffer (up to `tcp_tx_buffer`) if `moved` bytes filled it in one pump.
pub(super) fn grow_tx(ctx: &mut Ctx, s: &mut Socket<'_>, moved: usize) {
    let cap = s.send_capacity();
    if moved * 4 >= cap && cap < ctx.cfg.tcp_tx_buffer {
        resize(ctx, s, false, (cap * 2).min(ctx.cfg.tcp_tx_buffer));
    }
}

/// Makes room for `need` more bytes to send (a local service's answer), up to `max`.
pub(super) fn fit_tx(ctx: &mut Ctx, s: &mut Socket<'_>, need: usize, max: usize) {
    let want = s.send_queue() + need;
    if want > s.send_capacity() && want <= max {
        resize(ctx, s, false, want.next_power_of_two().min(max));
    }
}

/// Shrinks whatever direction holds nothing back to [`MIN`].
pub(super) fn shrink_idle(ctx: &mut Ctx, s: &mut Socket<'_>) {
    if s.recv_queue() == 0 && s.recv_capacity() > MIN {
        resize(ctx, s, true, MIN);
    }
    if s.send_queue() == 0 && s.send_capacity() > MIN {
        resize(ctx, s, false, MIN);
    }
}
