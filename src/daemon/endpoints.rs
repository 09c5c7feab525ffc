//! Attaching and detaching containers: validate everything first, lease an address, have the
//! helper create the TAP, plug it into the data path, publish ports, persist; any failure
//! undoes the steps before it.
//!
//! The daemon is locked for the steps before and after the netns helper, never while it
//! runs (up to [`super::HELPER_TIMEOUT`]), so other requests are served meanwhile. In
//! between, an attach holds its lease and claims its name, namespace and MAC as a
//! [`PendingAttach`]; saves leave its lease out, so a crash never leaves a lease without an
//! endpoint. A detach keeps its endpoint (and lease) in the state until the interface is
//! gone, so a crash in between re-attaches it rather than losing track of it.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use ipam::MacAddr;
use netns_helper::{AttachSpec, NsId, Reply, Request};

use super::inputs::{default_endpoint_name, ns_identity, random_id, resolve_netns, validate_name};
use super::views::endpoint_view;
use super::{Daemon, Shared, call_helper};
use crate::api::checks::check_connect;
use crate::api::types::{Connect, EndpointInspect, PortCountersView, PortMapping};
use crate::error::Error;
use crate::state::EndpointState;

/// An attach between its two locked steps: the lease is held (left out of saves), the name,
/// namespace and MAC are claimed against concurrent attaches.
pub(super) struct PendingAttach {
    pub network: String,
    pub name: String,
    pub ns_id: NsId,
    pub ip: Ipv4Addr,
    pub ip6: Option<Ipv6Addr>,
    pub mac: MacAddr,
}

/// What the second locked step of an attach needs.
struct Attach {
    id: String,
    network: String,
    name: String,
    netns: PathBuf,
    ns_id: NsId,
    ip: Ipv4Addr,
    ip6: Option<Ipv6Addr>,
    mac: MacAddr,
    /// Prefix lengths of the IPv4 and IPv6 subnets (0 without IPv6).
    prefix_len: (u8, u8),
    mappings: Vec<PortMapping>,
    aliases: Vec<String>,
    spec: AttachSpec,
    exe: PathBuf,
}

/// Attaches a container to a network. The daemon is locked to check and lease, unlocked
/// while the netns helper creates the TAP (bounded by [`super::HELPER_TIMEOUT`]), and locked
/// again to plug, publish and persist; other requests are served meanwhile.
///
/// # Errors
/// Unknown network, missing namespace, name or address in use, pool exhausted, helper
/// failures or timeout. Nothing is left allocated or created on error.
pub(super) async fn connect(
    d: &Shared,
    network: &str,
    req: Connect,
    id: Option<String>,
) -> Result<EndpointInspect, Error> {
    let started = std::time::Instant::now();
    let (begun, metrics) = {
        let mut daemon = d.lock().await;
        let begun = daemon.begin_attach(network, req, id.unwrap_or_else(random_id));
        (begun, daemon.attach_metrics.clone())
    };
    let result = match begun {
        Ok(attach) => attach_unlocked(d, attach).await,
        Err(e) => Err(e),
    };
    metrics.observe(started.elapsed(), result.is_ok());
    result
}

/// The rest of [`connect`] once its first step has leased and claimed.
async fn attach_unlocked(d: &Shared, attach: Attach) -> Result<EndpointInspect, Error> {
    let made = call_helper(attach.exe.clone(), Request::Attach(attach.spec.clone())).await;
    let undo = {
        let mut daemon = d.lock().await;
        match daemon.finish_attach(&attach, made).await {
            Ok(view) => return Ok(view),
            Err(e) => e,
        }
    };
    let (e, made) = undo;
    if let Some(ifname) = made {
        let _ = call_helper(
            attach.exe.clone(),
            Request::Detach {
                netns: attach.netns.clone(),
                ns_id: attach.ns_id,
                ifname,
            },
        )
        .await;
    }
    Err(e)
}

