//! NAT66: the engine fed IPv6 frames with a fake clock, through host sockets this test owns on
//! ::1 (host_loopback maps the gateway's IPv6 address there): a TCP dial with data and FIN both
//! ways, a refused dial, forbidden destinations and what their ICMPv6 errors quote, UDP through
//! a host socket, DNS answers over IPv6, frames the NAT must leave alone, and published ports
//! bound on ::1.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv6Packet, Ipv6Repr, TcpControl, TcpPacket, TcpRepr,
    TcpSeqNumber, UdpPacket,
};

use crate::{Ipv6Config, Nat, NatConfig, NatError, PortMapping, Protocol, Publish};

const GW4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const GW_MAC: [u8; 6] = [0x02, 0x42, 10, 0, 0, 1];
const GW: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const C1: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const C1_MAC: [u8; 6] = [0x02, 0x42, 10, 0, 0, 2];
const OUTSIDER: Ipv6Addr = Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 2);

thread_local! {
    static NOW_US: Cell<u64> = const { Cell::new(0) };
    static BASE: Instant = Instant::now();
}

fn clock() -> Instant {
    BASE.with(|b| *b) + Duration::from_micros(NOW_US.with(Cell::get))
}

fn v6_side() -> Ipv6Config {
    Ipv6Config {
        gateway_ip: GW,
        subnet: (Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0), 64),
    }
}

/// A segment as the gateway sent it.
#[derive(Debug, Clone)]
struct Seg {
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    fin: bool,
    rst: bool,
    mss: Option<u16>,
    payload: Vec<u8>,
}

struct Net {
    nat: Nat,
    /// Frames the gateway emitted (virtio header stripped).
    frames: Vec<Vec<u8>>,
}

impl Net {
    /// A network with an IPv6 side (unless `tune` removes it), C1 bound to its MAC.
    fn new(tune: impl FnOnce(&mut NatConfig)) -> Self {
        let mut cfg = NatConfig::new(GW4, GW_MAC, (Ipv4Addr::new(10, 0, 0, 0), 24), 1500);
        cfg.ipv6 = Some(v6_side());
        tune(&mut cfg);
        let mut nat = Nat::with_clock(cfg, clock).expect("engine");
        nat.set_neighbor(C1.into(), C1_MAC);
        Self {
            nat,
            frames: Vec::new(),
        }
    }

    fn send(&mut self, ip: &[u8]) {
        let mut f = GW_MAC.to_vec();
        f.extend_from_slice(&C1_MAC);
        f.extend_from_slice(&[0x86, 0xdd]);
        f.extend_from_slice(ip);
        let frames = &mut self.frames;
        self.nat
            .on_frame(&f, &mut |frame: &[u8]| frames.push(frame[12..].to_vec()));
    }

    fn poll(&mut self) {
        let frames = &mut self.frames;
        self.nat
            .poll(&mut |frame: &[u8]| frames.push(frame[12..].to_vec()));
    }

    /// IPv6 packets emitted (Ethernet header stripped); every frame is IPv6 to C1's MAC.
    fn packets(&self) -> Vec<Vec<u8>> {
        for f in &self.frames {
            assert_eq!(&f[..6], &C1_MAC, "addressed to the bound MAC");
            assert_eq!(&f[6..12], &GW_MAC, "from the gateway");
            assert_eq!(&f[12..14], &[0x86, 0xdd], "EtherType IPv6");
        }
        self.frames.iter().map(|f| f[14..].to_vec()).collect()
    }

    fn segments(&self) -> Vec<Seg> {
        self.packets().iter().filter_map(|p| seg(p)).collect()
    }

    /// Polls until `f` finds something among the emitted segments, at most 2 s.
    fn poll_until<T>(&mut self, mut f: impl FnMut(&[Seg]) -> Option<T>) -> Option<T> {
        let end = Instant::now() + Duration::from_secs(2);
        loop {
            if let Some(t) = f(&self.segments()) {
                return Some(t);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_micros(100));
            self.poll();
        }
    }

