//! Networks: create (validate, pick subnets from the pools, persist, serve), remove, list
//! and the docker-shaped inspect with live counters.

use std::collections::BTreeMap;

use ipam::{AddressPool, AddressPool6, Ipv4Net, Subnet6Config, SubnetConfig};

use super::inputs::{self, check_mtu, random_id};
use super::views::{endpoint_view, health_view, nat_view};
use super::{Daemon, Taken};
use crate::api::checks::check_create;
use crate::api::types::{
    GatewayInspect, Ipam, IpamConfig, NetworkCreate, NetworkInspect, NetworkSummary,
};
use crate::datapath::Snapshot;
use crate::error::Error;
use crate::state::NetworkState;

impl Daemon {
    /// Creates a network (not yet in state) and starts serving it. Returns its id.
    ///
    /// # Errors
    /// Invalid name/CIDR/gateway/options, a name in use, an overlapping subnet.
    pub fn create_network(&mut self, req: NetworkCreate) -> Result<String, Error> {
        let plan = check_create(&req)?;
        if self.state.networks.contains_key(&req.name) {
            return Err(Error::Conflict(format!(
                "network name {} is already in use",
                req.name
            )));
        }
        let mtu = check_mtu(plan.mtu.unwrap_or(self.config.mtu))?;
        let existing: Vec<(String, Ipv4Net)> = self
            .state
            .networks
            .values()
            .map(|n| (n.name.clone(), n.pool.config().subnet))
            .collect();
        let subnets: Vec<Ipv4Net> = existing.iter().map(|(_, s)| *s).collect();
        let subnet = match plan.subnet {
            Some(subnet) => {
                if let Some((other, net)) =
                    existing.iter().find(|(_, n)| ipam::overlaps(n, &subnet))
                {
                    return Err(Error::Conflict(format!(
                        "subnet {subnet} overlaps subnet {net} of network {other}"
                    )));
                }
                subnet
            }
            None => ipam::next_free_subnet(&subnets)?,
        };
        let config = SubnetConfig::new(subnet, plan.gateway, plan.ip_range)?;
        let pool6 = match plan.ipv6 {
            None => None,
            Some((subnet6, gateway6)) => {
                let mtu_ok = mtu >= 1280;
                if !mtu_ok {
                    return Err(Error::Invalid(format!(
                        "MTU {mtu} is below 1280, the minimum for an IPv6 network"
                    )));
                }
                let existing6: Vec<(&str, ipam::Ipv6Net)> = self
                    .state
                    .networks
                    .values()
                    .filter_map(|n| Some((n.name.as_str(), n.pool6.as_ref()?.config().subnet)))
                    .collect();
                let subnet6 = match subnet6 {
                    Some(s6) => {
                        if let Some((other, net)) =
                            existing6.iter().find(|(_, n)| ipam::overlaps6(n, &s6))
                        {
                            return Err(Error::Conflict(format!(
                                "subnet {s6} overlaps subnet {net} of network {other}"
                            )));
                        }
                        s6
                    }
                    None => {
                        let used: Vec<ipam::Ipv6Net> = existing6.iter().map(|(_, s)| *s).collect();
                        ipam::next_free_ula(&used, inputs::random_bytes())?
                    }
                };
                Some(AddressPool6::new(Subnet6Config::new(subnet6, gateway6)?))
            }
        };
        let id = random_id();
        let net = NetworkState {
            name: req.name.clone(),
            id: id.clone(),
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            pool: AddressPool::new(config),
            pool6,
            internal: req.internal,
            icc: plan.icc,
            host_loopback: plan.host_loopback,
            mtu,
            endpoints: BTreeMap::new(),
            overlay: None,
        };
        self.add_network(net)?;
        tracing::info!(network = req.name, %subnet, "network created");
        Ok(id)
    }

    /// Adds a network (not yet in state), persists and serves it; undone on failure.
    pub(super) fn add_network(&mut self, net: NetworkState) -> Result<(), Error> {
        let name = net.name.clone();
        self.state.networks.insert(name.clone(), net);
        self.taken.insert(name.clone(), Taken::default());
        if let Err(e) = self.checkpoint().and_then(|()| self.serve(&name)) {
            self.state.networks.remove(&name);
            self.taken.remove(&name);
            self.live.remove(&name);
            let _ = self.checkpoint();
            return Err(e);
        }
        let mut event = crate::events::Event::new("network", "create", Some(&name))
            .attr("subnet", self.network(&name)?.pool.config().subnet);
        if let Some(p6) = self.network(&name)?.pool6.as_ref() {
            event = event.attr("subnet6", p6.config().subnet);
        }
        if let Some(o) = &self.network(&name)?.overlay {
            event = event.attr("driver", "overlay").attr("vni", o.vni);
        }
        self.events.send(event);
        Ok(())
    }

    /// Whether a network is an overlay network.
    ///
    /// # Errors
    /// Unknown network.
    pub fn is_overlay(&self, name: &str) -> Result<bool, Error> {
        Ok(self.network(name)?.overlay.is_some())
    }

