//! The gateway's opt-in services for one self-configuring container (slirp4netns's drop-in):
//! aliases, the DHCPv4 server and Router Advertisements, checked on packets a client would
//! send and replies parsed back by independent parsers (dhcproto's decoder, smoltcp's NDP
//! parser with checksums verified).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use etherparse::{ArpEthIpv4Packet, ArpOperation, Icmpv6Type, PacketBuilder};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv4Packet, Ipv4Repr,
    Ipv6Packet, Ipv6Repr, NdiscOption, NdiscOptionRepr, NdiscPrefixInfoFlags, NdiscRepr, UdpPacket,
    UdpRepr,
};

use super::Gateway;
use crate::{DhcpConfig, INITIAL_ADVERTS, INITIAL_INTERVAL, RaConfig};

const NET: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 0);
const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
const GW_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
const C_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
const BCAST: [u8; 6] = [0xff; 6];
const GW6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const DNS6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3);
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
const C_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

fn run(gw: &mut Gateway, frame: &[u8], now: Instant) -> Option<Vec<u8>> {
    let mut out = [0u8; 2048];
    gw.on_frame_at(frame, &mut out, now)
        .map(|n| out[..n].to_vec())
}

// ---- aliases ----

fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    let arp = ArpEthIpv4Packet {
        operation: ArpOperation::REQUEST,
        sender_mac: C_MAC,
        sender_ipv4: [10, 0, 2, 100],
        target_mac: [0; 6],
        target_ipv4: target.octets(),
    };
    let mut v = Vec::new();
    PacketBuilder::ethernet2(C_MAC, BCAST)
        .arp(arp.into())
        .write(&mut v)
        .unwrap();
    v
}

fn ping(dst: Ipv4Addr) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(C_MAC, GW_MAC)
        .ipv4([10, 0, 2, 100], dst.octets(), 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut v, b"hello")
        .unwrap();
    v
}

#[test]
fn an_alias_answers_arp_and_ping_like_the_gateway_and_other_addresses_do_not() {
    let mut gw = Gateway::new(GW, GW_MAC).with_alias_v4(DNS);
    let now = Instant::now();
    for ip in [GW, DNS] {
        let reply = run(&mut gw, &arp_request(ip), now).unwrap_or_else(|| panic!("ARP {ip}"));
        let arp = etherparse::SlicedPacket::from_ethernet(&reply).unwrap();
        let Some(etherparse::NetSlice::Arp(arp)) = arp.net else {
            panic!("not ARP")
        };
        let arp = arp.to_packet().try_eth_ipv4().unwrap();
        assert_eq!((arp.sender_ipv4_addr(), arp.sender_mac), (ip, GW_MAC));

        let reply = run(&mut gw, &ping(ip), now).unwrap_or_else(|| panic!("ping {ip}"));
        let ipp = Ipv4Packet::new_checked(&reply[14..]).unwrap();
        assert_eq!(
            ipp.src_addr(),
            ip,
            "the reply comes from the address pinged"
        );
    }
    for other in [Ipv4Addr::new(10, 0, 2, 4), Ipv4Addr::new(10, 0, 2, 100)] {
        assert_eq!(run(&mut gw, &arp_request(other), now), None);
        assert_eq!(run(&mut gw, &ping(other), now), None);
    }
    assert_eq!(gw.counters().arp_replies, 2);
    assert_eq!(gw.counters().echo_replies, 2);
}