    /// Polls until a UDP datagram arrives for `port` of C1: (source, payload).
    fn udp_to(&mut self, port: u16) -> Option<(SocketAddr, Vec<u8>)> {
        let end = Instant::now() + Duration::from_secs(2);
        loop {
            for p in self.packets() {
                let ip = Ipv6Packet::new_checked(&p[..]).expect("IPv6");
                if ip.next_header() != IpProtocol::Udp {
                    continue;
                }
                let udp = UdpPacket::new_checked(ip.payload()).expect("UDP");
                assert!(
                    udp.verify_checksum(&ip.src_addr().into(), &ip.dst_addr().into()),
                    "UDP checksum over the IPv6 pseudo-header"
                );
                if ip.dst_addr() == C1 && udp.dst_port() == port {
                    let from = SocketAddr::new(ip.src_addr().into(), udp.src_port());
                    return Some((from, udp.payload().to_vec()));
                }
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_micros(100));
            self.poll();
        }
    }

    /// The ICMPv6 messages emitted: (type, code, the message after its 8-byte header, total
    /// IPv6 packet length).
    fn icmp(&self) -> Vec<(u8, u8, Vec<u8>, usize)> {
        self.packets()
            .iter()
            .filter_map(|p| {
                let ip = Ipv6Packet::new_checked(&p[..]).ok()?;
                if ip.next_header() != IpProtocol::Icmpv6 {
                    return None;
                }
                assert_eq!(ip.src_addr(), GW, "errors come from the gateway");
                let icmp = Icmpv6Packet::new_checked(ip.payload()).ok()?;
                assert!(
                    icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()),
                    "ICMPv6 checksum"
                );
                Some((
                    u8::from(icmp.msg_type()),
                    icmp.msg_code(),
                    ip.payload()[8..].to_vec(),
                    p.len(),
                ))
            })
            .collect()
    }

    fn tcp_flows(&self) -> usize {
        self.nat.stats().tcp_flows
    }
}

fn seg(p: &[u8]) -> Option<Seg> {
    let ip = Ipv6Packet::new_checked(p).ok()?;
    if ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let t = TcpPacket::new_checked(ip.payload()).ok()?;
    let repr = TcpRepr::parse(
        &t,
        &ip.src_addr().into(),
        &ip.dst_addr().into(),
        &ChecksumCapabilities::ignored(),
    )
    .ok()?;
    Some(Seg {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        sport: t.src_port(),
        dport: t.dst_port(),
        seq: t.seq_number().0 as u32,
        ack: t.ack().then(|| t.ack_number().0 as u32),
        syn: t.syn(),
        fin: t.fin(),
        rst: t.rst(),
        mss: repr.max_seg_size,
        payload: t.payload().to_vec(),
    })
}

/// An IPv6 packet: the fixed header, then `next` and `payload`.
fn ip6(src: Ipv6Addr, dst: Ipv6Addr, next: IpProtocol, payload: &[u8]) -> Vec<u8> {
    let repr = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: next,
        payload_len: payload.len(),
        hop_limit: 64,
    };
    let mut p = vec![0u8; 40 + payload.len()];
    repr.emit(&mut Ipv6Packet::new_unchecked(&mut p[..]));
    p[40..].copy_from_slice(payload);
    p
}

#[allow(clippy::too_many_arguments)]
fn tcp6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    control: TcpControl,
    seq: u32,
    ack: Option<u32>,
    payload: &[u8],
) -> Vec<u8> {
    let repr = TcpRepr {
        src_port: sport,
        dst_port: dport,
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
        window_len: 65535,
        window_scale: None,
        max_seg_size: (control == TcpControl::Syn).then_some(1440),
        sack_permitted: false,
        sack_ranges: [None, None, None],
        timestamp: None,
        payload,
    };
    let mut t = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut t[..]),
        &src.into(),
        &dst.into(),
        &ChecksumCapabilities::default(),
    );
    ip6(src, dst, IpProtocol::Tcp, &t)
}

