//! Subnet validation: CIDR parsing, gateway and range checks, overlap detection.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::IpamError;

/// The validated address plan of one network: subnet, gateway and optional allocation range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetConfig {
    /// The network's subnet, e.g. 172.18.0.0/16.
    pub subnet: Ipv4Net,
    /// The gateway address inside the subnet.
    pub gateway: Ipv4Addr,
    /// Dynamic allocations are restricted to this sub-range when set (`--ip-range`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Ipv4Net>,
}

impl SubnetConfig {
    /// Validates a subnet plan; the gateway defaults to the first host address.
    pub fn new(
        subnet: Ipv4Net,
        gateway: Option<Ipv4Addr>,
        ip_range: Option<Ipv4Net>,
    ) -> Result<Self, IpamError> {
        if subnet.trunc() != subnet {
            return Err(IpamError::NotNetworkAddress(subnet));
        }
        if subnet.prefix_len() > 30 {
            return Err(IpamError::SubnetTooSmall(subnet));
        }
        let network = subnet.network();
        let broadcast = subnet.broadcast();
        let gateway = gateway.unwrap_or_else(|| Ipv4Addr::from(u32::from(network) + 1));
        if !subnet.contains(&gateway) {
            return Err(IpamError::GatewayOutsideSubnet { gateway, subnet });
        }
        if gateway == network || gateway == broadcast {
            return Err(IpamError::GatewayReserved { gateway, subnet });
        }
        if let Some(range) = ip_range {
            if range.trunc() != range {
                return Err(IpamError::NotNetworkAddress(range));
            }
            if !subnet.contains(&range) {
                return Err(IpamError::RangeOutsideSubnet { range, subnet });
            }
        }
        Ok(Self {
            subnet,
            gateway,
            ip_range,
        })
    }

    /// The subnet's broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        self.subnet.broadcast()
    }

    /// The subnet's network address.
    pub fn network(&self) -> Ipv4Addr {
        self.subnet.network()
    }

    /// True for the network, broadcast and gateway addresses, which are never leased.
    pub fn is_reserved(&self, ip: Ipv4Addr) -> bool {
        ip == self.network() || ip == self.broadcast() || ip == self.gateway
    }
}

/// Parses `a.b.c.d/len`, rejecting garbage and subnets with host bits set.
pub fn parse_cidr(s: &str) -> Result<Ipv4Net, IpamError> {
    let net: Ipv4Net = s
        .trim()
        .parse()
        .map_err(|_| IpamError::InvalidCidr(s.to_owned()))?;
    if net.trunc() != net {
        return Err(IpamError::NotNetworkAddress(net));
    }
    Ok(net)
}

/// True if the two subnets share at least one address.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Fails with [`IpamError::Overlap`] naming the first existing subnet that collides with `candidate`.
pub fn check_no_overlap(candidate: &Ipv4Net, existing: &[Ipv4Net]) -> Result<(), IpamError> {
    match existing.iter().find(|other| overlaps(candidate, other)) {
        Some(other) => Err(IpamError::Overlap {
            subnet: *candidate,
            other: *other,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn gateway_defaults_to_first_host() {
        let c = SubnetConfig::new(net("10.1.0.0/24"), None, None).unwrap();
        assert_eq!(c.gateway, Ipv4Addr::new(10, 1, 0, 1));
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 1, 0, 255));
    }

    #[test]
    fn gateway_validation() {
        let s = net("10.1.0.0/24");
        let e = SubnetConfig::new(s, Some(Ipv4Addr::new(10, 2, 0, 1)), None).unwrap_err();
        assert!(matches!(e, IpamError::GatewayOutsideSubnet { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "gateway 10.2.0.1 is outside subnet 10.1.0.0/24"
        );
        for gw in [Ipv4Addr::new(10, 1, 0, 0), Ipv4Addr::new(10, 1, 0, 255)] {
            let e = SubnetConfig::new(s, Some(gw), None).unwrap_err();
            assert!(matches!(e, IpamError::GatewayReserved { gateway, .. } if gateway == gw));
        }
        let c = SubnetConfig::new(s, Some(Ipv4Addr::new(10, 1, 0, 254)), None).unwrap();
        assert_eq!(c.gateway, Ipv4Addr::new(10, 1, 0, 254));
    }

    #[test]
    fn subnet_validation() {
        let e = SubnetConfig::new(net("10.1.0.0/31"), None, None).unwrap_err();
        assert!(matches!(e, IpamError::SubnetTooSmall(_)));
        let e = SubnetConfig::new(net("10.1.0.5/24"), None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "subnet 10.1.0.5/24 has host bits set (did you mean 10.1.0.0/24?)"
        );
        let e = SubnetConfig::new(net("10.1.0.0/24"), None, Some(net("10.1.1.0/25"))).unwrap_err();
        assert!(matches!(e, IpamError::RangeOutsideSubnet { .. }));
        let e = SubnetConfig::new(net("10.1.0.0/24"), None, Some(net("10.0.0.0/8"))).unwrap_err();
        assert!(matches!(e, IpamError::RangeOutsideSubnet { .. }));
        assert!(SubnetConfig::new(net("10.1.0.0/24"), None, Some(net("10.1.0.128/25"))).is_ok());
        assert!(SubnetConfig::new(net("10.1.0.0/30"), None, None).is_ok());
    }

    #[test]
    fn parse_cidr_errors() {
        assert_eq!(parse_cidr("172.18.0.0/16").unwrap(), net("172.18.0.0/16"));
        for bad in [
            "",
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/8",
            "hello/8",
            "::1/128",
        ] {
            let e = parse_cidr(bad).unwrap_err();
            assert!(
                matches!(&e, IpamError::InvalidCidr(s) if s == bad),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            parse_cidr("nope").unwrap_err().to_string(),
            "invalid CIDR \"nope\": expected a.b.c.d/len"
        );
        let e = parse_cidr("172.18.1.1/16").unwrap_err();
        assert!(matches!(e, IpamError::NotNetworkAddress(n) if n == net("172.18.1.1/16")));
    }

    #[test]
    fn overlap_detection() {
        assert!(overlaps(&net("10.0.0.0/8"), &net("10.5.0.0/16")));
        assert!(overlaps(&net("10.5.0.0/16"), &net("10.0.0.0/8")));
        assert!(overlaps(&net("10.5.0.0/16"), &net("10.5.0.0/16")));
        assert!(!overlaps(&net("10.5.0.0/16"), &net("10.6.0.0/16")));
        assert!(!overlaps(&net("192.168.0.0/24"), &net("192.168.1.0/24")));

        let existing = [net("172.17.0.0/16"), net("10.0.0.0/8")];
        assert!(check_no_overlap(&net("192.168.0.0/24"), &existing).is_ok());
        let e = check_no_overlap(&net("10.1.2.0/24"), &existing).unwrap_err();
        assert_eq!(
            e.to_string(),
            "subnet 10.1.2.0/24 overlaps subnet 10.0.0.0/8"
        );
    }
}