#[test]
fn an_ipv6_alias_answers_neighbor_solicitations_and_ping6() {
    // The alias may be given before the IPv6 side.
    let mut gw = Gateway::new(GW, GW_MAC).with_alias_v6(DNS6).with_ipv6(GW6);
    let now = Instant::now();
    let [.., a, b, c] = DNS6.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(a),
        u16::from_be_bytes([b, c]),
    );
    let mut body = DNS6.octets().to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&C_MAC);
    let mut ns = Vec::new();
    PacketBuilder::ethernet2(C_MAC, [0x33, 0x33, 0xff, a, b, c])
        .ipv6(C_LL.octets(), group.octets(), 255)
        .icmpv6(Icmpv6Type::NeighborSolicitation)
        .write(&mut ns, &body)
        .unwrap();
    let reply = run(&mut gw, &ns, now).expect("a neighbor advertisement for fd00::3");
    let (ip, icmp) = parse6(&reply);
    assert_eq!(ip.src_addr, DNS6);
    assert!(matches!(
        icmp_repr(&ip, &icmp),
        Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert { target_addr, .. }) if target_addr == DNS6
    ));
    let mut echo = Vec::new();
    PacketBuilder::ethernet2(C_MAC, GW_MAC)
        .ipv6(C_LL.octets(), DNS6.octets(), 64)
        .icmpv6_echo_request(3, 4)
        .write(&mut echo, b"x")
        .unwrap();
    let reply = run(&mut gw, &echo, now).expect("ping6 fd00::3");
    assert_eq!(parse6(&reply).0.src_addr, DNS6);
    assert_eq!(gw.counters().echo6_replies, 1);
}

// ---- DHCP ----

fn dhcp_gateway() -> Gateway {
    let mut cfg = DhcpConfig::slirp(NET, 24, DNS);
    cfg.mtu = Some(65520);
    Gateway::new(GW, GW_MAC).with_dhcp(cfg)
}

/// A client's DHCP message of `kind` from `mac`, built by dhcproto.
fn dhcp_msg(kind: MessageType, mac: [u8; 6], xid: u32, opts: Vec<DhcpOption>) -> Message {
    let mut m = Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac,
    );
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    for o in opts {
        m.opts_mut().insert(o);
    }
    m
}

/// `msg` in a UDP datagram 68 → 67 from `src` to `dst` (Ethernet `eth_dst`).
fn dhcp_frame(msg: &Message, src: Ipv4Addr, dst: Ipv4Addr, eth_dst: [u8; 6]) -> Vec<u8> {
    let mac = <[u8; 6]>::try_from(msg.chaddr()).unwrap();
    let mut v = Vec::new();
    PacketBuilder::ethernet2(mac, eth_dst)
        .ipv4(src.octets(), dst.octets(), 64)
        .udp(68, 67)
        .write(&mut v, &msg.to_vec().unwrap())
        .unwrap();
    v
}

fn broadcast(msg: &Message) -> Vec<u8> {
    dhcp_frame(msg, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, BCAST)
}

/// A DHCP reply taken apart: Ethernet destination, IP source and destination, the message.
struct Reply {
    eth_dst: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    msg: Message,
}

fn parse_reply(frame: &[u8]) -> Reply {
    let caps = ChecksumCapabilities::default();
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(eth.src_addr().0, GW_MAC);
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    let ip_repr = Ipv4Repr::parse(&ip, &caps).expect("valid IPv4 header");
    assert_eq!(ip_repr.next_header, IpProtocol::Udp);
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    UdpRepr::parse(
        &udp,
        &ip_repr.src_addr.into(),
        &ip_repr.dst_addr.into(),
        &caps,
    )
    .expect("valid UDP checksum");
    assert_eq!((udp.src_port(), udp.dst_port()), (67, 68));
    assert!(udp.payload().len() >= 300, "BOOTP minimum size");
    let msg = Message::decode(&mut Decoder::new(udp.payload())).expect("a DHCP message");
    assert_eq!(msg.opcode(), Opcode::BootReply);
    Reply {
        eth_dst: eth.dst_addr().0,
        src: ip_repr.src_addr,
        dst: ip_repr.dst_addr,
        msg,
    }
}

fn opt(m: &Message, code: OptionCode) -> Option<DhcpOption> {
    m.opts().get(code).cloned()
}

fn mac(i: u8) -> [u8; 6] {
    [0x02, 0x00, 0x00, 0x00, 0x01, i]
}

