//! The name store behind every gateway's DNS, kept incrementally: each network has one
//! shared [`Zone`] holding the names and aliases of its attached endpoints, edited in place
//! when one is attached, re-attached or detached; and each network's data path is told,
//! per querier, which zones that container sees. An attach or detach therefore costs
//! O(networks of that container), not O(endpoints).
//!
//! Scoping follows Docker: a container resolves the names (and aliases) of every endpoint on
//! every network it is attached to, each to its address on that shared network; nothing
//! else. A container is recognised across networks by its namespace identity; only
//! endpoints whose TAP is open (not lost) count.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, PoisonError, RwLock};

use nat::{DnsView, Zone};

use super::Daemon;
use crate::state::EndpointState;

/// One network's names, shared with the data paths that resolve them.
pub(super) type SharedZone = Arc<RwLock<Zone>>;

/// Network name → the container's endpoint there, for every network a container (by
/// namespace) is attached to.
pub(super) type Memberships = BTreeMap<String, Member>;

/// A container's attached endpoint on one network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Member {
    /// Its address there.
    pub ip: Ipv4Addr,
    /// Its IPv6 address there, on a dual-stack network.
    pub ip6: Option<Ipv6Addr>,
    /// Its name there.
    pub name: String,
}

impl Daemon {
    /// An endpoint of `network` became attached (its TAP is plugged and it is in the
    /// state): its names join the network's zone, and every network of its container learns
    /// that the container now also sees this network's names.
    pub(super) fn names_attached(&mut self, network: &str, ep: &EndpointState) {
        let Some(zone) = self.live.get(network).map(|l| l.zone.clone()) else {
            return;
        };
        {
            let mut z = zone.write().unwrap_or_else(PoisonError::into_inner);
            for ip in addresses(ep) {
                z.add(&ep.name, ip);
                for alias in &ep.aliases {
                    z.add(alias, ip);
                }
            }
        }
        self.dns_members.entry(ep.ns_id).or_default().insert(
            network.to_string(),
            Member {
                ip: ep.ip,
                ip6: ep.ip6,
                name: ep.name.clone(),
            },
        );
        self.tell_queriers(ep.ns_id);
    }

    /// An attached endpoint of `network` stops being attached (detached, or its attach
    /// undone): its names leave the zone and its container no longer sees the network.
    /// Nothing happens when it was not attached.
    pub(super) fn names_detached(&mut self, network: &str, ep: &EndpointState) {
        let Some(members) = self.dns_members.get_mut(&ep.ns_id) else {
            return;
        };
        if members.get(network).map(|m| m.ip) != Some(ep.ip) {
            return;
        }
        members.remove(network);
        if members.is_empty() {
            self.dns_members.remove(&ep.ns_id);
        }
        if let Some(live) = self.live.get(network) {
            {
                let mut z = live.zone.write().unwrap_or_else(PoisonError::into_inner);
                for ip in addresses(ep) {
                    z.remove(&ep.name, ip);
                    for alias in &ep.aliases {
                        z.remove(alias, ip);
                    }
                }
            }
            for ip in addresses(ep) {
                send(network, live, DnsView::Forget(ip));
            }
        }
        self.tell_queriers(ep.ns_id);
    }

    /// Tells the data path of every network the container `ns` is on which zones it sees.
    fn tell_queriers(&self, ns: netns_helper::NsId) {
        let Some(members) = self.dns_members.get(&ns) else {
            return;
        };
        let zones: Arc<[SharedZone]> = members
            .keys()
            .filter_map(|n| self.live.get(n).map(|l| l.zone.clone()))
            .collect();
        for (network, member) in members {
            if let Some(live) = self.live.get(network) {
                let ips = std::iter::once(IpAddr::V4(member.ip)).chain(member.ip6.map(IpAddr::V6));
                for ip in ips {
                    let view = DnsView::Querier {
                        ip,
                        zones: zones.clone(),
                    };
                    send(network, live, view);
                }
            }
        }
    }
}

/// An endpoint's addresses: IPv4, then IPv6 on a dual-stack network.
fn addresses(ep: &EndpointState) -> impl Iterator<Item = IpAddr> {
    std::iter::once(IpAddr::V4(ep.ip)).chain(ep.ip6.map(IpAddr::V6))
}

fn send(network: &str, live: &super::Live, change: DnsView) {
    if let Err(e) = live.datapath.set_dns(change) {
        tracing::warn!(network, "DNS names not updated: {e}");
    }
}
