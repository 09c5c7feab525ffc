//! Outbound dials: a container's SYN becomes a non-blocking connect from the host; the
//! container's handshake is held (smoltcp's paused SYN-ACK) until the dial ends, and a
//! failed dial is answered from the [`Syn`] alone — an RST for a refusal, ICMP unreachable
//! otherwise. Both families: an IPv6 SYN is dialled from an IPv6 host socket, and its ICMPv6
//! errors quote the IPv6 header and the segment's first 60 bytes (the whole SYN unless it
//! carried data; RFC 4443 asks for as much as fits, but a pending dial keeps no more).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;

use smoltcp::wire::{
    IpListenEndpoint, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpControl,
    TcpPacket, TcpRepr, TcpSeqNumber,
};
use socket2::{Domain, SockRef, Type};

use super::{Far, HostSide, Phase, Tcp, TcpFlow, buffers};
use crate::ctx::{Ctx, IpHeader, Target, Unreachable};
use crate::device::Sink;
use crate::flow::{FlowKey, Handle};

/// What answering a segment needs, parsed once: never the segment's bytes, whatever its size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Syn {
    /// The IP header (options dropped), with the original payload length.
    ip: IpHeader,
    /// The first bytes of the segment (up to 60: a whole TCP header), quoted by ICMP errors
    /// (ICMPv4 quotes 8 of them).
    head: [u8; 60],
    head_len: u8,
    src_port: u16,
    dst_port: u16,
    seq: TcpSeqNumber,
    ack: Option<TcpSeqNumber>,
    /// Sequence space the segment occupies (payload + SYN + FIN).
    seg_len: usize,
}

impl Syn {
    /// Parses an IPv4 or IPv6 packet (no extension headers) carrying TCP; None if a header
    /// is malformed.
    pub(crate) fn parse(packet: &[u8]) -> Option<Self> {
        let (ip, segment) = match packet.first()? >> 4 {
            4 => {
                let ip = Ipv4Packet::new_checked(packet).ok()?;
                let caps = smoltcp::phy::ChecksumCapabilities::ignored();
                let repr = Ipv4Repr::parse(&ip, &caps).ok()?;
                (IpHeader::V4(repr), ip.payload())
            }
            6 => {
                let ip = Ipv6Packet::new_checked(packet).ok()?;
                let repr = Ipv6Repr::parse(&ip).ok()?;
                (IpHeader::V6(repr), ip.payload())
            }
            _ => return None,
        };
        let tcp = TcpPacket::new_checked(segment).ok()?;
        let n = segment.len().min(60);
        let mut head = [0u8; 60];
        head.get_mut(..n)?.copy_from_slice(segment.get(..n)?);
        Some(Self {
            ip,
            head,
            head_len: n as u8,
            src_port: tcp.src_port(),
            dst_port: tcp.dst_port(),
            seq: tcp.seq_number(),
            ack: tcp.ack().then(|| tcp.ack_number()),
            seg_len: tcp.payload().len() + usize::from(tcp.syn()) + usize::from(tcp.fin()),
        })
    }
}

impl Syn {
    /// The bytes an ICMP error about this segment quotes after its IP header.
    pub(crate) fn quoted(&self) -> &[u8] {
        self.head.get(..usize::from(self.head_len)).unwrap_or(&[])
    }
}

/// Dials pending per endpoint at most (connects to a slow far side pile up here).
pub(crate) const MAX_DIALS_PER_ENDPOINT: usize = 256;

impl Tcp {
    /// Begins an outbound flow; None if the SYN was answered (refused) instead.
    pub(super) fn start_dial(
        &mut self,
        ctx: &mut Ctx,
        key: FlowKey,
        syn: &Syn,
        sink: &mut Sink<'_>,
    ) -> Option<Handle> {
        let peer = key.peer;
        let target = match ctx.target(peer.ip()) {
            Target::Host(ip) => ip,
            Target::ClosedGateway => {
                send_rst(ctx, syn, sink);
                return None;
            }
            Target::Forbidden => {
                ctx.unreachable_from(syn.ip, syn.quoted(), Unreachable::HostProhibited, sink);
                return None;
            }
        };
        let ep = key.endpoint();
        if self.dials.held_by(ep) >= MAX_DIALS_PER_ENDPOINT {
            ctx.counters.refused_endpoint_quota += 1;
            send_rst(ctx, syn, sink);
            return None;
        }
        if ctx.admit(ep).is_err() {
            send_rst(ctx, syn, sink);
            return None;
        }
        let Some(stream) = dial(SocketAddr::new(target, peer.port()), ctx, syn, sink) else {
            ctx.release(ep);
            return None;
        };
        let Some(mut s) = buffers::open(ctx) else {
            ctx.release(ep);
            send_rst(ctx, syn, sink);
            return None;
        };
        s.pause_synack(true);
        if s.listen(IpListenEndpoint {
            addr: Some(peer.ip().into()),
            port: peer.port(),
        })
        .is_err()
        {
            ctx.budget.give(buffers::charged(&s));
            ctx.release(ep);
            send_rst(ctx, syn, sink);
            return None;
        }
        let far = Far::Host(HostSide {
            stream,
            phase: Phase::Dialing {
                deadline: ctx.now + ctx.cfg.connect_timeout,
                syn: *syn,
            },
            host_readable: false,
            host_writable: false,
            host_eof: false,
            shut_wr: false,
            peer_fin: false,
        });
        let Some(h) = self.insert(ctx, key, s, far) else {
            ctx.release(ep);
            return None;
        };
        self.dials.add(ep);
        Some(h)
    }