#[test]
fn discover_offer_request_ack_with_slirps_options() {
    let mut gw = dhcp_gateway();
    let now = Instant::now();
    let discover = dhcp_msg(MessageType::Discover, C_MAC, 0x1234, vec![]);
    let offer = parse_reply(&run(&mut gw, &broadcast(&discover), now).expect("an offer"));
    // No broadcast flag, no ciaddr: unicast to yiaddr at chaddr.
    let yiaddr = Ipv4Addr::new(10, 0, 2, 15);
    assert_eq!((offer.eth_dst, offer.src, offer.dst), (C_MAC, GW, yiaddr));
    assert_eq!(offer.msg.xid(), 0x1234);
    assert_eq!(offer.msg.yiaddr(), yiaddr, "the pool starts at net+15");
    assert_eq!(offer.msg.chaddr(), &C_MAC);
    assert_eq!(offer.msg.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(
        opt(&offer.msg, OptionCode::ServerIdentifier),
        Some(DhcpOption::ServerIdentifier(GW))
    );
    assert_eq!(
        opt(&offer.msg, OptionCode::SubnetMask),
        Some(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
    );
    assert_eq!(
        opt(&offer.msg, OptionCode::Router),
        Some(DhcpOption::Router(vec![GW]))
    );
    assert_eq!(
        opt(&offer.msg, OptionCode::DomainNameServer),
        Some(DhcpOption::DomainNameServer(vec![DNS]))
    );
    assert_eq!(
        opt(&offer.msg, OptionCode::AddressLeaseTime),
        Some(DhcpOption::AddressLeaseTime(86_400))
    );
    assert_eq!(
        opt(&offer.msg, OptionCode::InterfaceMtu),
        Some(DhcpOption::InterfaceMtu(65520))
    );

    let request = dhcp_msg(
        MessageType::Request,
        C_MAC,
        0x1235,
        vec![
            DhcpOption::RequestedIpAddress(yiaddr),
            DhcpOption::ServerIdentifier(GW),
        ],
    );
    let ack = parse_reply(&run(&mut gw, &broadcast(&request), now).expect("an ACK"));
    assert_eq!(ack.msg.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!((ack.msg.yiaddr(), ack.msg.xid()), (yiaddr, 0x1235));
    assert_eq!(
        opt(&ack.msg, OptionCode::Renewal),
        Some(DhcpOption::Renewal(43_200))
    );

    // Renewing: unicast from the leased address to the server, answered unicast to ciaddr.
    let mut renew = dhcp_msg(MessageType::Request, C_MAC, 0x1236, vec![]);
    renew.set_ciaddr(yiaddr);
    let ack = parse_reply(
        &run(&mut gw, &dhcp_frame(&renew, yiaddr, GW, GW_MAC), now).expect("a renewal ACK"),
    );
    assert_eq!(
        (ack.eth_dst, ack.dst, ack.msg.yiaddr()),
        (C_MAC, yiaddr, yiaddr)
    );

    // The same client discovering again gets the same address.
    let again = dhcp_msg(MessageType::Discover, C_MAC, 0x1237, vec![]);
    let offer = parse_reply(&run(&mut gw, &broadcast(&again), now).expect("an offer"));
    assert_eq!(offer.msg.yiaddr(), yiaddr);
    let c = gw.counters();
    assert_eq!((c.dhcp_offers, c.dhcp_acks, c.dhcp_naks), (2, 2, 0));
}

#[test]
fn the_broadcast_flag_gets_a_broadcast_reply() {
    let mut gw = dhcp_gateway();
    let mut discover = dhcp_msg(MessageType::Discover, C_MAC, 1, vec![]);
    discover.set_flags(Flags::default().set_broadcast());
    let offer = parse_reply(&run(&mut gw, &broadcast(&discover), Instant::now()).unwrap());
    assert_eq!((offer.eth_dst, offer.dst), (BCAST, Ipv4Addr::BROADCAST));
    assert!(offer.msg.flags().broadcast());
}

#[test]
fn sixteen_clients_get_leases_and_the_seventeenth_gets_no_offer() {
    let mut gw = dhcp_gateway();
    let now = Instant::now();
    let mut leased = Vec::new();
    for i in 0..16 {
        let d = dhcp_msg(MessageType::Discover, mac(i), u32::from(i), vec![]);
        let offer = parse_reply(&run(&mut gw, &broadcast(&d), now).expect("an offer"));
        let r = dhcp_msg(
            MessageType::Request,
            mac(i),
            u32::from(i),
            vec![DhcpOption::RequestedIpAddress(offer.msg.yiaddr())],
        );
        let ack = parse_reply(&run(&mut gw, &broadcast(&r), now).expect("an ACK"));
        assert_eq!(ack.msg.opts().msg_type(), Some(MessageType::Ack));
        leased.push(ack.msg.yiaddr());
    }
    let expected: Vec<Ipv4Addr> = (15..=30).map(|i| Ipv4Addr::new(10, 0, 2, i)).collect();
    assert_eq!(leased, expected, "net+15 .. net+30, each once");
    let d = dhcp_msg(MessageType::Discover, mac(16), 99, vec![]);
    assert_eq!(run(&mut gw, &broadcast(&d), now), None, "the pool is spent");

    // A client releasing its lease makes room.
    let mut release = dhcp_msg(MessageType::Release, mac(3), 5, vec![]);
    release.set_ciaddr(Ipv4Addr::new(10, 0, 2, 18));
    assert_eq!(
        run(
            &mut gw,
            &dhcp_frame(&release, Ipv4Addr::new(10, 0, 2, 18), GW, GW_MAC),
            now
        ),
        None
    );
    let offer = parse_reply(&run(&mut gw, &broadcast(&d), now).expect("an offer after a release"));
    assert_eq!(offer.msg.yiaddr(), Ipv4Addr::new(10, 0, 2, 18));

    // Leases run out after the lease time.
    let later = now + Duration::from_secs(24 * 3600 + 1);
    let d = dhcp_msg(MessageType::Discover, mac(17), 100, vec![]);
    assert!(run(&mut gw, &broadcast(&d), later).is_some());
}

#[test]
fn a_wrong_address_is_naked_by_broadcast() {
    let mut gw = dhcp_gateway();
    let now = Instant::now();
    // Init-reboot with an address from another network, and one outside the pool.
    for wanted in [Ipv4Addr::new(192, 168, 1, 50), Ipv4Addr::new(10, 0, 2, 100)] {
        let r = dhcp_msg(
            MessageType::Request,
            C_MAC,
            7,
            vec![DhcpOption::RequestedIpAddress(wanted)],
        );
        let nak = parse_reply(&run(&mut gw, &broadcast(&r), now).expect("a NAK"));
        assert_eq!(nak.msg.opts().msg_type(), Some(MessageType::Nak));
        assert_eq!((nak.eth_dst, nak.dst), (BCAST, Ipv4Addr::BROADCAST));
        assert_eq!(nak.msg.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(opt(&nak.msg, OptionCode::AddressLeaseTime), None);
    }
    // An address held by another client.
    let d = dhcp_msg(MessageType::Discover, mac(1), 1, vec![]);
    let held = parse_reply(&run(&mut gw, &broadcast(&d), now).unwrap())
        .msg
        .yiaddr();
    let r = dhcp_msg(
        MessageType::Request,
        mac(2),
        2,
        vec![DhcpOption::RequestedIpAddress(held)],
    );
    let nak = parse_reply(&run(&mut gw, &broadcast(&r), now).expect("a NAK"));
    assert_eq!(nak.msg.opts().msg_type(), Some(MessageType::Nak));
    assert_eq!(gw.counters().dhcp_naks, 3);
    // A request for another server is not ours to answer, and frees our offer.
    let r = dhcp_msg(
        MessageType::Request,
        mac(1),
        3,
        vec![
            DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 9, 9)),
            DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 2, 99)),
        ],
    );
    assert_eq!(run(&mut gw, &broadcast(&r), now), None);
    let d = dhcp_msg(MessageType::Discover, mac(2), 4, vec![]);
    assert_eq!(
        parse_reply(&run(&mut gw, &broadcast(&d), now).unwrap())
            .msg
            .yiaddr(),
        held
    );
}

