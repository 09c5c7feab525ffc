//! The DNS responder on every gateway address (UDP and TCP port 53): container names and
//! aliases from the network's name store, everything else relayed to upstream resolvers.
//!
//! Model: each network has one [`Zone`] (the names and aliases of its endpoints), shared
//! (`Arc<RwLock<Zone>>`) by the daemon, which edits it in place on connect/disconnect, and
//! by the data path of every network whose containers may resolve it. A querier sees the
//! zones of every network it is attached to; the daemon tells a network's data path which
//! ones with a [`DnsView`] change per querier, so an attach costs O(1) whatever the number
//! of containers, and 10,000 containers on one network share one zone. Nothing is polled.
//! The data path holds a zone's read lock only while it looks one name up. A query for a known
//! name gets its A (or AAAA) records (TTL 600, order rotated per answer, as Docker shuffles
//! them; the store holds both families, AAAA stays empty until IPv6 lands), an empty
//! NOERROR for other types, PTR for container addresses;
//! `host.vswitch.internal` is the gateway on host_loopback networks. A single-label name that
//! is not a container on the asker's networks is NXDOMAIN (never relayed). Other names are
//! relayed as raw bytes over UDP to the first upstream; a truncated upstream answer is
//! fetched again over TCP; on timeout or refusal the next upstream is tried; when none
//! answers the container gets SERVFAIL. Internal networks never relay (REFUSED).
//!
//! Wire format: hickory-proto parses and builds messages (no hand-written parser).
//! Malformed queries get FORMERR when a header can be read, else nothing. UDP answers
//! respect 512 bytes or the query's EDNS0 size, never exceed the link MTU, and set TC when
//! the answer does not fit. Packets with the response bit set are dropped.
//!
//! Limits: relaying is bounded in `dns_relay.rs`; `--dns-timeout` per upstream attempt. Local answers allocate a few small buffers per
//! query (this is a service, not the switching path).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use smoltcp::wire::{IpProtocol, UdpPacket};

use crate::ctx::Ctx;
use crate::device::Sink;

/// TTL of local answers, as Docker's embedded DNS.
const TTL: u32 = 600;
/// The name that leads to the host on host_loopback networks.
pub const HOST_NAME: &str = "host.vswitch.internal";

/// The names one querier can see.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Zone {
    /// Lowercase name → its addresses, both families (A and AAAA are answered from here).
    names: HashMap<String, Vec<IpAddr>>,
    ptr: HashMap<IpAddr, String>,
}

impl Zone {
    /// An empty zone.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `name` → `ip` (case-insensitive); the first name given for an address is its PTR.
    pub fn add(&mut self, name: &str, ip: impl Into<IpAddr>) {
        let ip = ip.into();
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        let ips = self.names.entry(key.clone()).or_default();
        if !ips.contains(&ip) {
            ips.push(ip);
        }
        self.ptr.entry(ip).or_insert(key);
    }

    /// Removes `name` → `ip` (case-insensitive), and the PTR of `ip` when it is `name`.
    pub fn remove(&mut self, name: &str, ip: impl Into<IpAddr>) {
        let ip = ip.into();
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(ips) = self.names.get_mut(&key) {
            ips.retain(|i| *i != ip);
            if ips.is_empty() {
                self.names.remove(&key);
            }
        }
        if self.ptr.get(&ip) == Some(&key) {
            self.ptr.remove(&ip);
        }
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when the zone holds no name.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn lookup(&self, name: &str) -> Option<&[IpAddr]> {
        self.names.get(name).map(Vec::as_slice)
    }
}

/// Where a lookup finds names: one zone, or the zones of the querier's networks.
pub(crate) trait Names {
    /// The addresses of a lowercase name, None when no zone knows it.
    fn addrs(&self, name: &str) -> Option<Vec<IpAddr>>;
    /// The name of an address.
    fn ptr(&self, ip: &IpAddr) -> Option<String>;
}

impl Names for Zone {
    fn addrs(&self, name: &str) -> Option<Vec<IpAddr>> {
        self.lookup(name).map(<[_]>::to_vec)
    }

