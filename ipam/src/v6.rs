//! The IPv6 side of a dual-stack network: subnet validation, the unique-local pool for
//! `--ipv6` without a subnet, and sequential leases as Docker gives them (gateway `::1`,
//! containers `::2`, `::3`, …).

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

use crate::IpamError;
use crate::lease::lowest_free;

/// Longest IPv6 prefix a network may have: room for the gateway and one container.
pub const MAX_PREFIX6: u8 = 126;
/// Shortest IPv6 prefix a network may have (a /16 is already 2^112 addresses).
pub const MIN_PREFIX6: u8 = 16;

/// Ranges a network's IPv6 subnet may not touch: unspecified/loopback/IPv4-compatible
/// (::/96), IPv4-mapped (::ffff:0:0/96), link-local (fe80::/10), site-local (fec0::/10)
/// and multicast (ff00::/8). Containers' sources and gateways come from the subnet, so any
/// of these would let a container claim an address the host treats specially.
fn reserved_ranges() -> [Ipv6Net; 5] {
    [
        Ipv6Net::new_assert(Ipv6Addr::UNSPECIFIED, 96),
        Ipv6Net::new_assert(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96),
        Ipv6Net::new_assert(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
        Ipv6Net::new_assert(Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10),
        Ipv6Net::new_assert(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
    ]
}

/// The validated IPv6 address plan of a network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet6Config {
    /// The subnet, e.g. fd00:60::/64.
    pub subnet: Ipv6Net,
    /// The gateway address inside it.
    pub gateway: Ipv6Addr,
}

impl Subnet6Config {
    /// Validates an IPv6 plan; the gateway defaults to the subnet's first address after the
    /// subnet-router anycast one (`::1`).
    pub fn new(subnet: Ipv6Net, gateway: Option<Ipv6Addr>) -> Result<Self, IpamError> {
        if subnet.trunc() != subnet {
            return Err(IpamError::NotNetworkAddress6(subnet));
        }
        if !(MIN_PREFIX6..=MAX_PREFIX6).contains(&subnet.prefix_len()) {
            return Err(IpamError::Prefix6OutOfRange(subnet));
        }
        if let Some(r) = reserved_ranges().iter().find(|r| overlaps6(r, &subnet)) {
            return Err(IpamError::Reserved6 { subnet, range: *r });
        }
        let network = subnet.network();
        let gateway = gateway.unwrap_or_else(|| Ipv6Addr::from(u128::from(network) + 1));
        if !subnet.contains(&gateway) {
            return Err(IpamError::Gateway6OutsideSubnet { gateway, subnet });
        }
        if gateway == network {
            return Err(IpamError::Gateway6Reserved { gateway, subnet });
        }
        Ok(Self { subnet, gateway })
    }

    /// True for the subnet-router anycast address (the subnet's first) and the gateway.
    pub fn is_reserved(&self, ip: Ipv6Addr) -> bool {
        ip == self.subnet.network() || ip == self.gateway
    }
}

/// Parses `x:y::/len`, rejecting garbage and host bits.
pub fn parse_cidr6(s: &str) -> Result<Ipv6Net, IpamError> {
    let net: Ipv6Net = s
        .trim()
        .parse()
        .map_err(|_| IpamError::InvalidCidr6(s.to_owned()))?;
    if net.trunc() != net {
        return Err(IpamError::NotNetworkAddress6(net));
    }
    Ok(net)
}

/// True if the two subnets share at least one address.
pub fn overlaps6(a: &Ipv6Net, b: &Ipv6Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// A unique-local /64 for `--ipv6` without an IPv6 subnet: fdXX:XXXX:XXXX::/64 with the
/// 40-bit global ID taken from `random` (RFC 4193 §3.2), the first of the IDs derived from
/// it that overlaps none of `used`.
pub fn next_free_ula(used: &[Ipv6Net], random: [u8; 5]) -> Result<Ipv6Net, IpamError> {
    let base = u64::from_be_bytes([
        0, 0, 0, random[0], random[1], random[2], random[3], random[4],
    ]);
    (0..64u64)
        .map(|i| {
            let global = (base.wrapping_add(i.wrapping_mul(0x9e37_79b9))) & 0xff_ffff_ffff;
            let bits = (0xfdu128 << 120) | (u128::from(global) << 80);
            Ipv6Net::new_assert(Ipv6Addr::from(bits), 64)
        })
        .find(|cand| !used.iter().any(|u| overlaps6(cand, u)))
        .ok_or(IpamError::PoolsExhausted)
}

/// The IPv6 leases of one network, keyed by address, each owned by an endpoint id.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddressPool6 {
    config: Subnet6Config,
    leases: BTreeMap<Ipv6Addr, String>,
    /// No address below this one is free (not persisted; see `AddressPool`).
    #[serde(skip)]
    free_from: u128,
}

impl AddressPool6 {
    /// An empty pool for a validated plan.
    pub fn new(config: Subnet6Config) -> Self {
        Self {
            config,
            leases: BTreeMap::new(),
            free_from: 0,
        }
    }

    /// The plan this pool allocates from.
    pub fn config(&self) -> &Subnet6Config {
        &self.config
    }

    /// The lowest free address after the subnet-router anycast address, skipping the gateway
    /// and leases: sequential, as Docker allocates.
    pub fn allocate(&mut self, owner: &str) -> Result<Ipv6Addr, IpamError> {
        let subnet = self.config.subnet;
        let lowest = u128::from(subnet.network()) + 1;
        let end = u128::from(subnet.broadcast());
        let gateway = u128::from(self.config.gateway);
        let start = lowest.max(self.free_from);
        let leased = self
            .leases
            .range(Ipv6Addr::from(start)..)
            .map(|(ip, _)| u128::from(*ip));
        let found = lowest_free(leased, start, end, gateway).map(Ipv6Addr::from);
        let ip = found.ok_or(IpamError::Exhausted6 { subnet })?;
        self.leases.insert(ip, owner.to_owned());
        self.free_from = u128::from(ip).saturating_add(1);
        Ok(ip)
    }

    /// A static address (`--ip6`): inside the subnet, not reserved, not leased.
    pub fn reserve(&mut self, ip: Ipv6Addr, owner: &str) -> Result<(), IpamError> {
        if !self.config.subnet.contains(&ip) {
            return Err(IpamError::Address6OutsideSubnet {
                ip,
                subnet: self.config.subnet,
            });
        }
        if self.config.is_reserved(ip) {
            return Err(IpamError::Address6Reserved { ip });
        }
        if let Some(current) = self.leases.get(&ip) {
            return Err(IpamError::Address6InUse {
                ip,
                owner: current.clone(),
            });
        }
        self.leases.insert(ip, owner.to_owned());
        Ok(())
    }

    /// Returns true if it was leased.
    pub fn release(&mut self, ip: Ipv6Addr) -> bool {
        self.free_from = self.free_from.min(u128::from(ip));
        self.leases.remove(&ip).is_some()
    }

    /// The endpoint holding `ip`, if it is leased.
    pub fn owner(&self, ip: Ipv6Addr) -> Option<&str> {
        self.leases.get(&ip).map(String::as_str)
    }

    /// All leases in ascending address order.
    pub fn leases(&self) -> impl Iterator<Item = (Ipv6Addr, &str)> {
        self.leases.iter().map(|(ip, o)| (*ip, o.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_and_sequential_leases_follow_docker() {
        let c = Subnet6Config::new(net("fd00:60::/64"), None).unwrap();
        assert_eq!(c.gateway, ip("fd00:60::1"));
        let mut p = AddressPool6::new(c);
        assert_eq!(p.allocate("a").unwrap(), ip("fd00:60::2"));
        assert_eq!(p.allocate("b").unwrap(), ip("fd00:60::3"));
        assert!(p.release(ip("fd00:60::2")));
        assert_eq!(p.allocate("c").unwrap(), ip("fd00:60::2"));
        assert_eq!(p.owner(ip("fd00:60::3")), Some("b"));
    }

    #[test]
    fn a_gateway_in_the_middle_is_skipped() {
        let c = Subnet6Config::new(net("fd00:61::/126"), Some(ip("fd00:61::2"))).unwrap();
        let mut p = AddressPool6::new(c);
        assert_eq!(p.allocate("a").unwrap(), ip("fd00:61::1"));
        assert_eq!(p.allocate("b").unwrap(), ip("fd00:61::3"));
        let e = p.allocate("c").unwrap_err().to_string();
        assert!(e.contains("no free address left in fd00:61::/126"), "{e}");
    }

    #[test]
    fn bad_plans_are_refused_with_one_line_each() {
        for (subnet, gw, needle) in [
            ("fd00:60::/127", None, "prefix length"),
            ("fd00::/8", None, "prefix length"),
            ("fe80::/64", None, "reserved range fe80::/10"),
            ("ff02::/64", None, "reserved range ff00::/8"),
            ("::ffff:0:0/112", None, "reserved range ::ffff:0.0.0.0/96"),
            ("fd00:60::/64", Some("fd00:61::1"), "outside subnet"),
            ("fd00:60::/64", Some("fd00:60::"), "subnet-router anycast"),
        ] {
            let e = Subnet6Config::new(net(subnet), gw.map(ip))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{subnet}: {e}");
            assert!(!e.contains('\n'));
        }
        assert!(
            parse_cidr6("fd00:60::1/64")
                .unwrap_err()
                .to_string()
                .contains("host bits")
        );
        assert!(
            parse_cidr6("10.0.0.0/8")
                .unwrap_err()
                .to_string()
                .contains("invalid IPv6 CIDR")
        );
    }

    #[test]
    fn static_addresses_are_checked() {
        let mut p = AddressPool6::new(Subnet6Config::new(net("fd00:60::/64"), None).unwrap());
        p.reserve(ip("fd00:60::99"), "a").unwrap();
        for (addr, needle) in [
            ("fd00:60::99", "in use by a"),
            ("fd00:60::1", "reserved"),
            ("fd00:60::", "reserved"),
            ("fd00:61::5", "outside subnet"),
        ] {
            let e = p.reserve(ip(addr), "b").unwrap_err().to_string();
            assert!(e.contains(needle), "{addr}: {e}");
        }
    }

    #[test]
    fn ula_pool_gives_a_unique_local_64_that_overlaps_nothing() {
        let first = next_free_ula(&[], [1, 2, 3, 4, 5]).unwrap();
        assert_eq!(first, net("fd01:203:405::/64"));
        let second = next_free_ula(&[first], [1, 2, 3, 4, 5]).unwrap();
        assert_ne!(first, second);
        assert_eq!(second.prefix_len(), 64);
        assert_eq!(second.network().octets()[0], 0xfd);
        assert!(Subnet6Config::new(second, None).is_ok());
    }
}
