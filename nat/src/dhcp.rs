//! DHCPv4 server of the gateway (opt-in, [`crate::Gateway::with_dhcp`]): slirp4netns's
//! (libslirp's) address pool for a container that configures itself by DHCP.
//!
//! Model (RFC 2131): a fixed pool of consecutive addresses (slirp: net+15 .. net+30, 16
//! leases), each slot held by one client, known by its client identifier (option 61) or, without
//! one, its hardware address. DISCOVER → OFFER of the client's own slot, else of the address
//! it asks for (option 50) when free, else of the first free slot; an offer holds the slot for
//! [`OFFER_HOLD`]. REQUEST (selecting, init-reboot, renewing or rebinding: the address from
//! option 50 or `ciaddr`) → ACK binding the slot for the lease time, or NAK when the address
//! is outside the pool or held by another client; a REQUEST naming another server (option 54)
//! gives an offered slot back. RELEASE frees the client's slot; DECLINE keeps the declined
//! address out of use for a lease time; INFORM → ACK with the options and no address. Offers
//! and ACKs carry the subnet mask, the router (the gateway), the DNS servers, the lease time
//! with T1 = ½ and T2 = ⅞ of it, and the interface MTU (option 26) when one is set.
//!
//! Replies (RFC 2131 §4.1, `giaddr` zero — relayed requests are dropped: no relay sits on our
//! link): a NAK is broadcast; a reply to a client with `ciaddr` set goes unicast to `ciaddr`;
//! with the broadcast flag set it is broadcast (255.255.255.255 on ff:ff:ff:ff:ff:ff);
//! otherwise it is unicast to `yiaddr` on the client's hardware address. Always from the
//! gateway address, port 67 to port 68, padded to BOOTP's 300 bytes.
//!
//! Limits: memory is bounded by the pool (at most [`MAX_POOL`] slots, each keeping a client
//! key of at most 255 bytes); the wire format is dhcproto's, which allocates per message (not
//! the data path: a container sends a handful of DHCP messages a day). Malformed packets
//! (bad IPv4 or UDP checksum, fragments, not a BOOTREQUEST, not Ethernet, no message type)
//! are ignored. Answers are rate limited per container by the gateway.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Packet,
    Ipv4Repr, UdpPacket, UdpRepr,
};

/// The server's port.
pub(crate) const SERVER_PORT: u16 = 67;
/// The client's port.
const CLIENT_PORT: u16 = 68;
/// How long an offered address stays reserved for the client it was offered to.
pub const OFFER_HOLD: Duration = Duration::from_secs(60);
/// Largest pool served.
pub const MAX_POOL: usize = 256;
/// BOOTP's minimum message size (some clients drop shorter replies).
const BOOTP_MIN: usize = 300;

/// The DHCPv4 service of a network ([`crate::Gateway::with_dhcp`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpConfig {
    /// First address of the pool.
    pub pool_start: Ipv4Addr,
    /// Addresses in the pool (at most [`MAX_POOL`]; the pool must lie inside the subnet).
    pub pool_size: usize,
    /// The subnet's prefix length (the subnet mask option).
    pub prefix_len: u8,
    /// DNS servers offered (option 6; none: the option is left out).
    pub dns: Vec<Ipv4Addr>,
    /// Lease time (option 51; slirp4netns: 24 h).
    pub lease_time: Duration,
    /// Interface MTU offered (option 26), if any.
    pub mtu: Option<u16>,
}

impl DhcpConfig {
    /// slirp4netns's service for the subnet `net`/`prefix_len`: leases net+15 .. net+30, DNS
    /// `dns`, 24-hour leases, no MTU option.
    pub fn slirp(net: Ipv4Addr, prefix_len: u8, dns: Ipv4Addr) -> Self {
        Self {
            pool_start: Ipv4Addr::from(u32::from(net).wrapping_add(15)),
            pool_size: 16,
            prefix_len,
            dns: vec![dns],
            lease_time: Duration::from_secs(24 * 3600),
            mtu: None,
        }
    }
}

/// What the server answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    Offer,
    Ack,
    Nak,
}

/// Who holds a pool slot.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Holder {
    /// A client, by its key (client identifier or hardware address).
    Client(Vec<u8>),
    /// Nobody may use it: a client declined it (in use by someone we do not know).
    Declined,
}