    fn ptr(&self, ip: &IpAddr) -> Option<String> {
        self.ptr.get(ip).cloned()
    }
}

/// The zones one querier sees, each read-locked only for one lookup.
impl Names for Arc<[Arc<RwLock<Zone>>]> {
    fn addrs(&self, name: &str) -> Option<Vec<IpAddr>> {
        let mut out: Option<Vec<IpAddr>> = None;
        for zone in self.iter() {
            let zone = zone.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(ips) = zone.lookup(name) {
                let all = out.get_or_insert_with(Vec::new);
                for ip in ips {
                    if !all.contains(ip) {
                        all.push(*ip);
                    }
                }
            }
        }
        out
    }

    fn ptr(&self, ip: &IpAddr) -> Option<String> {
        self.iter().find_map(|zone| {
            let zone = zone.read().unwrap_or_else(PoisonError::into_inner);
            zone.ptr.get(ip).cloned()
        })
    }
}

/// A change to what the queriers of one network's gateway may resolve, sent by the daemon
/// on each connect and disconnect. Names inside a zone change in place (the zone is
/// shared); a view change only says which zones a querier sees.
#[derive(Clone, Debug)]
pub enum DnsView {
    /// The container at this address resolves the names of these zones (one per network it
    /// is attached to), replacing what it resolved before.
    Querier {
        /// The container's address on this network (each family's address is its own
        /// querier, with the same zones).
        ip: IpAddr,
        /// The zones of its networks.
        zones: Arc<[Arc<RwLock<Zone>>]>,
    },
    /// The container at this address is gone: it resolves nothing.
    Forget(IpAddr),
}

/// Upstream resolvers and timing.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// Where unknown names are relayed, in order.
    pub upstreams: Vec<SocketAddr>,
    /// Time per upstream attempt.
    pub timeout: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            upstreams: Vec::new(),
            timeout: Duration::from_secs(2),
        }
    }
}

/// What to do with a query.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Relay to an upstream.
    Forward,
    /// Say nothing (not even a header could be read).
    Drop,
}

/// Context of one local lookup.
pub(crate) struct Ask<'a> {
    pub zone: Option<&'a dyn Names>,
    pub gateway: Ipv4Addr,
    /// The gateway's IPv6 address on a dual-stack network.
    pub gateway6: Option<Ipv6Addr>,
    pub host_alias: bool,
    pub internal: bool,
    /// Largest reply allowed by the transport (UDP: 512 or EDNS0; TCP: 65535).
    pub transport_limit: Option<usize>,
    /// Largest UDP reply the link carries unfragmented (MTU − 28).
    pub udp_cap: usize,
    pub rotate: usize,
}

/// The largest UDP answer a query accepts: its EDNS0 size (≥ 512, ≤ 4096) or 512.
fn udp_limit(req: &Message) -> usize {
    req.edns
        .as_ref()
        .map(|e| usize::from(e.max_payload()).clamp(512, 4096))
        .unwrap_or(512)
}

/// Answers `query` from `zone` as the gateway `gateway` would, over TCP (`tcp`) or UDP on a
/// 1500-byte link: the reply bytes, or None when the query is relayed upstream or dropped.
/// The same pure function the data path uses; public for fuzzing and tools.
pub fn answer_query(zone: &Zone, gateway: Ipv4Addr, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let ask = Ask {
        zone: Some(zone),
        gateway,
        gateway6: None,
        host_alias: true,
        internal: false,
        transport_limit: tcp.then_some(65_535),
        udp_cap: udp_cap(1500),
        rotate: 0,
    };
    match answer(&ask, query) {
        Outcome::Reply(b) => Some(b),
        Outcome::Forward | Outcome::Drop => None,
    }
}

/// The header of a DNS message, if it has one.
pub(crate) fn header(msg: &[u8]) -> Option<Header> {
    Header::read(&mut BinDecoder::new(msg)).ok()
}

/// The ID of a DNS message, if it has a header.
pub(crate) fn header_id(msg: &[u8]) -> Option<u16> {
    header(msg).map(|h| h.metadata.id)
}

