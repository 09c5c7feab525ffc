//! Overlay networks (`--driver overlay`): networks shared by every host of a cluster, whose
//! definition, VNI, address leases and endpoints live in the cluster store (etcd; see the
//! `vswitch-cluster` crate and README "Cluster store").
//!
//! Each host serves an overlay network like a bridge network (its own switch, gateway, DNS
//! and NAT: the gateway is per host) and keeps only its local part in the state file (its
//! endpoints). What the store says about the others reaches the daemon as a complete
//! [`ClusterView`] after every change ([`follow`]), and [`Daemon::apply_view`] reconciles:
//! networks created or removed elsewhere, remote endpoints into the DNS zone and the data
//! path, cluster members into the VXLAN socket's filter.
//!
//! Store operations run without the daemon locked (they may take up to
//! [`cluster::OP_TIMEOUT`] when the store is down); the lock is taken before and after.
//! While the store is unreachable the last view stays in force: traffic between existing
//! containers goes on, and what needs the store (create, rm, connect, disconnect on an
//! overlay network) fails with one line naming the store.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::PoisonError;

use cluster::{ClusterView, EndpointRecord, NetworkRecord, Store};
use ipam::{AddressPool, SubnetConfig};

use super::inputs::random_id;
use super::{Daemon, Shared};
use crate::api::checks::check_create;
use crate::api::types::{
    Connect, EndpointInspect, NetworkCreate, OverlayInspect, PeerInspect, RemoteEndpointInspect,
};
use crate::error::Error;
use crate::state::{NetworkState, OverlayState};

/// The VXLAN UDP port (IANA's), the default of `--cluster-advertise`.
pub const VXLAN_PORT: u16 = crate::overlay::wire::DEFAULT_PORT;

/// VXLAN over IPv4 costs 50 bytes: outer IPv4 20, UDP 8, VXLAN 8, inner Ethernet 14.
pub const VXLAN_OVERHEAD: u32 = crate::overlay::wire::OVERHEAD;

/// This host's membership in a cluster.
pub struct Cluster {
    /// The store client.
    pub store: Store,
    /// This host's id (persisted in the state directory).
    pub host_id: String,
    /// The `--cluster-advertise` address.
    pub advertise: IpAddr,
    /// MTU of the interface holding the advertise address.
    pub underlay_mtu: u32,
    /// The host's VXLAN socket, shared by its overlay networks.
    pub vxlan: crate::overlay::Vxlan,
    /// The last view applied.
    view: ClusterView,
    /// Network → the remote endpoints applied to its zone and data path.
    remote: HashMap<String, BTreeMap<String, EndpointRecord>>,
}

impl Cluster {
    /// A membership not yet applied to anything.
    pub fn new(
        store: Store,
        advertise: IpAddr,
        underlay_mtu: u32,
        vxlan: crate::overlay::Vxlan,
    ) -> Self {
        Cluster {
            host_id: store.host_id().to_string(),
            store,
            advertise,
            underlay_mtu,
            vxlan,
            view: ClusterView::default(),
            remote: HashMap::new(),
        }
    }

    /// MTU of overlay networks on this host.
    pub fn overlay_mtu(&self) -> u32 {
        self.underlay_mtu.saturating_sub(VXLAN_OVERHEAD).max(68)
    }
}

impl From<cluster::Error> for Error {
    fn from(e: cluster::Error) -> Self {
        match e {
            cluster::Error::Conflict(m) => Error::Conflict(m),
            cluster::Error::NotFound(m) => Error::NotFound(m),
            cluster::Error::Invalid(m) => Error::Invalid(m),
            e @ cluster::Error::Unreachable { .. } => Error::Unavailable(e.to_string()),
        }
    }
}

fn no_cluster() -> Error {
    Error::Invalid(
        "--driver overlay needs a cluster: start vswitchd with --cluster-store etcd://HOST:PORT \
         and --cluster-advertise IP"
            .into(),
    )
}

