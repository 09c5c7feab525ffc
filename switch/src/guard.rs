//! Anti-spoofing for frames entering on a Container port: the frame must carry the port's
//! identity (its MAC, its IPv4 address, and with a leased IPv6 address its IPv6 addresses).
//!
//! ARP and IPv4 are read at fixed offsets on purpose: this runs for every frame from every
//! container, and only three fields matter. Every access destructures a `first_chunk` (bounds
//! checked once), so a short frame is a `Runt`, never a panic. IPv6 goes through the RA guard
//! ([`ra_guard::check`]), which walks the extension header chain with etherparse's views, and
//! when the port leases an IPv6 address through the source and Neighbor Discovery guard
//! ([`nd_guard::check`]). The Ethernet source itself is checked by the caller.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::{DropReason, Mac, nd_guard, ra_guard};

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Length of an Ethernet/IPv4 ARP body.
const ARP_LEN: usize = 28;
/// Length of an IPv4 header without options.
const IPV4_MIN_LEN: usize = 20;

/// Checks the Ethernet payload of a frame (its source MAC already verified) from a Container
/// port bound to `mac`, `ipv4` and optionally `ipv6`.
#[inline]
pub(crate) fn check_container(
    ethertype: u16,
    payload: &[u8],
    mac: &Mac,
    ipv4: Ipv4Addr,
    ipv6: &Option<Ipv6Addr>,
) -> Result<(), DropReason> {
    match ethertype {
        ETHERTYPE_VLAN | ETHERTYPE_QINQ => Err(DropReason::VlanTagged),
        ETHERTYPE_ARP => {
            // htype(2) ptype(2) hlen(1) plen(1) oper(2) sha(6) spa(4) tha(6) tpa(4)
            let arp = payload.first_chunk::<ARP_LEN>().ok_or(DropReason::Runt)?;
            let [
                _,
                _,
                _,
                _,
                _,
                _,
                _,
                _,
                h0,
                h1,
                h2,
                h3,
                h4,
                h5,
                p0,
                p1,
                p2,
                p3,
                ..,
            ] = *arp;
            if [h0, h1, h2, h3, h4, h5] != *mac {
                return Err(DropReason::SpoofedMac);
            }
            let spa = [p0, p1, p2, p3];
            if spa != ipv4.octets() && spa != [0u8; 4] {
                return Err(DropReason::SpoofedIp);
            }
            Ok(())
        }
        ETHERTYPE_IPV4 => {
            // Source address at offset 12 of the header.
            let ip = payload
                .first_chunk::<IPV4_MIN_LEN>()
                .ok_or(DropReason::Runt)?;
            let [_, _, _, _, _, _, _, _, _, _, _, _, s0, s1, s2, s3, ..] = *ip;
            if [s0, s1, s2, s3] != ipv4.octets() {
                return Err(DropReason::SpoofedIp);
            }
            Ok(())
        }
        ETHERTYPE_IPV6 => {
            let upper = ra_guard::check(payload)?;
            match ipv6 {
                Some(global) => nd_guard::check(&upper, mac, global),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    }
}
