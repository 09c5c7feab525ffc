//! The tables users read off a running network: the switch's learned MACs
//! (`GET /networks/{name}/macs`) and the NAT's live flows (`GET /networks/{name}/flows`).
//!
//! Both are read in the network's data path thread on request (one command on its channel,
//! like the counters of `network inspect`), never kept up to date for us. The daemon is locked
//! only to post the request and copy the endpoint names; the answer is awaited after the
//! lock is released, so a large table never holds up other requests.

use std::collections::HashMap;

use switch::{GATEWAY, PortId};
use tokio::sync::oneshot;

use crate::api::types::{FLOWS_LIMIT, FlowRow, FlowTable, MacRow};
use crate::datapath::MacEntry;
use crate::error::Error;

use super::Shared;

/// The MAC table of `network`, sorted by endpoint then MAC.
///
/// # Errors
/// Unknown network; data path gone.
pub async fn macs(daemon: &Shared, network: &str) -> Result<Vec<MacRow>, Error> {
    let (rx, names) = {
        let d = daemon.lock().await;
        let live = d.live_network(network)?;
        let names: HashMap<PortId, String> = live
            .ports
            .iter()
            .filter_map(|(id, port)| {
                let ep = d.state.networks.get(network)?.endpoints.get(id)?;
                Some((*port, ep.name.clone()))
            })
            .collect();
        (live.datapath.request_macs()?, names)
    };
    let entries = answer(rx, network).await?;
    let mut rows: Vec<MacRow> = entries.iter().map(|e| mac_row(e, &names)).collect();
    rows.sort_by(|a, b| (&a.endpoint, &a.mac_address).cmp(&(&b.endpoint, &b.mac_address)));
    Ok(rows)
}

/// Up to [`FLOWS_LIMIT`] live NAT flows of `network`, sorted by protocol and addresses.
///
/// # Errors
/// Unknown network; data path gone.
pub async fn flows(daemon: &Shared, network: &str) -> Result<FlowTable, Error> {
    let rx = daemon
        .lock()
        .await
        .live_network(network)?
        .datapath
        .request_flows(FLOWS_LIMIT)?;
    let (flows, complete) = answer(rx, network).await?;
    let mut flows: Vec<FlowRow> = flows
        .iter()
        .map(|f| FlowRow {
            protocol: f.protocol,
            container: f.container,
            remote: f.remote,
            state: f.state.to_string(),
            age: f.age.as_secs(),
            bytes_to_remote: f.to_remote,
            bytes_to_container: f.to_container,
        })
        .collect();
    flows.sort_by_key(|f| (f.protocol, f.container, f.remote));
    Ok(FlowTable {
        flows,
        truncated: !complete,
    })
}

/// The data path's answer, or why there is none.
async fn answer<T>(rx: oneshot::Receiver<T>, network: &str) -> Result<T, Error> {
    rx.await.map_err(|_| Error::Datapath(network.to_string()))
}

fn mac_row(e: &MacEntry, names: &HashMap<PortId, String>) -> MacRow {
    let endpoint = match names.get(&e.port) {
        Some(name) => name.clone(),
        None if e.port == GATEWAY => crate::metrics::GATEWAY_ENDPOINT.to_string(),
        None if e.uplink => "uplink".to_string(),
        None => "-".to_string(),
    };
    MacRow {
        mac_address: ipam::MacAddr::from(e.mac).to_string(),
        endpoint,
        port: e.port.0,
        static_entry: e.age.is_none(),
        age: e.age,
    }
}

impl super::Daemon {
    /// The live side of a known network.
    pub(super) fn live_network(&self, network: &str) -> Result<&super::Live, Error> {
        self.network(network)?;
        self.live
            .get(network)
            .ok_or_else(|| Error::Datapath(network.to_string()))
    }
}