/// `network create --driver overlay`: validated here, created in the store (which allocates
/// the VNI), then served on this host at once; the other hosts follow through their watch.
///
/// # Errors
/// No cluster, invalid input, a name or subnet in use, the store unreachable.
pub async fn create(d: &Shared, req: NetworkCreate) -> Result<String, Error> {
    let (store, name, rec) = {
        let daemon = d.lock().await;
        let cluster = daemon.cluster.as_ref().ok_or_else(no_cluster)?;
        let plan = check_create(&req)?;
        if plan.ipv6.is_some() {
            return Err(Error::Invalid(
                "--ipv6: overlay networks are IPv4 only for now".into(),
            ));
        }
        if plan.mtu.is_some() {
            return Err(Error::Invalid(format!(
                "--mtu: the MTU of an overlay network is the underlay's minus {VXLAN_OVERHEAD} \
                 ({} here)",
                cluster.overlay_mtu()
            )));
        }
        if plan.host_loopback {
            return Err(Error::Invalid(
                "--opt host_loopback: not available on overlay networks".into(),
            ));
        }
        let Some(subnet) = plan.subnet else {
            return Err(Error::Invalid(
                "--driver overlay needs --subnet CIDR (the same subnet on every host)".into(),
            ));
        };
        if daemon.state.networks.contains_key(&req.name) {
            return Err(Error::Conflict(format!(
                "network name {} is already in use",
                req.name
            )));
        }
        daemon.check_local_overlap(&req.name, subnet)?;
        let config = SubnetConfig::new(subnet, plan.gateway, plan.ip_range)?;
        let rec = NetworkRecord {
            id: random_id(),
            subnet,
            gateway: config.gateway,
            ip_range: config.ip_range,
            vni: 0,
            internal: req.internal,
            icc: plan.icc,
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        };
        (cluster.store.clone(), req.name.clone(), rec)
    };
    let rec = store.create_network(&name, rec).await?;
    tracing::info!(network = name, subnet = %rec.subnet, vni = rec.vni, "overlay network created in the cluster");
    let mut daemon = d.lock().await;
    if !daemon.state.networks.contains_key(&name) {
        daemon.adopt(&name, &rec).await?;
    }
    Ok(rec.id)
}

/// `network rm` of an overlay network: refused while any host has an endpoint on it;
/// removed from the store, then here; the other hosts follow.
///
/// # Errors
/// Unknown network, endpoints anywhere, the store unreachable.
pub async fn remove(d: &Shared, name: &str) -> Result<(), Error> {
    let store = {
        let daemon = d.lock().await;
        let net = daemon.network(name)?;
        if !net.endpoints.is_empty() || daemon.pending.values().any(|p| p.network == name) {
            // The local refusal names the local containers.
            drop(daemon);
            return d.lock().await.remove_network(name);
        }
        daemon
            .cluster
            .as_ref()
            .map(|c| c.store.clone())
            .ok_or_else(no_cluster)?
    };
    store.remove_network(name).await?;
    let mut daemon = d.lock().await;
    if daemon.state.networks.contains_key(name) {
        daemon.remove_network(name)?;
    }
    if let Some(c) = daemon.cluster.as_mut() {
        c.remote.remove(name);
    }
    Ok(())
}

/// Is `network` an overlay network here? Then its store handle and record, for an attach.
async fn overlay_of(d: &Shared, network: &str) -> Result<Option<(Store, NetworkRecord)>, Error> {
    let daemon = d.lock().await;
    let net = daemon.network(network)?;
    if net.overlay.is_none() {
        return Ok(None);
    }
    let cluster = daemon.cluster.as_ref().ok_or_else(|| {
        Error::Unavailable(format!(
            "network {network} is an overlay network and this daemon runs without --cluster-store"
        ))
    })?;
    let cfg = net.pool.config();
    let rec = NetworkRecord {
        id: net.id.clone(),
        subnet: cfg.subnet,
        gateway: cfg.gateway,
        ip_range: cfg.ip_range,
        vni: net.overlay.as_ref().map_or(0, |o| o.vni),
        internal: net.internal,
        icc: net.icc,
        created: net.created.clone(),
    };
    Ok(Some((cluster.store.clone(), rec)))
}

