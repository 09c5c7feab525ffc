//! The 12-byte virtio-net header (`struct virtio_net_hdr_v1`) in front of every frame on our
//! TAPs: how the kernel and we tell each other about partial checksums and GSO.
//!
//! Layout (little-endian on the hosts we run on, the TAP's native order):
//! `flags u8 | gso_type u8 | hdr_len u16 | gso_size u16 | csum_start u16 | csum_offset u16 |
//! num_buffers u16`.

/// Size of the header: `struct virtio_net_hdr_v1` with `num_buffers` (the kernel's default is
/// 10). The one definition: the TAP is told this size (netns-helper), the data path reads
/// and writes it, and the gateway builds it.
pub const LEN: usize = 12;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` holds only the
/// pseudo-header sum; the receiver completes it.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;

/// A header to write in front of a frame we emit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHeader {
    /// `F_NEEDS_CSUM` or 0.
    pub flags: u8,
    /// `GSO_NONE` or `GSO_TCPV4`.
    pub gso_type: u8,
    /// Length of the headers repeated in each segment (Ethernet + IP + TCP).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts, from the start of the Ethernet frame.
    pub csum_start: u16,
    /// Where the checksum lies, from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHeader {
    /// Writes the header into the first [`LEN`] bytes of `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`LEN`].
    pub fn emit(&self, buf: &mut [u8]) {
        buf[0] = self.flags;
        buf[1] = self.gso_type;
        buf[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        buf[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        buf[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        buf[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        buf[10..12].copy_from_slice(&0u16.to_le_bytes());
    }
}