#[test]
fn clients_are_told_apart_by_client_identifier_and_inform_gets_options_only() {
    let mut gw = dhcp_gateway();
    let now = Instant::now();
    let id = |b: u8| DhcpOption::ClientIdentifier(vec![0xff, b, 1, 2, 3]);
    let a = dhcp_msg(MessageType::Discover, C_MAC, 1, vec![id(1)]);
    let b = dhcp_msg(MessageType::Discover, C_MAC, 2, vec![id(2)]);
    let ya = parse_reply(&run(&mut gw, &broadcast(&a), now).unwrap())
        .msg
        .yiaddr();
    let yb = parse_reply(&run(&mut gw, &broadcast(&b), now).unwrap())
        .msg
        .yiaddr();
    assert_ne!(ya, yb, "one MAC, two client identifiers, two leases");

    let mut inform = dhcp_msg(MessageType::Inform, C_MAC, 3, vec![]);
    let mine = Ipv4Addr::new(10, 0, 2, 100);
    inform.set_ciaddr(mine);
    let ack = parse_reply(&run(&mut gw, &dhcp_frame(&inform, mine, GW, GW_MAC), now).unwrap());
    assert_eq!(ack.msg.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!((ack.dst, ack.msg.yiaddr()), (mine, Ipv4Addr::UNSPECIFIED));
    assert_eq!(opt(&ack.msg, OptionCode::AddressLeaseTime), None);
    assert_eq!(
        opt(&ack.msg, OptionCode::Router),
        Some(DhcpOption::Router(vec![GW]))
    );
}

#[test]
fn malformed_and_foreign_dhcp_packets_are_ignored() {
    let mut gw = dhcp_gateway();
    let now = Instant::now();
    let good = broadcast(&dhcp_msg(MessageType::Discover, C_MAC, 1, vec![]));
    // Every truncation, and a corrupted UDP checksum.
    for n in 0..good.len() {
        assert_eq!(run(&mut gw, &good[..n], now), None, "prefix of {n} bytes");
    }
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    assert_eq!(run(&mut gw, &bad, now), None);
    // A relayed request, a reply, a message without a type, a bogus hardware length.
    let mut relayed = dhcp_msg(MessageType::Discover, C_MAC, 1, vec![]);
    relayed.set_giaddr(Ipv4Addr::new(10, 0, 2, 50));
    let mut reply = dhcp_msg(MessageType::Discover, C_MAC, 1, vec![]);
    reply.set_opcode(Opcode::BootReply);
    let mut untyped = dhcp_msg(MessageType::Discover, C_MAC, 1, vec![]);
    untyped.opts_mut().remove(OptionCode::MessageType);
    for m in [relayed, reply, untyped] {
        assert_eq!(run(&mut gw, &broadcast(&m), now), None);
    }
    let mut long_hlen = good.clone();
    long_hlen[14 + 20 + 8 + 2] = 200; // hlen
    // (The UDP checksum no longer matches; zero means "none" in IPv4.)
    long_hlen[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
    assert_eq!(run(&mut gw, &long_hlen, now), None);
    // Without DHCP configured, nothing is answered.
    let mut plain = Gateway::new(GW, GW_MAC);
    assert_eq!(run(&mut plain, &good, now), None);
    assert_eq!(gw.counters().dhcp_offers, 0);
}

// ---- Router Advertisements ----

fn ra_gateway() -> Gateway {
    let mut cfg = RaConfig::new(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0), 64);
    cfg.rdnss = vec![DNS6];
    cfg.mtu = Some(65520);
    Gateway::new(GW, GW_MAC)
        .with_ipv6(GW6)
        .with_alias_v6(DNS6)
        .with_router_advert(cfg)
}

fn parse6(frame: &[u8]) -> (Ipv6Repr, Vec<u8>) {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(eth.ethertype(), EthernetProtocol::Ipv6);
    let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
    let repr = Ipv6Repr::parse(&ip).unwrap();
    assert_eq!(14 + 40 + repr.payload_len, frame.len(), "no trailing bytes");
    (repr, ip.payload().to_vec())
}

fn icmp_repr<'a>(ip: &Ipv6Repr, icmp: &'a [u8]) -> Icmpv6Repr<'a> {
    let packet = Icmpv6Packet::new_checked(icmp).unwrap();
    assert!(
        packet.verify_checksum(&ip.src_addr, &ip.dst_addr),
        "ICMPv6 checksum"
    );
    Icmpv6Repr::parse(
        &ip.src_addr,
        &ip.dst_addr,
        &packet,
        &ChecksumCapabilities::default(),
    )
    .unwrap()
}

