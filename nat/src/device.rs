//! The smoltcp side of the gateway: a `phy::Device` (Medium::Ip) that hands smoltcp exactly
//! one borrowed IP packet per poll and turns each packet smoltcp sends into a complete TAP
//! frame (virtio-net header + Ethernet + IP) written straight to the caller's sink.
//!
//! No queue and no allocation: received packets are borrowed from the data path's buffer,
//! transmitted ones are built in one scratch buffer owned by the engine and handed to the sink
//! (which forwards them through the switch) before the next one is built.
//!
//! Offloads: smoltcp is told that the device verifies no TCP checksum (frames from containers
//! carry partial checksums under the virtio `NEEDS_CSUM` flag) and computes none; for every
//! TCP segment we write the pseudo-header sum and set `NEEDS_CSUM`, and for segments larger
//! than the MSS smoltcp asks for (segmentation offload) we set `GSO_TCPV4` (`GSO_TCPV6` for
//! IPv6) so the container's kernel receives one large frame instead of forty small ones.
//!
//! Both families: the version nibble of each packet picks the EtherType, the destination's
//! MAC (from the IPv4 or the IPv6 neighbour map) and the pseudo-header. An IPv6 destination
//! without a bound MAC gets nothing (there is no MAC to derive from it), unless a default
//! neighbour is set (single-container networks: every address is that container's).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroUsize;

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium, PacketMeta};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv6Packet,
    TcpPacket, checksum,
};

use switch::vnet::{self, VnetHeader};

/// Ethernet header length.
pub(crate) const ETH_LEN: usize = 14;

/// Where frames for containers go: each call carries one whole TAP frame.
pub type Sink<'s> = dyn FnMut(&[u8]) + 's;

/// `VIRTIO_NET_HDR_GSO_TCPV6`.
const GSO_TCPV6: u8 = 4;

/// Container IPv4 address → MAC, as bound by the daemon (the gateway's own ARP knowledge).
pub(crate) type Neighbors = HashMap<Ipv4Addr, [u8; 6], foldhash::fast::RandomState>;
/// Container IPv6 address → MAC (a map of its own, so IPv4 lookups cost what they did).
pub(crate) type Neighbors6 = HashMap<Ipv6Addr, [u8; 6], foldhash::fast::RandomState>;

/// Builds TAP frames around IP packets.
pub(crate) struct Framer {
    pub gateway_mac: [u8; 6],
    pub neighbors: Neighbors,
    pub neighbors6: Neighbors6,
    /// The MAC of any container address with no bound MAC (single-container networks).
    pub default_neighbor: Option<[u8; 6]>,
    /// Scratch buffer for one frame (header + Ethernet + the largest IP packet).
    pub buf: Vec<u8>,
}

impl Framer {
    pub(crate) fn new(gateway_mac: [u8; 6]) -> Self {
        Self {
            gateway_mac,
            neighbors: Neighbors::default(),
            neighbors6: Neighbors6::default(),
            default_neighbor: None,
            buf: vec![0; vnet::LEN + ETH_LEN + 65_536],
        }
    }

    pub(crate) fn set_neighbor(&mut self, ip: IpAddr, mac: [u8; 6]) {
        match ip {
            IpAddr::V4(v4) => {
                self.neighbors.insert(v4, mac);
            }
            IpAddr::V6(v6) => {
                self.neighbors6.insert(v6, mac);
            }
        }
    }