/// One pool slot in use.
#[derive(Clone, Debug)]
struct Slot {
    holder: Holder,
    expires: Instant,
    /// Bound by an ACK (rather than only offered).
    bound: bool,
}

/// The DHCPv4 server: its configuration and the pool's slots.
#[derive(Debug)]
pub(crate) struct DhcpServer {
    cfg: DhcpConfig,
    slots: Vec<Option<Slot>>,
}

/// The parsed request a reply is made for.
struct Request {
    msg: Message,
    client_mac: EthernetAddress,
}

impl DhcpServer {
    pub(crate) fn new(mut cfg: DhcpConfig) -> Self {
        cfg.pool_size = cfg.pool_size.min(MAX_POOL);
        let slots = vec![None; cfg.pool_size];
        Self { cfg, slots }
    }

    /// Whether `eth` carries a UDP datagram to the DHCP server port (cheap: no checksum).
    pub(crate) fn is_for_server(eth: &EthernetFrame<&[u8]>) -> bool {
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            return false;
        };
        ip.next_header() == IpProtocol::Udp
            && UdpPacket::new_checked(ip.payload()).is_ok_and(|u| u.dst_port() == SERVER_PORT)
    }

    /// Answers the DHCP request in `eth` (which [`DhcpServer::is_for_server`] accepted) into
    /// `out`, as the server at `gw_ip`/`gw_mac`; returns what it answered and the frame length.
    pub(crate) fn answer(
        &mut self,
        gw_ip: Ipv4Addr,
        gw_mac: EthernetAddress,
        eth: &EthernetFrame<&[u8]>,
        out: &mut [u8],
        now: Instant,
    ) -> Option<(Answer, usize)> {
        let req = parse(gw_ip, gw_mac, eth)?;
        let opts = req.msg.opts();
        let key = client_key(&req.msg);
        self.expire(now);
        let (answer, yiaddr) = match opts.msg_type()? {
            MessageType::Discover => {
                let slot = self.choose(&key, requested(&req.msg))?;
                let hold = now + OFFER_HOLD;
                let entry = self.slots.get_mut(slot)?;
                match entry {
                    Some(s) if s.holder == Holder::Client(key.clone()) && s.bound => {}
                    _ => {
                        *entry = Some(Slot {
                            holder: Holder::Client(key),
                            expires: hold,
                            bound: false,
                        });
                    }
                }
                (Answer::Offer, self.addr(slot))
            }
            MessageType::Request => {
                if let Some(DhcpOption::ServerIdentifier(server)) =
                    opts.get(OptionCode::ServerIdentifier)
                    && *server != gw_ip
                {
                    // The client took another server's offer: ours is free again.
                    self.forget_offer(&key);
                    return None;
                }
                let wanted = requested(&req.msg).or_else(|| {
                    let c = req.msg.ciaddr();
                    (!c.is_unspecified()).then_some(c)
                })?;
                match self.slot_of(wanted) {
                    Some(slot) if self.available(slot, &key) => {
                        let expires = now + self.cfg.lease_time;
                        let entry = self.slots.get_mut(slot)?;
                        *entry = Some(Slot {
                            holder: Holder::Client(key),
                            expires,
                            bound: true,
                        });
                        (Answer::Ack, wanted)
                    }
                    _ => (Answer::Nak, Ipv4Addr::UNSPECIFIED),
                }
            }
            MessageType::Decline => {
                let addr = requested(&req.msg)?;
                let slot = self.slot_of(addr)?;
                if self.held_by(slot, &key) {
                    let expires = now + self.cfg.lease_time;
                    if let Some(entry) = self.slots.get_mut(slot) {
                        *entry = Some(Slot {
                            holder: Holder::Declined,
                            expires,
                            bound: true,
                        });
                    }
                }
                return None;
            }
            MessageType::Release => {
                let slot = self.slot_of(req.msg.ciaddr())?;
                if self.held_by(slot, &key)
                    && let Some(entry) = self.slots.get_mut(slot)
                {
                    *entry = None;
                }
                return None;
            }
            MessageType::Inform => {
                if req.msg.ciaddr().is_unspecified() {
                    return None;
                }
                (Answer::Ack, Ipv4Addr::UNSPECIFIED)
            }
            _ => return None,
        };
        let inform = opts.msg_type() == Some(MessageType::Inform);
        let reply = self.reply(gw_ip, &req.msg, answer, yiaddr, inform);
        emit(gw_ip, gw_mac, &req, answer, yiaddr, &reply, out).map(|n| (answer, n))
    }

    /// The reply message.
    fn reply(
        &self,
        gw_ip: Ipv4Addr,
        req: &Message,
        answer: Answer,
        yiaddr: Ipv4Addr,
        inform: bool,
    ) -> Message {
        // A NAK carries no client address (RFC 2131 table 3).
        let ciaddr = if answer == Answer::Nak {
            Ipv4Addr::UNSPECIFIED
        } else {
            req.ciaddr()
        };
        let mut m = Message::new_with_id(
            req.xid(),
            ciaddr,
            yiaddr,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            req.chaddr(),
        );
        m.set_opcode(Opcode::BootReply)
            .set_htype(HType::Eth)
            .set_flags(req.flags());
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(match answer {
            Answer::Offer => MessageType::Offer,
            Answer::Ack => MessageType::Ack,
            Answer::Nak => MessageType::Nak,
        }));
        o.insert(DhcpOption::ServerIdentifier(gw_ip));
        if answer == Answer::Nak {
            return m;
        }
        if !inform {
            let lease = u32::try_from(self.cfg.lease_time.as_secs()).unwrap_or(u32::MAX);
            o.insert(DhcpOption::AddressLeaseTime(lease));
            o.insert(DhcpOption::Renewal(lease / 2));
            o.insert(DhcpOption::Rebinding(
                u32::try_from(u64::from(lease) * 7 / 8).unwrap_or(u32::MAX),
            ));
        }
        let len = u32::from(self.cfg.prefix_len.min(32));
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        o.insert(DhcpOption::SubnetMask(mask.into()));
        o.insert(DhcpOption::Router(vec![gw_ip]));
        if !self.cfg.dns.is_empty() {
            o.insert(DhcpOption::DomainNameServer(self.cfg.dns.clone()));
        }
        if let Some(mtu) = self.cfg.mtu {
            o.insert(DhcpOption::InterfaceMtu(mtu));
        }
        m
    }

    /// Frees slots whose offer or lease has run out.
    fn expire(&mut self, now: Instant) {
        for s in &mut self.slots {
            if s.as_ref().is_some_and(|s| s.expires <= now) {
                *s = None;
            }
        }
    }

    /// The slot to offer `key`: its own, the one it asks for when free, the first free one.
    fn choose(&self, key: &[u8], wanted: Option<Ipv4Addr>) -> Option<usize> {
        let own = self.slots.iter().position(|s| {
            s.as_ref()
                .is_some_and(|s| matches!(&s.holder, Holder::Client(k) if k == key))
        });
        own.or_else(|| {
            wanted
                .and_then(|a| self.slot_of(a))
                .filter(|&i| self.slots.get(i).is_some_and(Option::is_none))
        })
        .or_else(|| self.slots.iter().position(Option::is_none))
    }

    /// Gives back a slot only offered (not bound) to `key`.
    fn forget_offer(&mut self, key: &[u8]) {
        for s in &mut self.slots {
            if s.as_ref()
                .is_some_and(|s| !s.bound && matches!(&s.holder, Holder::Client(k) if k == key))
            {
                *s = None;
            }
        }
    }

    /// Whether slot `i` is free or `key`'s.
    fn available(&self, i: usize, key: &[u8]) -> bool {
        match self.slots.get(i) {
            Some(None) => true,
            Some(Some(_)) => self.held_by(i, key),
            None => false,
        }
    }

    /// Whether slot `i` is held by `key`.
    fn held_by(&self, i: usize, key: &[u8]) -> bool {
        matches!(self.slots.get(i), Some(Some(Slot { holder: Holder::Client(k), .. })) if k == key)
    }

    /// The pool slot of `addr`, if it is in the pool.
    fn slot_of(&self, addr: Ipv4Addr) -> Option<usize> {
        let i = u32::from(addr).checked_sub(u32::from(self.cfg.pool_start))?;
        let i = usize::try_from(i).ok()?;
        (i < self.slots.len()).then_some(i)
    }

    /// The address of slot `i`.
    fn addr(&self, i: usize) -> Ipv4Addr {
        let i = u32::try_from(i).unwrap_or(0);
        Ipv4Addr::from(u32::from(self.cfg.pool_start).wrapping_add(i))
    }
}

