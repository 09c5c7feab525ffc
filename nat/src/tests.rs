//! The engine fed byte arrays, with a fake clock: TCP edge states on the gateway's own DNS
//! port (no host socket needed) and on dials to a listener this test owns on 127.0.0.1
//! (through host_loopback), refusals built from long SYNs, forbidden destinations, quotas,
//! a relayed DNS answer that must not reach a connection that reused a closed one's slot, and
//! the flow list (bytes each way, age, the limit).

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    Icmpv4Packet, IpProtocol, Ipv4Packet, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};

use crate::{Nat, NatConfig};

const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const GW_MAC: [u8; 6] = [0x02, 0x42, 10, 0, 0, 1];
const C1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const C2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);

thread_local! {
    static NOW_US: Cell<u64> = const { Cell::new(0) };
    static BASE: Instant = Instant::now();
}

fn clock() -> Instant {
    BASE.with(|b| *b) + Duration::from_micros(NOW_US.with(Cell::get))
}

fn advance(d: Duration) {
    NOW_US.with(|n| n.set(n.get() + d.as_micros() as u64));
}

/// A segment as the gateway sent it.
#[derive(Debug, Clone)]
struct Seg {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    fin: bool,
    rst: bool,
    win: u16,
    payload: Vec<u8>,
}

struct Net {
    nat: Nat,
    /// IPv4 packets the gateway emitted (virtio and Ethernet headers stripped).
    out: Vec<Vec<u8>>,
}

impl Net {
    fn new(tune: impl FnOnce(&mut NatConfig)) -> Self {
        let mut cfg = NatConfig::new(GW, GW_MAC, (Ipv4Addr::new(10, 0, 0, 0), 24), 1500);
        tune(&mut cfg);
        let nat = Nat::with_clock(cfg, clock).expect("engine");
        Self {
            nat,
            out: Vec::new(),
        }
    }

    fn send(&mut self, ip: &[u8]) {
        let mut f = GW_MAC.to_vec();
        f.extend_from_slice(&[0x02, 0x42, 10, 0, 0, ip[15]]);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(ip);
        let out = &mut self.out;
        self.nat
            .on_frame(&f, &mut |frame: &[u8]| out.push(frame[12 + 14..].to_vec()));
    }

    fn poll(&mut self) {
        let out = &mut self.out;
        self.nat
            .poll(&mut |frame: &[u8]| out.push(frame[12 + 14..].to_vec()));
    }

    /// Polls until `f` finds something among the emitted packets (real sockets may need a
    /// moment), at most 2 s.
    fn poll_until<T>(&mut self, mut f: impl FnMut(&[Vec<u8>]) -> Option<T>) -> Option<T> {
        let end = Instant::now() + Duration::from_secs(2);
        loop {
            if let Some(t) = f(&self.out) {
                return Some(t);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_micros(100));
            self.poll();
        }
    }

    fn segments(&self) -> Vec<Seg> {
        self.out.iter().filter_map(|p| seg(p)).collect()
    }

    fn tcp_flows(&self) -> usize {
        self.nat.stats().tcp_flows
    }
}

fn seg(p: &[u8]) -> Option<Seg> {
    let ip = Ipv4Packet::new_checked(p).ok()?;
    if ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let t = TcpPacket::new_checked(ip.payload()).ok()?;
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
        win: t.window_len(),
        payload: t.payload().to_vec(),
    })
}