fn udp6(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (src.ip(), dst.ip()) else {
        panic!("IPv6 addresses");
    };
    let mut u = vec![0u8; 8 + payload.len()];
    let mut pkt = UdpPacket::new_unchecked(&mut u[..]);
    pkt.set_src_port(src.port());
    pkt.set_dst_port(dst.port());
    pkt.set_len((8 + payload.len()) as u16);
    pkt.payload_mut().copy_from_slice(payload);
    pkt.fill_checksum(&s.into(), &d.into());
    ip6(s, d, IpProtocol::Udp, &u)
}

fn echo6(dst: Ipv6Addr) -> Vec<u8> {
    let repr = Icmpv6Repr::EchoRequest {
        ident: 7,
        seq_no: 1,
        data: b"hello",
    };
    let mut m = vec![0u8; repr.buffer_len()];
    repr.emit(
        &C1,
        &dst,
        &mut Icmpv6Packet::new_unchecked(&mut m[..]),
        &ChecksumCapabilities::default(),
    );
    ip6(C1, dst, IpProtocol::Icmpv6, &m)
}

/// A container-side TCP client on C1, tracking sequence numbers.
struct Client {
    port: u16,
    to: (Ipv6Addr, u16),
    seq: u32,
    ack: u32,
}

impl Client {
    fn new(port: u16, to: (Ipv6Addr, u16)) -> Self {
        Self {
            port,
            to,
            seq: 1000,
            ack: 0,
        }
    }

    fn pkt(&self, control: TcpControl, ack: bool, payload: &[u8]) -> Vec<u8> {
        tcp6(
            C1,
            self.to.0,
            self.port,
            self.to.1,
            control,
            self.seq,
            ack.then_some(self.ack),
            payload,
        )
    }

    fn mine(&self, segs: &[Seg]) -> Vec<Seg> {
        segs.iter()
            .filter(|s| s.dst == C1 && s.dport == self.port)
            .cloned()
            .collect()
    }

    /// SYN, waits for the SYN-ACK (returned), ACKs it.
    fn handshake(&mut self, net: &mut Net) -> Seg {
        net.send(&self.pkt(TcpControl::Syn, false, &[]));
        self.seq += 1;
        let synack = net
            .poll_until(|segs| {
                self.mine(segs)
                    .into_iter()
                    .find(|s| s.syn && s.ack.is_some())
            })
            .expect("SYN-ACK");
        self.ack = synack.seq.wrapping_add(1);
        net.send(&self.pkt(TcpControl::None, true, &[]));
        synack
    }

    fn data(&mut self, net: &mut Net, bytes: &[u8]) {
        net.send(&self.pkt(TcpControl::Psh, true, bytes));
        self.seq = self.seq.wrapping_add(bytes.len() as u32);
    }

    fn fin(&mut self, net: &mut Net) {
        net.send(&self.pkt(TcpControl::Fin, true, &[]));
        self.seq = self.seq.wrapping_add(1);
    }

    fn received(&self, net: &Net) -> Vec<u8> {
        self.mine(&net.segments())
            .into_iter()
            .flat_map(|s| s.payload)
            .collect()
    }
}

fn dns_query(id: u16, name: &str) -> Vec<u8> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(
        Name::from_ascii(name).expect("name"),
        RecordType::AAAA,
    ));
    m.to_vec().expect("query")
}