/// Checks and decodes a DHCP request; None for anything malformed or not for us.
fn parse(gw_ip: Ipv4Addr, gw_mac: EthernetAddress, eth: &EthernetFrame<&[u8]>) -> Option<Request> {
    let dst = eth.dst_addr();
    let client_mac = eth.src_addr();
    if !(dst.is_broadcast() || dst == gw_mac) || !client_mac.is_unicast() || client_mac == gw_mac {
        return None;
    }
    let caps = ChecksumCapabilities::default();
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.more_frags() || ip.frag_offset() != 0 {
        return None;
    }
    let ip_repr = Ipv4Repr::parse(&ip, &caps).ok()?;
    if !(ip_repr.dst_addr.is_broadcast() || ip_repr.dst_addr == gw_ip) {
        return None;
    }
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    UdpRepr::parse(
        &udp,
        &ip_repr.src_addr.into(),
        &ip_repr.dst_addr.into(),
        &caps,
    )
    .ok()?;
    if udp.dst_port() != SERVER_PORT {
        return None;
    }
    let msg = Message::decode(&mut Decoder::new(udp.payload())).ok()?;
    // hlen is checked before anything reads chaddr (which slices by it).
    if msg.opcode() != Opcode::BootRequest
        || msg.htype() != HType::Eth
        || msg.hlen() != 6
        || !msg.giaddr().is_unspecified()
        || msg.opts().msg_type().is_none()
    {
        return None;
    }
    Some(Request { msg, client_mac })
}