/// An IPv4 packet with `options` (padded to 4 bytes) around a TCP segment.
#[allow(clippy::too_many_arguments)]
fn tcp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    control: TcpControl,
    seq: u32,
    ack: Option<u32>,
    payload: &[u8],
    options: usize,
) -> Vec<u8> {
    let repr = TcpRepr {
        src_port: sport,
        dst_port: dport,
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
        window_len: 65535,
        window_scale: None,
        max_seg_size: None,
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
    let ihl = 20 + options.div_ceil(4) * 4;
    let mut ip = vec![0u8; ihl];
    ip[0] = 0x40 | (ihl / 4) as u8;
    ip[2..4].copy_from_slice(&((ihl + t.len()) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    ip[20..].fill(1); // NOPs
    let mut p = Ipv4Packet::new_unchecked(&mut ip[..]);
    p.fill_checksum();
    ip.extend_from_slice(&t);
    ip
}

/// A container-side TCP client, tracking sequence numbers.
struct Client {
    ip: Ipv4Addr,
    port: u16,
    to: (Ipv4Addr, u16),
    seq: u32,
    ack: u32,
}

impl Client {
    fn new(ip: Ipv4Addr, port: u16, to: (Ipv4Addr, u16)) -> Self {
        Self {
            ip,
            port,
            to,
            seq: 1000,
            ack: 0,
        }
    }

    fn pkt(&self, control: TcpControl, ack: bool, payload: &[u8]) -> Vec<u8> {
        tcp(
            self.ip,
            self.to.0,
            self.port,
            self.to.1,
            control,
            self.seq,
            ack.then_some(self.ack),
            payload,
            0,
        )
    }

    fn sent_to_me<'a>(&self, segs: &'a [Seg]) -> impl Iterator<Item = &'a Seg> {
        let (ip, port) = (self.ip, self.port);
        segs.iter().filter(move |s| s.dst == ip && s.dport == port)
    }

    /// SYN, waits for the SYN-ACK, ACKs it.
    fn handshake(&mut self, net: &mut Net) {
        net.send(&self.pkt(TcpControl::Syn, false, &[]));
        self.seq += 1;
        let synack = net
            .poll_until(|o| {
                let segs: Vec<Seg> = o.iter().filter_map(|p| seg(p)).collect();
                self.sent_to_me(&segs)
                    .find(|s| s.syn && s.ack.is_some())
                    .cloned()
            })
            .expect("SYN-ACK");
        self.ack = synack.seq.wrapping_add(1);
        net.send(&self.pkt(TcpControl::None, true, &[]));
    }

    fn data(&mut self, net: &mut Net, bytes: &[u8]) {
        net.send(&self.pkt(TcpControl::Psh, true, bytes));
        self.seq = self.seq.wrapping_add(bytes.len() as u32);
    }

    fn fin(&mut self, net: &mut Net) {
        net.send(&self.pkt(TcpControl::Fin, true, &[]));
        self.seq = self.seq.wrapping_add(1);
    }

    fn rst(&mut self, net: &mut Net) {
        net.send(&self.pkt(TcpControl::Rst, true, &[]));
    }

    /// Everything the gateway sent us so far, in order.
    fn received(&self, net: &Net) -> Vec<u8> {
        let segs = net.segments();
        self.sent_to_me(&segs)
            .flat_map(|s| s.payload.clone())
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
        RecordType::A,
    ));
    m.to_vec().expect("query")
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut v = (msg.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(msg);
    v
}

#[test]
fn a_long_syn_with_options_and_data_is_refused_from_its_parsed_fields() {
    let mut net = Net::new(|_| {});
    let payload = vec![7u8; 900];
    let syn = tcp(C1, GW, 40000, 80, TcpControl::Syn, 5000, None, &payload, 40);
    assert!(syn.len() > 900 + 60);
    net.send(&syn);
    let segs = net.segments();
    let rst = segs.iter().find(|s| s.rst).expect("an RST");
    assert_eq!(
        (rst.src, rst.dst, rst.sport, rst.dport),
        (GW, C1, 80, 40000)
    );
    assert_eq!(rst.ack, Some(5000 + 1 + 900), "acknowledges SYN and data");
    assert_eq!(net.tcp_flows(), 0);
}

#[test]
fn forbidden_destinations_get_icmp_prohibited_and_are_counted() {
    let mut net = Net::new(|_| {});
    for dst in [
        Ipv4Addr::LOCALHOST,
        Ipv4Addr::new(127, 9, 9, 9),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::new(240, 0, 0, 1),
    ] {
        net.out.clear();
        net.send(&tcp(C1, dst, 40000, 22, TcpControl::Syn, 1, None, &[], 0));
        let icmp = net
            .out
            .iter()
            .find_map(|p| {
                let ip = Ipv4Packet::new_checked(&p[..]).ok()?;
                (ip.next_header() == IpProtocol::Icmp)
                    .then(|| Icmpv4Packet::new_checked(ip.payload()).ok())
                    .flatten()
                    .map(|i| (u8::from(i.msg_type()), i.msg_code()))
            })
            .unwrap_or_else(|| panic!("ICMP for {dst}"));
        assert_eq!(icmp, (3, 10), "host administratively prohibited for {dst}");
    }
    assert_eq!(net.nat.stats().counters.forbidden_destination, 6);
    assert_eq!(net.tcp_flows(), 0);
}

#[test]
fn dns_over_tcp_answers_and_closes_cleanly_after_the_containers_fin() {
    let mut net = Net::new(|_| {});
    let mut c = Client::new(C1, 40001, (GW, 53));
    c.handshake(&mut net);
    assert_eq!(net.tcp_flows(), 1);
    // Simultaneous close: our FIN right behind a whole query.
    c.data(&mut net, &framed(&dns_query(0x4242, "nothere")));
    c.fin(&mut net);
    let got = c.received(&net);
    assert!(got.len() > 14, "an answer: {got:?}");
    assert_eq!(&got[2..4], &[0x42, 0x42], "to our query id");
    let fin = net
        .poll_until(|o| {
            let segs: Vec<Seg> = o.iter().filter_map(|p| seg(p)).collect();
            c.sent_to_me(&segs).find(|s| s.fin).cloned()
        })
        .expect("the gateway closes too");
    c.ack = fin.seq.wrapping_add(fin.payload.len() as u32 + 1);
    net.send(&c.pkt(TcpControl::None, true, &[]));
    net.poll();
    assert_eq!(net.tcp_flows(), 0, "the flow leaves the table at once");
}

#[test]
fn dns_over_tcp_closed_mid_message_does_not_linger() {
    let mut net = Net::new(|_| {});
    let mut c = Client::new(C1, 40002, (GW, 53));
    c.handshake(&mut net);
    c.data(&mut net, &[0, 100, 1, 2, 3]);
    c.fin(&mut net);
    net.poll();
    let fin = c.sent_to_me(&net.segments()).find(|s| s.fin).cloned();
    assert!(
        fin.is_some(),
        "the gateway closes a connection that can never complete"
    );
    let fin = fin.unwrap_or_else(|| unreachable!());
    c.ack = fin.seq.wrapping_add(1);
    net.send(&c.pkt(TcpControl::None, true, &[]));
    net.poll();
    assert_eq!(net.tcp_flows(), 0);
}

#[test]
fn rst_in_every_state_removes_the_flow() {
    // After the SYN (handshake not done), established, and after our FIN.
    for stage in 0..3 {
        let mut net = Net::new(|_| {});
        let mut c = Client::new(C1, 40010 + stage, (GW, 53));
        match stage {
            0 => {
                net.send(&c.pkt(TcpControl::Syn, false, &[]));
                c.seq += 1;
                let synack = c.sent_to_me(&net.segments()).find(|s| s.syn).cloned();
                c.ack = synack.map_or(0, |s| s.seq.wrapping_add(1));
            }
            1 => c.handshake(&mut net),
            _ => {
                c.handshake(&mut net);
                c.data(&mut net, &[0, 50, 9]);
            }
        }
        assert_eq!(net.tcp_flows(), 1, "stage {stage}");
        c.rst(&mut net);
        net.poll();
        assert_eq!(net.tcp_flows(), 0, "stage {stage}: RST ends the flow");
    }
}

#[test]
fn idle_dns_connections_are_reset_after_their_timeout() {
    let mut net = Net::new(|_| {});
    let mut c = Client::new(C1, 40020, (GW, 53));
    c.handshake(&mut net);
    advance(Duration::from_secs(5));
    net.poll();
    assert_eq!(net.tcp_flows(), 1, "not yet");
    advance(Duration::from_secs(6));
    net.out.clear();
    net.poll();
    assert_eq!(net.tcp_flows(), 0);
    assert!(
        c.sent_to_me(&net.segments()).any(|s| s.rst),
        "the container is told"
    );
    assert_eq!(net.nat.stats().counters.expired, 1);
}

#[test]
fn an_endpoint_holds_at_most_its_quota() {
    let mut net = Net::new(|c| c.max_flows_per_endpoint = 2);
    for port in [41000, 41001] {
        Client::new(C1, port, (GW, 53)).handshake(&mut net);
    }
    assert_eq!(net.tcp_flows(), 2);
    net.out.clear();
    let third = Client::new(C1, 41002, (GW, 53));
    net.send(&third.pkt(TcpControl::Syn, false, &[]));
    assert!(third.sent_to_me(&net.segments()).any(|s| s.rst), "refused");
    assert_eq!(net.tcp_flows(), 2);
    assert_eq!(net.nat.stats().counters.refused_endpoint_quota, 1);
    // Another container is not affected.
    Client::new(C2, 41000, (GW, 53)).handshake(&mut net);
    assert_eq!(net.tcp_flows(), 3);
}

#[test]
fn a_dial_the_container_abandoned_leaves_the_table() {
    let host = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = host.local_addr().expect("addr").port();
    let mut net = Net::new(|c| c.host_loopback = true);
    let c = Client::new(C1, 42000, (GW, port));
    net.send(&c.pkt(TcpControl::Syn, false, &[]));
    let synack = net
        .poll_until(|o| {
            let segs: Vec<Seg> = o.iter().filter_map(|p| seg(p)).collect();
            c.sent_to_me(&segs).find(|s| s.syn).cloned()
        })
        .expect("SYN-ACK once the dial is through");
    assert_eq!(net.tcp_flows(), 1);
    // The container no longer knows the connection: its kernel answers with RST.
    net.send(&tcp(
        C1,
        GW,
        42000,
        port,
        TcpControl::Rst,
        synack.ack.unwrap_or(0),
        None,
        &[],
        0,
    ));
    net.poll();
    assert_eq!(
        net.tcp_flows(),
        0,
        "the flow, its host socket and listener are gone"
    );
}

#[test]
fn a_silent_half_open_flow_expires() {
    let host = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = host.local_addr().expect("addr").port();
    let mut net = Net::new(|c| {
        c.host_loopback = true;
        c.connect_timeout = Duration::from_secs(3);
    });
    let c = Client::new(C1, 42001, (GW, port));
    net.send(&c.pkt(TcpControl::Syn, false, &[]));
    net.poll_until(|o| {
        let segs: Vec<Seg> = o.iter().filter_map(|p| seg(p)).collect();
        c.sent_to_me(&segs).find(|s| s.syn).cloned()
    })
    .expect("SYN-ACK");
    advance(Duration::from_secs(4));
    net.poll();
    assert_eq!(net.tcp_flows(), 0, "a handshake never completed ends");
}

#[test]
fn half_close_passes_both_ways_through_a_dial() {
    let host = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = host.local_addr().expect("addr").port();
    let mut net = Net::new(|c| c.host_loopback = true);
    let mut c = Client::new(C1, 42002, (GW, port));
    c.handshake(&mut net);
    let (mut server, _) = host.accept().expect("dialled");
    c.data(&mut net, b"ping");
    c.fin(&mut net);
    let mut got = Vec::new();
    server
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    server.read_to_end(&mut got).expect("EOF after the data");
    assert_eq!(got, b"ping");
    server.write_all(b"pong").expect("reply after our FIN");
    drop(server);
    let fin = net
        .poll_until(|o| {
            let segs: Vec<Seg> = o.iter().filter_map(|p| seg(p)).collect();
            c.sent_to_me(&segs).find(|s| s.fin).cloned()
        })
        .expect("FIN after the reply");
    assert_eq!(c.received(&net), b"pong");
    c.ack = fin.seq.wrapping_add(fin.payload.len() as u32 + 1);
    net.send(&c.pkt(TcpControl::None, true, &[]));
    net.poll();
    assert_eq!(net.tcp_flows(), 0);
}

#[test]
fn a_relayed_answer_never_reaches_a_connection_that_reused_the_slot() {
    let upstream = UdpSocket::bind("127.0.0.1:0").expect("upstream");
    let up = upstream.local_addr().expect("addr");
    let mut net = Net::new(|c| c.dns.upstreams = vec![up]);
    let mut a = Client::new(C1, 43000, (GW, 53));
    a.handshake(&mut net);
    a.data(&mut net, &framed(&dns_query(0x0a0a, "secret.example.")));
    let mut q = [0u8; 512];
    upstream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let (n, from) = upstream.recv_from(&mut q).expect("relayed");
    a.rst(&mut net);
    net.poll();
    assert_eq!(net.tcp_flows(), 0);
    let mut b = Client::new(C2, 43001, (GW, 53));
    b.handshake(&mut net);
    // The upstream answers A's question now.
    let mut answer = q[..n].to_vec();
    answer[2] |= 0x80;
    upstream.send_to(&answer, from).expect("answer");
    std::thread::sleep(Duration::from_millis(50));
    net.poll();
    net.poll();
    assert!(b.received(&net).is_empty(), "B got A's answer");
    b.data(&mut net, &framed(&dns_query(0x0b0b, "other")));
    assert_eq!(
        &b.received(&net)[2..4],
        &[0x0b, 0x0b],
        "B gets its own answers"
    );
}

#[test]
fn buffers_grow_with_traffic_shrink_when_idle_and_return_to_the_budget() {
    let host = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = host.local_addr().expect("addr").port();
    let mut net = Net::new(|c| c.host_loopback = true);
    let mut c = Client::new(C1, 44000, (GW, port));
    c.handshake(&mut net);
    assert_eq!(
        net.nat.stats().buffer_bytes,
        8192,
        "a new flow holds 4 KiB each way"
    );
    let (mut server, _) = host.accept().expect("dialled");
    let data = vec![0x5a; 512 * 1024];
    let writer = std::thread::spawn(move || {
        server.write_all(&data).expect("write");
        server
    });
    // The container reads and acknowledges everything.
    let mut got = 0usize;
    let mut peak = 0;
    let end = Instant::now() + Duration::from_secs(10);
    while got < 512 * 1024 && Instant::now() < end {
        net.poll();
        let mine: Vec<Seg> = c.sent_to_me(&net.segments()).cloned().collect();
        for s in mine {
            let next = s.seq.wrapping_add(s.payload.len() as u32);
            if s.seq == c.ack && !s.payload.is_empty() {
                got += s.payload.len();
                c.ack = next;
            }
        }
        net.out.clear();
        net.send(&c.pkt(TcpControl::None, true, &[]));
        peak = peak.max(net.nat.stats().buffer_bytes);
    }
    let _server = writer.join().expect("writer");
    assert_eq!(got, 512 * 1024, "all data arrived");
    assert!(
        peak > 64 * 1024,
        "the send buffer grew with the transfer: peak {peak}"
    );
    advance(Duration::from_secs(3));
    net.poll();
    assert_eq!(
        net.nat.stats().buffer_bytes,
        8192,
        "idle: back to 4 KiB each way"
    );
    c.rst(&mut net);
    net.poll();
    assert_eq!(
        net.nat.stats().buffer_bytes,
        0,
        "closed: everything given back"
    );
}

#[test]
fn a_spent_budget_refuses_new_flows_and_spares_old_ones() {
    let mut net = Net::new(|c| c.nat_memory = 3 * 8192);
    for port in 45000..45003 {
        Client::new(C1, port, (GW, 53)).handshake(&mut net);
    }
    net.out.clear();
    let fourth = Client::new(C1, 45003, (GW, 53));
    net.send(&fourth.pkt(TcpControl::Syn, false, &[]));
    assert!(fourth.sent_to_me(&net.segments()).any(|s| s.rst), "refused");
    let stats = net.nat.stats();
    assert_eq!((stats.tcp_flows, stats.counters.refused_memory), (3, 1));
}

#[test]
fn dns_over_tcp_connections_are_bounded_per_container() {
    let mut net = Net::new(|_| {});
    let max = crate::tcp::MAX_LOCAL_PER_ENDPOINT as u16;
    for port in 0..max {
        Client::new(C1, 46000 + port, (GW, 53)).handshake(&mut net);
    }
    net.out.clear();
    let extra = Client::new(C1, 46000 + max, (GW, 53));
    net.send(&extra.pkt(TcpControl::Syn, false, &[]));
    assert!(extra.sent_to_me(&net.segments()).any(|s| s.rst), "refused");
    assert_eq!(net.tcp_flows(), usize::from(max));
    Client::new(C2, 46000, (GW, 53)).handshake(&mut net);
    assert_eq!(
        net.tcp_flows(),
        usize::from(max) + 1,
        "another container may"
    );
}

#[test]
fn the_receive_buffer_grows_while_the_far_side_keeps_up() {
    let host = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = host.local_addr().expect("addr").port();
    let mut net = Net::new(|c| c.host_loopback = true);
    let mut c = Client::new(C1, 44100, (GW, port));
    c.handshake(&mut net);
    let (mut server, _) = host.accept().expect("dialled");
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = server.read_to_end(&mut all);
        all.len()
    });
    // 256 KiB in 2 KiB segments, each sent once the previous one is acknowledged.
    let chunk = [0x42u8; 2048];
    for _ in 0..128 {
        c.data(&mut net, &chunk);
        net.poll_until(|o| {
            o.iter()
                .filter_map(|p| seg(p))
                .any(|s| s.dst == C1 && s.ack == Some(c.seq))
                .then_some(())
        })
        .expect("acknowledged");
        net.out.clear();
    }
    let grown = net.nat.stats().buffer_bytes;
    assert!(grown > 64 * 1024, "the receive buffer grew: {grown}");
    c.fin(&mut net);
    net.poll();
    assert_eq!(
        reader.join().expect("reader"),
        128 * 2048,
        "all data reached the host"
    );
}

