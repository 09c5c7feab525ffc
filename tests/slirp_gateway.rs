//! The data path of a single-container network as the slirp4netns drop-in builds it: one
//! uplink port and a gateway with slirp's DNS alias, DHCP server and Router Advertisements.
//! The port is one end of a SOCK_SEQPACKET socket pair standing in for the TAP (one frame per
//! message, with the virtio-net header), so no namespace is needed and nothing leaves the
//! process: the test plays the container on the other end.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Message, MessageType};
use dhcproto::{Decodable, Decoder, Encodable};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use nat::{DhcpConfig, Gateway, Nat, NatConfig, RaConfig};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use switch::{NetworkConfig, PortId, PortRole};
use vswitchd::datapath::Datapath;

const VNET: usize = 12;
const NET: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 0);
const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
const GW_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
const C_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

/// Spawns the data path with the socket pair's one end as its uplink; returns it and the
/// container's end.
fn slirp_datapath(rt: &tokio::runtime::Runtime) -> (Datapath, UnixStream) {
    let gw6: Ipv6Addr = "fd00::2".parse().unwrap();
    let dns6: Ipv6Addr = "fd00::3".parse().unwrap();
    let mut ra = RaConfig::new("fd00::".parse().unwrap(), 64);
    ra.rdnss = vec![dns6];
    let gateway = Gateway::new(GW, GW_MAC)
        .with_alias_v4(DNS)
        .with_ipv6(gw6)
        .with_alias_v6(dns6)
        .with_dhcp(DhcpConfig::slirp(NET, 24, DNS))
        .with_router_advert(ra);
    let mut cfg = NatConfig::new(GW, GW_MAC, (NET, 24), 1500);
    cfg.internal = true;
    cfg.dns_ip = Some(DNS);
    cfg.learn_neighbor = true;
    let nat = Nat::new(cfg).expect("nat");
    let dp = Datapath::spawn(
        "slirp-test",
        NetworkConfig::new(GW_MAC),
        gateway,
        nat,
        vswitchd::events::Events::default(),
    )
    .expect("data path");
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socket pair");
    nix::fcntl::fcntl(
        &ours,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .expect("non-blocking");
    rt.block_on(dp.attach(PortId(1), ours, PortRole::Uplink, "tap0"))
        .expect("attach");
    let container = UnixStream::from(theirs);
    container
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    (dp, container)
}

/// Reads frames (virtio header stripped) until `want` accepts one, for at most `secs`.
fn wait_for<T>(
    c: &mut UnixStream,
    secs: u64,
    mut want: impl FnMut(&[u8]) -> Option<T>,
) -> Option<T> {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut buf = vec![0u8; 70_000];
    while Instant::now() < end {
        if let Ok(n) = c.read(&mut buf)
            && n > VNET
            && let Some(t) = want(&buf[VNET..n])
        {
            return Some(t);
        }
    }
    None
}

fn send(c: &mut UnixStream, frame: &[u8]) {
    let mut buf = vec![0u8; VNET];
    buf.extend_from_slice(frame);
    c.write_all(&buf).expect("send frame");
}

#[test]
fn the_gateway_advertises_the_prefix_unsolicited_and_serves_dhcp() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (_dp, mut c) = slirp_datapath(&rt);

    // An unsolicited Router Advertisement arrives without anyone asking (the data path runs
    // the gateway's timer).
    let ra = wait_for(&mut c, 5, |f| {
        let p = SlicedPacket::from_ethernet(f).ok()?;
        let TransportSlice::Icmpv6(icmp) = p.transport? else {
            return None;
        };
        (icmp.type_u8() == 134).then(|| f[0..6].to_vec())
    });
    assert_eq!(ra, Some(vec![0x33, 0x33, 0, 0, 0, 1]), "an RA to all nodes");

    // DHCP through the switch: DISCOVER from 0.0.0.0 by broadcast gets an OFFER.
    let mut discover = Message::new_with_id(
        0xabcd,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &C_MAC,
    );
    discover
        .opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(C_MAC, [0xff; 6])
        .ipv4([0; 4], [255; 4], 64)
        .udp(68, 67)
        .write(&mut frame, &discover.to_vec().unwrap())
        .unwrap();
    send(&mut c, &frame);
    let offer = wait_for(&mut c, 5, |f| {
        let p = SlicedPacket::from_ethernet(f).ok()?;
        let Some(NetSlice::Ipv4(_)) = p.net else {
            return None;
        };
        let TransportSlice::Udp(udp) = p.transport? else {
            return None;
        };
        if udp.source_port() != 67 {
            return None;
        }
        Message::decode(&mut Decoder::new(udp.payload())).ok()
    })
    .expect("a DHCP offer");
    assert_eq!(offer.xid(), 0xabcd);
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 0, 2, 15));
    assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));

    // The DNS alias answers ARP like the gateway.
    let arp = etherparse::ArpEthIpv4Packet {
        operation: etherparse::ArpOperation::REQUEST,
        sender_mac: C_MAC,
        sender_ipv4: [10, 0, 2, 15],
        target_mac: [0; 6],
        target_ipv4: DNS.octets(),
    };
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(C_MAC, [0xff; 6])
        .arp(arp.into())
        .write(&mut frame)
        .unwrap();
    send(&mut c, &frame);
    let answered = wait_for(&mut c, 5, |f| {
        let p = SlicedPacket::from_ethernet(f).ok()?;
        let Some(NetSlice::Arp(a)) = p.net else {
            return None;
        };
        (a.sender_protocol_addr() == DNS.octets()).then_some(())
    });
    assert!(answered.is_some(), "an ARP reply for net+3");
}
