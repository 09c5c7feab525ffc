//! RA guard (RFC 6105): IPv6 Router Advertisements and Redirects from a container are dropped.
//!
//! A container that sends a Router Advertisement (ICMPv6 type 134) can make its neighbours
//! route through it; a Redirect (type 137) can divert single destinations. Only the gateway
//! (or a trunk) may send them, so frames from Container ports carrying either are dropped
//! as [`DropReason::RaGuard`].
//!
//! Attackers hide the ICMPv6 header behind extension headers (RFC 7113), so the chain is
//! walked with etherparse's checked views: hop-by-hop (only first), destination options,
//! routing, fragment and authentication headers. A chain that does not fit in the frame, a
//! hop-by-hop header anywhere but first, or an ICMPv6 header without its type byte is
//! [`DropReason::Malformed`]: a frame whose upper layer cannot be found is not forwarded.
//! A non-first fragment carries no upper-layer header (the first fragment has it and is
//! checked), so it passes; as does anything whose upper layer is not ICMPv6 (ESP included).
//! The IPv6 header's own length fields are not enforced (GSO frames and jumbograms differ);
//! the walk is bounded by the frame: every header consumes at least 8 bytes.

use etherparse::err::ipv6::HeaderSliceError;
use etherparse::{
    IpAuthHeaderSlice, IpNumber, Ipv6FragmentHeaderSlice, Ipv6HeaderSlice, Ipv6RawExtHeaderSlice,
};

use crate::DropReason;

/// ICMPv6 Router Advertisement.
const ICMPV6_ROUTER_ADVERTISEMENT: u8 = 134;
/// ICMPv6 Redirect.
const ICMPV6_REDIRECT: u8 = 137;

/// What the chain walk found: the fields the IPv6 source and Neighbor Discovery guard
/// (`nd_guard.rs`) reads when the port has an IPv6 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Upper<'a> {
    /// The IPv6 source address.
    pub src: [u8; 16],
    /// The ICMPv6 message, from its type byte to the end of the IPv6 payload (the payload
    /// length trims trailing bytes when it is nonzero and inside the frame); `None` when the
    /// upper layer is not ICMPv6 or this is a non-first fragment.
    pub icmp: Option<&'a [u8]>,
    /// Whether the chain holds a fragment header.
    pub fragmented: bool,
}