/// The RDNSS options of an RA: (lifetime, addresses).
fn rdnss(icmp: &[u8]) -> Vec<(u32, Vec<Ipv6Addr>)> {
    let mut found = Vec::new();
    let mut at = 16; // type, code, checksum, hop limit, flags, lifetime, reachable, retrans
    while let Some(rest) = icmp.get(at..).filter(|r| !r.is_empty()) {
        let opt = NdiscOption::new_checked(rest).unwrap();
        if let Ok(NdiscOptionRepr::Unknown {
            type_: 25, data, ..
        }) = NdiscOptionRepr::parse(&opt)
        {
            let lifetime = u32::from_be_bytes(data[2..6].try_into().unwrap());
            let addrs = data[6..]
                .chunks(16)
                .map(|c| Ipv6Addr::from(<[u8; 16]>::try_from(c).unwrap()))
                .collect();
            found.push((lifetime, addrs));
        }
        at += usize::from(opt.data_len()) * 8;
    }
    found
}

/// Checks everything an RA from the gateway must carry.
fn assert_full_ra(ip: &Ipv6Repr, icmp: &[u8]) {
    assert_eq!(ip.src_addr, Gateway::new(GW, GW_MAC).link_local());
    assert_eq!(ip.hop_limit, 255);
    let Icmpv6Repr::Ndisc(NdiscRepr::RouterAdvert {
        router_lifetime,
        lladdr,
        mtu,
        prefix_info,
        ..
    }) = icmp_repr(ip, icmp)
    else {
        panic!("not a router advertisement")
    };
    assert!(router_lifetime.secs() > 0, "a default router");
    assert_eq!(lladdr.map(|l| l.as_bytes().to_vec()), Some(GW_MAC.to_vec()));
    assert_eq!(mtu, Some(65520));
    let p = prefix_info.expect("a prefix");
    assert_eq!((p.prefix, p.prefix_len), ("fd00::".parse().unwrap(), 64));
    assert!(
        p.flags
            .contains(NdiscPrefixInfoFlags::ON_LINK | NdiscPrefixInfoFlags::ADDRCONF)
    );
    assert!(p.valid_lifetime >= p.preferred_lifetime && p.preferred_lifetime.secs() > 0);
    assert_eq!(rdnss(icmp), vec![(1800, vec![DNS6])]);
}