/// The client's key: its identifier (option 61), or its hardware address.
fn client_key(msg: &Message) -> Vec<u8> {
    match msg.opts().get(OptionCode::ClientIdentifier) {
        Some(DhcpOption::ClientIdentifier(id)) if !id.is_empty() => id.clone(),
        _ => msg.chaddr().to_vec(),
    }
}

/// The address a client asks for (option 50).
fn requested(msg: &Message) -> Option<Ipv4Addr> {
    match msg.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(a)) => Some(*a),
        _ => None,
    }
}

/// Writes the reply frame, addressed as RFC 2131 §4.1 says.
fn emit(
    gw_ip: Ipv4Addr,
    gw_mac: EthernetAddress,
    req: &Request,
    answer: Answer,
    yiaddr: Ipv4Addr,
    reply: &Message,
    out: &mut [u8],
) -> Option<usize> {
    let ciaddr = req.msg.ciaddr();
    let (dst_ip, dst_mac) = if answer == Answer::Nak {
        (Ipv4Addr::BROADCAST, EthernetAddress::BROADCAST)
    } else if !ciaddr.is_unspecified() {
        (ciaddr, req.client_mac)
    } else if req.msg.flags().broadcast() {
        (Ipv4Addr::BROADCAST, EthernetAddress::BROADCAST)
    } else {
        let chaddr = <[u8; 6]>::try_from(req.msg.chaddr()).ok()?;
        (yiaddr, EthernetAddress(chaddr))
    };
    let mut body = reply.to_vec().ok()?;
    if body.len() < BOOTP_MIN {
        body.resize(BOOTP_MIN, 0);
    }
    let udp = UdpRepr {
        src_port: SERVER_PORT,
        dst_port: CLIENT_PORT,
    };
    let ip = Ipv4Repr {
        src_addr: gw_ip,
        dst_addr: dst_ip,
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + body.len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: gw_mac,
        dst_addr: dst_mac,
        ethertype: EthernetProtocol::Ipv4,
    };
    let caps = ChecksumCapabilities::default();
    let len = eth.buffer_len() + ip.buffer_len() + ip.payload_len;
    let out = out.get_mut(..len)?;
    let mut frame = EthernetFrame::new_unchecked(out);
    eth.emit(&mut frame);
    let mut ip_out = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut ip_out, &caps);
    udp.emit(
        &mut UdpPacket::new_unchecked(ip_out.payload_mut()),
        &gw_ip.into(),
        &dst_ip.into(),
        body.len(),
        |b| b.copy_from_slice(&body),
        &caps,
    );
    Some(len)
}
