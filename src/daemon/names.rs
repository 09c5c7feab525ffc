//! The name store behind every gateway's DNS: recomputed from the endpoints whenever one is
//! attached, re-attached or detached, and pushed to each network's data path.
//!
//! Scoping follows Docker: a container resolves the names (and aliases) of every endpoint on
//! every network it is attached to, each to its address on that shared network; nothing
//! else. Containers attached to the same set of networks share one zone.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use nat::{DnsView, Zone};
use netns_helper::NsId;

use super::Daemon;

impl Daemon {
    /// Recomputes every network's DNS view and hands it to its data path.
    pub(super) fn publish_names(&self) {
        // Which networks each attached container (by namespace) is on.
        let mut networks_of: HashMap<NsId, BTreeSet<&str>> = HashMap::new();
        for (name, net) in &self.state.networks {
            let Some(live) = self.live.get(name) else {
                continue;
            };
            for ep in net
                .endpoints
                .values()
                .filter(|e| live.ports.contains_key(&e.id))
            {
                networks_of
                    .entry(ep.ns_id)
                    .or_default()
                    .insert(name.as_str());
            }
        }
        let mut zones: HashMap<&BTreeSet<&str>, Arc<Zone>> = HashMap::new();
        for set in networks_of.values() {
            zones.entry(set).or_insert_with(|| Arc::new(self.zone(set)));
        }
        for (name, net) in &self.state.networks {
            let Some(live) = self.live.get(name) else {
                continue;
            };
            let mut view = DnsView::default();
            for ep in net
                .endpoints
                .values()
                .filter(|e| live.ports.contains_key(&e.id))
            {
                if let Some(zone) = networks_of.get(&ep.ns_id).and_then(|s| zones.get(s)) {
                    view.zones.insert(ep.ip, zone.clone());
                }
            }
            if let Err(e) = live.datapath.set_dns(view) {
                tracing::warn!(network = name, "DNS names not updated: {e}");
            }
        }
    }

    /// Every name and alias of the attached endpoints on `networks`.
    fn zone(&self, networks: &BTreeSet<&str>) -> Zone {
        let mut zone = Zone::new();
        for name in networks {
            let (Some(net), Some(live)) = (self.state.networks.get(*name), self.live.get(*name))
            else {
                continue;
            };
            for ep in net
                .endpoints
                .values()
                .filter(|e| live.ports.contains_key(&e.id))
            {
                zone.add(&ep.name, ep.ip);
                for alias in &ep.aliases {
                    zone.add(alias, ep.ip);
                }
            }
        }
        zone
    }
}