#[test]
fn a_dial_through_host_loopback_carries_data_and_fin_both_ways() {
    let host = TcpListener::bind("[::1]:0").expect("listener on ::1");
    let port = host.local_addr().expect("addr").port();
    let mut net = Net::new(|c| c.host_loopback = true);
    let mut c = Client::new(42000, (GW, port));
    let synack = c.handshake(&mut net);
    assert_eq!(
        (synack.src, synack.sport),
        (GW, port),
        "the SYN-ACK comes from the address dialled"
    );
    assert_eq!(synack.mss, Some(1500 - 60), "MSS = MTU - 60 over IPv6");
    let (mut server, from) = host.accept().expect("dialled");
    assert!(from.ip().is_loopback(), "dialled from the host: {from}");
    assert_eq!(net.tcp_flows(), 1);
    c.data(&mut net, b"hello ");
    c.data(&mut net, b"world");
    let mut got = [0u8; 11];
    server
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    server
        .read_exact(&mut got)
        .expect("data from the container");
    assert_eq!(&got, b"hello world");
    assert!(
        net.nat.stats().counters.tcp_direct_bytes > 0,
        "IPv6 segments take the direct path too"
    );
    server.write_all(b"pong").expect("reply");
    net.poll_until(|segs| {
        let got: Vec<u8> = c.mine(segs).into_iter().flat_map(|s| s.payload).collect();
        (got == b"pong").then_some(())
    })
    .expect("the host's bytes reach the container");
    c.ack = c.ack.wrapping_add(4);
    // Container closes first; the host reads EOF, then closes too.
    c.fin(&mut net);
    let mut rest = Vec::new();
    server
        .read_to_end(&mut rest)
        .expect("EOF after the container's FIN");
    assert!(rest.is_empty());
    drop(server);
    let fin = net
        .poll_until(|segs| c.mine(segs).into_iter().find(|s| s.fin))
        .expect("FIN from the host side");
    assert_eq!(c.received(&net), b"pong", "nothing else came");
    let last = c
        .mine(&net.segments())
        .into_iter()
        .filter_map(|s| s.ack)
        .next_back();
    assert_eq!(
        last,
        Some(c.seq),
        "everything we sent, FIN included, is acknowledged"
    );
    c.ack = fin.seq.wrapping_add(fin.payload.len() as u32 + 1);
    net.send(&c.pkt(TcpControl::None, true, &[]));
    net.poll();
    assert_eq!(net.tcp_flows(), 0, "closed both ways: the flow is gone");
    assert_eq!(net.nat.stats().counters.tcp_opened, 1);
}

/// Far side → container in bulk: smoltcp hands the framer segments larger than the MTU
/// (segmentation offload, GSO_TCPV6 for the TAP). Regression: smoltcp's IPv6 path dropped
/// every packet above the MTU, so a download stalled after its first segment.
#[test]
fn a_bulk_download_over_ipv6_leaves_in_segments_larger_than_the_mtu() {
    let host = TcpListener::bind("[::1]:0").expect("listener on ::1");
    let port = host.local_addr().expect("addr").port();
    let mut net = Net::new(|c| c.host_loopback = true);
    let mut c = Client::new(42001, (GW, port));
    c.handshake(&mut net);
    let (mut server, _) = host.accept().expect("dialled");
    let bulk = vec![7u8; 96 * 1024];
    server.write_all(&bulk).expect("bulk from the host");
    // Acknowledge in order as segments arrive, like a receiving kernel.
    let (start, mut data, mut largest) = (c.ack, Vec::new(), 0);
    let end = Instant::now() + Duration::from_secs(5);
    while data.len() < bulk.len() && Instant::now() < end {
        net.frames.clear();
        net.poll();
        for s in c.mine(&net.segments()) {
            if s.seq == start.wrapping_add(data.len() as u32) && !s.payload.is_empty() {
                largest = largest.max(s.payload.len());
                data.extend_from_slice(&s.payload);
            }
        }
        c.ack = start.wrapping_add(data.len() as u32);
        net.send(&c.pkt(TcpControl::None, true, &[]));
        std::thread::sleep(Duration::from_micros(200));
        NOW_US.with(|n| n.set(n.get() + 1000));
    }
    assert_eq!(
        data.len(),
        bulk.len(),
        "the whole download reaches the container"
    );
    assert!(
        largest > 1440,
        "segments of at most {largest} bytes: no segmentation offload"
    );
    assert_eq!(data, bulk);
}

#[test]
fn a_refused_dial_gets_an_rst() {
    let gone = TcpListener::bind("[::1]:0").expect("listener");
    let port = gone.local_addr().expect("addr").port();
    drop(gone);
    let mut net = Net::new(|c| c.host_loopback = true);
    let c = Client::new(42001, (GW, port));
    net.send(&c.pkt(TcpControl::Syn, false, &[]));
    let rst = net
        .poll_until(|segs| c.mine(segs).into_iter().find(|s| s.rst))
        .expect("RST once the dial is refused");
    assert_eq!((rst.src, rst.sport), (GW, port));
    assert_eq!(rst.ack, Some(1001), "acknowledges the SYN");
    assert_eq!(net.tcp_flows(), 0);
    assert_eq!(net.nat.stats().counters.tcp_refused, 1);
}

