//! Published ports: checking a mapping against everything already published, binding the
//! host socket here in the control plane (so "port in use" is reported at once and nothing
//! is half-made), and handing it to the network's data path, which carries the traffic.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;

use nat::{Protocol, Publish};
use socket2::{Domain, Socket, Type};

use super::Daemon;
use crate::api::types::{NatStatsView, PortMapping, PortRow};
use crate::error::Error;

/// Whether two mappings would claim the same host port (0.0.0.0 overlaps every address).
pub(crate) fn same_host_port(a: &PortMapping, b: &PortMapping) -> bool {
    a.protocol == b.protocol
        && a.host_port == b.host_port
        && (a.host_ip == b.host_ip || a.host_ip.is_unspecified() || b.host_ip.is_unspecified())
}

/// Binds the host side of a mapping (non-blocking), with a one-line reason on failure.
fn bind(m: &PortMapping) -> Result<OwnedFd, Error> {
    let addr = SocketAddr::new(m.host_ip, m.host_port);
    let what = format!("{addr}/{}", m.protocol);
    let fail = |e: std::io::Error| match e.raw_os_error() {
        Some(libc::EADDRINUSE) => Error::Conflict(format!("host port {what} is already in use")),
        Some(libc::EACCES) => Error::Invalid(format!(
            "cannot listen on {what}: permission denied (ports below net.ipv4.ip_unprivileged_port_start need privileges)"
        )),
        Some(libc::EADDRNOTAVAIL) => Error::Invalid(format!(
            "cannot listen on {what}: {} is not an address of this host",
            m.host_ip
        )),
        _ => Error::Invalid(format!("cannot listen on {what}: {e}")),
    };
    let ty = match m.protocol {
        Protocol::Tcp => Type::STREAM,
        Protocol::Udp => Type::DGRAM,
    };
    let sock =
        Socket::new(Domain::for_address(addr), ty.nonblocking().cloexec(), None).map_err(fail)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true).map_err(fail)?;
    }
    if m.protocol == Protocol::Tcp {
        sock.set_reuse_address(true).map_err(fail)?;
    }
    sock.bind(&addr.into()).map_err(fail)?;
    if m.protocol == Protocol::Tcp {
        sock.listen(1024).map_err(fail)?;
    }
    Ok(OwnedFd::from(sock))
}

impl Daemon {
    /// Parses a mapping for `network` and checks it against every published port.
    pub(super) fn check_mapping(&self, network: &str, spec: &str) -> Result<PortMapping, Error> {
        let m: PortMapping = spec.parse().map_err(Error::Invalid)?;
        let net = self.network(network)?;
        if net.internal {
            return Err(Error::Conflict(format!(
                "network {network} is internal: it cannot publish ports"
            )));
        }
        for other in self.state.networks.values() {
            for ep in other.endpoints.values() {
                if let Some(o) = ep.ports.iter().find(|o| same_host_port(o, &m)) {
                    return Err(Error::Conflict(format!(
                        "host port {}:{}/{} is already published by {} on network {}",
                        o.host_ip, o.host_port, o.protocol, ep.name, other.name
                    )));
                }
            }
        }
        Ok(m)
    }

    /// Binds a mapping's host socket and starts carrying it to `ip`.
    pub(super) async fn publish_one(
        &self,
        network: &str,
        ip: Ipv4Addr,
        m: PortMapping,
    ) -> Result<(), Error> {
        let fd = bind(&m)?;
        let live = self
            .live
            .get(network)
            .ok_or_else(|| Error::Datapath(network.to_string()))?;
        let publish = Publish {
            mapping: m,
            container_ip: ip.into(),
        };
        live.datapath.add_publish(publish, fd).await?;
        tracing::info!(network, %ip, mapping = %m, "port published");
        Ok(())
    }

    /// Stops carrying a mapping (its host socket is closed).
    pub(super) async fn unpublish_one(&self, network: &str, m: PortMapping) {
        if let Some(live) = self.live.get(network) {
            let host = SocketAddr::new(m.host_ip, m.host_port);
            let _ = live.datapath.remove_publish(host, m.protocol).await;
        }
    }