    /// A dial made progress: connected, or failed.
    pub(super) fn finish_dial(&mut self, ctx: &mut Ctx, h: Handle, sink: &mut Sink<'_>) {
        let Some(TcpFlow {
            far: Far::Host(host),
            conn,
            key,
            ..
        }) = self.flows.get_mut(h)
        else {
            return;
        };
        let Phase::Dialing { syn, .. } = host.phase else {
            return;
        };
        let err = match SockRef::from(&host.stream).take_error() {
            Ok(Some(e)) => Some(e),
            Ok(None) => match host.stream.peer_addr() {
                Ok(_) => None,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    if !host.host_writable {
                        return; // not yet
                    }
                    Some(e)
                }
                Err(e) => Some(e),
            },
            Err(e) => Some(e),
        };
        match err {
            None => {
                host.phase = Phase::Open;
                conn.sock_mut().pause_synack(false);
                self.dials.sub(key.endpoint());
                ctx.counters.tcp_opened += 1;
                self.poll_flow(ctx, h, None, sink);
            }
            Some(e) => {
                self.remove(ctx, h, false);
                dial_failed(ctx, &syn, &e, sink);
            }
        }
    }
}

/// Starts a non-blocking connect to `to`; on an immediate failure answers the container and
/// returns None.
fn dial(to: SocketAddr, ctx: &mut Ctx, syn: &Syn, sink: &mut Sink<'_>) -> Option<TcpStream> {
    let domain = Domain::for_address(to);
    let sock = match socket2::Socket::new(domain, Type::STREAM.nonblocking().cloexec(), None) {
        Ok(s) => s,
        Err(e) => {
            ctx.warn_once(
                "tcp-socket",
                format_args!("tcp: cannot create host sockets: {e}"),
            );
            send_rst(ctx, syn, sink);
            return None;
        }
    };
    let _ = sock.set_tcp_nodelay(true);
    if let Some(local) = ctx.cfg.outbound_for(to.ip())
        && let Err(e) = sock.bind(&SocketAddr::new(local, 0).into())
    {
        tracing::debug!("tcp: cannot bind the outbound address {local}: {e}");
        dial_failed(ctx, syn, &e, sink);
        return None;
    }
    match sock.connect(&to.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => {
            dial_failed(ctx, syn, &e, sink);
            return None;
        }
    }
    Some(TcpStream::from(OwnedFd::from(sock)))
}

/// Tells the container why its connection cannot be made.
pub(super) fn dial_failed(ctx: &mut Ctx, syn: &Syn, e: &io::Error, sink: &mut Sink<'_>) {
    let reason = match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => {
            ctx.counters.tcp_refused += 1;
            send_rst(ctx, syn, sink);
            tracing::debug!("tcp: dial refused: {e}");
            return;
        }
        Some(libc::ENETUNREACH) => Unreachable::Net,
        _ => Unreachable::Host,
    };
    ctx.counters.tcp_unreachable += 1;
    ctx.unreachable_from(syn.ip, syn.quoted(), reason, sink);
    tracing::debug!("tcp: dial failed: {e}");
}

/// Answers a segment with RST (RST+ACK for a segment without ACK), without a socket.
pub(crate) fn send_rst(ctx: &mut Ctx, seg: &Syn, sink: &mut Sink<'_>) {
    let repr = TcpRepr {
        src_port: seg.dst_port,
        dst_port: seg.src_port,
        control: TcpControl::Rst,
        seq_number: seg.ack.unwrap_or(TcpSeqNumber(0)),
        ack_number: Some(seg.seq + seg.seg_len),
        window_len: 0,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None, None, None],
        timestamp: None,
        payload: &[],
    };
    let (src, dst) = (seg.ip.dst_addr(), seg.ip.src_addr());
    ctx.send_ip(src, dst, IpProtocol::Tcp, repr.buffer_len(), sink, |buf| {
        let mut pkt = TcpPacket::new_unchecked(buf);
        let caps = smoltcp::phy::ChecksumCapabilities::default();
        repr.emit(&mut pkt, &src.into(), &dst.into(), &caps);
    });
}