/// Whether a DNS message has TC set.
pub(crate) fn is_truncated(msg: &[u8]) -> bool {
    header(msg).is_some_and(|h| h.metadata.truncation)
}

fn formerr(query: &[u8]) -> Outcome {
    let Some(h) = header(query) else {
        return Outcome::Drop;
    };
    match Message::error_msg(h.metadata.id, OpCode::Query, ResponseCode::FormErr).to_vec() {
        Ok(b) => Outcome::Reply(b),
        Err(_) => Outcome::Drop,
    }
}

/// The address a reverse name (`d.c.b.a.in-addr.arpa.` or a full `ip6.arpa.` name) stands for.
fn reverse(name: &Name) -> Option<IpAddr> {
    let net = name.parse_arpa_name().ok()?;
    (net.prefix_len() == net.max_prefix_len()).then(|| net.addr())
}

/// Answers from local knowledge, or says to relay. Pure: no I/O.
pub(crate) fn answer(ask: &Ask<'_>, query: &[u8]) -> Outcome {
    match header(query) {
        None => return Outcome::Drop,
        // A response, not a query: answering it could start a loop.
        Some(h) if h.metadata.message_type == MessageType::Response => return Outcome::Drop,
        Some(_) => {}
    }
    let Ok(req) = Message::from_vec(query) else {
        return formerr(query);
    };
    if req.metadata.message_type != MessageType::Query || req.queries.len() != 1 {
        return formerr(query);
    }
    let limit = ask
        .transport_limit
        .unwrap_or_else(|| udp_limit(&req).min(ask.udp_cap));
    let Some(q) = req.queries.first() else {
        return formerr(query);
    };
    let qname = q.name().to_lowercase().to_ascii();
    let name = qname.trim_end_matches('.');
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.add_query(q.clone());
    if req.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        resp.set_edns(edns);
    }
    if req.metadata.op_code != OpCode::Query {
        resp.metadata.response_code = ResponseCode::NotImp;
        return finish(resp, limit);
    }
    let local: Option<Vec<IpAddr>> = if ask.host_alias && name == HOST_NAME {
        Some(
            std::iter::once(IpAddr::V4(ask.gateway))
                .chain(ask.gateway6.map(IpAddr::V6))
                .collect(),
        )
    } else {
        ask.zone.and_then(|z| z.addrs(name))
    };
    if let Some(ips) = local {
        resp.metadata.authoritative = true;
        // A or AAAA: the addresses of that family, rotated; any other type: no data.
        let mut data: Vec<RData> = ips
            .iter()
            .filter_map(|ip| match (q.query_type(), ip) {
                (RecordType::A, IpAddr::V4(v4)) => Some(RData::A(A(*v4))),
                (RecordType::AAAA, IpAddr::V6(v6)) => Some(RData::AAAA(AAAA(*v6))),
                _ => None,
            })
            .collect();
        if !data.is_empty() {
            let n = data.len();
            data.rotate_left(ask.rotate % n);
        }
        for rdata in data {
            resp.add_answer(Record::from_rdata(q.name().clone(), TTL, rdata));
        }
        return finish(resp, limit);
    }
    if q.query_type() == RecordType::PTR
        && let Some(ip) = reverse(q.name())
        && let Some(target) = ask.zone.and_then(|z| z.ptr(&ip))
        && let Ok(target) = Name::from_ascii(format!("{target}."))
    {
        resp.metadata.authoritative = true;
        resp.add_answer(Record::from_rdata(
            q.name().clone(),
            TTL,
            RData::PTR(PTR(target)),
        ));
        return finish(resp, limit);
    }
    if !name.contains('.') {
        // A single label is a container name or nothing: one on another network, or gone,
        // must not leak to (or be guessed by) the upstream resolver.
        resp.metadata.authoritative = true;
        resp.metadata.response_code = ResponseCode::NXDomain;
        return finish(resp, limit);
    }
    if ask.internal {
        resp.metadata.response_code = ResponseCode::Refused;
        return finish(resp, limit);
    }
    Outcome::Forward
}