    /// Removes a network without endpoints.
    ///
    /// # Errors
    /// Unknown network, or endpoints still attached.
    pub fn remove_network(&mut self, name: &str) -> Result<(), Error> {
        let net = self.network(name)?;
        if self.pending.values().any(|p| p.network == name) {
            return Err(Error::Conflict(format!(
                "network {name} has a container being connected; try again"
            )));
        }
        if !net.endpoints.is_empty() {
            let names: Vec<&str> = net.endpoints.values().map(|e| e.name.as_str()).collect();
            return Err(Error::Conflict(format!(
                "network {name} has active endpoints ({}); disconnect them first",
                names.join(", ")
            )));
        }
        let Some(removed) = self.state.networks.remove(name) else {
            return Err(Error::NotFound(format!("network {name} not found")));
        };
        if let Err(e) = self.checkpoint() {
            self.state.networks.insert(name.to_string(), removed);
            return Err(e);
        }
        self.live.remove(name);
        self.taken.remove(name);
        tracing::info!(network = name, "network removed");
        self.events
            .send(crate::events::Event::new("network", "remove", Some(name)));
        Ok(())
    }

    /// One summary per network, sorted by name.
    pub fn list(&self) -> Vec<NetworkSummary> {
        self.state
            .networks
            .values()
            .map(|n| NetworkSummary {
                id: n.id.clone(),
                name: n.name.clone(),
                driver: driver(n).into(),
                scope: scope(n).into(),
                subnet: match &n.pool6 {
                    Some(p6) => format!("{},{}", n.pool.config().subnet, p6.config().subnet),
                    None => n.pool.config().subnet.to_string(),
                },
                endpoints: n.endpoints.len(),
            })
            .collect()
    }

    /// The docker-shaped description of a network, with live counters.
    ///
    /// # Errors
    /// Unknown network.
    pub async fn inspect(&self, name: &str) -> Result<NetworkInspect, Error> {
        let net = self.network(name)?;
        let live = self.live.get(name);
        let snap = match live {
            Some(l) => l.datapath.snapshot().await?,
            None => Snapshot::default(),
        };
        let cfg = net.pool.config();
        let cfg6 = net.pool6.as_ref().map(AddressPool6::config);
        let prefix = cfg.subnet.prefix_len();
        let prefix6 = cfg6.map_or(0, |c| c.subnet.prefix_len());
        let containers = net
            .endpoints
            .values()
            .map(|ep| {
                let port = live.and_then(|l| l.ports.get(&ep.id));
                let status = match (port, live.and_then(|l| l.lost.get(&ep.id))) {
                    (Some(_), _) => "attached".to_string(),
                    (None, Some(why)) => format!("lost: {why}"),
                    (None, None) => "lost".to_string(),
                };
                let counters = port
                    .and_then(|p| snap.ports.get(&p.0))
                    .cloned()
                    .unwrap_or_default();
                (
                    ep.id.clone(),
                    endpoint_view(ep, (prefix, prefix6), status, counters),
                )
            })
            .collect();
        let mut options = BTreeMap::new();
        options.insert(
            "com.docker.network.bridge.enable_icc".to_string(),
            net.icc.to_string(),
        );
        options.insert(
            "com.docker.network.driver.mtu".to_string(),
            net.mtu.to_string(),
        );
        options.insert("host_loopback".to_string(), net.host_loopback.to_string());
        Ok(NetworkInspect {
            name: net.name.clone(),
            id: net.id.clone(),
            created: net.created.clone(),
            scope: scope(net).into(),
            driver: driver(net).into(),
            enable_ipv6: cfg6.is_some(),
            ipam: Ipam {
                driver: "default".into(),
                config: std::iter::once(IpamConfig {
                    subnet: cfg.subnet.to_string(),
                    gateway: cfg.gateway.to_string(),
                    ip_range: cfg.ip_range.map(|r| r.to_string()),
                })
                .chain(cfg6.map(|c| IpamConfig {
                    subnet: c.subnet.to_string(),
                    gateway: c.gateway.to_string(),
                    ip_range: None,
                }))
                .collect(),
            },
            internal: net.internal,
            attachable: true,
            containers,
            options,
            labels: BTreeMap::new(),
            gateway: GatewayInspect {
                ipv4_address: cfg.gateway.to_string(),
                ipv6_address: cfg6.map(|c| c.gateway.to_string()).unwrap_or_default(),
                mac_address: ipam::mac_from_ipv4(cfg.gateway).to_string(),
                replies: snap.gateway.clone(),
                counters: snap
                    .ports
                    .get(&switch::GATEWAY.0)
                    .cloned()
                    .unwrap_or_default(),
            },
            mac_table_entries: snap.mac_entries,
            nat: nat_view(&snap.nat),
            datapath: live
                .map(|l| health_view(&l.datapath.health()))
                .unwrap_or_default(),
            overlay: self.overlay_inspect(net),
        })
    }
}

/// `bridge` or `overlay`.
fn driver(n: &NetworkState) -> &'static str {
    if n.overlay.is_some() {
        "overlay"
    } else {
        "bridge"
    }
}

/// `local` or `global` (overlay).
fn scope(n: &NetworkState) -> &'static str {
    if n.overlay.is_some() {
        "global"
    } else {
        "local"
    }
}