/// `network connect` on any network: on an overlay network the address comes from the
/// cluster store first (one transaction), and the endpoint is published there once
/// attached; every failure gives the address back.
///
/// # Errors
/// As [`super::endpoints::connect`], plus the store's refusals (unreachable, address in use).
pub async fn connect(
    d: &Shared,
    network: &str,
    mut req: Connect,
) -> Result<EndpointInspect, Error> {
    let Some((store, rec)) = overlay_of(d, network).await? else {
        return super::endpoints::connect(d, network, req, None).await;
    };
    if let Some(ip6) = req.ip6 {
        return Err(Error::Invalid(format!(
            "--ip6 {ip6}: overlay network {network} is IPv4 only"
        )));
    }
    let id = random_id();
    let ip = store.allocate(network, &rec, &id, req.ip).await?;
    req.ip = Some(ip);
    let aliases = req.aliases.clone();
    let view = match super::endpoints::connect(d, network, req, Some(id.clone())).await {
        Ok(v) => v,
        Err(e) => {
            if let Err(e) = store.release(network, ip).await {
                tracing::warn!(network, %ip, "address not freed in the store: {e}");
            }
            return Err(e);
        }
    };
    let record = EndpointRecord {
        host: store.host_id().to_string(),
        name: view.name.clone(),
        aliases,
        mac: view.mac_address.clone(),
        ipv4: ip,
    };
    if let Err(e) = store.publish(network, &id, &record).await {
        let _ = super::endpoints::disconnect(d, network, &id).await;
        let _ = store.unpublish(network, &id).await;
        let _ = store.release(network, ip).await;
        return Err(e.into());
    }
    Ok(view)
}

/// `network disconnect` on any network: on an overlay network the endpoint is withdrawn
/// from the store first (so a store outage refuses the disconnect rather than leaving a
/// ghost on the other hosts), then detached here, then its address freed in the store.
///
/// # Errors
/// As [`super::endpoints::disconnect`], plus an unreachable store.
pub async fn disconnect(d: &Shared, network: &str, container: &str) -> Result<(), Error> {
    let found = {
        let daemon = d.lock().await;
        match (daemon.network(network), daemon.cluster.as_ref()) {
            (Ok(net), Some(c)) if net.overlay.is_some() => daemon
                .endpoint(network, container)
                .ok()
                .map(|ep| (c.store.clone(), ep.id.clone(), ep.ip)),
            _ => None,
        }
    };
    let Some((store, id, ip)) = found else {
        return super::endpoints::disconnect(d, network, container).await;
    };
    store.unpublish(network, &id).await?;
    super::endpoints::disconnect(d, network, &id).await?;
    if let Err(e) = store.release(network, ip).await {
        tracing::warn!(network, %ip, "address not freed in the store (it is when this host's lease ends): {e}");
    }
    Ok(())
}

/// Applies every view the store watch delivers, for as long as the daemon runs.
pub async fn follow(d: Shared, mut views: tokio::sync::watch::Receiver<Option<ClusterView>>) {
    loop {
        let view = views.borrow_and_update().clone();
        if let Some(view) = view {
            d.lock().await.apply_view(view).await;
        }
        if views.changed().await.is_err() {
            return;
        }
    }
}

impl Daemon {
    /// The names of the overlay networks served here.
    fn overlay_names(&self) -> Vec<String> {
        self.state
            .networks
            .values()
            .filter(|n| n.overlay.is_some())
            .map(|n| n.name.clone())
            .collect()
    }

    /// Joins a cluster: overlay endpoints already in the state (a restart) are handed to the
    /// store to publish as soon as this host holds a lease.
    pub async fn set_cluster(&mut self, cluster: Cluster) {
        for (name, net) in &self.state.networks {
            if net.overlay.is_none() {
                continue;
            }
            // Only endpoints whose container is still there (re-attached at start).
            let live = self.live.get(name);
            for ep in net
                .endpoints
                .values()
                .filter(|e| live.is_some_and(|l| l.ports.contains_key(&e.id)))
            {
                let rec = EndpointRecord {
                    host: cluster.host_id.clone(),
                    name: ep.name.clone(),
                    aliases: ep.aliases.clone(),
                    mac: ep.mac.to_string(),
                    ipv4: ep.ip,
                };
                cluster.store.remember_endpoint(name, &ep.id, &rec).await;
            }
        }
        self.cluster = Some(cluster);
        let overlays = self.overlay_names();
        for name in overlays {
            self.overlay_datapath(&name).await;
        }
    }