fn finish(resp: Message, limit: usize) -> Outcome {
    match resp.to_vec() {
        Ok(b) if b.len() <= limit => Outcome::Reply(b),
        Ok(_) => resp
            .truncate()
            .to_vec()
            .map_or(Outcome::Drop, Outcome::Reply),
        Err(_) => Outcome::Drop,
    }
}

/// Makes a relayed answer fit the client's limit (TC when it does not).
fn fit(answer: Vec<u8>, limit: usize) -> Vec<u8> {
    if answer.len() <= limit {
        return answer;
    }
    if let Some(b) = Message::from_vec(&answer)
        .ok()
        .and_then(|m| m.truncate().to_vec().ok())
    {
        return b;
    }
    // Not parseable: the header alone, with TC set and no records.
    let Some(h) = header(&answer) else {
        return Vec::new();
    };
    let mut m = Message::response(h.metadata.id, h.metadata.op_code);
    m.metadata.truncation = true;
    m.metadata.response_code = h.metadata.response_code;
    m.to_vec().unwrap_or_default()
}

/// An answer to `query` carrying only a response code (SERVFAIL, REFUSED) and the question.
pub(crate) fn rcode_answer(query: &[u8], code: ResponseCode) -> Vec<u8> {
    let mut m = match Message::from_vec(query) {
        Ok(req) => {
            let mut r = Message::response(req.metadata.id, req.metadata.op_code);
            r.metadata.recursion_desired = req.metadata.recursion_desired;
            r.metadata.recursion_available = true;
            r.add_queries(req.queries);
            r
        }
        Err(_) => Message::response(header_id(query).unwrap_or(0), OpCode::Query),
    };
    m.metadata.response_code = code;
    m.to_vec().unwrap_or_default()
}

/// The largest DNS message a UDP datagram carries over the network's link unfragmented.
fn udp_cap(mtu: u32) -> usize {
    (mtu as usize).saturating_sub(28).max(512)
}

/// The DNS responder of one network's gateway: what each querier may resolve.
#[derive(Default)]
pub(crate) struct DnsServer {
    /// Querier address → the zones of its networks.
    queriers: HashMap<IpAddr, Arc<[Arc<RwLock<Zone>>]>>,
    rotate: usize,
}

impl DnsServer {
    /// Applies a change to what the queriers may resolve.
    pub(crate) fn set_view(&mut self, change: DnsView) {
        match change {
            DnsView::Querier { ip, zones } => {
                self.queriers.insert(ip, zones);
            }
            DnsView::Forget(ip) => {
                self.queriers.remove(&ip);
            }
        }
    }

    /// Looks a query up for the container at `querier` (`transport_limit`: 65,535 for TCP,
    /// None for UDP), counting local answers and drops in the NAT counters.
    pub(crate) fn lookup(
        &mut self,
        ctx: &mut Ctx,
        querier: IpAddr,
        query: &[u8],
        transport_limit: Option<usize>,
    ) -> Outcome {
        self.rotate = self.rotate.wrapping_add(1);
        let ask = Ask {
            zone: self.queriers.get(&querier).map(|z| z as &dyn Names),
            gateway: ctx.cfg.gateway_ip,
            gateway6: ctx.cfg.ipv6.map(|v6| v6.gateway_ip),
            host_alias: ctx.cfg.host_loopback,
            internal: ctx.cfg.internal,
            transport_limit,
            udp_cap: udp_cap(ctx.cfg.mtu),
            rotate: self.rotate,
        };
        let outcome = answer(&ask, query);
        // Relayed queries are counted by the relay, which may still refuse them.
        match outcome {
            Outcome::Reply(_) => ctx.counters.dns_local += 1,
            Outcome::Drop => ctx.counters.dns_dropped += 1,
            Outcome::Forward => {}
        }
        outcome
    }