    /// Finds an attached endpoint by name or id; returns its id.
    fn attached_endpoint(&self, network: &str, container: &str) -> Result<String, Error> {
        let ep = self.endpoint(network, container)?;
        let live = self
            .live
            .get(network)
            .is_some_and(|l| l.ports.contains_key(&ep.id));
        if !live {
            return Err(Error::Conflict(format!(
                "container {container} on network {network} is lost; reconnect it first"
            )));
        }
        Ok(ep.id.clone())
    }

    /// Publishes a port of an attached container at runtime.
    ///
    /// # Errors
    /// Bad spec, unknown network/container, port taken, internal network.
    pub async fn publish(
        &mut self,
        network: &str,
        container: &str,
        spec: &str,
    ) -> Result<PortMapping, Error> {
        let id = self.attached_endpoint(network, container)?;
        let m = self.check_mapping(network, spec)?;
        let ip = self.state.networks[network].endpoints[&id].ip;
        self.publish_one(network, ip, m).await?;
        let ep = self
            .state
            .networks
            .get_mut(network)
            .and_then(|n| n.endpoints.get_mut(&id))
            .expect("checked above");
        ep.ports.push(m);
        if let Err(e) = self.persist(network, super::Change::Put(&id)) {
            self.unpublish_one(network, m).await;
            if let Some(ep) = self
                .state
                .networks
                .get_mut(network)
                .and_then(|n| n.endpoints.get_mut(&id))
            {
                ep.ports.retain(|o| *o != m);
            }
            return Err(e);
        }
        Ok(m)
    }

    /// Withdraws a published port.
    ///
    /// # Errors
    /// Bad spec, unknown network/container, mapping not published.
    pub async fn unpublish(
        &mut self,
        network: &str,
        container: &str,
        spec: &str,
    ) -> Result<(), Error> {
        let want: PortMapping = spec.parse().map_err(Error::Invalid)?;
        let ep = self.endpoint(network, container)?;
        let id = ep.id.clone();
        let m = *ep.ports.iter().find(|o| **o == want).ok_or_else(|| {
            Error::NotFound(format!(
                "{want} is not published by {container} on network {network}"
            ))
        })?;
        let ep = self
            .state
            .networks
            .get_mut(network)
            .and_then(|n| n.endpoints.get_mut(&id))
            .expect("checked above");
        ep.ports.retain(|o| *o != m);
        if let Err(e) = self.persist(network, super::Change::Put(&id)) {
            if let Some(ep) = self
                .state
                .networks
                .get_mut(network)
                .and_then(|n| n.endpoints.get_mut(&id))
            {
                ep.ports.push(m);
            }
            return Err(e);
        }
        self.unpublish_one(network, m).await;
        tracing::info!(network, container, mapping = %m, "port withdrawn");
        Ok(())
    }

    /// Every published port, optionally of one network.
    ///
    /// # Errors
    /// Unknown network.
    pub fn list_ports(&self, network: Option<&str>) -> Result<Vec<PortRow>, Error> {
        if let Some(n) = network {
            self.network(n)?;
        }
        Ok(self
            .state
            .networks
            .values()
            .filter(|n| network.is_none_or(|w| w == n.name))
            .flat_map(|n| {
                n.endpoints.values().flat_map(move |ep| {
                    ep.ports.iter().map(move |m| PortRow {
                        network: n.name.clone(),
                        container: ep.name.clone(),
                        mapping: *m,
                    })
                })
            })
            .collect())
    }

    /// The NAT's flows and counters of a network.
    ///
    /// # Errors
    /// Unknown network.
    pub async fn stats(&self, network: &str) -> Result<NatStatsView, Error> {
        self.network(network)?;
        let live = self
            .live
            .get(network)
            .ok_or_else(|| Error::Datapath(network.to_string()))?;
        Ok(super::views::nat_view(&live.datapath.snapshot().await?.nat))
    }
}
