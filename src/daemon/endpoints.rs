//! Attaching and detaching containers: validate everything first, lease an address, have the
//! helper create the TAP, plug it into the data path, publish ports, persist; any failure
//! undoes the steps before it.

use std::net::Ipv4Addr;

use ipam::MacAddr;
use netns_helper::{AttachSpec, Reply, Request};

use super::Daemon;
use super::inputs::{default_endpoint_name, ns_identity, random_id, resolve_netns, validate_name};
use super::ports::same_host_port;
use super::views::endpoint_view;
use crate::api::types::{Connect, EndpointInspect, PortCountersView, PortMapping};
use crate::error::Error;
use crate::state::EndpointState;

impl Daemon {
    /// Attaches a container to a network.
    ///
    /// # Errors
    /// Unknown network, missing namespace, name or address in use, pool exhausted, helper
    /// failures. Nothing is left allocated or created on error.
    pub async fn connect(&mut self, network: &str, req: Connect) -> Result<EndpointInspect, Error> {
        let net = self.network(network)?;
        let netns = resolve_netns(&req.container)?;
        let ns_id = ns_identity(&netns)?;
        let name = match req.name {
            Some(n) => n,
            None => default_endpoint_name(&netns),
        };
        validate_name("container name", &name)?;
        for a in &req.aliases {
            validate_name("alias", a)?;
        }
        // Only live endpoints count: the kernel reuses a dead namespace's inode number, so a
        // lost endpoint's identity may now belong to a new container.
        let live_ports = self.live.get(network).map(|l| &l.ports);
        let is_live = |id: &String| live_ports.is_some_and(|p| p.contains_key(id));
        if let Some(ep) = net
            .endpoints
            .values()
            .find(|e| e.ns_id == ns_id && is_live(&e.id))
        {
            return Err(Error::Conflict(format!(
                "container {} is already connected to network {network} as {}",
                req.container, ep.name
            )));
        }
        if net.endpoints.values().any(|e| e.name == name) {
            return Err(Error::Conflict(format!(
                "container name {name} is already in use on network {network}"
            )));
        }
        let mac = req
            .mac
            .as_deref()
            .map(|m| {
                m.parse::<MacAddr>()
                    .map_err(|e| Error::Invalid(e.to_string()))
                    .and_then(|mac| {
                        if mac.is_unicast() {
                            Ok(mac)
                        } else {
                            Err(Error::Invalid(format!("MAC address {mac} is multicast")))
                        }
                    })
            })
            .transpose()?;
        let mut mappings = Vec::new();
        for spec in &req.publish {
            let m = self.check_mapping(network, spec)?;
            if mappings.iter().any(|o: &PortMapping| same_host_port(o, &m)) {
                return Err(Error::Conflict(format!("{spec} is given twice")));
            }
            mappings.push(m);
        }
        let net = self.network(network)?;
        let prefix_len = net.pool.config().subnet.prefix_len();
        let gateway = net.pool.config().gateway;
        let mtu = net.mtu;
        let id = random_id();

        let pool = &mut self
            .state
            .networks
            .get_mut(network)
            .expect("checked above")
            .pool;
        let ip = match req.ip {
            Some(ip) => {
                pool.reserve(ip, &id)?;
                ip
            }
            None => pool.allocate(&id)?,
        };
        let mac = mac.unwrap_or_else(|| MacAddr::from_ipv4(ip));
        if let Some(other) = self
            .network(network)?
            .endpoints
            .values()
            .find(|e| e.mac == mac)
        {
            let other = other.name.clone();
            self.release(network, ip);
            return Err(Error::Conflict(format!(
                "MAC address {mac} is already used by {other} on network {network}"
            )));
        }
        let spec = AttachSpec {
            netns: netns.clone(),
            reopen: None,
            expect_ns: Some(ns_id),
            mac: mac.octets(),
            ip,
            prefix_len,
            gateway,
            mtu,
        };
        let (ifname, fd) = match self.call_helper(Request::Attach(spec)).await {
            Ok((Reply::Attached { ifname, .. }, Some(fd))) => (ifname, fd),
            Ok(_) => {
                self.release(network, ip);
                return Err(Error::Datapath("helper answered without a TAP".into()));
            }
            Err(e) => {
                self.release(network, ip);
                return Err(e);
            }
        };
        let ep = EndpointState {
            id: id.clone(),
            name: name.clone(),
            netns,
            ns_id,
            ifname,
            ip,
            mac,
            ports: mappings.clone(),
            aliases: req.aliases.clone(),
        };
        if let Err(e) = self.plug(network, &id, &ep, fd).await {
            self.undo_attach(network, &ep).await;
            return Err(e);
        }
        for (i, m) in mappings.iter().enumerate() {
            if let Err(e) = self.publish_one(network, ip, *m).await {
                for done in &mappings[..i] {
                    self.unpublish_one(network, *done).await;
                }
                self.undo_attach(network, &ep).await;
                return Err(e);
            }
        }
        let net = self.state.networks.get_mut(network).expect("checked above");
        net.endpoints.insert(id.clone(), ep.clone());
        self.publish_names();
        if let Err(e) = self.save() {
            self.undo_attach(network, &ep).await;
            return Err(e);
        }
        tracing::info!(network, endpoint = name, ip = %ip, mac = %mac, ifname = ep.ifname, "endpoint attached");
        Ok(endpoint_view(
            &ep,
            prefix_len,
            "attached".into(),
            PortCountersView::default(),
        ))
    }