    /// The largest answer a UDP query from `from` accepts, on this link (over IPv6 the
    /// header is 20 bytes longer).
    pub(crate) fn udp_limit(ctx: &Ctx, from: SocketAddr, query: &[u8]) -> usize {
        Message::from_vec(query)
            .map(|m| udp_limit(&m))
            .unwrap_or(512)
            .min(udp_cap_for(ctx, from))
    }

    /// Sends an answer to a UDP querier (either family, from the DNS address of its
    /// family), fitted to `limit` and to what the link carries.
    pub(crate) fn reply_udp(
        ctx: &mut Ctx,
        to: SocketAddr,
        msg: Vec<u8>,
        limit: usize,
        sink: &mut Sink<'_>,
    ) {
        let msg = fit(msg, limit.min(udp_cap_for(ctx, to)));
        let gw = ctx.cfg.dns_for(to.ip());
        let Ok(udp_len) = u16::try_from(8 + msg.len()) else {
            return;
        };
        let dst = to.ip();
        ctx.send_ip(
            gw,
            dst,
            IpProtocol::Udp,
            usize::from(udp_len),
            sink,
            |buf| {
                let mut pkt = UdpPacket::new_unchecked(buf);
                pkt.set_src_port(53);
                pkt.set_dst_port(to.port());
                pkt.set_len(udp_len);
                if let Some(dst) = pkt.payload_mut().get_mut(..msg.len()) {
                    dst.copy_from_slice(&msg);
                }
                pkt.fill_checksum(&gw.into(), &dst.into());
            },
        );
    }
}

