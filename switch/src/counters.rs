//! Per-port statistics.

/// Why [`Network::forward`](crate::Network::forward) dropped a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// Shorter than an Ethernet header, or a truncated ARP body / IPv4 / IPv6 header.
    Runt,
    /// Ethernet source (or ARP sender hardware address, or an IPv6 Neighbor Discovery
    /// link-layer address option) is not the container's MAC.
    SpoofedMac,
    /// ARP sender or IPv4 source address is not the container's IPv4 address; or the IPv6
    /// source is not one of its IPv6 addresses, or a Neighbor Advertisement / DAD probe
    /// claims an address it does not own (ports with an IPv6 lease).
    SpoofedIp,
    /// An 802.1Q / 802.1ad tagged frame from a container.
    VlanTagged,
    /// Container-to-container unicast while icc is disabled.
    Isolation,
    /// The destination MAC lives on the ingress port itself.
    Hairpin,
    /// An IPv6 Router Advertisement or Redirect from a container (RA guard).
    RaGuard,
    /// An IPv6 packet from a container whose header chain cannot be followed to its upper
    /// layer within the frame (or that is not IPv6 at all); or a malformed or fragmented
    /// Neighbor Discovery message (ports with an IPv6 lease).
    Malformed,
    /// The ingress port is not attached to the network (not counted on any port).
    UnknownPort,
}

impl DropReason {
    /// Number of drop reasons; the length of [`PortCounters::drops`].
    pub const COUNT: usize = DropReason::UnknownPort as usize + 1;

    /// Every drop reason, in `repr` order (`ALL[r as usize] == r`).
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Runt,
        DropReason::SpoofedMac,
        DropReason::SpoofedIp,
        DropReason::VlanTagged,
        DropReason::Isolation,
        DropReason::Hairpin,
        DropReason::RaGuard,
        DropReason::Malformed,
        DropReason::UnknownPort,
    ];

    /// The snake_case name used in metrics and logs, e.g. `"spoofed_mac"`.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::SpoofedMac => "spoofed_mac",
            DropReason::SpoofedIp => "spoofed_ip",
            DropReason::VlanTagged => "vlan_tagged",
            DropReason::Isolation => "isolation",
            DropReason::Hairpin => "hairpin",
            DropReason::RaGuard => "ra_guard",
            DropReason::Malformed => "malformed",
            DropReason::UnknownPort => "unknown_port",
        }
    }
}

/// Traffic statistics of one port; rx and drops are counted by the switch, tx by the caller.
///
/// With the `serde` feature this is also the API's JSON shape: `RxFrames`, `RxBytes`,
/// `TxFrames`, `TxBytes`, `TxErrors`, and `Drops`, a map from [`DropReason::name`] to count
/// holding only the reasons that occurred.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "PascalCase")
)]
pub struct PortCounters {
    /// Frames received on the port (including dropped ones).
    pub rx_frames: u64,
    /// Bytes received on the port (including dropped frames).
    pub rx_bytes: u64,
    /// Frames successfully written to the port.
    pub tx_frames: u64,
    /// Bytes successfully written to the port.
    pub tx_bytes: u64,
    /// Frames that could not be written to the port.
    pub tx_errors: u64,
    /// Received frames dropped, indexed by `DropReason as usize`.
    #[cfg_attr(feature = "serde", serde(default, with = "drops_by_name"))]
    pub drops: [u64; DropReason::COUNT],
}

/// `drops` as `{"spoofed_mac": 3, ...}`: non-zero reasons only, by name.
#[cfg(feature = "serde")]
mod drops_by_name {
    use std::collections::BTreeMap;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::DropReason;

    pub(super) fn serialize<S: Serializer>(
        drops: &[u64; DropReason::COUNT],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(
            DropReason::ALL
                .iter()
                .zip(drops)
                .filter(|(_, n)| **n > 0)
                .map(|(r, n)| (r.name(), *n)),
        )
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<[u64; DropReason::COUNT], D::Error> {
        let named = BTreeMap::<String, u64>::deserialize(d)?;
        let mut drops = [0; DropReason::COUNT];
        for (name, n) in named {
            let reason = DropReason::ALL
                .iter()
                .find(|r| r.name() == name)
                .ok_or_else(|| D::Error::custom(format!("unknown drop reason {name:?}")))?;
            if let Some(slot) = drops.get_mut(*reason as usize) {
                *slot = n;
            }
        }
        Ok(drops)
    }
}

impl PortCounters {
    /// Frames received on this port and dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// Frames received on this port and dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Counts one received frame of `bytes` bytes.
    #[inline]
    pub(crate) fn count_rx(&mut self, bytes: usize) {
        self.rx_frames += 1;
        self.rx_bytes += bytes as u64;
    }

    /// Counts one transmit attempt.
    #[inline]
    pub(crate) fn count_tx(&mut self, bytes: usize, ok: bool) {
        if ok {
            self.tx_frames += 1;
            self.tx_bytes += bytes as u64;
        } else {
            self.tx_errors += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_repr_order_and_names_are_unique() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        assert_eq!(DropReason::SpoofedMac.name(), "spoofed_mac");
    }

    #[cfg(feature = "serde")]
    #[test]
    fn json_names_fields_in_pascal_case_and_only_nonzero_drops_by_name() {
        let mut c = PortCounters {
            rx_frames: 3,
            rx_bytes: 180,
            tx_frames: 1,
            tx_bytes: 60,
            tx_errors: 2,
            ..Default::default()
        };
        c.drops[DropReason::SpoofedMac as usize] = 2;
        c.drops[DropReason::RaGuard as usize] = 1;
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "RxFrames": 3, "RxBytes": 180, "TxFrames": 1, "TxBytes": 60, "TxErrors": 2,
                "Drops": {"spoofed_mac": 2, "ra_guard": 1}
            })
        );
        assert_eq!(serde_json::from_value::<PortCounters>(json).unwrap(), c);
        let bad = serde_json::json!({"RxFrames": 0, "RxBytes": 0, "TxFrames": 0, "TxBytes": 0,
            "TxErrors": 0, "Drops": {"cosmic_rays": 1}});
        let err = serde_json::from_value::<PortCounters>(bad).unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown drop reason \"cosmic_rays\""),
            "{err}"
        );
    }
}