impl Daemon {
    /// First step of an attach: every check, then the lease and the claims.
    fn begin_attach(&mut self, network: &str, req: Connect, id: String) -> Result<Attach, Error> {
        let plan = check_connect(&req)?;
        let net = self.network(network)?;
        let netns = resolve_netns(&req.container)?;
        let ns_id = ns_identity(&netns)?;
        let name = match req.name {
            Some(n) => n,
            None => default_endpoint_name(&netns),
        };
        validate_name("container name", &name)?;
        // Only live endpoints count: the kernel reuses a dead namespace's inode number, so a
        // lost endpoint's identity may now belong to a new container.
        let pending = self.pending.values().filter(|p| p.network == network);
        if let Some(ep) = self
            .dns_members
            .get(&ns_id)
            .and_then(|m| m.get(network))
            .map(|m| m.name.as_str())
            .or_else(|| {
                pending
                    .clone()
                    .find(|p| p.ns_id == ns_id)
                    .map(|p| p.name.as_str())
            })
        {
            return Err(Error::Conflict(format!(
                "container {} is already connected to network {network} as {ep}",
                req.container
            )));
        }
        let taken = self.taken.get(network);
        if taken.is_some_and(|t| t.names.contains_key(&name))
            || pending.clone().any(|p| p.name == name)
        {
            return Err(Error::Conflict(format!(
                "container name {name} is already in use on network {network}"
            )));
        }
        let mut mappings = Vec::new();
        for m in &plan.mappings {
            mappings.push(self.check_mapping(network, &m.to_string())?);
        }
        let prefix_len = net.pool.config().subnet.prefix_len();
        let gateway = net.pool.config().gateway;
        let cfg6 = net.pool6.as_ref().map(|p| p.config().clone());
        if let (None, Some(ip6)) = (&cfg6, req.ip6) {
            return Err(Error::Invalid(format!(
                "--ip6 {ip6}: network {network} has no IPv6 (create it with --ipv6)"
            )));
        }
        let mtu = net.mtu;
        let overlay = net.overlay.is_some();
        let Some(net) = self.state.networks.get_mut(network) else {
            return Err(Error::NotFound(format!("network {network} not found")));
        };
        let ip = match req.ip {
            Some(ip) => {
                net.pool.reserve(ip, &id)?;
                ip
            }
            None => net.pool.allocate(&id)?,
        };
        let ip6 = match (&mut net.pool6, req.ip6) {
            (None, _) => Ok(None),
            (Some(pool6), Some(ip6)) => pool6.reserve(ip6, &id).map(|()| Some(ip6)),
            (Some(pool6), None) => pool6.allocate(&id).map(Some),
        };
        let ip6 = match ip6 {
            Ok(ip6) => ip6,
            Err(e) => {
                self.release(network, ip, None);
                return Err(e.into());
            }
        };
        let mac = plan.mac.unwrap_or_else(|| ipam::mac_from_ipv4(ip));
        let taken = self
            .taken
            .get(network)
            .and_then(|t| t.macs.get(&mac))
            .cloned()
            .or_else(|| {
                self.pending
                    .values()
                    .find(|p| p.network == network && p.mac == mac)
                    .map(|p| p.name.clone())
            });
        if let Some(other) = taken {
            self.release(network, ip, ip6);
            return Err(Error::Conflict(format!(
                "MAC address {mac} is already used by {other} on network {network}"
            )));
        }
        self.pending.insert(
            id.clone(),
            PendingAttach {
                network: network.to_string(),
                name: name.clone(),
                ns_id,
                ip,
                ip6,
                mac,
            },
        );
        let spec = AttachSpec {
            netns: netns.clone(),
            reopen: None,
            expect_ns: Some(ns_id),
            mac: mac.octets(),
            ip,
            prefix_len,
            gateway,
            ipv6: ip6
                .zip(cfg6.as_ref())
                .map(|(ip6, c)| netns_helper::Ipv6Spec {
                    ip: ip6,
                    prefix_len: c.subnet.prefix_len(),
                    gateway: c.gateway,
                }),
            mtu,
            ifname: req.interface,
            // An overlay network carries a GSO frame whole in one UDP datagram: it must fit.
            gso_max_size: overlay.then_some(crate::overlay::wire::TAP_GSO_MAX_SIZE),
        };
        Ok(Attach {
            id,
            network: network.to_string(),
            name,
            netns,
            ns_id,
            ip,
            ip6,
            mac,
            prefix_len: (prefix_len, cfg6.map_or(0, |c| c.subnet.prefix_len())),
            mappings,
            aliases: req.aliases,
            spec,
            exe: self.config.helper_exe.clone(),
        })
    }