/// The largest DNS message a UDP datagram to `peer` carries over the link unfragmented.
fn udp_cap_for(ctx: &Ctx, peer: SocketAddr) -> usize {
    match peer {
        SocketAddr::V4(_) => udp_cap(ctx.cfg.mtu),
        SocketAddr::V6(_) => (ctx.cfg.mtu as usize).saturating_sub(48).max(512),
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Query;

    use super::*;

    fn query(name: &str, ty: RecordType) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
        m.to_vec().unwrap()
    }

    fn zone() -> Zone {
        let mut z = Zone::new();
        z.add("web", Ipv4Addr::new(10, 0, 0, 2));
        z.add("DB", Ipv4Addr::new(10, 0, 0, 3));
        z.add("shared", Ipv4Addr::new(10, 0, 0, 2));
        z.add("shared", Ipv4Addr::new(10, 0, 0, 3));
        z
    }

    fn ask(z: &Zone, internal: bool) -> Ask<'_> {
        Ask {
            zone: Some(z),
            gateway: Ipv4Addr::new(10, 0, 0, 1),
            gateway6: None,
            host_alias: false,
            internal,
            transport_limit: None,
            udp_cap: 1472,
            rotate: 0,
        }
    }

    fn reply(o: Outcome) -> Message {
        match o {
            Outcome::Reply(b) => Message::from_vec(&b).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn a_records(m: &Message) -> Vec<Ipv4Addr> {
        m.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn names_resolve_case_insensitively_with_the_query_id() {
        let z = zone();
        let m = reply(answer(&ask(&z, false), &query("WeB.", RecordType::A)));
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 0, 0, 2)]);
        let m = reply(answer(&ask(&z, false), &query("db.", RecordType::A)));
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 0, 0, 3)]);
    }

    #[test]
    fn a_shared_alias_answers_every_address_rotating() {
        let z = zone();
        let mut a = ask(&z, false);
        let first = a_records(&reply(answer(&a, &query("shared.", RecordType::A))));
        a.rotate = 1;
        let second = a_records(&reply(answer(&a, &query("shared.", RecordType::A))));
        assert_eq!(first.len(), 2);
        assert_eq!(second.len(), 2);
        assert_ne!(first, second, "order rotates");
    }

    #[test]
    fn the_store_holds_both_families() {
        let mut z = zone();
        z.add("web", "fd00::2".parse::<std::net::Ipv6Addr>().unwrap());
        let m = reply(answer(&ask(&z, false), &query("web.", RecordType::AAAA)));
        match &m.answers[..] {
            [r] => assert!(matches!(&r.data, RData::AAAA(a) if a.0.to_string() == "fd00::2")),
            other => panic!("{other:?}"),
        }
        let m = reply(answer(&ask(&z, false), &query("web.", RecordType::A)));
        assert_eq!(
            a_records(&m),
            vec![Ipv4Addr::new(10, 0, 0, 2)],
            "A answers only IPv4"
        );
    }

    #[test]
    fn aaaa_for_a_known_name_is_empty_and_ptr_names_the_container() {
        let z = zone();
        let m = reply(answer(&ask(&z, false), &query("web.", RecordType::AAAA)));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        let m = reply(answer(
            &ask(&z, false),
            &query("3.0.0.10.in-addr.arpa.", RecordType::PTR),
        ));
        match &m.answers[0].data {
            RData::PTR(p) => assert_eq!(p.0.to_ascii(), "db."),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_single_labels_are_nxdomain_and_responses_are_ignored() {
        let z = zone();
        let m = reply(answer(&ask(&z, false), &query("elsewhere.", RecordType::A)));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        let mut resp = query("web.", RecordType::A);
        resp[2] |= 0x80;
        assert_eq!(answer(&ask(&z, false), &resp), Outcome::Drop);
    }

    #[test]
    fn udp_answers_never_exceed_the_link() {
        let mut z = Zone::new();
        for i in 0..120 {
            z.add("many", Ipv4Addr::new(10, 0, 1, i));
        }
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(
            Name::from_ascii("many.").unwrap(),
            RecordType::A,
        ));
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        m.set_edns(edns);
        let Outcome::Reply(b) = answer(&ask(&z, false), &m.to_vec().unwrap()) else {
            panic!()
        };
        assert!(b.len() <= 1472, "{} bytes", b.len());
        assert!(Message::from_vec(&b).unwrap().metadata.truncation);
    }

    #[test]
    fn unknown_names_are_relayed_except_on_internal_networks() {
        let z = zone();
        assert_eq!(
            answer(&ask(&z, false), &query("example.test.", RecordType::A)),
            Outcome::Forward
        );
        let m = reply(answer(
            &ask(&z, true),
            &query("example.test.", RecordType::A),
        ));
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    }

    #[test]
    fn host_alias_only_with_host_loopback() {
        let z = zone();
        let mut a = ask(&z, false);
        assert_eq!(
            answer(&a, &query("host.vswitch.internal.", RecordType::A)),
            Outcome::Forward
        );
        a.host_alias = true;
        let m = reply(answer(&a, &query("host.vswitch.internal.", RecordType::A)));
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 0, 0, 1)]);
        a.gateway6 = Some("fd00::1".parse().unwrap());
        let m = reply(answer(
            &a,
            &query("host.vswitch.internal.", RecordType::AAAA),
        ));
        let aaaa: Vec<RData> = m.answers.iter().map(|r| r.data.clone()).collect();
        assert_eq!(aaaa, vec![RData::AAAA(AAAA("fd00::1".parse().unwrap()))]);
    }

    #[test]
    fn dual_stack_names_answer_aaaa_and_ip6_arpa_ptr() {
        let mut z = zone();
        let web6: Ipv6Addr = "fd00:60::2".parse().unwrap();
        z.add("web", web6);
        let a = ask(&z, false);
        let m = reply(answer(&a, &query("web.", RecordType::AAAA)));
        let got: Vec<RData> = m.answers.iter().map(|r| r.data.clone()).collect();
        assert_eq!(got, vec![RData::AAAA(AAAA(web6))]);
        let m = reply(answer(&a, &query("web.", RecordType::A)));
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 0, 0, 2)]);
        // A name with only an IPv4 address has no AAAA data (NOERROR, empty), not NXDOMAIN.
        let m = reply(answer(&a, &query("db.", RecordType::AAAA)));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        let arpa = format!("2{}.6.0.0.0.0.d.f.ip6.arpa.", ".0".repeat(24));
        let m = reply(answer(&a, &query(&arpa, RecordType::PTR)));
        let names: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(names, vec!["web.".to_string()]);
    }

    #[test]
    fn malformed_queries_get_formerr_or_nothing() {
        let z = zone();
        assert_eq!(answer(&ask(&z, false), &[1, 2, 3]), Outcome::Drop);
        let mut bad = vec![0xab, 0xcd, 0x01, 0x00, 0x00, 0x05, 0, 0, 0, 0, 0, 0];
        bad.extend_from_slice(&[3, b'w', b'e']);
        let m = reply(answer(&ask(&z, false), &bad));
        assert_eq!(m.metadata.id, 0xabcd);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    }

    #[test]
    fn answers_larger_than_512_bytes_are_truncated_over_udp() {
        let mut z = Zone::new();
        for i in 0..60 {
            z.add("many", Ipv4Addr::new(10, 0, 1, i));
        }
        let m = reply(answer(&ask(&z, false), &query("many.", RecordType::A)));
        assert!(m.metadata.truncation, "TC set");
        assert!(m.answers.is_empty());
        let mut tcp = ask(&z, false);
        tcp.transport_limit = Some(65535);
        let m = reply(answer(&tcp, &query("many.", RecordType::A)));
        assert!(!m.metadata.truncation);
        assert_eq!(a_records(&m).len(), 60);
    }

    #[test]
    fn removing_a_name_keeps_the_others_and_drops_its_ptr() {
        let mut z = zone();
        z.remove("WEB", Ipv4Addr::new(10, 0, 0, 2));
        let m = reply(answer(&ask(&z, false), &query("web.", RecordType::A)));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        let m = reply(answer(&ask(&z, false), &query("shared.", RecordType::A)));
        assert_eq!(a_records(&m).len(), 2, "an alias of the address stays");
        assert_eq!(
            answer(
                &ask(&z, false),
                &query("2.0.0.10.in-addr.arpa.", RecordType::PTR)
            ),
            Outcome::Forward,
            "no local PTR any more"
        );
        z.remove("shared", Ipv4Addr::new(10, 0, 0, 2));
        z.remove("shared", Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(z.len(), 1, "only db is left");
    }

    #[test]
    fn a_querier_sees_the_union_of_its_zones_and_changes_in_place() {
        let shared = |z: Zone| Arc::new(RwLock::new(z));
        let (a, b) = (shared(zone()), shared(Zone::new()));
        b.write().unwrap().add("shared", Ipv4Addr::new(10, 1, 0, 9));
        b.write().unwrap().add("other", Ipv4Addr::new(10, 1, 0, 9));
        let mut server = DnsServer::default();
        let q = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
        server.set_view(DnsView::Querier {
            ip: q,
            zones: vec![a.clone(), b.clone()].into(),
        });
        let zones = server.queriers.get(&q).unwrap();
        let names = |n: &str| zones.addrs(n).unwrap_or_default();
        assert_eq!(names("shared").len(), 3, "both networks' holders");
        assert_eq!(names("other"), [IpAddr::V4(Ipv4Addr::new(10, 1, 0, 9))]);
        assert_eq!(
            zones.ptr(&"10.1.0.9".parse().unwrap()).as_deref(),
            Some("shared")
        );
        // A name added to a shared zone is seen at once, without a new view.
        a.write().unwrap().add("late", Ipv4Addr::new(10, 0, 0, 7));
        assert_eq!(names("late").len(), 1);
        server.set_view(DnsView::Forget(q));
        assert!(server.queriers.is_empty());
    }

    #[test]
    fn relayed_answers_are_fitted_to_the_client() {
        let mut z = Zone::new();
        for i in 0..60 {
            z.add("many", Ipv4Addr::new(10, 0, 1, i));
        }
        let mut tcp = ask(&z, false);
        tcp.transport_limit = Some(65535);
        let Outcome::Reply(big) = answer(&tcp, &query("many.", RecordType::A)) else {
            panic!()
        };
        let fitted = fit(big.clone(), 512);
        assert!(fitted.len() <= 512);
        assert!(Message::from_vec(&fitted).unwrap().metadata.truncation);
        assert_eq!(fit(big.clone(), 4096), big);
    }
}