#[test]
fn ten_thousand_flows_opened_and_closed_leave_no_handle_or_timer_behind() {
    let host = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = host.local_addr().expect("addr").port();
    let mut net = Net::new(|c| c.host_loopback = true);
    for i in 0..10_000u32 {
        net.out.clear();
        let mut c = Client::new(C1, 20_000 + (i % 40_000) as u16, (GW, port));
        c.handshake(&mut net);
        let (server, _) = host.accept().expect("dialled");
        if i % 10 == 0 {
            // Closed both ways by FIN: container first, then the host.
            c.fin(&mut net);
            drop(server);
            let fin = net
                .poll_until(|o| {
                    let segs: Vec<Seg> = o.iter().filter_map(|p| seg(p)).collect();
                    c.sent_to_me(&segs).find(|s| s.fin).cloned()
                })
                .unwrap_or_else(|| panic!("FIN of flow {i}"));
            c.ack = fin.seq.wrapping_add(1);
            net.send(&c.pkt(TcpControl::None, true, &[]));
        } else {
            c.rst(&mut net);
            drop(server);
        }
        assert_eq!(net.tcp_flows(), 0, "flow {i} left the table");
    }
    advance(Duration::from_secs(1));
    net.poll();
    let (flows, keys, slots, timers) = net.nat.tcp_sizes();
    assert_eq!((flows, keys), (0, 0), "no flow and no index entry left");
    assert!(
        slots <= 2,
        "slots are reused: {slots} allocated for 1 live flow at a time"
    );
    assert!(timers <= 64, "stale deadlines are dropped: {timers} left");
    assert_eq!(net.nat.stats().counters.tcp_opened, 10_000);
}

