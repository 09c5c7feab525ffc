//! The one MAC address type: raw bytes on the data path ([`crate::Mac`]), this newtype
//! wherever a MAC is shown, parsed or stored (its JSON form is the `02:42:ac:11:00:02` text).

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// A 48-bit Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct MacAddr(pub [u8; 6]);

/// The text is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address \"{0}\": expected six hex bytes like 02:42:ac:11:00:02")]
pub struct InvalidMac(pub String);

impl MacAddr {
    /// True unless the group (multicast/broadcast) bit is set.
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 0x01 == 0
    }

    /// True if the locally-administered bit is set.
    pub fn is_locally_administered(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// The raw bytes.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// The IPv6 link-local address a host derives from this MAC (RFC 4291 appendix A):
    /// `fe80::/64` and the modified EUI-64 interface identifier (the universal/local bit of
    /// the first octet flipped, `ff:fe` inserted in the middle).
    pub const fn link_local_ipv6(&self) -> Ipv6Addr {
        let [a, b, c, d, e, f] = self.0;
        Ipv6Addr::new(
            0xfe80,
            0,
            0,
            0,
            u16::from_be_bytes([a ^ 0x02, b]),
            u16::from_be_bytes([c, 0xff]),
            u16::from_be_bytes([0xfe, d]),
            u16::from_be_bytes([e, f]),
        )
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(bytes: [u8; 6]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for MacAddr {
    type Err = InvalidMac;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || InvalidMac(s.to_owned());
        let mut bytes = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Self(bytes))
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let bcast = MacAddr([0xff; 6]);
        assert!(!bcast.is_unicast());
        let vendor = MacAddr([0x00, 0x1b, 0x21, 0, 0, 1]);
        assert!(vendor.is_unicast());
        assert!(!vendor.is_locally_administered());
    }

    #[test]
    fn link_local_is_modified_eui64() {
        let mac = MacAddr([0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);
        let ll: Ipv6Addr = "fe80::42:acff:fe11:2".parse().unwrap();
        assert_eq!(mac.link_local_ipv6(), ll);
        // A universally administered MAC gets the U/L bit set instead.
        let vendor = MacAddr([0x00, 0x1b, 0x21, 0x0a, 0x0b, 0x0c]);
        let ll: Ipv6Addr = "fe80::21b:21ff:fe0a:b0c".parse().unwrap();
        assert_eq!(vendor.link_local_ipv6(), ll);
    }

    #[test]
    fn parse_round_trip_and_case() {
        let mac: MacAddr = "02:42:AC:11:00:02".parse().unwrap();
        assert_eq!(mac, MacAddr([0x02, 0x42, 0xac, 0x11, 0x00, 0x02]));
        assert_eq!(mac.to_string().parse::<MacAddr>().unwrap(), mac);
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "",
            "02:42:ac:11:00",
            "02:42:ac:11:00:02:03",
            "02:42:ac:11:00:0g",
            "02-42-ac-11-00-02",
            "2:42:ac:11:00:02",
            "02:42:ac:11:00:+2",
            "02:42:ac:11::02",
        ] {
            let e = bad.parse::<MacAddr>().unwrap_err();
            assert_eq!(e, InvalidMac(bad.to_owned()), "{bad}");
        }
        assert_eq!(
            "xx".parse::<MacAddr>().unwrap_err().to_string(),
            "invalid MAC address \"xx\": expected six hex bytes like 02:42:ac:11:00:02"
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_as_string() {
        let mac = MacAddr([0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);
        let json = serde_json::to_string(&mac).unwrap();
        assert_eq!(json, "\"02:42:ac:11:00:02\"");
        assert_eq!(serde_json::from_str::<MacAddr>(&json).unwrap(), mac);
        assert!(serde_json::from_str::<MacAddr>("\"nope\"").is_err());
    }
}
