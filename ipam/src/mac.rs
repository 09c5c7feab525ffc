//! Container MAC addresses, derived from the IPv4 address the way Docker does. The type itself
//! is the switch's [`MacAddr`], the one MAC type of the project.

use std::net::Ipv4Addr;

pub use switch::{InvalidMac, MacAddr};

/// Docker's scheme: 02:42 followed by the four address bytes (locally administered unicast).
pub fn mac_from_ipv4(ip: Ipv4Addr) -> MacAddr {
    let [a, b, c, d] = ip.octets();
    MacAddr([0x02, 0x42, a, b, c, d])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_from_ipv4_like_docker() {
        let mac = mac_from_ipv4(Ipv4Addr::new(172, 17, 0, 2));
        assert_eq!(mac.to_string(), "02:42:ac:11:00:02");
        assert!(mac.is_unicast());
        assert!(mac.is_locally_administered());
    }
}
