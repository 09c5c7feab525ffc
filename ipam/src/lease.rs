//! Address leases of one network: dynamic allocation, static reservation and release.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::{IpamError, SubnetConfig};

/// The leased addresses of one network, keyed by address, each owned by an endpoint id.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddressPool {
    config: SubnetConfig,
    leases: BTreeMap<Ipv4Addr, String>,
    /// No address below this one is free (a lower bound, not persisted): allocation starts
    /// its walk here, so filling a network in order costs O(1) per address.
    #[serde(skip)]
    free_from: u32,
}

impl AddressPool {
    /// Creates an empty pool for a validated subnet plan.
    pub fn new(config: SubnetConfig) -> Self {
        Self {
            config,
            leases: BTreeMap::new(),
            free_from: 0,
        }
    }

    /// The subnet plan this pool allocates from.
    pub fn config(&self) -> &SubnetConfig {
        &self.config
    }

    /// Lowest free address inside ip_range (or the subnet), never network/broadcast/gateway/leased.
    pub fn allocate(&mut self, owner: &str) -> Result<Ipv4Addr, IpamError> {
        let subnet = self.config.subnet;
        let range = self.config.ip_range.unwrap_or(subnet);
        // Usable host addresses of the subnet, intersected with the range.
        let lowest = u32::from(range.network()).max(u32::from(subnet.network()) + 1);
        let start = lowest.max(self.free_from);
        let end = u32::from(range.broadcast()).min(u32::from(subnet.broadcast()) - 1);
        let gateway = u32::from(self.config.gateway);
        if start > end {
            return Err(IpamError::Exhausted { subnet });
        }

        let leased = self
            .leases
            .range(Ipv4Addr::from(start)..=Ipv4Addr::from(end))
            .map(|(ip, _)| u128::from(u32::from(*ip)));
        let found = lowest_free(leased, start.into(), end.into(), gateway.into())
            .and_then(|c| u32::try_from(c).ok())
            .map(Ipv4Addr::from);
        let ip = found.ok_or(IpamError::Exhausted { subnet })?;
        self.leases.insert(ip, owner.to_owned());
        self.free_from = u32::from(ip).saturating_add(1);
        Ok(ip)
    }

    /// Static address (`--ip`): may lie outside ip_range but must be inside the subnet.
    pub fn reserve(&mut self, ip: Ipv4Addr, owner: &str) -> Result<(), IpamError> {
        if !self.config.subnet.contains(&ip) {
            return Err(IpamError::AddressOutsideSubnet {
                ip,
                subnet: self.config.subnet,
            });
        }
        if self.config.is_reserved(ip) {
            return Err(IpamError::AddressReserved { ip });
        }
        if let Some(current) = self.leases.get(&ip) {
            return Err(IpamError::AddressInUse {
                ip,
                owner: current.clone(),
            });
        }
        self.leases.insert(ip, owner.to_owned());
        Ok(())
    }

    /// Returns true if it was leased.
    pub fn release(&mut self, ip: Ipv4Addr) -> bool {
        self.free_from = self.free_from.min(u32::from(ip));
        self.leases.remove(&ip).is_some()
    }

    /// Releases every address held by `owner`; returns how many were released.
    pub fn release_owner(&mut self, owner: &str) -> usize {
        let before = self.leases.len();
        self.free_from = 0;
        self.leases.retain(|_, o| o != owner);
        before - self.leases.len()
    }

    /// The endpoint holding `ip`, if it is leased.
    pub fn owner(&self, ip: Ipv4Addr) -> Option<&str> {
        self.leases.get(&ip).map(String::as_str)
    }

    /// All leases in ascending address order.
    pub fn leases(&self) -> impl Iterator<Item = (Ipv4Addr, &str)> {
        self.leases.iter().map(|(ip, o)| (*ip, o.as_str()))
    }

    /// Number of leased addresses.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// True when nothing is leased.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }
}