fn router_solicit(src: Ipv6Addr, hop_limit: u8, slla: bool) -> Vec<u8> {
    let body = if slla {
        let mut b = vec![1, 1];
        b.extend_from_slice(&C_MAC);
        b
    } else {
        Vec::new()
    };
    let mut f = Vec::new();
    PacketBuilder::ethernet2(C_MAC, [0x33, 0x33, 0, 0, 0, 2])
        .ipv6(src.octets(), ALL_ROUTERS.octets(), hop_limit)
        .icmpv6(Icmpv6Type::RouterSolicitation)
        .write(&mut f, &body)
        .unwrap();
    f
}

#[test]
fn a_router_solicitation_gets_a_full_advertisement() {
    let mut gw = ra_gateway();
    let now = Instant::now();
    let reply = run(&mut gw, &router_solicit(C_LL, 255, true), now).expect("an RA");
    let eth = EthernetFrame::new_checked(&reply[..]).unwrap();
    assert_eq!(eth.dst_addr().0, C_MAC, "unicast to the solicitor");
    let (ip, icmp) = parse6(&reply);
    assert_eq!(ip.dst_addr, C_LL);
    assert_full_ra(&ip, &icmp);

    // From :: (no address yet): to all nodes.
    let reply = run(
        &mut gw,
        &router_solicit(Ipv6Addr::UNSPECIFIED, 255, false),
        now,
    )
    .unwrap();
    let (ip, icmp) = parse6(&reply);
    assert_eq!(ip.dst_addr, ALL_NODES);
    assert_full_ra(&ip, &icmp);
    assert_eq!(gw.counters().router_adverts, 2);

    // Not link-local hop limit, or :: with a link-layer address: ignored.
    assert_eq!(run(&mut gw, &router_solicit(C_LL, 64, true), now), None);
    assert_eq!(
        run(
            &mut gw,
            &router_solicit(Ipv6Addr::UNSPECIFIED, 255, true),
            now
        ),
        None
    );
    // Without advertising configured, solicitations are ignored.
    let mut plain = Gateway::new(GW, GW_MAC).with_ipv6(GW6);
    assert_eq!(run(&mut plain, &router_solicit(C_LL, 255, true), now), None);
}