/// Sends `data` as a well-behaved sender would: segments of 1400 bytes within the window the
/// gateway advertises, resent from the last acknowledged byte when nothing moves (at most 20 s).
/// `progress` sees the engine and the bytes acknowledged after every round.
fn send_windowed(
    c: &mut Client,
    net: &mut Net,
    data: &[u8],
    mut progress: impl FnMut(&Net, usize),
) {
    let base = c.seq;
    let (mut acked, mut next, mut win) = (0usize, 0usize, 4096usize);
    let end = Instant::now() + Duration::from_secs(20);
    while acked < data.len() {
        assert!(
            Instant::now() < end,
            "stalled at {acked} of {} bytes",
            data.len()
        );
        while next < data.len() && next < acked + win {
            let chunk = &data[next..(next + 1400).min(data.len()).min(acked + win)];
            c.seq = base.wrapping_add(next as u32);
            c.data(net, chunk);
            next += chunk.len();
        }
        std::thread::sleep(Duration::from_micros(200));
        net.poll();
        let segs = net.segments();
        net.out.clear();
        let before = acked;
        for s in c.sent_to_me(&segs) {
            if let Some(a) = s.ack {
                acked = acked.max(a.wrapping_sub(base) as usize);
                win = usize::from(s.win).max(1);
            }
        }
        if acked == before {
            next = acked; // go back and resend what was not taken
        }
        progress(net, acked);
    }
    c.seq = base.wrapping_add(data.len() as u32);
}