#[test]
fn the_gateway_without_host_loopback_resets_tcp() {
    let mut net = Net::new(|_| {});
    let c = Client::new(42002, (GW, 80));
    net.send(&c.pkt(TcpControl::Syn, false, &[]));
    assert!(
        c.mine(&net.segments()).iter().any(|s| s.rst),
        "nothing listens on the gateway"
    );
    assert_eq!(net.nat.stats().counters.forbidden_destination, 0);
}

#[test]
fn forbidden_destinations_get_icmpv6_prohibited_and_are_counted() {
    let mut net = Net::new(|_| {});
    let forbidden: [Ipv6Addr; 7] = [
        Ipv6Addr::LOCALHOST,
        Ipv6Addr::UNSPECIFIED,
        "ff02::1".parse().expect("addr"),
        "fe80::1".parse().expect("addr"),
        "::ffff:127.0.0.1".parse().expect("addr"),
        "::127.0.0.1".parse().expect("addr"),
        "fec0::1".parse().expect("addr"),
    ];
    for dst in forbidden {
        net.frames.clear();
        let syn = tcp6(C1, dst, 40000, 22, TcpControl::Syn, 1, None, &[]);
        net.send(&syn);
        let icmp = net.icmp();
        assert_eq!(icmp.len(), 1, "one ICMPv6 error for {dst}");
        let (ty, code, quoted, _) = &icmp[0];
        assert_eq!(
            (*ty, *code),
            (1, 1),
            "administratively prohibited for {dst}"
        );
        assert_eq!(quoted, &syn, "the whole SYN is quoted for {dst}");
    }
    assert_eq!(
        net.nat.stats().counters.forbidden_destination,
        forbidden.len() as u64
    );
    assert_eq!(net.tcp_flows(), 0);
    // UDP and ping to a forbidden address are refused the same way.
    net.frames.clear();
    let c1 = SocketAddr::new(C1.into(), 5000);
    net.send(&udp6(c1, "[::1]:53".parse().expect("addr"), b"x"));
    net.send(&echo6(Ipv6Addr::LOCALHOST));
    let codes: Vec<(u8, u8)> = net.icmp().iter().map(|i| (i.0, i.1)).collect();
    assert_eq!(codes, vec![(1, 1), (1, 1)]);
    assert_eq!(net.nat.stats().udp_flows + net.nat.stats().icmp_flows, 0);
}

#[test]
fn an_icmpv6_error_quotes_as_much_as_fits_in_1280_bytes() {
    let mut net = Net::new(|_| {});
    let c1 = SocketAddr::new(C1.into(), 5000);
    let big = udp6(c1, "[ff02::1]:9".parse().expect("addr"), &[0x5a; 1400]);
    net.send(&big);
    let icmp = net.icmp();
    assert_eq!(icmp.len(), 1);
    let (ty, code, quoted, total) = &icmp[0];
    assert_eq!((*ty, *code), (1, 1));
    assert_eq!(*total, 1280, "the error fills the minimum MTU");
    assert_eq!(quoted.len(), 1280 - 40 - 8);
    assert_eq!(&quoted[..], &big[..quoted.len()], "the start of the packet");
}

#[test]
fn udp_goes_through_a_host_socket_and_back() {
    let host = UdpSocket::bind("[::1]:0").expect("socket on ::1");
    let port = host.local_addr().expect("addr").port();
    let mut net = Net::new(|c| c.host_loopback = true);
    let c1 = SocketAddr::new(C1.into(), 5353);
    net.send(&udp6(c1, SocketAddr::new(GW.into(), port), b"marco"));
    host.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    let (n, from) = host.recv_from(&mut buf).expect("datagram from the NAT");
    assert_eq!(&buf[..n], b"marco");
    assert!(from.ip().is_loopback(), "sent from the host: {from}");
    host.send_to(b"polo", from).expect("reply");
    let (src, payload) = net.udp_to(5353).expect("the reply reaches the container");
    assert_eq!(
        src,
        SocketAddr::new(GW.into(), port),
        "from the address it wrote to"
    );
    assert_eq!(payload, b"polo");
    let stats = net.nat.stats();
    assert_eq!((stats.udp_flows, stats.counters.udp_flows), (1, 1));
}