#[test]
fn unsolicited_advertisements_start_fast_then_slow_down_randomly() {
    let mut gw = ra_gateway();
    let mut out = [0u8; 2048];
    let start = Instant::now();
    assert!(
        gw.next_deadline().is_some_and(|d| d <= Instant::now()),
        "the first is due at once"
    );
    let mut now = start;
    let mut gaps = Vec::new();
    for i in 0..8 {
        let n = gw
            .poll_at(now, &mut out)
            .unwrap_or_else(|| panic!("RA {i}"));
        let eth = EthernetFrame::new_checked(&out[..n]).unwrap();
        assert_eq!(eth.dst_addr().0, [0x33, 0x33, 0, 0, 0, 1]);
        let (ip, icmp) = parse6(&out[..n]);
        assert_eq!(ip.dst_addr, ALL_NODES);
        assert_full_ra(&ip, &icmp);
        let next = gw.next_deadline().expect("another one");
        // Nothing before the deadline.
        assert_eq!(gw.poll_at(next - Duration::from_millis(1), &mut out), None);
        gaps.push(next - now);
        now = next;
    }
    let initial = INITIAL_ADVERTS as usize - 1;
    for g in &gaps[..initial] {
        assert!(*g <= INITIAL_INTERVAL, "initial gap {g:?}");
    }
    for g in &gaps[initial..] {
        assert!(
            (Duration::from_secs(200)..=Duration::from_secs(600)).contains(g),
            "later gap {g:?}"
        );
    }
    let later = &gaps[initial..];
    assert!(
        later.iter().any(|g| *g != later[0]),
        "randomised: {later:?}"
    );
    assert_eq!(gw.counters().router_adverts, 8);

    // A new port on the link: the initial advertisements start over, the first at once.
    gw.restart_router_adverts();
    assert!(gw.next_deadline().is_some_and(|d| d <= Instant::now()));
    assert!(gw.poll_at(now, &mut out).is_some());
    assert!(
        gw.next_deadline()
            .is_some_and(|d| d <= now + INITIAL_INTERVAL)
    );
}

#[test]
fn without_advertising_or_ipv6_nothing_is_ever_due() {
    let mut out = [0u8; 2048];
    let mut plain = Gateway::new(GW, GW_MAC).with_ipv6(GW6);
    assert_eq!(plain.next_deadline(), None);
    assert_eq!(plain.poll_at(Instant::now(), &mut out), None);
    let mut v4only =
        Gateway::new(GW, GW_MAC).with_router_advert(RaConfig::new(Ipv6Addr::UNSPECIFIED, 64));
    assert_eq!(v4only.next_deadline(), None);
    assert_eq!(v4only.poll_at(Instant::now(), &mut out), None);
}