#[test]
fn data_reaches_the_host_in_order_whether_written_directly_or_buffered() {
    let host = TcpListener::bind("127.0.0.1:0").expect("listener");
    // A small receive buffer on the far side, and a reader that starts only once smoltcp
    // has had to buffer something (the host socket was full): the data takes both paths.
    socket2::SockRef::from(&host)
        .set_recv_buffer_size(4096)
        .expect("rcvbuf");
    let port = host.local_addr().expect("addr").port();
    let mut net = Net::new(|c| c.host_loopback = true);
    let mut c = Client::new(C1, 42100, (GW, port));
    c.handshake(&mut net);
    let (mut server, _) = host.accept().expect("dialled");
    let data: Vec<u8> = (0..8_000_000u32).map(|i| (i % 251) as u8).collect();
    let (start, started) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let _ = started.recv();
        let mut got = Vec::new();
        server.read_to_end(&mut got).expect("read");
        got
    });
    let mut start = Some(start);
    send_windowed(&mut c, &mut net, &data, |net, acked| {
        if net.nat.stats().counters.tcp_direct_bytes < acked as u64
            && let Some(s) = start.take()
        {
            let _ = s.send(());
        }
    });
    drop(start);
    c.fin(&mut net);
    net.poll_until(|_| None::<()>); // let the rest drain for a moment
    let got = reader.join().expect("reader");
    assert_eq!(got.len(), data.len(), "every byte arrived");
    assert!(got == data, "in order and intact");
    let direct = net.nat.stats().counters.tcp_direct_bytes;
    assert!(direct > 0, "the direct path was taken");
    assert!(
        direct < data.len() as u64,
        "the host socket filled and smoltcp buffered the rest ({direct} direct)"
    );
}

