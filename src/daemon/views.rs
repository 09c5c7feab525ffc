//! How endpoints and counters look in `network inspect` (the JSON contract's view types).

use std::collections::BTreeMap;

use crate::api::types::{
    DatapathHealth, EndpointInspect, FlowCounts, NatStatsView, PortCountersView,
};
use crate::datapath::HealthReport;
use crate::state::EndpointState;

/// The inspect entry of one endpoint.
pub(super) fn endpoint_view(
    ep: &EndpointState,
    (prefix_len, prefix6): (u8, u8),
    status: String,
    counters: PortCountersView,
) -> EndpointInspect {
    EndpointInspect {
        name: ep.name.clone(),
        endpoint_id: ep.id.clone(),
        mac_address: ep.mac.to_string(),
        ipv4_address: format!("{}/{prefix_len}", ep.ip),
        ipv6_address: ep
            .ip6
            .map(|ip6| format!("{ip6}/{prefix6}"))
            .unwrap_or_default(),
        netns: ep.netns.display().to_string(),
        interface: ep.ifname.clone(),
        status,
        counters,
        ports: ep.ports.clone(),
        aliases: ep.aliases.clone(),
    }
}

/// The NAT's stats as users see them.
pub(super) fn nat_view(s: &nat::NatStats) -> NatStatsView {
    NatStatsView {
        flows: FlowCounts {
            tcp: s.tcp_flows,
            udp: s.udp_flows,
            icmp: s.icmp_flows,
        },
        max_flows: s.max_flows,
        buffer_bytes: s.buffer_bytes,
        buffer_limit: s.buffer_limit,
        counters: s.counters.clone(),
    }
}

/// A data path's health as users see it.
pub(super) fn health_view(h: &HealthReport) -> DatapathHealth {
    DatapathHealth {
        healthy: h.healthy(),
        running: h.running,
        panics: h.panics,
        last_panic: h.last_panic.clone(),
    }
}

impl super::Daemon {
    /// What a metrics scrape needs of every served network; snapshot requests are posted
    /// here and answered after the daemon's lock is released (see [`crate::metrics`]).
    pub fn scrape_inputs(&self) -> Vec<crate::metrics::NetworkInput> {
        self.live
            .iter()
            .map(|(name, live)| {
                let names = self.state.networks.get(name);
                crate::metrics::NetworkInput {
                    name: name.clone(),
                    endpoints: live
                        .ports
                        .iter()
                        .filter_map(|(id, port)| {
                            let ep = names?.endpoints.get(id)?;
                            Some((port.0, ep.name.clone()))
                        })
                        .collect(),
                    endpoint_count: names.map_or(0, |n| n.endpoints.len()),
                    health: live.datapath.health(),
                    snapshot: live.datapath.request_snapshot().ok(),
                }
            })
            .collect()
    }

    /// The control plane's attach latency and failures.
    pub fn attach_metrics(&self) -> &crate::metrics::AttachMetrics {
        &self.attach_metrics
    }

    /// The data path health of every served network, by name.
    pub fn datapath_health(&self) -> BTreeMap<String, DatapathHealth> {
        self.live
            .iter()
            .map(|(name, live)| (name.clone(), health_view(&live.datapath.health())))
            .collect()
    }
}
