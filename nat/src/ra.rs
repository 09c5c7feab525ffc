//! Router Advertisements of the gateway (opt-in, [`crate::Gateway::with_router_advert`]):
//! how a container that configures itself (slirp4netns's `--enable-ipv6`: fd00::/64) learns
//! its IPv6 prefix, default router and DNS server.
//!
//! Model (RFC 4861 §6.2): every advertisement comes from the gateway's link-local address with
//! hop limit 255 and carries the Source Link-Layer Address (the gateway MAC), the MTU when one
//! is set, one Prefix Information option with the on-link (L) and autonomous (A) flags — the
//! container forms its SLAAC address in the prefix — and RDNSS (RFC 8106) naming the DNS
//! addresses, valid three times the longest interval. A Router Solicitation (ICMPv6 type 133,
//! hop limit 255, checksum verified; to all-routers `ff02::2` or to the gateway) is answered
//! at once: unicast to the solicitor, or to all nodes when it solicits from `::`. Unsolicited
//! advertisements go to all nodes (`ff02::1`): the first [`INITIAL_ADVERTS`] at most
//! [`INITIAL_INTERVAL`] apart (§6.2.4), then every MinRtrAdvInterval..MaxRtrAdvInterval,
//! uniformly random. The gateway's owner drives them with [`crate::Gateway::poll_at`] and
//! [`crate::Gateway::next_deadline`]; the solicitation delay of §6.2.6 is not applied (a
//! virtual link with one router has no collisions to avoid).
//!
//! Not handled: the Managed and Other flags (there is no DHCPv6), more than one prefix, route
//! information, DNSSL. Answers are rate limited per container by the gateway.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use smoltcp::wire::{
    EthernetAddress, Icmpv6Packet, Icmpv6Repr, NdiscOption, NdiscOptionRepr, NdiscPrefixInfoFlags,
    NdiscPrefixInformation, NdiscRepr, NdiscRouterFlags,
};

use crate::ndp::{self, ALL_NODES};

/// Unsolicited advertisements sent at short intervals after start (RFC 4861 §10).
pub const INITIAL_ADVERTS: u32 = 3;
/// Longest interval between those first advertisements (RFC 4861 §10).
pub const INITIAL_INTERVAL: Duration = Duration::from_secs(16);
/// The RDNSS option's type (RFC 8106).
const RDNSS: u8 = 25;
/// Hop limit of Neighbor Discovery messages.
const ND_HOP_LIMIT: u8 = 255;
/// Most DNS addresses advertised (keeps the RA small and the option length in range).
const MAX_RDNSS: usize = 8;

/// What the gateway advertises ([`crate::Gateway::with_router_advert`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaConfig {
    /// The prefix containers form their addresses in (SLAAC needs a /64).
    pub prefix: Ipv6Addr,
    /// Its length.
    pub prefix_len: u8,
    /// DNS addresses advertised in RDNSS (none: the option is left out; at most 8 are sent).
    pub rdnss: Vec<Ipv6Addr>,
    /// Link MTU advertised (None: no MTU option).
    pub mtu: Option<u32>,
    /// Shortest interval between unsolicited advertisements (default 200 s).
    pub min_interval: Duration,
    /// Longest interval (default 600 s, RFC 4861's MaxRtrAdvInterval).
    pub max_interval: Duration,
    /// How long the gateway stays a default router (default 1800 s, three times the longest
    /// interval; at most 9000 s).
    pub router_lifetime: Duration,
    /// Valid lifetime of the prefix (default 24 h).
    pub valid_lifetime: Duration,
    /// Preferred lifetime of the prefix (default 4 h).
    pub preferred_lifetime: Duration,
}

impl RaConfig {
    /// Advertises `prefix`/`prefix_len` with RFC 4861's default intervals and lifetimes.
    pub fn new(prefix: Ipv6Addr, prefix_len: u8) -> Self {
        Self {
            prefix,
            prefix_len,
            rdnss: Vec::new(),
            mtu: None,
            min_interval: Duration::from_secs(200),
            max_interval: Duration::from_secs(600),
            router_lifetime: Duration::from_secs(1800),
            valid_lifetime: Duration::from_secs(86_400),
            preferred_lifetime: Duration::from_secs(14_400),
        }
    }
}

/// The advertising side: its configuration and schedule.
#[derive(Debug)]
pub(crate) struct Advertiser {
    cfg: RaConfig,
    /// When the next unsolicited advertisement is due (None: at once).
    next: Option<Instant>,
    /// Unsolicited advertisements sent so far (counted up to [`INITIAL_ADVERTS`]).
    sent: u32,
    rng: fastrand::Rng,
}

impl Advertiser {
    pub(crate) fn new(mut cfg: RaConfig) -> Self {
        cfg.max_interval = cfg.max_interval.max(Duration::from_secs(4));
        cfg.min_interval = cfg
            .min_interval
            .clamp(Duration::from_secs(3), cfg.max_interval);
        cfg.rdnss.truncate(MAX_RDNSS);
        Self {
            cfg,
            next: None,
            sent: 0,
            rng: fastrand::Rng::new(),
        }
    }