#[test]
fn dns_queries_are_counted_by_outcome() {
    // No upstream resolver: a relayed query ends in SERVFAIL.
    let mut net = Net::new(|c| c.dns.upstreams = Vec::new());
    let mut c = Client::new(C1, 47000, (GW, 53));
    c.handshake(&mut net);
    c.data(&mut net, &framed(&dns_query(1, "nothere")));
    c.data(&mut net, &framed(&dns_query(2, "far.example.")));
    let mut response = dns_query(3, "other");
    response[2] |= 0x80;
    c.data(&mut net, &framed(&response));
    net.poll();
    let k = net.nat.stats().counters;
    assert_eq!(
        (
            k.dns_local,
            k.dns_relayed,
            k.dns_servfail,
            k.dns_dropped,
            k.dns_refused
        ),
        (1, 1, 1, 1, 0),
        "{k:?}"
    );
}

#[test]
fn a_listed_flow_counts_the_bytes_each_way_and_its_age() {
    let host = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = host.local_addr().expect("addr").port();
    let mut net = Net::new(|c| c.host_loopback = true);
    assert_eq!(net.nat.flows(10), (Vec::new(), true), "nothing yet");
    let mut c = Client::new(C1, 42200, (GW, port));
    c.handshake(&mut net);
    let (mut server, _) = host.accept().expect("dialled");
    c.data(&mut net, b"ping");
    let mut got = [0u8; 4];
    server
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    server.read_exact(&mut got).expect("the data");
    server.write_all(b"pong!!").expect("reply");
    net.poll_until(|out| {
        let segs: Vec<Seg> = out.iter().filter_map(|p| seg(p)).collect();
        let got: usize = c.sent_to_me(&segs).map(|s| s.payload.len()).sum();
        (got == 6).then_some(())
    })
    .expect("the reply");
    assert_eq!(c.received(&net), b"pong!!");
    advance(Duration::from_secs(7));
    let (flows, complete) = net.nat.flows(10);
    assert!(complete);
    let [f] = flows.as_slice() else {
        panic!("one flow: {flows:?}");
    };
    assert_eq!(f.protocol, crate::FlowProtocol::Tcp);
    assert_eq!(f.container, (C1, 42200).into());
    assert_eq!(f.remote, (GW, port).into());
    assert_eq!(f.state, "ESTABLISHED");
    assert_eq!((f.to_remote, f.to_container), (4, 6));
    assert_eq!(f.age.as_secs(), 7);
    // The limit bounds the list and says so.
    assert_eq!(net.nat.flows(0), (Vec::new(), false));
}

