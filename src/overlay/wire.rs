//! The VXLAN header (RFC 7348) and our one extension, as pure functions over byte slices so
//! the receive path's parsing is unit-tested and fuzzed without sockets.
//!
//! ```text
//!  0               1               2               3
//!  |R|R|R|R|I|R|R|V|        reserved (24 bits)                      |
//!  |              VNI (24 bits)                    | reserved (8)   |
//! ```
//! `I` (0x08 in the first byte) must be set: the VNI is valid. `V` (0x01 in the first byte,
//! a bit RFC 7348 reserves) is ours: the 12-byte virtio-net header of the sender's TAP
//! follows the VXLAN header, in front of the inner Ethernet frame. It is set only for frames
//! that need it — GSO frames (up to 64 KiB, carried whole in one UDP datagram that the
//! underlay fragments) and frames with a partial checksum; every other frame is plain RFC
//! 7348 VXLAN and interoperates with any VTEP. Other reserved bits are ignored on receipt, as
//! RFC 7348 asks.

use switch::vnet::LEN as VNET_HDR_LEN;

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = 8;
/// The `I` flag: the VNI is valid.
pub const FLAG_VNI: u8 = 0x08;
/// Our flag: a virtio-net header follows the VXLAN header.
pub const FLAG_VNET: u8 = 0x01;
/// The default VXLAN UDP port (IANA).
pub const DEFAULT_PORT: u16 = 4789;
/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// Largest UDP payload over IPv4: what one datagram can carry.
pub const MAX_DATAGRAM: usize = 65_507;
/// Largest GSO frame (Ethernet header included) that fits one datagram with our headers.
pub const MAX_GSO_FRAME: usize = MAX_DATAGRAM - HEADER_LEN - VNET_HDR_LEN;
/// The `gso_max_size` overlay TAPs get, so the kernel never hands us a GSO frame larger than
/// [`MAX_GSO_FRAME`] (the limit counts the IP packet; the Ethernet header comes on top).
pub const TAP_GSO_MAX_SIZE: u32 = 65_000;
/// Bytes VXLAN adds on the underlay: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet
/// (14); the overlay's MTU is the underlay's minus this.
pub const OVERHEAD: u32 = 50;
/// Shortest inner frame accepted: an Ethernet header.
const MIN_FRAME: usize = 14;

/// Why a datagram was not taken as VXLAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Shorter than the VXLAN header plus an Ethernet header (and the virtio-net header when
    /// flagged).
    #[error("datagram too short ({0} bytes)")]
    Short(usize),
    /// The `I` flag is clear.
    #[error("VXLAN I flag clear")]
    NoVni,
}

/// A parsed VXLAN datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vxlan<'a> {
    /// The 24-bit network identifier.
    pub vni: u32,
    /// A virtio-net header leads the payload.
    pub vnet: bool,
    /// What follows the VXLAN header: (virtio-net header +) inner Ethernet frame.
    pub payload: &'a [u8],
}

/// Parses one UDP payload.
///
/// # Errors
/// [`Malformed`] when it is too short or the VNI is not flagged valid.
pub fn parse(datagram: &[u8]) -> Result<Vxlan<'_>, Malformed> {
    let Some((header, payload)) = datagram.split_first_chunk::<HEADER_LEN>() else {
        return Err(Malformed::Short(datagram.len()));
    };
    let [flags, _, _, _, v0, v1, v2, _] = *header;
    if flags & FLAG_VNI == 0 {
        return Err(Malformed::NoVni);
    }
    let vnet = flags & FLAG_VNET != 0;
    let min = MIN_FRAME + if vnet { VNET_HDR_LEN } else { 0 };
    if payload.len() < min {
        return Err(Malformed::Short(datagram.len()));
    }
    Ok(Vxlan {
        vni: u32::from_be_bytes([0, v0, v1, v2]),
        vnet,
        payload,
    })
}

/// The VXLAN header for `vni` (masked to 24 bits), with [`FLAG_VNET`] when `vnet`.
pub fn header(vni: u32, vnet: bool) -> [u8; HEADER_LEN] {
    let [_, v0, v1, v2] = (vni & MAX_VNI).to_be_bytes();
    let flags = FLAG_VNI | if vnet { FLAG_VNET } else { 0 };
    [flags, 0, 0, 0, v0, v1, v2, 0]
}

/// Whether a frame with this virtio-net header must travel with it: GSO or a partial
/// checksum (anything else is a plain frame, sent as plain RFC 7348 VXLAN).
#[inline]
pub fn needs_vnet(vnet_header: &[u8]) -> bool {
    matches!(vnet_header, [flags, gso_type, ..] if *flags != 0 || *gso_type != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let mut d = header(0x12_3456, false).to_vec();
        d.extend_from_slice(&[0xaa; 14]);
        let v = parse(&d).unwrap();
        assert_eq!((v.vni, v.vnet, v.payload.len()), (0x12_3456, false, 14));
        assert_eq!(d[0], 0x08, "plain frames are plain RFC 7348");
        let mut g = header(7, true).to_vec();
        g.extend_from_slice(&[0; 12 + 14]);
        assert!(parse(&g).unwrap().vnet);
    }

    #[test]
    fn bad_datagrams_are_refused() {
        assert_eq!(parse(&[0x08; 7]), Err(Malformed::Short(7)));
        let mut d = header(1, false).to_vec();
        d.extend_from_slice(&[0; 13]);
        assert_eq!(parse(&d), Err(Malformed::Short(21)));
        d.push(0);
        d[0] = 0;
        assert_eq!(parse(&d), Err(Malformed::NoVni));
        // Flagged with a virtio-net header but too short to hold it and a frame.
        let mut g = header(1, true).to_vec();
        g.extend_from_slice(&[0; 14]);
        assert_eq!(parse(&g), Err(Malformed::Short(22)));
    }

    #[test]
    fn reserved_bits_are_ignored_and_vni_is_masked() {
        let mut d = header(MAX_VNI + 5, false).to_vec();
        d[1] = 0xff;
        d[7] = 0xff;
        d.extend_from_slice(&[0; 14]);
        assert_eq!(parse(&d).unwrap().vni, 4);
    }

    #[test]
    fn only_offloaded_frames_carry_the_vnet_header() {
        assert!(!needs_vnet(&[0; 12]));
        assert!(needs_vnet(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
        assert!(needs_vnet(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    }
}