    /// Second step of an attach: plug the TAP, publish, persist. On failure everything is
    /// undone here except the interface in the container, whose name is returned so the
    /// caller can have it deleted without holding the lock.
    async fn finish_attach(
        &mut self,
        a: &Attach,
        made: Result<(Reply, Option<OwnedFd>), Error>,
    ) -> Result<EndpointInspect, (Error, Option<String>)> {
        self.pending.remove(&a.id);
        let (ifname, fd) = match made {
            Ok((Reply::Attached { ifname, .. }, Some(fd))) => (ifname, fd),
            Ok(_) => {
                self.release(&a.network, a.ip, a.ip6);
                return Err((
                    Error::Datapath("helper answered without a TAP".into()),
                    None,
                ));
            }
            Err(e) => {
                self.release(&a.network, a.ip, a.ip6);
                return Err((e, None));
            }
        };
        let ep = EndpointState {
            id: a.id.clone(),
            name: a.name.clone(),
            netns: a.netns.clone(),
            ns_id: a.ns_id,
            ifname,
            ip: a.ip,
            ip6: a.ip6,
            mac: a.mac,
            ports: a.mappings.clone(),
            aliases: a.aliases.clone(),
        };
        let fail = |e: Error, ep: &EndpointState| Err((e, Some(ep.ifname.clone())));
        if let Err(e) = self.plug(&a.network, &a.id, &ep, fd).await {
            self.undo_attach(&a.network, &ep).await;
            return fail(e, &ep);
        }
        for (i, m) in a.mappings.iter().enumerate() {
            if let Err(e) = self.publish_one(&a.network, (a.ip, a.ip6), *m).await {
                for done in a.mappings.iter().take(i) {
                    self.unpublish_one(&a.network, *done).await;
                }
                self.undo_attach(&a.network, &ep).await;
                return fail(e, &ep);
            }
        }
        if let Err(e) = self.insert_endpoint(&a.network, ep.clone()) {
            self.undo_attach(&a.network, &ep).await;
            return fail(e, &ep);
        }
        self.names_attached(&a.network, &ep);
        if let Err(e) = self.persist(&a.network, super::Change::Put(&a.id)) {
            for m in &a.mappings {
                self.unpublish_one(&a.network, *m).await;
            }
            self.undo_attach(&a.network, &ep).await;
            return fail(e, &ep);
        }
        tracing::info!(network = a.network, endpoint = a.name, ip = %a.ip, mac = %a.mac, ifname = ep.ifname, "endpoint attached");
        let mut event = crate::events::Event::new("endpoint", "connect", Some(&a.network))
            .endpoint(&a.name)
            .attr("ip", a.ip)
            .attr("mac", a.mac)
            .attr("interface", &ep.ifname);
        if let Some(ip6) = a.ip6 {
            event = event.attr("ip6", ip6);
        }
        self.events.send(event);
        for m in &a.mappings {
            self.events.send(
                crate::events::Event::new("port", "publish", Some(&a.network))
                    .endpoint(&a.name)
                    .attr("mapping", m),
            );
        }
        Ok(endpoint_view(
            &ep,
            a.prefix_len,
            "attached".into(),
            PortCountersView::default(),
        ))
    }

    fn release(&mut self, network: &str, ip: Ipv4Addr, ip6: Option<Ipv6Addr>) {
        if let Some(net) = self.state.networks.get_mut(network) {
            net.release_addrs(ip, ip6);
        }
    }

    /// Reverses a partly done attach in the daemon: port, lease, state entry. The caller
    /// deletes the interface.
    async fn undo_attach(&mut self, network: &str, ep: &EndpointState) {
        self.names_detached(network, ep);
        if let Some(live) = self.live.get_mut(network)
            && let Some(port) = live.ports.remove(&ep.id)
        {
            let _ = live.datapath.detach(port).await;
        }
        self.remove_endpoint(network, &ep.id);
        self.release(network, ep.ip, ep.ip6);
    }

    /// First step of a detach: unplug the port (traffic stops at once) and mark the endpoint
    /// as detaching. It stays in the state, with its lease, until the interface is gone.
    async fn begin_detach(
        &mut self,
        network: &str,
        container: &str,
    ) -> Result<(EndpointState, bool, PathBuf), Error> {
        let ep = self.endpoint(network, container)?.clone();
        if self.detaching.contains(&ep.id) {
            return Err(Error::Conflict(format!(
                "container {container} is already being disconnected from network {network}"
            )));
        }
        self.names_detached(network, &ep);
        let mut was_live = false;
        if let Some(live) = self.live.get_mut(network) {
            live.lost.remove(&ep.id);
            if let Some(port) = live.ports.remove(&ep.id) {
                live.datapath.detach(port).await?;
                was_live = true;
            }
        }
        self.detaching.insert(ep.id.clone());
        Ok((ep, was_live, self.config.helper_exe.clone()))
    }