// ---- slirp4netns mode: the DNS address, the default neighbour, the outbound address ----

/// slirp4netns's DNS address (net+3).
const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);

/// A UDP datagram from `src` to `dst`.
fn udp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    etherparse::PacketBuilder::ipv4(src.0.octets(), dst.0.octets(), 64)
        .udp(src.1, dst.1)
        .write(&mut v, payload)
        .expect("udp packet");
    v
}

/// A UDP datagram the gateway sent: (source, destination, payload).
type Datagram = ((Ipv4Addr, u16), (Ipv4Addr, u16), Vec<u8>);

/// The UDP datagrams the gateway sent.
fn udp_sent(out: &[Vec<u8>]) -> Vec<Datagram> {
    out.iter()
        .filter_map(|p| {
            let ip = Ipv4Packet::new_checked(&p[..]).ok()?;
            if ip.next_header() != IpProtocol::Udp {
                return None;
            }
            let u = smoltcp::wire::UdpPacket::new_checked(ip.payload()).ok()?;
            Some((
                (ip.src_addr(), u.src_port()),
                (ip.dst_addr(), u.dst_port()),
                u.payload().to_vec(),
            ))
        })
        .collect()
}

/// ICMP errors the gateway sent: (source, type, code).
fn icmp_sent(out: &[Vec<u8>]) -> Vec<(Ipv4Addr, u8, u8)> {
    out.iter()
        .filter_map(|p| {
            let ip = Ipv4Packet::new_checked(&p[..]).ok()?;
            let i = (ip.next_header() == IpProtocol::Icmp)
                .then(|| Icmpv4Packet::new_checked(ip.payload()).ok())
                .flatten()?;
            Some((ip.src_addr(), u8::from(i.msg_type()), i.msg_code()))
        })
        .collect()
}

#[test]
fn dns_is_served_at_its_own_address_only_and_its_other_ports_are_closed() {
    let mut net = Net::new(|c| {
        c.dns_ip = Some(DNS);
        c.host_loopback = true;
        c.dns.upstreams = Vec::new();
    });
    // UDP 53 at the DNS address: answered, from that address.
    net.send(&udp((C1, 40000), (DNS, 53), &dns_query(7, "nothere")));
    let replies = udp_sent(&net.out);
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!((replies[0].0, replies[0].1), ((DNS, 53), (C1, 40000)));
    assert_eq!(replies[0].2[..2], 7u16.to_be_bytes());
    assert_eq!(net.nat.stats().counters.dns_local, 1);

    // UDP 53 at the gateway is an ordinary gateway port: the host's loopback, no DNS answer.
    net.out.clear();
    net.send(&udp((C1, 40001), (GW, 53), &dns_query(8, "nothere")));
    assert!(udp_sent(&net.out).is_empty());
    assert_eq!(net.nat.stats().counters.dns_local, 1);
    assert_eq!(
        net.nat.stats().counters.udp_flows,
        1,
        "translated to the host"
    );

    // Any other UDP port at the DNS address: port unreachable, from the DNS address.
    net.out.clear();
    net.send(&udp((C1, 40002), (DNS, 54), b"x"));
    assert_eq!(icmp_sent(&net.out), vec![(DNS, 3, 3)]);

    // TCP 53 at the DNS address is DNS over TCP; any other TCP port there is reset.
    let mut c = Client::new(C1, 40003, (DNS, 53));
    c.handshake(&mut net);
    c.data(&mut net, &framed(&dns_query(9, "nothere")));
    net.poll();
    assert_eq!(c.received(&net)[2..4], 9u16.to_be_bytes());
    net.out.clear();
    net.send(&tcp(C1, DNS, 40004, 80, TcpControl::Syn, 1, None, &[], 0));
    let segs = net.segments();
    assert!(
        segs.iter().any(|s| s.rst && s.src == DNS && s.sport == 80),
        "{segs:?}"
    );
    assert_eq!(net.nat.stats().counters.forbidden_destination, 0);
}

#[test]
fn a_disabled_dns_responder_leaves_port_53_unreachable() {
    let mut net = Net::new(|c| {
        c.dns_ip = Some(DNS);
        c.dns_enabled = false;
    });
    net.send(&udp((C1, 40000), (DNS, 53), &dns_query(7, "nothere")));
    assert!(udp_sent(&net.out).is_empty());
    assert_eq!(icmp_sent(&net.out), vec![(DNS, 3, 3)]);
    net.out.clear();
    net.send(&tcp(C1, DNS, 40001, 53, TcpControl::Syn, 1, None, &[], 0));
    assert!(net.segments().iter().any(|s| s.rst && s.src == DNS));
    let k = net.nat.stats().counters;
    assert_eq!((k.dns_local, k.dns_relayed), (0, 0));
    assert_eq!(net.tcp_flows(), 0);
}