    /// Makes a served overlay network's data path an overlay one (its VNI on the host's
    /// VXLAN socket).
    async fn overlay_datapath(&mut self, name: &str) {
        let Some(c) = self.cluster.as_ref() else {
            return;
        };
        let Some(vni) = self
            .state
            .networks
            .get(name)
            .and_then(|n| n.overlay.as_ref())
            .map(|o| o.vni)
        else {
            return;
        };
        let Some(live) = self.live.get(name) else {
            return;
        };
        let done = match c.vxlan.overlay_config(vni, c.underlay_mtu) {
            Ok(cfg) => live.datapath.set_overlay(cfg).await,
            Err(e) => Err(Error::Datapath(format!("{name}: VXLAN port: {e}"))),
        };
        if let Err(e) = done {
            tracing::warn!(network = name, vni, "overlay data path not set up: {e}");
        }
    }

    /// Hands the data path of `network` its remote endpoints (each behind its host's VTEP)
    /// and the VTEPs that get its broadcast and unknown unicast.
    async fn remote_datapath(&self, network: &str, view: &ClusterView) {
        let (Some(c), Some(live)) = (self.cluster.as_ref(), self.live.get(network)) else {
            return;
        };
        let Some(eps) = c.remote.get(network) else {
            return;
        };
        let mut remote = Vec::new();
        let mut vteps = std::collections::BTreeSet::new();
        for e in eps.values() {
            let (Some(host), Ok(mac)) = (view.hosts.get(&e.host), super::inputs::parse_mac(&e.mac))
            else {
                tracing::warn!(
                    network,
                    endpoint = e.name,
                    "remote endpoint skipped: unknown host or bad MAC"
                );
                continue;
            };
            vteps.insert(host.vtep());
            remote.push(crate::datapath::RemoteEndpoint {
                mac: mac.octets(),
                ip: e.ipv4,
                ip6: None,
                vtep: host.vtep(),
            });
        }
        if let Err(e) = live.datapath.set_remote_endpoints(remote).await {
            tracing::warn!(network, "remote endpoints not applied: {e}");
        }
        if let Err(e) = live
            .datapath
            .set_flood_vteps(vteps.into_iter().collect())
            .await
        {
            tracing::warn!(network, "flood list not applied: {e}");
        }
    }

    /// A local network whose subnet overlaps `subnet` is a conflict.
    fn check_local_overlap(&self, name: &str, subnet: ipam::Ipv4Net) -> Result<(), Error> {
        if let Some(other) = self
            .state
            .networks
            .values()
            .find(|n| n.name != name && ipam::overlaps(&n.pool.config().subnet, &subnet))
        {
            return Err(Error::Conflict(format!(
                "subnet {subnet} overlaps subnet {} of network {}",
                other.pool.config().subnet,
                other.name
            )));
        }
        Ok(())
    }

    /// Serves an overlay network of the store on this host.
    async fn adopt(&mut self, name: &str, rec: &NetworkRecord) -> Result<(), Error> {
        crate::daemon::inputs::validate_name("network name", name)?;
        self.check_local_overlap(name, rec.subnet)?;
        let mtu = self
            .cluster
            .as_ref()
            .map_or(super::DEFAULT_MTU, Cluster::overlay_mtu);
        let config = SubnetConfig::new(rec.subnet, Some(rec.gateway), rec.ip_range)?;
        let net = NetworkState {
            name: name.to_string(),
            id: rec.id.clone(),
            created: rec.created.clone(),
            pool: AddressPool::new(config),
            pool6: None,
            internal: rec.internal,
            icc: rec.icc,
            host_loopback: false,
            mtu,
            endpoints: BTreeMap::new(),
            overlay: Some(OverlayState { vni: rec.vni }),
        };
        self.add_network(net)?;
        self.overlay_datapath(name).await;
        tracing::info!(network = name, subnet = %rec.subnet, vni = rec.vni, mtu, "serving overlay network");
        Ok(())
    }