    fn release(&mut self, network: &str, ip: Ipv4Addr) {
        if let Some(net) = self.state.networks.get_mut(network) {
            net.pool.release(ip);
        }
    }

    /// Reverses a partly done attach: port, interface, lease, state entry.
    async fn undo_attach(&mut self, network: &str, ep: &EndpointState) {
        if let Some(live) = self.live.get_mut(network)
            && let Some(port) = live.ports.remove(&ep.id)
        {
            let _ = live.datapath.remove_port(port).await;
        }
        let _ = self
            .call_helper(Request::Detach {
                netns: ep.netns.clone(),
                ns_id: ep.ns_id,
                ifname: ep.ifname.clone(),
            })
            .await;
        if let Some(net) = self.state.networks.get_mut(network) {
            net.endpoints.remove(&ep.id);
        }
        self.release(network, ep.ip);
        self.publish_names();
    }

    /// Detaches an endpoint (by name or id): closes its port, deletes its interface, frees its
    /// address.
    ///
    /// # Errors
    /// Unknown network or endpoint; failing to persist.
    pub async fn disconnect(&mut self, network: &str, container: &str) -> Result<(), Error> {
        let ep = self.endpoint(network, container)?.clone();
        let mut was_live = false;
        if let Some(live) = self.live.get_mut(network) {
            live.lost.remove(&ep.id);
            if let Some(port) = live.ports.remove(&ep.id) {
                live.datapath.remove_port(port).await?;
                was_live = true;
            }
        }
        // A lost endpoint's namespace is gone (its path may even hold a new one): only a live
        // endpoint has an interface to delete.
        if was_live
            && let Err(e) = self
                .call_helper(Request::Detach {
                    netns: ep.netns.clone(),
                    ns_id: ep.ns_id,
                    ifname: ep.ifname.clone(),
                })
                .await
        {
            tracing::warn!(network, endpoint = ep.name, "interface not removed: {e}");
        }
        let net = self.state.networks.get_mut(network).expect("checked above");
        net.endpoints.remove(&ep.id);
        net.pool.release(ep.ip);
        self.publish_names();
        self.save()?;
        tracing::info!(network, endpoint = ep.name, ip = %ep.ip, "endpoint detached");
        Ok(())
    }
}

/// How often attached endpoints are checked for a namespace that went away.
pub const REAP_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

impl Daemon {
    /// Detaches every attached endpoint whose namespace is gone: its file no longer exists
    /// (`ip netns del`, the process of `/proc/PID/ns/net` exited) or now names another
    /// namespace. Our TAP fd would otherwise keep the dead namespace alive and its name
    /// resolvable. Returns how many were detached.
    pub async fn reap(&mut self) -> usize {
        let mut gone = Vec::new();
        for (network, net) in &self.state.networks {
            let Some(live) = self.live.get(network) else {
                continue;
            };
            for ep in net
                .endpoints
                .values()
                .filter(|e| live.ports.contains_key(&e.id))
            {
                if ns_identity(&ep.netns).ok() != Some(ep.ns_id) {
                    gone.push((network.clone(), ep.id.clone(), ep.name.clone()));
                }
            }
        }
        let mut n = 0;
        for (network, id, name) in gone {
            tracing::info!(network, endpoint = name, "namespace gone; detaching");
            match self.disconnect(&network, &id).await {
                Ok(()) => n += 1,
                Err(e) => tracing::warn!(network, endpoint = name, "detach failed: {e}"),
            }
        }
        n
    }
}