    pub(crate) fn forget_neighbor(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => {
                self.neighbors.remove(&v4);
            }
            IpAddr::V6(v6) => {
                self.neighbors6.remove(&v6);
            }
        }
    }

    /// Ethernet destination for `ip`: its bound MAC, the default neighbour, or the 02:42 MAC
    /// derived from it.
    fn mac_of(&self, ip: Ipv4Addr) -> [u8; 6] {
        self.neighbors
            .get(&ip)
            .copied()
            .or(self.default_neighbor)
            .unwrap_or_else(|| {
                let o = ip.octets();
                [0x02, 0x42, o[0], o[1], o[2], o[3]]
            })
    }

    /// EtherType and Ethernet destination of the IP packet at `start..start + len`; None
    /// for an IPv6 destination without a bound MAC (and no default neighbour), or a packet of
    /// neither family.
    fn link_of(&self, start: usize, len: usize) -> Option<(EthernetProtocol, [u8; 6])> {
        let pkt = self.buf.get(start..start + len)?;
        match pkt.first()? >> 4 {
            // Not new_checked: only the address is read, and a TSO packet's length field
            // may not describe the buffer.
            4 if pkt.len() >= 20 => Some((
                EthernetProtocol::Ipv4,
                self.mac_of(Ipv4Packet::new_unchecked(pkt).dst_addr()),
            )),
            6 if pkt.len() >= 40 => Some((
                EthernetProtocol::Ipv6,
                self.neighbors6
                    .get(&Ipv6Packet::new_unchecked(pkt).dst_addr())
                    .copied()
                    .or(self.default_neighbor)?,
            )),
            _ => None,
        }
    }

    /// Lets `fill` write an IP packet of `len` bytes, then completes the frame (Ethernet
    /// header, virtio-net header with checksum/GSO hints) and hands it to `sink`.
    pub(crate) fn send<R>(
        &mut self,
        len: usize,
        meta: PacketMeta,
        sink: &mut Sink<'_>,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> R {
        let start = vnet::LEN + ETH_LEN;
        if self.buf.len() < start + len {
            // Only reached if smoltcp asks for more than the MTU we advertised.
            self.buf.resize(start + len, 0);
        }
        let r = fill(&mut self.buf[start..start + len]);
        let Some((ethertype, mac)) = self.link_of(start, len) else {
            return r;
        };
        let hdr = if ethertype == EthernetProtocol::Ipv4 {
            self.finish_ip(start, len, meta)
        } else {
            self.finish_ip6(start, len, meta)
        };
        hdr.emit(&mut self.buf[..vnet::LEN]);
        let mut eth = EthernetFrame::new_unchecked(&mut self.buf[vnet::LEN..start]);
        eth.set_dst_addr(EthernetAddress(mac));
        eth.set_src_addr(EthernetAddress(self.gateway_mac));
        eth.set_ethertype(ethertype);
        sink(&self.buf[..start + len]);
        r
    }

    /// [`Framer::finish_ip`] for IPv6 (no extension headers: smoltcp writes none).
    fn finish_ip6(&mut self, start: usize, len: usize, meta: PacketMeta) -> VnetHeader {
        // The segment is the rest of the buffer (not the payload length field, which a TSO
        // packet may leave at 0).
        let ihl = 40;
        let Some(pkt) = self
            .buf
            .get_mut(start..start + len)
            .filter(|p| p.len() >= ihl)
        else {
            return VnetHeader::default();
        };
        let ip = Ipv6Packet::new_unchecked(&*pkt);
        if ip.next_header() != IpProtocol::Tcp {
            return VnetHeader::default();
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let tcp_len = len - ihl;
        let Ok(mut tcp) = TcpPacket::new_checked(&mut pkt[ihl..]) else {
            return VnetHeader::default();
        };
        tcp.set_checksum(checksum::pseudo_header_v6(
            &src,
            &dst,
            IpProtocol::Tcp,
            tcp_len as u32,
        ));
        tcp_vnet_header(ihl, tcp.header_len(), len, meta, GSO_TCPV6)
    }

    /// For TCP: writes the pseudo-header sum and returns the virtio header asking the kernel
    /// to finish the checksum (and to treat the frame as GSO when it exceeds the MSS).
    fn finish_ip(&mut self, start: usize, len: usize, meta: PacketMeta) -> VnetHeader {
        let Ok(mut ip) = Ipv4Packet::new_checked(&mut self.buf[start..start + len]) else {
            return VnetHeader::default();
        };
        if ip.next_header() != IpProtocol::Tcp {
            return VnetHeader::default();
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let ihl = ip.header_len() as usize;
        let tcp_len = len - ihl;
        let mut tcp = TcpPacket::new_unchecked(ip.payload_mut());
        tcp.set_checksum(checksum::pseudo_header_v4(
            &src,
            &dst,
            IpProtocol::Tcp,
            tcp_len as u32,
        ));
        tcp_vnet_header(ihl, tcp.header_len(), len, meta, vnet::GSO_TCPV4)
    }
}

/// The virtio-net header of a TCP packet of `len` bytes whose IP header is `ihl` bytes:
/// the kernel finishes the checksum from the pseudo-header sum already written, and a
/// packet with more payload than the MSS smoltcp asked for is GSO of type `gso_type`.
fn tcp_vnet_header(
    ihl: usize,
    tcp_header_len: u8,
    len: usize,
    meta: PacketMeta,
    gso_type: u8,
) -> VnetHeader {
    let hdr_len = ihl + usize::from(tcp_header_len);
    let mut hdr = VnetHeader {
        flags: vnet::F_NEEDS_CSUM,
        gso_type: vnet::GSO_NONE,
        hdr_len: (ETH_LEN + hdr_len) as u16,
        gso_size: 0,
        csum_start: (ETH_LEN + ihl) as u16,
        csum_offset: 16,
    };
    if let Some(mss) = meta.segmentation_offload_size
        && len.saturating_sub(hdr_len) > usize::from(mss.get())
    {
        hdr.gso_type = gso_type;
        hdr.gso_size = mss.get();
    }
    hdr
}

/// What smoltcp sees for one poll: at most one received packet, and a transmit path.
pub(crate) struct OneShot<'a, 's> {
    pub rx: Option<&'a [u8]>,
    pub framer: &'a mut Framer,
    pub sink: &'a mut Sink<'s>,
    pub mtu: usize,
}

pub(crate) struct Rx<'a>(&'a [u8]);
pub(crate) struct Tx<'a, 's> {
    framer: &'a mut Framer,
    sink: &'a mut Sink<'s>,
    meta: PacketMeta,
}

