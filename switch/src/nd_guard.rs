//! IPv6 source guard and Neighbor Discovery inspection, for Container ports that lease an
//! IPv6 address.
//!
//! A container owns two IPv6 addresses: the one it leased and the link-local address its
//! kernel derives from its MAC ([`MacAddr::link_local_ipv6`]). Any other source is
//! [`DropReason::SpoofedIp`], except the unspecified address `::` where the protocols need it
//! before an address exists: a Neighbor Solicitation for Duplicate Address Detection (RFC
//! 4862 §5.4) and MLD/MLDv2 reports (RFC 3590 §4), which the kernel sends while its
//! link-local address is still tentative.
//!
//! Neighbor Discovery is IPv6's ARP, so it gets ARP's rules (RFC 6105's "ND guard" in
//! spirit): a Neighbor Advertisement may only announce a target the port owns (else a
//! container could claim the gateway's address), a DAD probe may only probe an owned target,
//! and every Source/Target Link-Layer Address option in a Router Solicitation, Neighbor
//! Solicitation or Advertisement must carry the port's MAC ([`DropReason::SpoofedMac`]). An
//! ND message too short for its fixed part, with an option of length 0 or running past the
//! payload, or inside a fragment (RFC 6980 forbids fragmented ND) is [`DropReason::Malformed`].
//! Router Advertisements and Redirects never get here: the RA guard drops them first.
//!
//! Limits: hop limit, code and checksum are not checked (receivers discard such messages
//! anyway); NS from an owned address may ask for any target (that is address resolution).

use std::net::Ipv6Addr;

use crate::ra_guard::Upper;
use crate::{DropReason, Mac, MacAddr};

/// ICMPv6 Multicast Listener Report (MLDv1).
const MLD_REPORT: u8 = 131;
/// ICMPv6 Router Solicitation.
const ROUTER_SOLICITATION: u8 = 133;
/// ICMPv6 Neighbor Solicitation.
const NEIGHBOR_SOLICITATION: u8 = 135;
/// ICMPv6 Neighbor Advertisement.
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// ICMPv6 Version 2 Multicast Listener Report.
const MLDV2_REPORT: u8 = 143;
/// ND option: Source Link-Layer Address.
const OPT_SOURCE_LL: u8 = 1;
/// ND option: Target Link-Layer Address.
const OPT_TARGET_LL: u8 = 2;
/// Bytes before the options of a Router Solicitation (type, code, checksum, reserved).
const RS_FIXED: usize = 8;
/// Bytes before the options of a Neighbor Solicitation/Advertisement (… and the target).
const NS_FIXED: usize = 24;

/// Checks a walked IPv6 packet from a Container port bound to `mac` and leasing `global`.
#[inline]
pub(crate) fn check(upper: &Upper<'_>, mac: &Mac, global: &Ipv6Addr) -> Result<(), DropReason> {
    let link_local = MacAddr(*mac).link_local_ipv6().octets();
    let global = global.octets();
    let owns = |addr: &[u8; 16]| *addr == global || *addr == link_local;
    let icmp_type = upper.icmp.and_then(|m| m.first().copied());
    let unspecified = upper.src == [0; 16];
    // Before an address exists, only DAD probes and MLD reports may come from `::`.
    let may_be_unspecified = matches!(
        icmp_type,
        Some(NEIGHBOR_SOLICITATION | MLD_REPORT | MLDV2_REPORT)
    );
    if !(owns(&upper.src) || unspecified && may_be_unspecified) {
        return Err(DropReason::SpoofedIp);
    }
    let (Some(message), Some(ty)) = (upper.icmp, icmp_type) else {
        return Ok(());
    };
    let options = match ty {
        ROUTER_SOLICITATION => message.get(RS_FIXED..).ok_or(DropReason::Malformed)?,
        NEIGHBOR_SOLICITATION | NEIGHBOR_ADVERTISEMENT => {
            let (fixed, options) = message
                .split_first_chunk::<NS_FIXED>()
                .ok_or(DropReason::Malformed)?;
            let (_, target) = fixed
                .split_last_chunk::<16>()
                .ok_or(DropReason::Malformed)?;
            // An advertisement, or a DAD probe, is a claim on its target.
            if (ty == NEIGHBOR_ADVERTISEMENT || unspecified) && !owns(target) {
                return Err(DropReason::SpoofedIp);
            }
            options
        }
        _ => return Ok(()),
    };
    if upper.fragmented {
        return Err(DropReason::Malformed);
    }
    check_options(options, mac)
}

/// Walks ND options (type, length in units of 8 bytes, data); link-layer address options
/// must carry `mac`.
#[inline]
fn check_options(mut options: &[u8], mac: &Mac) -> Result<(), DropReason> {
    while let Some(&[ty, units]) = options.first_chunk::<2>() {
        let len = usize::from(units) * 8;
        if len == 0 {
            return Err(DropReason::Malformed);
        }
        let option = options.get(..len).ok_or(DropReason::Malformed)?;
        if matches!(ty, OPT_SOURCE_LL | OPT_TARGET_LL) {
            let addr = option
                .get(2..)
                .and_then(<[u8]>::first_chunk::<6>)
                .ok_or(DropReason::Malformed)?;
            if addr != mac {
                return Err(DropReason::SpoofedMac);
            }
        }
        options = options.get(len..).ok_or(DropReason::Malformed)?;
    }
    if options.is_empty() {
        Ok(())
    } else {
        Err(DropReason::Malformed)
    }
}