/// Checks the IPv6 packet (Ethernet payload) of a frame from a container port; on success
/// returns what the walk found.
#[inline]
pub(crate) fn check(packet: &[u8]) -> Result<Upper<'_>, DropReason> {
    let ip = Ipv6HeaderSlice::from_slice(packet).map_err(|e| match e {
        HeaderSliceError::Len(_) => DropReason::Runt,
        HeaderSliceError::Content(_) => DropReason::Malformed,
    })?;
    let mut upper = Upper {
        src: ip.source(),
        icmp: None,
        fragmented: false,
    };
    let payload_len = usize::from(ip.payload_length());
    let mut rest = packet
        .get(ip.slice().len()..)
        .ok_or(DropReason::Malformed)?;
    let mut next = ip.next_header();
    let mut first = true;
    // Bytes of the IPv6 payload walked so far (extension headers).
    let mut offset = 0usize;
    loop {
        let (len, following) = match next {
            IpNumber::IPV6_HEADER_HOP_BY_HOP if !first => return Err(DropReason::Malformed),
            IpNumber::IPV6_HEADER_HOP_BY_HOP
            | IpNumber::IPV6_DESTINATION_OPTIONS
            | IpNumber::IPV6_ROUTE_HEADER => {
                let h =
                    Ipv6RawExtHeaderSlice::from_slice(rest).map_err(|_| DropReason::Malformed)?;
                (h.slice().len(), h.next_header())
            }
            IpNumber::IPV6_FRAGMENTATION_HEADER => {
                let h =
                    Ipv6FragmentHeaderSlice::from_slice(rest).map_err(|_| DropReason::Malformed)?;
                upper.fragmented = true;
                if h.fragment_offset().value() != 0 {
                    return Ok(upper);
                }
                (h.slice().len(), h.next_header())
            }
            IpNumber::AUTHENTICATION_HEADER => {
                let h = IpAuthHeaderSlice::from_slice(rest).map_err(|_| DropReason::Malformed)?;
                (h.slice().len(), h.next_header())
            }
            IpNumber::IPV6_ICMP => {
                return match rest.first() {
                    None => Err(DropReason::Malformed),
                    Some(&(ICMPV6_ROUTER_ADVERTISEMENT | ICMPV6_REDIRECT)) => {
                        Err(DropReason::RaGuard)
                    }
                    Some(_) => {
                        let icmp_len = payload_len.saturating_sub(offset);
                        upper.icmp = Some(match rest.get(..icmp_len) {
                            Some(trimmed) if payload_len != 0 => trimmed,
                            _ => rest,
                        });
                        Ok(upper)
                    }
                };
            }
            _ => return Ok(upper),
        };
        rest = rest.get(len..).ok_or(DropReason::Malformed)?;
        offset += len;
        next = following;
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guard's decision alone.
    fn verdict(packet: &[u8]) -> Result<(), DropReason> {
        check(packet).map(|_| ())
    }

    const SRC: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x42, 0, 0, 0, 0, 0, 0x11];
    const ALL_NODES: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

    /// An IPv6 header (payload length = `body.len()`, next header `next`) followed by `body`.
    fn ipv6(next: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0x60, 0, 0, 0];
        v.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        v.extend_from_slice(&[next, 255]);
        v.extend_from_slice(&SRC);
        v.extend_from_slice(&ALL_NODES);
        v.extend_from_slice(body);
        v
    }

    /// A minimal Router Advertisement body (type, code, checksum, hop limit, flags, lifetime,
    /// reachable, retrans); the checksum is not checked by the guard.
    fn icmpv6(ty: u8) -> Vec<u8> {
        let mut v = vec![ty, 0, 0x12, 0x34, 64, 0, 0x07, 0x08];
        v.extend_from_slice(&[0; 8]);
        v
    }

    /// An 8-byte generic extension header (hop-by-hop, dest options, routing) with PadN.
    fn ext(next: u8) -> Vec<u8> {
        vec![next, 0, 1, 4, 0, 0, 0, 0]
    }

    fn fragment(next: u8, offset_units: u16, more: bool) -> Vec<u8> {
        let off = (offset_units << 3) | u16::from(more);
        let [a, b] = off.to_be_bytes();
        vec![next, 0, a, b, 0, 0, 0, 1]
    }

    #[test]
    fn plain_ra_and_redirect_are_dropped() {
        assert_eq!(verdict(&ipv6(58, &icmpv6(134))), Err(DropReason::RaGuard));
        assert_eq!(verdict(&ipv6(58, &icmpv6(137))), Err(DropReason::RaGuard));
    }

    #[test]
    fn other_icmpv6_passes() {
        // Router Solicitation, Neighbour Solicitation/Advertisement, echo request.
        for ty in [133, 135, 136, 128] {
            assert_eq!(verdict(&ipv6(58, &icmpv6(ty))), Ok(()), "type {ty}");
        }
        // UDP and TCP are not inspected.
        assert_eq!(verdict(&ipv6(17, &[0; 8])), Ok(()));
        assert_eq!(verdict(&ipv6(6, &[0; 20])), Ok(()));
        // No next header.
        assert_eq!(verdict(&ipv6(59, &[])), Ok(()));
    }

    #[test]
    fn ra_behind_extension_headers_is_dropped() {
        let mut body = ext(58);
        body.extend(icmpv6(134));
        assert_eq!(
            verdict(&ipv6(0, &body)),
            Err(DropReason::RaGuard),
            "hop-by-hop"
        );

        let mut body = ext(60);
        body.extend(ext(43));
        body.extend(ext(58));
        body.extend(icmpv6(134));
        assert_eq!(
            verdict(&ipv6(0, &body)),
            Err(DropReason::RaGuard),
            "hop-by-hop, dest options, routing"
        );

        let mut body = fragment(58, 0, true);
        body.extend(icmpv6(137));
        assert_eq!(
            verdict(&ipv6(44, &body)),
            Err(DropReason::RaGuard),
            "first fragment"
        );

        // Authentication header: next, payload len (in 4-byte units minus 2), reserved, SPI, seq, ICV.
        let mut body = vec![58, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        body.extend(icmpv6(134));
        assert_eq!(verdict(&ipv6(51, &body)), Err(DropReason::RaGuard), "AH");
    }

    #[test]
    fn a_chain_that_hides_the_upper_layer_is_malformed() {
        // Extension header cut short by the end of the frame.
        let body = &ext(58)[..5];
        assert_eq!(verdict(&ipv6(0, body)), Err(DropReason::Malformed));
        // A header claiming more length than the frame holds.
        let mut body = ext(58);
        body[1] = 200;
        body.extend(icmpv6(134));
        assert_eq!(verdict(&ipv6(60, &body)), Err(DropReason::Malformed));
        // ICMPv6 announced but absent.
        assert_eq!(verdict(&ipv6(0, &ext(58))), Err(DropReason::Malformed));
        assert_eq!(verdict(&ipv6(58, &[])), Err(DropReason::Malformed));
        // Hop-by-hop not first.
        let mut body = ext(0);
        body.extend(ext(58));
        body.extend(icmpv6(134));
        assert_eq!(verdict(&ipv6(60, &body)), Err(DropReason::Malformed));
        // Not version 6.
        let mut p = ipv6(58, &icmpv6(128));
        p[0] = 0x40;
        assert_eq!(verdict(&p), Err(DropReason::Malformed));
        // Truncated fixed header.
        assert_eq!(verdict(&ipv6(58, &[])[..39]), Err(DropReason::Runt));
    }

    #[test]
    fn non_first_fragments_pass() {
        // Its "upper layer" bytes are data; the first fragment carried the header.
        let mut body = fragment(58, 10, false);
        body.extend(icmpv6(134));
        assert_eq!(verdict(&ipv6(44, &body)), Ok(()));
    }

    #[test]
    fn the_walk_reports_source_icmp_and_fragmentation() {
        let p = ipv6(58, &icmpv6(135));
        let upper = check(&p).unwrap();
        assert_eq!(upper.src, SRC);
        assert_eq!(upper.icmp, Some(&icmpv6(135)[..]));
        assert!(!upper.fragmented);
        // Behind a destination options header, and trimmed to the payload length.
        let mut body = ext(58);
        body.extend(icmpv6(136));
        let mut p = ipv6(60, &body);
        p.extend_from_slice(&[0xee; 6]);
        assert_eq!(check(&p).unwrap().icmp, Some(&icmpv6(136)[..]));
        // A payload length of 0 (jumbogram) means "to the end of the frame".
        p[4..6].copy_from_slice(&[0, 0]);
        assert_eq!(check(&p).unwrap().icmp.map(<[u8]>::len), Some(16 + 6));
        // Not ICMPv6: nothing to report.
        assert_eq!(check(&ipv6(17, &[0; 8])).unwrap().icmp, None);
        // Fragments.
        let mut body = fragment(58, 0, true);
        body.extend(icmpv6(135));
        let p = ipv6(44, &body);
        let upper = check(&p).unwrap();
        assert!(upper.fragmented);
        assert_eq!(upper.icmp, Some(&icmpv6(135)[..]));
        let mut body = fragment(58, 10, false);
        body.extend(icmpv6(135));
        let p = ipv6(44, &body);
        let upper = check(&p).unwrap();
        assert!(upper.fragmented);
        assert_eq!(upper.icmp, None);
    }
}