impl phy::RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for Tx<'_, '_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        self.framer.send(len, self.meta, self.sink, f)
    }
    fn set_meta(&mut self, meta: PacketMeta) {
        self.meta = meta;
    }
}

impl phy::Device for OneShot<'_, '_> {
    type RxToken<'b>
        = Rx<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = Tx<'b, 'b>
    where
        Self: 'b;

    fn receive(&mut self, _: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let pkt = self.rx.take()?;
        Some((
            Rx(pkt),
            Tx {
                framer: self.framer,
                sink: self.sink,
                meta: PacketMeta::default(),
            },
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<Self::TxToken<'_>> {
        Some(Tx {
            framer: self.framer,
            sink: self.sink,
            meta: PacketMeta::default(),
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        capabilities(self.mtu)
    }
}

/// The capabilities every gateway device advertises.
pub(crate) fn capabilities(mtu: usize) -> DeviceCapabilities {
    let mut checksum = ChecksumCapabilities::default();
    checksum.ipv4 = Checksum::Tx;
    checksum.tcp = Checksum::None;
    let mut caps = DeviceCapabilities::default();
    caps.medium = Medium::Ip;
    caps.max_transmission_unit = mtu;
    caps.checksum = checksum;
    caps.segmentation.tcpv4 = NonZeroUsize::new(65_000);
    caps.segmentation.tcpv6 = NonZeroUsize::new(65_000);
    caps
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU16;

    use smoltcp::wire::{IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket};

    use super::*;

    /// A TCP/IPv4 packet with `payload` bytes of data from 203.0.113.2 to 10.0.0.2.
    fn tcp_packet(buf: &mut [u8], payload: usize) -> usize {
        let ip = Ipv4Repr {
            src_addr: Ipv4Addr::new(203, 0, 113, 2),
            dst_addr: Ipv4Addr::new(10, 0, 0, 2),
            next_header: IpProtocol::Tcp,
            payload_len: 20 + payload,
            hop_limit: 64,
        };
        ip.emit(
            &mut Ipv4Packet::new_unchecked(&mut *buf),
            &ChecksumCapabilities::default(),
        );
        let mut tcp = TcpPacket::new_unchecked(&mut buf[20..]);
        tcp.set_header_len(20);
        tcp.set_src_port(80);
        tcp.set_dst_port(40000);
        20 + 20 + payload
    }

    fn frame(payload: usize, mss: Option<u16>) -> Vec<u8> {
        let mut framer = Framer::new([0x02, 0x42, 10, 0, 0, 1]);
        framer
            .neighbors
            .insert(Ipv4Addr::new(10, 0, 0, 2), [0x02, 0, 0, 0, 0, 9]);
        let mut meta = PacketMeta::default();
        meta.segmentation_offload_size = mss.and_then(NonZeroU16::new);
        let mut out = Vec::new();
        let mut sink = |f: &[u8]| out.extend_from_slice(f);
        framer.send(40 + payload, meta, &mut sink, |b| {
            tcp_packet(b, payload);
        });
        out
    }

    #[test]
    fn tcp_frames_carry_a_partial_checksum_for_the_kernel_to_finish() {
        let f = frame(100, None);
        assert_eq!(f[0], vnet::F_NEEDS_CSUM);
        assert_eq!(f[1], vnet::GSO_NONE);
        assert_eq!(
            u16::from_le_bytes([f[6], f[7]]),
            14 + 20,
            "csum_start at the TCP header"
        );
        assert_eq!(
            u16::from_le_bytes([f[8], f[9]]),
            16,
            "csum_offset of the TCP checksum"
        );
        let eth = EthernetFrame::new_checked(&f[vnet::LEN..]).unwrap();
        assert_eq!(
            eth.dst_addr().0,
            [0x02, 0, 0, 0, 0, 9],
            "bound MAC of the destination"
        );
        assert_eq!(eth.src_addr().0, [0x02, 0x42, 10, 0, 0, 1]);
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        let pseudo =
            checksum::pseudo_header_v4(&ip.src_addr(), &ip.dst_addr(), IpProtocol::Tcp, 120);
        assert_eq!(tcp.checksum(), pseudo);
    }

    #[test]
    fn segments_larger_than_the_mss_are_marked_gso() {
        let f = frame(30_000, Some(1448));
        assert_eq!(f[1], vnet::GSO_TCPV4);
        assert_eq!(u16::from_le_bytes([f[4], f[5]]), 1448, "gso_size = MSS");
        assert_eq!(u16::from_le_bytes([f[2], f[3]]), 14 + 20 + 20, "hdr_len");
        let small = frame(1000, Some(1448));
        assert_eq!(small[1], vnet::GSO_NONE, "one segment needs no GSO");
    }

    #[test]
    fn non_tcp_packets_get_no_offload_hints() {
        let mut framer = Framer::new([2, 0x42, 10, 0, 0, 1]);
        let mut out = Vec::new();
        let mut sink = |f: &[u8]| out.extend_from_slice(f);
        framer.send(28, PacketMeta::default(), &mut sink, |b| {
            let ip = Ipv4Repr {
                src_addr: Ipv4Addr::new(10, 0, 0, 1),
                dst_addr: Ipv4Addr::new(10, 0, 0, 7),
                next_header: IpProtocol::Udp,
                payload_len: 8,
                hop_limit: 64,
            };
            ip.emit(
                &mut Ipv4Packet::new_unchecked(b),
                &ChecksumCapabilities::default(),
            );
        });
        assert_eq!(&out[..vnet::LEN], &[0u8; vnet::LEN]);
        let eth = EthernetFrame::new_checked(&out[vnet::LEN..]).unwrap();
        assert_eq!(
            eth.dst_addr().0,
            [2, 0x42, 10, 0, 0, 7],
            "derived MAC when unbound"
        );
    }

    #[test]
    fn ipv6_tcp_frames_get_the_v6_pseudo_header_and_gso_and_need_a_bound_mac() {
        use smoltcp::wire::Ipv6Repr;
        let c: Ipv6Addr = "fd00::2".parse().unwrap();
        let far: Ipv6Addr = "2001:db8::9".parse().unwrap();
        let mut framer = Framer::new([0x02, 0x42, 10, 0, 0, 1]);
        let build = |framer: &mut Framer, payload: usize| {
            let mut meta = PacketMeta::default();
            meta.segmentation_offload_size = NonZeroU16::new(1440);
            let mut out = Vec::new();
            let mut sink = |f: &[u8]| out.extend_from_slice(f);
            framer.send(60 + payload, meta, &mut sink, |b| {
                Ipv6Repr {
                    src_addr: far,
                    dst_addr: c,
                    next_header: IpProtocol::Tcp,
                    payload_len: 20 + payload,
                    hop_limit: 64,
                }
                .emit(&mut Ipv6Packet::new_unchecked(&mut *b));
                let mut tcp = TcpPacket::new_unchecked(&mut b[40..]);
                tcp.set_header_len(20);
            });
            out
        };
        assert!(
            build(&mut framer, 100).is_empty(),
            "no MAC bound: nothing sent"
        );
        framer.set_neighbor(c.into(), [0x02, 0, 0, 0, 0, 9]);
        let f = build(&mut framer, 30_000);
        assert_eq!((f[0], f[1]), (vnet::F_NEEDS_CSUM, GSO_TCPV6));
        assert_eq!(u16::from_le_bytes([f[4], f[5]]), 1440, "gso_size = MSS");
        assert_eq!(u16::from_le_bytes([f[6], f[7]]), 14 + 40, "csum_start");
        let eth = EthernetFrame::new_checked(&f[vnet::LEN..]).unwrap();
        assert_eq!(eth.ethertype(), EthernetProtocol::Ipv6);
        assert_eq!(eth.dst_addr().0, [0x02, 0, 0, 0, 0, 9]);
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        let pseudo = checksum::pseudo_header_v6(&far, &c, IpProtocol::Tcp, 30_020);
        assert_eq!(tcp.checksum(), pseudo);
        framer.forget_neighbor(c.into());
        assert!(build(&mut framer, 100).is_empty(), "forgotten");
    }
}