    /// Last step of a detach: forget the endpoint, free its address, persist.
    fn finish_detach(&mut self, network: &str, ep: &EndpointState) -> Result<(), Error> {
        self.detaching.remove(&ep.id);
        self.remove_endpoint(network, &ep.id);
        self.release(network, ep.ip, ep.ip6);
        self.persist(network, super::Change::Remove(&ep.id))?;
        tracing::info!(network, endpoint = ep.name, ip = %ep.ip, "endpoint detached");
        self.events.send(
            crate::events::Event::new("endpoint", "disconnect", Some(network))
                .endpoint(&ep.name)
                .attr("ip", ep.ip),
        );
        Ok(())
    }
}

/// Detaches an endpoint (by name or id): closes its port, deletes its interface (the helper
/// runs without the daemon locked), frees its address.
///
/// # Errors
/// Unknown network or endpoint, a detach already in progress; failing to persist.
pub(super) async fn disconnect(d: &Shared, network: &str, container: &str) -> Result<(), Error> {
    let (ep, was_live, exe) = d.lock().await.begin_detach(network, container).await?;
    // A lost endpoint's namespace is gone (its path may even hold a new one): only a live
    // endpoint has an interface to delete.
    if was_live
        && let Err(e) = call_helper(
            exe,
            Request::Detach {
                netns: ep.netns.clone(),
                ns_id: ep.ns_id,
                ifname: ep.ifname.clone(),
            },
        )
        .await
    {
        tracing::warn!(network, endpoint = ep.name, "interface not removed: {e}");
    }
    d.lock().await.finish_detach(network, &ep)
}

/// How often attached endpoints are checked for a namespace that went away.
pub const REAP_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// An attached endpoint as the reaper checks it: network, id, name, namespace file and the
/// namespace's identity at attach time.
type Watched = (String, String, String, PathBuf, NsId);

impl Daemon {
    /// Every attached endpoint, for the reaper to check without holding the daemon.
    fn watched_endpoints(&self) -> Vec<Watched> {
        let mut out = Vec::new();
        for (network, net) in &self.state.networks {
            let Some(live) = self.live.get(network) else {
                continue;
            };
            for ep in net
                .endpoints
                .values()
                .filter(|e| live.ports.contains_key(&e.id))
            {
                out.push((
                    network.clone(),
                    ep.id.clone(),
                    ep.name.clone(),
                    ep.netns.clone(),
                    ep.ns_id,
                ));
            }
        }
        out
    }
}

/// The endpoints whose namespace is gone: its file no longer exists (`ip netns del`, the
/// process of `/proc/PID/ns/net` exited) or now names another namespace.
fn gone(watched: Vec<Watched>) -> Vec<Watched> {
    watched
        .into_iter()
        .filter(|(_, _, _, netns, ns_id)| ns_identity(netns).ok() != Some(*ns_id))
        .collect()
}

/// Detaches every attached endpoint whose namespace is gone. Our TAP fd would otherwise keep
/// the dead namespace alive and its name resolvable. Returns how many were detached.
pub async fn reap(d: &Shared) -> usize {
    // One stat per endpoint: done off the runtime and without the daemon locked, so
    // thousands of endpoints never stall requests.
    let watched = d.lock().await.watched_endpoints();
    let gone = tokio::task::spawn_blocking(move || gone(watched))
        .await
        .unwrap_or_default();
    let mut n = 0;
    for (network, id, name, _, _) in gone {
        tracing::info!(network, endpoint = name, "namespace gone; detaching");
        d.lock().await.events.send(
            crate::events::Event::new("endpoint", "lost", Some(&network))
                .endpoint(&name)
                .attr("reason", "its network namespace is gone"),
        );
        match super::overlay::disconnect(d, &network, &id).await {
            Ok(()) => n += 1,
            Err(e) => tracing::warn!(network, endpoint = name, "detach failed: {e}"),
        }
    }
    n
}
