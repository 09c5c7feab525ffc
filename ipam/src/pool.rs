//! Docker-compatible default address pools for networks created without `--subnet`.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::IpamError;
use crate::subnet::overlaps;

/// Docker's default address pools: 172.17.0.0/16 ..= 172.31.0.0/16 (one /16 each), then 192.168.0.0/16 split into /20s.
pub fn default_subnets() -> impl Iterator<Item = Ipv4Net> {
    let big = (17u8..=31).map(|b| Ipv4Net::new_assert(Ipv4Addr::new(172, b, 0, 0), 16));
    let small = (0u8..16).map(|i| Ipv4Net::new_assert(Ipv4Addr::new(192, 168, i * 16, 0), 20));
    big.chain(small)
}

/// First default subnet that overlaps none of `used`.
pub fn next_free_subnet(used: &[Ipv4Net]) -> Result<Ipv4Net, IpamError> {
    default_subnets()
        .find(|cand| !used.iter().any(|u| overlaps(cand, u)))
        .ok_or(IpamError::PoolsExhausted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn default_pool_order() {
        let all: Vec<_> = default_subnets().collect();
        assert_eq!(all.len(), 15 + 16);
        assert_eq!(all[0], net("172.17.0.0/16"));
        assert_eq!(all[14], net("172.31.0.0/16"));
        assert_eq!(all[15], net("192.168.0.0/20"));
        assert_eq!(all[16], net("192.168.16.0/20"));
        assert_eq!(all[30], net("192.168.240.0/20"));
    }

    #[test]
    fn first_free_when_nothing_used() {
        assert_eq!(next_free_subnet(&[]).unwrap(), net("172.17.0.0/16"));
    }

    #[test]
    fn skips_used_and_overlapping() {
        let used = [net("172.17.0.0/16"), net("172.18.5.0/24")];
        assert_eq!(next_free_subnet(&used).unwrap(), net("172.19.0.0/16"));
        // A user subnet covering all of 172.16/12 pushes us to 192.168.
        let used = [net("172.16.0.0/12"), net("192.168.0.0/24")];
        assert_eq!(next_free_subnet(&used).unwrap(), net("192.168.16.0/20"));
    }

    #[test]
    fn pools_exhausted() {
        let used = [net("172.16.0.0/12"), net("192.168.0.0/16")];
        assert!(matches!(
            next_free_subnet(&used),
            Err(IpamError::PoolsExhausted)
        ));
        let used: Vec<_> = default_subnets().collect();
        assert!(matches!(
            next_free_subnet(&used),
            Err(IpamError::PoolsExhausted)
        ));
    }
}
