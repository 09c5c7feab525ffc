//! Published ports: checking a mapping against everything already published, binding the
//! host socket here in the control plane (so "port in use" is reported at once and nothing
//! is half-made), and handing it to the network's data path, which carries the traffic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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

/// The host sockets a mapping listens on: its own host address, and with an unspecified
/// IPv4 host address (the default) on a dual-stack network also `[::]`. The one rule both
/// publishing and withdrawing follow.
fn host_sides(m: &PortMapping, dual_stack: bool) -> Vec<PortMapping> {
    let mut hosts = vec![*m];
    if dual_stack && m.host_ip == IpAddr::V4(Ipv4Addr::UNSPECIFIED) {
        hosts.push(PortMapping {
            host_ip: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ..*m
        });
    }
    hosts
}

/// Each host side of a mapping ([`host_sides`]) with the container address of its family
/// it leads to.
fn listeners(
    m: &PortMapping,
    ip: Ipv4Addr,
    ip6: Option<Ipv6Addr>,
) -> Result<Vec<(PortMapping, IpAddr)>, Error> {
    host_sides(m, ip6.is_some())
        .into_iter()
        .map(|h| match (h.host_ip, ip6) {
            (IpAddr::V4(_), _) => Ok((h, IpAddr::V4(ip))),
            (IpAddr::V6(_), Some(ip6)) => Ok((h, IpAddr::V6(ip6))),
            (IpAddr::V6(a), None) => Err(Error::Invalid(format!(
                "cannot publish on [{a}]:{}: the network has no IPv6 (create it with --ipv6)",
                m.host_port
            ))),
        })
        .collect()
}

/// Binds the host side of a mapping (non-blocking), with a one-line reason on failure. An
/// IPv6 socket is IPv6-only: the IPv4 side has its own socket.
pub(crate) fn bind(m: &PortMapping) -> Result<OwnedFd, Error> {
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
        if let (IpAddr::V6(a), None) = (m.host_ip, &net.pool6) {
            return Err(Error::Invalid(format!(
                "cannot publish on [{a}]:{}: network {network} has no IPv6 (create it with --ipv6)",
                m.host_port
            )));
        }
        for other in self.state.networks.values() {
            for ep in other.endpoints.values() {
                if let Some(o) = ep.ports.iter().find(|o| same_host_port(o, &m)) {
                    return Err(Error::Conflict(format!(
                        "host port {}/{} is already published by {} on network {}",
                        SocketAddr::new(o.host_ip, o.host_port),
                        o.protocol,
                        ep.name,
                        other.name
                    )));
                }
            }
        }
        Ok(m)
    }

    /// Binds a mapping's host sockets (see [`listeners`]) and starts carrying them to the
    /// endpoint's addresses `(ip, ip6)`. All or nothing: every socket is bound before any is
    /// handed over, and a refused hand-over withdraws the ones before it.
    pub(super) async fn publish_one(
        &self,
        network: &str,
        (ip, ip6): (Ipv4Addr, Option<Ipv6Addr>),
        m: PortMapping,
    ) -> Result<(), Error> {
        let plan = listeners(&m, ip, ip6)?;
        let mut bound = Vec::with_capacity(plan.len());
        for (host, to) in plan {
            bound.push((host, to, bind(&host)?));
        }
        let live = self
            .live
            .get(network)
            .ok_or_else(|| Error::Datapath(network.to_string()))?;
        let mut done: Vec<PortMapping> = Vec::new();
        for (host, to, fd) in bound {
            let publish = Publish {
                mapping: host,
                container_ip: to,
            };
            if let Err(e) = live.datapath.add_publish(publish, fd).await {
                withdraw(live, &done).await;
                return Err(e);
            }
            tracing::info!(network, to = %to, mapping = %host, "port published");
            done.push(host);
        }
        Ok(())
    }

    /// Stops carrying a mapping (its host sockets are closed).
    pub(super) async fn unpublish_one(&self, network: &str, m: PortMapping) {
        let dual_stack = self
            .state
            .networks
            .get(network)
            .is_some_and(|n| n.pool6.is_some());
        if let Some(live) = self.live.get(network) {
            withdraw(live, &host_sides(&m, dual_stack)).await;
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
        let ep = &self.state.networks[network].endpoints[&id];
        let ips = (ep.ip, ep.ip6);
        self.publish_one(network, ips, m).await?;
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
        let name = self.endpoint(network, &id).map(|e| e.name.clone());
        self.events.send(
            crate::events::Event::new("port", "publish", Some(network))
                .endpoint(name.as_deref().unwrap_or(container))
                .attr("mapping", m),
        );
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
        let name = self.endpoint(network, &id).map(|e| e.name.clone());
        self.events.send(
            crate::events::Event::new("port", "unpublish", Some(network))
                .endpoint(name.as_deref().unwrap_or(container))
                .attr("mapping", m),
        );
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

/// Stops serving these host sides of published ports.
async fn withdraw(live: &super::Live, hosts: &[PortMapping]) {
    for h in hosts {
        let host = SocketAddr::new(h.host_ip, h.host_port);
        let _ = live.datapath.remove_publish(host, h.protocol).await;
    }
}