/// The lowest address in `start..=end` (as numbers) that is neither `gateway` nor among
/// `leased` (ascending). Walks the candidates and the leases side by side, so the cost is
/// O(leases in the window), not O(window size × log leases). Shared by both families.
pub(crate) fn lowest_free(
    leased: impl Iterator<Item = u128>,
    start: u128,
    end: u128,
    gateway: u128,
) -> Option<u128> {
    let mut leased = leased.peekable();
    let mut candidate = start;
    loop {
        if candidate > end {
            return None;
        }
        if candidate == gateway {
            candidate += 1;
            continue;
        }
        while leased.next_if(|&l| l < candidate).is_some() {}
        if leased.peek() == Some(&candidate) {
            candidate += 1;
            continue;
        }
        return Some(candidate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::Ipv4Net;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn pool(subnet: &str) -> AddressPool {
        AddressPool::new(SubnetConfig::new(net(subnet), None, None).unwrap())
    }

    const fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
        Ipv4Addr::new(a, b, c, d)
    }

    #[test]
    fn the_lowest_free_address_comes_first_after_releases_and_reservations() {
        let mut p = pool("10.0.0.0/24");
        for i in 2..=100 {
            assert_eq!(p.allocate(&format!("e{i}")).unwrap(), ip(10, 0, 0, i));
        }
        p.release(ip(10, 0, 0, 50));
        p.release(ip(10, 0, 0, 7));
        assert_eq!(p.allocate("a").unwrap(), ip(10, 0, 0, 7));
        assert_eq!(p.allocate("b").unwrap(), ip(10, 0, 0, 50));
        p.reserve(ip(10, 0, 0, 101), "s").unwrap();
        assert_eq!(p.allocate("c").unwrap(), ip(10, 0, 0, 102));
        // A pool read back from its JSON allocates the same way.
        let mut back: AddressPool =
            serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        back.release(ip(10, 0, 0, 3));
        assert_eq!(back.allocate("d").unwrap(), ip(10, 0, 0, 3));
        assert_eq!(back.allocate("e").unwrap(), ip(10, 0, 0, 103));
    }

    #[test]
    fn allocation_order_starts_after_gateway() {
        let mut p = pool("172.18.0.0/16");
        assert_eq!(p.allocate("c1").unwrap(), ip(172, 18, 0, 2));
        assert_eq!(p.allocate("c2").unwrap(), ip(172, 18, 0, 3));
        assert_eq!(p.owner(ip(172, 18, 0, 2)), Some("c1"));
        assert_eq!(p.owner(ip(172, 18, 0, 3)), Some("c2"));
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn skips_gateway_in_the_middle() {
        let cfg = SubnetConfig::new(net("10.0.0.0/29"), Some(ip(10, 0, 0, 3)), None).unwrap();
        let mut p = AddressPool::new(cfg);
        let got: Vec<_> = (0..5)
            .map(|i| p.allocate(&format!("c{i}")).unwrap())
            .collect();
        assert_eq!(
            got,
            [
                ip(10, 0, 0, 1),
                ip(10, 0, 0, 2),
                ip(10, 0, 0, 4),
                ip(10, 0, 0, 5),
                ip(10, 0, 0, 6)
            ]
        );
        assert!(matches!(p.allocate("c5"), Err(IpamError::Exhausted { .. })));
    }

    #[test]
    fn release_then_reuse() {
        let mut p = pool("10.0.0.0/24");
        let a = p.allocate("a").unwrap();
        let b = p.allocate("b").unwrap();
        assert!(p.release(a));
        assert!(!p.release(a), "second release must report not leased");
        assert_eq!(p.owner(a), None);
        assert_eq!(p.allocate("c").unwrap(), a);
        assert_eq!(p.owner(a), Some("c"));
        assert_eq!(p.owner(b), Some("b"));
    }

    #[test]
    fn slash30_has_one_allocatable_address() {
        let mut p = pool("10.9.0.0/30");
        assert_eq!(p.allocate("a").unwrap(), ip(10, 9, 0, 2));
        let e = p.allocate("b").unwrap_err();
        assert_eq!(e.to_string(), "no free address left in 10.9.0.0/30");
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn static_reserve() {
        let mut p = pool("10.0.0.0/24");
        p.reserve(ip(10, 0, 0, 7), "c1").unwrap();
        let e = p.reserve(ip(10, 0, 0, 7), "c2").unwrap_err();
        assert_eq!(e.to_string(), "address 10.0.0.7 is already in use by c1");
        for reserved in [ip(10, 0, 0, 0), ip(10, 0, 0, 1), ip(10, 0, 0, 255)] {
            let e = p.reserve(reserved, "c3").unwrap_err();
            assert!(matches!(e, IpamError::AddressReserved { ip } if ip == reserved));
        }
        let e = p.reserve(ip(10, 0, 1, 7), "c4").unwrap_err();
        assert!(matches!(e, IpamError::AddressOutsideSubnet { .. }));
        assert_eq!(p.len(), 1);
        // Dynamic allocation skips the statically reserved address.
        for _ in 0..5 {
            assert_ne!(p.allocate("d").unwrap(), ip(10, 0, 0, 7));
        }
    }

    #[test]
    fn ip_range_restricts_allocation_but_not_reservation() {
        let cfg = SubnetConfig::new(net("10.0.0.0/24"), None, Some(net("10.0.0.128/30"))).unwrap();
        let mut p = AddressPool::new(cfg);
        let got: Vec<_> = (0..4).map(|_| p.allocate("x").unwrap()).collect();
        assert_eq!(
            got,
            [
                ip(10, 0, 0, 128),
                ip(10, 0, 0, 129),
                ip(10, 0, 0, 130),
                ip(10, 0, 0, 131)
            ]
        );
        assert!(matches!(p.allocate("x"), Err(IpamError::Exhausted { .. })));
        p.reserve(ip(10, 0, 0, 9), "static").unwrap();
        assert_eq!(p.owner(ip(10, 0, 0, 9)), Some("static"));
    }

    #[test]
    fn range_at_subnet_edge_never_yields_broadcast() {
        let cfg = SubnetConfig::new(net("10.0.0.0/24"), None, Some(net("10.0.0.254/31"))).unwrap();
        let mut p = AddressPool::new(cfg);
        assert_eq!(p.allocate("a").unwrap(), ip(10, 0, 0, 254));
        assert!(matches!(p.allocate("b"), Err(IpamError::Exhausted { .. })));
    }

    #[test]
    fn many_leases_in_a_slash16() {
        let mut p = pool("172.20.0.0/16");
        for i in 0..5000u32 {
            let got = p.allocate(&format!("c{i}")).unwrap();
            assert_eq!(u32::from(got), u32::from(ip(172, 20, 0, 2)) + i);
        }
        assert!(p.release(ip(172, 20, 3, 0)));
        assert_eq!(p.allocate("again").unwrap(), ip(172, 20, 3, 0));
        assert_eq!(p.leases().count(), 5000);
    }

    #[test]
    fn release_owner_frees_all_its_addresses() {
        let mut p = pool("10.0.0.0/24");
        p.allocate("a").unwrap();
        p.allocate("b").unwrap();
        p.reserve(ip(10, 0, 0, 50), "a").unwrap();
        assert_eq!(p.release_owner("a"), 2);
        let left: Vec<_> = p.leases().collect();
        assert_eq!(left, [(ip(10, 0, 0, 3), "b")]);
    }
}
