//! A one-line description of a frame for logs: never its payload.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{Ipv4HeaderSlice, Ipv6HeaderSlice};

use crate::MacAddr;

/// Describes an Ethernet frame as `len 98 02:42:..→ff:ff:.. type 0x0800 icmp(1) 10.0.0.2→10.0.0.1`.
///
/// Reads only the Ethernet header and, when they parse, the IPv4/IPv6 header's protocol and
/// addresses (one 802.1Q/802.1ad tag is skipped). Anything shorter prints what it has.
#[derive(Clone, Copy, Debug)]
pub struct FrameSummary<'a>(pub &'a [u8]);

impl fmt::Display for FrameSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let frame = self.0;
        write!(f, "len {}", frame.len())?;
        let Some((hdr, mut payload)) = frame.split_first_chunk::<14>() else {
            return f.write_str(" (runt)");
        };
        let [d0, d1, d2, d3, d4, d5, s0, s1, s2, s3, s4, s5, t0, t1] = *hdr;
        let mut ethertype = u16::from_be_bytes([t0, t1]);
        write!(
            f,
            " {}->{} type {ethertype:#06x}",
            MacAddr([s0, s1, s2, s3, s4, s5]),
            MacAddr([d0, d1, d2, d3, d4, d5]),
        )?;
        if matches!(ethertype, 0x8100 | 0x88a8)
            && let Some(([_, _, a, b], inner)) =
                payload.split_first_chunk::<4>().map(|(h, r)| (*h, r))
        {
            ethertype = u16::from_be_bytes([a, b]);
            payload = inner;
            write!(f, " inner {ethertype:#06x}")?;
        }
        match ethertype {
            0x0800 => match Ipv4HeaderSlice::from_slice(payload) {
                Ok(ip) => write!(
                    f,
                    " proto {} {}->{}",
                    ip.protocol().0,
                    Ipv4Addr::from(ip.source()),
                    Ipv4Addr::from(ip.destination())
                ),
                Err(_) => f.write_str(" (bad IPv4 header)"),
            },
            0x86dd => match Ipv6HeaderSlice::from_slice(payload) {
                Ok(ip) => write!(
                    f,
                    " next {} {}->{}",
                    ip.next_header().0,
                    Ipv6Addr::from(ip.source()),
                    Ipv6Addr::from(ip.destination())
                ),
                Err(_) => f.write_str(" (bad IPv6 header)"),
            },
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    #[test]
    fn summarises_headers_and_never_panics_on_short_frames() {
        let mut v = Vec::new();
        PacketBuilder::ethernet2([2, 0x42, 0, 0, 0, 2], [0xff; 6])
            .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
            .udp(1, 2)
            .write(&mut v, b"secret")
            .unwrap();
        let s = FrameSummary(&v).to_string();
        assert_eq!(
            s,
            format!(
                "len {} 02:42:00:00:00:02->ff:ff:ff:ff:ff:ff type 0x0800 proto 17 10.0.0.2->10.0.0.1",
                v.len()
            )
        );
        for n in 0..v.len() {
            let s = FrameSummary(&v[..n]).to_string();
            assert!(s.starts_with(&format!("len {n}")), "{s}");
        }
        assert_eq!(FrameSummary(&[]).to_string(), "len 0 (runt)");
    }
}