#[test]
fn udp_to_the_gateway_without_host_loopback_is_port_unreachable() {
    let mut net = Net::new(|_| {});
    let c1 = SocketAddr::new(C1.into(), 5000);
    net.send(&udp6(c1, SocketAddr::new(GW.into(), 9999), b"x"));
    let codes: Vec<(u8, u8)> = net.icmp().iter().map(|i| (i.0, i.1)).collect();
    assert_eq!(codes, vec![(1, 4)]);
}

#[test]
fn dns_answers_to_ipv6_queriers_come_from_the_ipv6_gateway_and_fit_the_link() {
    let mut net = Net::new(|c| c.mtu = 1280);
    let to = SocketAddr::new(C1.into(), 5300);
    // An answer with many records, too large for one 1280-byte packet over IPv6.
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::AAAA;
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    let name = Name::from_ascii("many.").expect("name");
    let mut m = Message::new(0x6666, MessageType::Response, OpCode::Query);
    m.add_query(Query::query(name.clone(), RecordType::AAAA));
    for i in 0..60u16 {
        let ip = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 1, i);
        m.add_answer(Record::from_rdata(name.clone(), 60, RData::AAAA(AAAA(ip))));
    }
    let answer = m.to_vec().expect("answer");
    assert!(answer.len() > 1280);
    let frames = &mut net.frames;
    net.nat
        .reply_dns_udp(to, answer, &mut |f: &[u8]| frames.push(f[12..].to_vec()));
    let (from, payload) = net.udp_to(5300).expect("an answer");
    assert_eq!(from, SocketAddr::new(GW.into(), 53));
    assert!(
        payload.len() <= 1280 - 48,
        "fits the link: {}",
        payload.len()
    );
    let got = Message::from_vec(&payload).expect("DNS");
    assert_eq!(got.metadata.id, 0x6666);
    assert!(got.metadata.truncation, "TC set: ask again over TCP");
}

#[test]
fn dns_over_tcp_on_the_ipv6_gateway_is_served_locally() {
    let mut net = Net::new(|_| {});
    let mut c = Client::new(43000, (GW, 53));
    c.handshake(&mut net);
    assert_eq!(net.tcp_flows(), 1, "a local DNS connection, no dial");
    let q = dns_query(0x4242, "nothere");
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    c.data(&mut net, &framed);
    let acked = c
        .mine(&net.segments())
        .iter()
        .filter_map(|s| s.ack)
        .any(|a| a == c.seq);
    assert!(acked, "the query was taken");
}

#[test]
fn frames_the_nat_leaves_alone() {
    // An echo request to the gateway is the gateway's own business.
    let mut net = Net::new(|_| {});
    net.send(&echo6(GW));
    assert!(
        net.frames.is_empty(),
        "the NAT does not answer pings to the gateway"
    );
    assert_eq!(net.nat.stats().icmp_flows, 0);
    // A source outside the IPv6 subnet, or the gateway's own.
    for src in [OUTSIDER, GW] {
        net.send(&tcp6(src, GW, 40000, 53, TcpControl::Syn, 1, None, &[]));
    }
    // A hop-by-hop header before TCP (not walked: dropped).
    let syn = tcp6(C1, GW, 40001, 53, TcpControl::Syn, 1, None, &[]);
    let mut hbh = vec![6u8, 0, 1, 4, 0, 0, 0, 0]; // next TCP, len 0, PadN(4)
    hbh.extend_from_slice(&syn[40..]);
    net.send(&ip6(C1, GW, IpProtocol::HopByHop, &hbh));
    // A destination inside the subnet (container to container is the switch's).
    net.send(&tcp6(
        C1,
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3),
        40002,
        80,
        TcpControl::Syn,
        1,
        None,
        &[],
    ));
    assert!(net.frames.is_empty(), "nothing answered");
    assert_eq!(net.tcp_flows(), 0);
    // The same SYN on a network without an IPv6 side.
    let mut v4only = Net::new(|c| c.ipv6 = None);
    v4only.send(&syn);
    assert!(v4only.frames.is_empty());
    assert_eq!(v4only.tcp_flows(), 0);
    // While on this one it opens a DNS connection.
    net.send(&syn);
    assert_eq!(net.tcp_flows(), 1);
}