    /// Reconciles this host with a view of the store.
    async fn apply_view(&mut self, view: ClusterView) {
        let Some(me) = self.cluster.as_ref().map(|c| c.host_id.clone()) else {
            return;
        };
        // Networks created elsewhere.
        for (name, rec) in &view.networks {
            match self.state.networks.get(name) {
                None => {
                    if let Err(e) = self.adopt(name, rec).await {
                        let known = self
                            .cluster
                            .as_ref()
                            .is_some_and(|c| c.view.networks.contains_key(name));
                        if !known {
                            tracing::warn!(network = name, "overlay network not served here: {e}");
                        }
                    }
                }
                Some(n) if n.overlay.is_none() => {}
                Some(_) => {}
            }
        }
        // Networks removed elsewhere (kept while this host still has endpoints on them).
        let gone: Vec<String> = self
            .state
            .networks
            .values()
            .filter(|n| n.overlay.is_some() && !view.networks.contains_key(&n.name))
            .map(|n| n.name.clone())
            .collect();
        for name in gone {
            match self.remove_network(&name) {
                Ok(()) => tracing::info!(network = name, "overlay network removed in the cluster"),
                Err(e) => tracing::warn!(
                    network = name,
                    "overlay network removed in the cluster, kept here: {e}"
                ),
            }
            if let Some(c) = self.cluster.as_mut() {
                c.remote.remove(&name);
            }
        }
        // Remote endpoints of every overlay network served here.
        let overlays = self.overlay_names();
        for name in overlays {
            let now: BTreeMap<String, EndpointRecord> = view
                .endpoints
                .get(&name)
                .map(|eps| {
                    eps.iter()
                        .filter(|(_, e)| e.host != me && view.hosts.contains_key(&e.host))
                        .map(|(id, e)| (id.clone(), e.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let before = self
                .cluster
                .as_mut()
                .and_then(|c| c.remote.insert(name.clone(), now.clone()))
                .unwrap_or_default();
            if before != now {
                self.remote_names(&name, &before, &now);
                tracing::info!(
                    network = name,
                    remote_endpoints = now.len(),
                    "remote endpoints updated"
                );
            }
            self.remote_datapath(&name, &view).await;
        }
        if let Some(c) = self.cluster.as_mut() {
            let members = view
                .hosts
                .iter()
                .filter(|(id, _)| **id != me)
                .map(|(_, h)| h.advertise)
                .collect();
            c.vxlan.set_members(members);
            c.view = view;
        }
    }

    /// Moves the DNS names of remote endpoints from `before` to `now`.
    fn remote_names(
        &self,
        network: &str,
        before: &BTreeMap<String, EndpointRecord>,
        now: &BTreeMap<String, EndpointRecord>,
    ) {
        let Some(live) = self.live.get(network) else {
            return;
        };
        let mut z = live.zone.write().unwrap_or_else(PoisonError::into_inner);
        for (id, e) in before {
            if now.get(id) != Some(e) {
                z.remove(&e.name, e.ipv4);
                for a in &e.aliases {
                    z.remove(a, e.ipv4);
                }
            }
        }
        for (id, e) in now {
            if before.get(id) != Some(e) {
                z.add(&e.name, e.ipv4);
                for a in &e.aliases {
                    z.add(a, e.ipv4);
                }
            }
        }
    }

    /// The overlay part of `network inspect`.
    pub(super) fn overlay_inspect(&self, net: &NetworkState) -> Option<OverlayInspect> {
        let vni = net.overlay.as_ref()?.vni;
        let prefix = net.pool.config().subnet.prefix_len();
        let Some(c) = self.cluster.as_ref() else {
            return Some(OverlayInspect {
                vni,
                ..Default::default()
            });
        };
        Some(OverlayInspect {
            vni,
            host: c.host_id.clone(),
            peers: c
                .view
                .hosts
                .iter()
                .filter(|(id, _)| **id != c.host_id)
                .map(|(id, h)| PeerInspect {
                    name: id.clone(),
                    ip: h.advertise.to_string(),
                })
                .collect(),
            remote_containers: c
                .remote
                .get(&net.name)
                .map(|eps| {
                    eps.iter()
                        .map(|(id, e)| {
                            (
                                id.clone(),
                                RemoteEndpointInspect {
                                    name: e.name.clone(),
                                    host: e.host.clone(),
                                    mac_address: e.mac.clone(),
                                    ipv4_address: format!("{}/{prefix}", e.ipv4),
                                    aliases: e.aliases.clone(),
                                },
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// The MTU of the interface holding `addr` (the underlay of the overlay networks).
///
/// # Errors
/// No interface of this network namespace has `addr`.
pub fn underlay_mtu(addr: IpAddr) -> Result<u32, String> {
    crate::overlay::underlay_mtu(addr).map_err(|e| format!("--cluster-advertise {addr}: {e}"))
}