    /// Starts over with the initial advertisements, the first due at once.
    pub(crate) fn restart(&mut self) {
        self.next = None;
        self.sent = 0;
    }

    /// When the next unsolicited advertisement is due (None: it is due now, nothing was sent).
    pub(crate) fn next(&self) -> Option<Instant> {
        self.next
    }

    /// Writes the unsolicited advertisement due at `now`, if one is, and schedules the next.
    pub(crate) fn poll_at(
        &mut self,
        now: Instant,
        link_local: Ipv6Addr,
        mac: EthernetAddress,
        out: &mut [u8],
    ) -> Option<usize> {
        if self.next.is_some_and(|at| now < at) {
            return None;
        }
        self.sent = self.sent.saturating_add(1);
        let lo = self.cfg.min_interval.as_millis() as u64;
        let hi = self.cfg.max_interval.as_millis() as u64;
        let mut wait = Duration::from_millis(self.rng.u64(lo..=hi.max(lo)));
        if self.sent < INITIAL_ADVERTS {
            wait = wait.min(INITIAL_INTERVAL);
        }
        self.next = Some(now + wait);
        let all_nodes = ndp::multicast_mac(ALL_NODES);
        self.emit(link_local, mac, ALL_NODES, all_nodes, out)
    }

    /// The advertisement answering a solicitation from `src` (`::` for a node without an
    /// address yet) at Ethernet `src_mac`.
    pub(crate) fn solicited(
        &self,
        link_local: Ipv6Addr,
        mac: EthernetAddress,
        src: Ipv6Addr,
        src_mac: EthernetAddress,
        out: &mut [u8],
    ) -> Option<usize> {
        if src.is_unspecified() {
            self.emit(
                link_local,
                mac,
                ALL_NODES,
                ndp::multicast_mac(ALL_NODES),
                out,
            )
        } else {
            self.emit(link_local, mac, src, src_mac, out)
        }
    }

    /// Writes an advertisement to `dst`/`dst_mac` into `out`.
    fn emit(
        &self,
        link_local: Ipv6Addr,
        mac: EthernetAddress,
        dst: Ipv6Addr,
        dst_mac: EthernetAddress,
        out: &mut [u8],
    ) -> Option<usize> {
        let c = &self.cfg;
        let secs = |d: Duration| smoltcp::time::Duration::from_secs(d.as_secs());
        let ra = Icmpv6Repr::Ndisc(NdiscRepr::RouterAdvert {
            hop_limit: 64,
            flags: NdiscRouterFlags::empty(),
            router_lifetime: secs(c.router_lifetime.min(Duration::from_secs(9000))),
            reachable_time: smoltcp::time::Duration::ZERO,
            retrans_time: smoltcp::time::Duration::ZERO,
            lladdr: Some(mac.into()),
            mtu: c.mtu,
            prefix_info: Some(NdiscPrefixInformation {
                prefix_len: c.prefix_len,
                flags: NdiscPrefixInfoFlags::ON_LINK | NdiscPrefixInfoFlags::ADDRCONF,
                valid_lifetime: secs(c.valid_lifetime),
                preferred_lifetime: secs(c.preferred_lifetime.min(c.valid_lifetime)),
                prefix: c.prefix,
            }),
        });
        // RDNSS: reserved (2), lifetime (4), the addresses; its length in units of 8 bytes.
        let mut rdnss = Vec::new();
        if !c.rdnss.is_empty() {
            let lifetime =
                u32::try_from(c.max_interval.as_secs().saturating_mul(3)).unwrap_or(u32::MAX);
            rdnss.extend_from_slice(&[0, 0]);
            rdnss.extend_from_slice(&lifetime.to_be_bytes());
            for a in &c.rdnss {
                rdnss.extend_from_slice(&a.octets());
            }
        }
        let rdnss_opt = NdiscOptionRepr::Unknown {
            type_: RDNSS,
            length: u8::try_from(1 + 2 * c.rdnss.len()).ok()?,
            data: &rdnss,
        };
        let extra = if rdnss.is_empty() {
            0
        } else {
            rdnss_opt.buffer_len()
        };
        let len = ndp::emit_with(
            mac,
            dst_mac,
            link_local,
            dst,
            ND_HOP_LIMIT,
            &ra,
            extra,
            out,
            |icmp| {
                if extra > 0 {
                    let at = ra.buffer_len();
                    if let Some(b) = icmp.get_mut(at..at + extra) {
                        rdnss_opt.emit(&mut NdiscOption::new_unchecked(b));
                    }
                    Icmpv6Packet::new_unchecked(icmp).fill_checksum(&link_local, &dst);
                }
            },
        )?;
        Some(len)
    }
}

/// Whether `request` is a Router Solicitation the gateway answers: hop limit 255, code 0
/// (checked by the parser), to all-routers or to one of the gateway's addresses.
pub(crate) fn is_solicitation(request: &Icmpv6Repr<'_>, hop_limit: u8, to_router: bool) -> bool {
    matches!(request, Icmpv6Repr::Ndisc(NdiscRepr::RouterSolicit { .. }))
        && hop_limit == ND_HOP_LIMIT
        && to_router
}