#[test]
fn the_default_dns_address_is_still_the_gateway() {
    let mut net = Net::new(|c| c.dns.upstreams = Vec::new());
    net.send(&udp((C1, 40000), (GW, 53), &dns_query(7, "nothere")));
    let replies = udp_sent(&net.out);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].0, (GW, 53));
    // net+3 is an ordinary container address: not translated, not answered.
    net.out.clear();
    net.send(&udp((C1, 40001), (DNS, 53), &dns_query(8, "nothere")));
    assert!(net.out.is_empty());
}

/// Sends `ip` from `mac` to the gateway; returns the Ethernet destinations of what came back.
fn send_from(nat: &mut Nat, mac: [u8; 6], ip: &[u8]) -> Vec<[u8; 6]> {
    let mut f = GW_MAC.to_vec();
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(ip);
    let mut dsts = Vec::new();
    nat.on_frame(&f, &mut |frame: &[u8]| {
        dsts.push(<[u8; 6]>::try_from(&frame[12..18]).expect("dst"))
    });
    dsts
}

#[test]
fn a_learned_default_neighbor_receives_replies_for_any_address() {
    const MAC: [u8; 6] = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01];
    const OTHER: [u8; 6] = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x02];
    let query = |port| udp((C1, port), (GW, 53), &dns_query(port, "nothere"));

    // Without learning, the reply goes to the MAC derived from the address.
    let mut nat = Nat::with_clock(
        NatConfig::new(GW, GW_MAC, (Ipv4Addr::new(10, 0, 0, 0), 24), 1500),
        clock,
    )
    .expect("engine");
    assert_eq!(
        send_from(&mut nat, MAC, &query(1)),
        vec![[2, 0x42, 10, 0, 0, 2]]
    );
    // A default neighbour set by the caller takes over for addresses without their own MAC.
    nat.set_default_neighbor(OTHER);
    assert_eq!(send_from(&mut nat, MAC, &query(2)), vec![OTHER]);
    nat.set_neighbor(C1.into(), MAC);
    assert_eq!(send_from(&mut nat, OTHER, &query(3)), vec![MAC]);

    // With learning, the sender's MAC becomes the default and follows a change.
    let mut cfg = NatConfig::new(GW, GW_MAC, (Ipv4Addr::new(10, 0, 0, 0), 24), 1500);
    cfg.learn_neighbor = true;
    let mut nat = Nat::with_clock(cfg, clock).expect("engine");
    assert_eq!(send_from(&mut nat, MAC, &query(4)), vec![MAC]);
    assert_eq!(send_from(&mut nat, OTHER, &query(5)), vec![OTHER]);
    // A multicast source is never learned.
    let mut bad = OTHER;
    bad[0] |= 1;
    assert_eq!(send_from(&mut nat, bad, &query(6)), vec![OTHER]);
}

#[test]
fn outbound_flows_leave_from_the_configured_address() {
    let outbound = Ipv4Addr::new(127, 0, 0, 2);
    // TCP: the host sees the connection come from 127.0.0.2.
    let host = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = host.local_addr().expect("addr").port();
    let mut net = Net::new(|c| {
        c.host_loopback = true;
        c.outbound_ip = Some(outbound);
    });
    let mut c = Client::new(C1, 42010, (GW, port));
    c.handshake(&mut net);
    let (_server, peer) = host.accept().expect("dialled");
    assert_eq!(peer.ip(), outbound);

    // UDP: the same.
    let server = UdpSocket::bind("127.0.0.1:0").expect("udp server");
    server
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let uport = server.local_addr().expect("addr").port();
    net.send(&udp((C1, 42011), (GW, uport), b"hello"));
    let mut buf = [0u8; 16];
    let (n, from) = server.recv_from(&mut buf).expect("datagram");
    assert_eq!((&buf[..n], from.ip()), (&b"hello"[..], outbound.into()));
}

#[test]
fn an_outbound_address_that_cannot_be_bound_refuses_the_flow() {
    let host = TcpListener::bind("127.0.0.1:0").expect("listener");
    host.set_nonblocking(true).expect("nonblocking");
    let port = host.local_addr().expect("addr").port();
    let mut net = Net::new(|c| {
        c.host_loopback = true;
        // A documentation address the machine does not have.
        c.outbound_ip = Some(Ipv4Addr::new(203, 0, 113, 77));
    });
    net.send(&tcp(C1, GW, 42020, port, TcpControl::Syn, 1, None, &[], 0));
    assert_eq!(icmp_sent(&net.out), vec![(GW, 3, 1)], "host unreachable");
    assert!(host.accept().is_err(), "nothing reached the host");
    assert_eq!(net.tcp_flows(), 0);
    net.out.clear();
    net.send(&udp((C1, 42021), (GW, port), b"x"));
    assert_eq!(icmp_sent(&net.out), vec![(GW, 3, 1)]);
    assert_eq!(net.nat.stats().udp_flows, 0);
}