/// A non-blocking socket bound on [::1]:0 with IPV6_V6ONLY, as the daemon makes them.
fn published_socket(protocol: Protocol) -> (OwnedFd, u16) {
    use socket2::{Domain, Socket, Type};
    let ty = match protocol {
        Protocol::Tcp => Type::STREAM,
        Protocol::Udp => Type::DGRAM,
    };
    let s = Socket::new(Domain::IPV6, ty.nonblocking().cloexec(), None).expect("socket");
    s.set_only_v6(true).expect("v6only");
    let addr: SocketAddr = "[::1]:0".parse().expect("addr");
    s.bind(&addr.into()).expect("bind");
    if protocol == Protocol::Tcp {
        s.listen(16).expect("listen");
    }
    let port = s
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("inet")
        .port();
    (OwnedFd::from(s), port)
}

fn publish(port: u16, container_port: u16, protocol: Protocol) -> Publish {
    Publish {
        mapping: PortMapping {
            host_ip: Ipv6Addr::LOCALHOST.into(),
            host_port: port,
            container_port,
            protocol,
        },
        container_ip: C1.into(),
    }
}

#[test]
fn a_published_tcp_port_on_ipv6_reaches_the_container_from_the_gateway() {
    let mut net = Net::new(|_| {});
    let (fd, port) = published_socket(Protocol::Tcp);
    net.nat
        .add_publish(publish(port, 80, Protocol::Tcp), fd)
        .expect("published");
    let mut client = TcpStream::connect(("::1", port)).expect("connect");
    let syn = net
        .poll_until(|segs| segs.iter().find(|s| s.syn && s.dport == 80).cloned())
        .expect("a SYN toward the container");
    assert_eq!(syn.dst, C1);
    assert_eq!(syn.src, GW, "a client on ::1 appears as the gateway");
    assert_eq!(syn.mss, Some(1500 - 60));
    // The container accepts.
    let synack = tcp6(
        C1,
        GW,
        80,
        syn.sport,
        TcpControl::Syn,
        7000,
        Some(syn.seq.wrapping_add(1)),
        &[],
    );
    net.send(&synack);
    net.poll_until(|segs| {
        segs.iter()
            .find(|s| s.dport == 80 && !s.syn && s.ack == Some(7001))
            .cloned()
    })
    .expect("the handshake completes");
    let mut seq = syn.seq.wrapping_add(1);
    client.write_all(b"GET /").expect("write");
    let data = net
        .poll_until(|segs| {
            segs.iter()
                .find(|s| s.dport == 80 && !s.payload.is_empty())
                .cloned()
        })
        .expect("the client's bytes reach the container");
    assert_eq!(data.payload, b"GET /");
    seq = seq.wrapping_add(5);
    net.send(&tcp6(
        C1,
        GW,
        80,
        syn.sport,
        TcpControl::Psh,
        7001,
        Some(seq),
        b"200 OK",
    ));
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut got = [0u8; 6];
    let end = Instant::now() + Duration::from_secs(2);
    let mut n = 0;
    client.set_nonblocking(true).expect("nonblocking");
    while n < 6 && Instant::now() < end {
        net.poll();
        match client.read(&mut got[n..]) {
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    assert_eq!(
        &got[..n],
        b"200 OK",
        "the container's reply reaches the client"
    );
    assert_eq!(net.tcp_flows(), 1);
}

#[test]
fn a_published_udp_port_on_ipv6_carries_both_ways() {
    let mut net = Net::new(|_| {});
    let (fd, port) = published_socket(Protocol::Udp);
    net.nat
        .add_publish(publish(port, 53, Protocol::Udp), fd)
        .expect("published");
    let client = UdpSocket::bind("[::1]:0").expect("client");
    client.send_to(b"query", ("::1", port)).expect("send");
    let (from, payload) = net.udp_to(53).expect("delivered to the container");
    assert_eq!(payload, b"query");
    assert_eq!(
        from.ip(),
        IpAddr::V6(GW),
        "a client on ::1 appears as the gateway"
    );
    let c1 = SocketAddr::new(C1.into(), 53);
    net.send(&udp6(c1, from, b"answer"));
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    let (n, src) = client.recv_from(&mut buf).expect("reply");
    assert_eq!(&buf[..n], b"answer");
    assert_eq!(src.port(), port, "from the published port");
}

#[test]
fn publishes_that_mix_families_or_lack_an_ipv6_side_are_refused() {
    let mut net = Net::new(|_| {});
    let (fd, port) = published_socket(Protocol::Tcp);
    let mut mixed = publish(port, 80, Protocol::Tcp);
    mixed.container_ip = Ipv4Addr::new(10, 0, 0, 2).into();
    assert!(matches!(
        net.nat.add_publish(mixed, fd),
        Err(NatError::Family(_))
    ));
    let mut v4only = Net::new(|c| c.ipv6 = None);
    let (fd, port) = published_socket(Protocol::Tcp);
    assert!(matches!(
        v4only.nat.add_publish(publish(port, 80, Protocol::Tcp), fd),
        Err(NatError::Family(_))
    ));
    let (fd, port) = published_socket(Protocol::Tcp);
    let p = publish(port, 80, Protocol::Tcp);
    net.nat.add_publish(p, fd).expect("published");
    assert!(net.nat.remove_publish(p.host(), Protocol::Tcp));
    assert!(!net.nat.remove_publish(p.host(), Protocol::Tcp));
}

#[test]
fn a_slaac_address_is_translated_and_answered_through_the_learned_neighbor() {
    // slirp4netns's IPv6 side: fd00::/64, gateway fd00::2, DNS fd00::3; the container took a
    // SLAAC address nobody bound to its MAC.
    let gw: Ipv6Addr = "fd00::2".parse().unwrap();
    let dns: Ipv6Addr = "fd00::3".parse().unwrap();
    let slaac: Ipv6Addr = "fd00::a8bb:ccff:fedd:ee01".parse().unwrap();
    let mac = [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x01];
    let mut cfg = NatConfig::new(GW4, GW_MAC, (Ipv4Addr::new(10, 0, 0, 0), 24), 1500);
    cfg.ipv6 = Some(Ipv6Config {
        gateway_ip: gw,
        subnet: ("fd00::".parse().unwrap(), 64),
    });
    cfg.dns_ip6 = Some(dns);
    cfg.learn_neighbor = true;
    cfg.dns.upstreams = Vec::new();
    let mut nat = Nat::with_clock(cfg, clock).expect("engine");
    let send = |nat: &mut Nat, to: SocketAddr| {
        let ip = udp6(
            SocketAddr::new(slaac.into(), 5353),
            to,
            &dns_query(3, "nothere"),
        );
        let mut f = GW_MAC.to_vec();
        f.extend_from_slice(&mac);
        f.extend_from_slice(&[0x86, 0xdd]);
        f.extend_from_slice(&ip);
        let mut out = Vec::new();
        nat.on_frame(&f, &mut |frame: &[u8]| out.push(frame[12..].to_vec()));
        out
    };
    let out = send(&mut nat, SocketAddr::new(dns.into(), 53));
    assert_eq!(out.len(), 1, "one DNS answer");
    assert_eq!(&out[0][..6], &mac, "to the learned MAC");
    let ip = Ipv6Packet::new_checked(&out[0][14..]).expect("IPv6");
    assert_eq!((ip.src_addr(), ip.dst_addr()), (dns, slaac));
    // The gateway's port 53 is not the DNS responder's on this network.
    let out = send(&mut nat, SocketAddr::new(gw.into(), 53));
    assert!(out.iter().all(|f| {
        let ip = Ipv6Packet::new_checked(&f[14..]).expect("IPv6");
        ip.next_header() != IpProtocol::Udp
    }));
    assert_eq!(nat.stats().counters.dns_local, 1);
}
