//! The composition root: loads state, runs one data path per network, re-attaches endpoints
//! after a restart, and carries out the control-plane operations the API exposes.
//!
//! Every operation validates first, then acts, then persists; a failure at any step undoes
//! the earlier ones, so a refused request changes nothing.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use nat::{Gateway, Ipv6Config, Nat, NatConfig};
use netns_helper::{AttachSpec, Reply, Request};
use switch::{NetworkConfig, PortId, PortRole};

use crate::api::types::NetworkCreate;
use crate::datapath::Datapath;
use crate::error::Error;
use crate::state::journal::{Journal, Record};
use crate::state::{EndpointState, NetworkState, State};

mod capture;
pub use capture::{CaptureRequest, CaptureStream, capture, stop_capture};
mod endpoints;
pub use endpoints::{REAP_EVERY, reap};
pub mod overlay;
pub use overlay::{Cluster, connect, disconnect};
pub(crate) mod inputs;
mod names;
mod networks;
pub(crate) mod ports;
mod tables;
pub use inputs::upstreams;
pub(crate) use ports::same_host_port;
pub use tables::{flows, macs};
mod views;

/// Default link MTU.
pub const DEFAULT_MTU: u32 = 1500;
/// The network served when the daemon is given none.
pub const DEFAULT_NETWORK: (&str, &str) = ("bridge", "172.17.0.0/16");

/// Daemon settings (from the command line).
#[derive(Clone, Debug)]
pub struct Config {
    /// Where `state.json` lives.
    pub state_dir: PathBuf,
    /// Default MTU of new networks.
    pub mtu: u32,
    /// The binary re-executed as the netns helper.
    pub helper_exe: PathBuf,
    /// Per-network NAT flow limit.
    pub max_flows: usize,
    /// Per-container NAT flow limit.
    pub max_flows_per_endpoint: usize,
    /// Idle timeout of established TCP flows.
    pub tcp_idle_timeout: std::time::Duration,
    /// Per-network budget of TCP flow buffers.
    pub nat_memory: usize,
    /// Idle timeout of UDP/ICMP flows.
    pub udp_timeout: std::time::Duration,
    /// Outbound TCP dial timeout.
    pub connect_timeout: std::time::Duration,
    /// Upstream resolvers of the gateways' DNS.
    pub dns: nat::DnsConfig,
}

/// A network being served: its data path and the port of each attached endpoint.
struct Live {
    datapath: Datapath,
    /// Endpoint id → port, for endpoints whose TAP is open.
    ports: HashMap<String, PortId>,
    /// Endpoint id → why it could not be re-attached after a restart.
    lost: HashMap<String, String>,
    next_port: u32,
    /// The names of its attached endpoints (see [`names`]).
    zone: names::SharedZone,
}

/// The daemon's control-plane state.
pub struct Daemon {
    config: Config,
    state: State,
    live: HashMap<String, Live>,
    /// Endpoint id → an attach whose helper is running (the daemon is not locked meanwhile).
    pending: HashMap<String, endpoints::PendingAttach>,
    /// Endpoint ids whose detach is in progress.
    detaching: HashSet<String>,
    /// Endpoint changes since the last snapshot.
    journal: Journal,
    /// Container (by namespace) → the networks it is attached to, for DNS scoping.
    dns_members: HashMap<netns_helper::NsId, names::Memberships>,
    /// Network → names and MACs of its endpoints.
    taken: HashMap<String, Taken>,
    /// Attach latency and failures (shared with attaches running unlocked).
    attach_metrics: std::sync::Arc<crate::metrics::AttachMetrics>,
    /// What happened, for `vswitchctl events`.
    events: crate::events::Events,
    /// Id of the next packet capture.
    next_capture: u64,
    /// Membership in a cluster (`--cluster-store`), for overlay networks.
    cluster: Option<overlay::Cluster>,
}

/// Names and MACs of a network's endpoints in the state (attached or lost), so an attach
/// checks for conflicts in O(1).
#[derive(Debug, Default)]
struct Taken {
    /// Endpoint name → id.
    names: HashMap<String, String>,
    /// MAC → endpoint name.
    macs: HashMap<ipam::MacAddr, String>,
}

/// An endpoint change to persist.
#[derive(Clone, Copy, Debug)]
enum Change<'a> {
    /// The endpoint (by id) was added or changed; it is in the state.
    Put(&'a str),
    /// The endpoint (by id) is gone from the state.
    Remove(&'a str),
}

/// The daemon as shared by the API handlers and the reaper. Operations that wait for the
/// netns helper take the lock before and after it, never across it.
pub type Shared = std::sync::Arc<tokio::sync::Mutex<Daemon>>;

/// How long a netns helper may take before it is killed.
pub const HELPER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs one helper request off the async runtime, bounded by [`HELPER_TIMEOUT`].
async fn call_helper(
    exe: PathBuf,
    request: Request,
) -> Result<(Reply, Option<std::os::fd::OwnedFd>), Error> {
    let (reply, fd) = tokio::task::spawn_blocking(move || {
        netns_helper::call_timeout(&exe, &request, HELPER_TIMEOUT)
    })
    .await
    .map_err(|e| Error::Datapath(format!("helper task: {e}")))??;
    match reply {
        Reply::Failed(e) => Err(e.into()),
        r => Ok((r, fd)),
    }
}

impl Daemon {
    /// The daemon's event log.
    pub fn events(&self) -> &crate::events::Events {
        &self.events
    }

    /// Loads the state in `config.state_dir`, makes sure every network of `wanted` exists
    /// (`None` subnet: next free default pool), starts a data path for every network and
    /// re-attaches endpoints whose namespaces still exist.
    ///
    /// # Errors
    /// Corrupt state, a `wanted` network whose subnet conflicts, or a data path that cannot
    /// start.
    pub async fn start(
        config: Config,
        state: State,
        wanted: &[(String, Option<String>)],
    ) -> anyhow::Result<Self> {
        let journal = Journal::new(&config.state_dir);
        let mut daemon = Daemon {
            config,
            state,
            live: HashMap::new(),
            pending: HashMap::new(),
            detaching: HashSet::new(),
            journal,
            dns_members: HashMap::new(),
            taken: HashMap::new(),
            attach_metrics: Default::default(),
            events: Default::default(),
            next_capture: 1,
            cluster: None,
        };
        for (name, net) in &daemon.state.networks {
            let mut t = Taken::default();
            for ep in net.endpoints.values() {
                t.names.insert(ep.name.clone(), ep.id.clone());
                t.macs.insert(ep.mac, ep.name.clone());
            }
            daemon.taken.insert(name.clone(), t);
        }
        let names: Vec<String> = daemon.state.networks.keys().cloned().collect();
        for name in &names {
            daemon.serve(name)?;
        }
        let default;
        let wanted = if wanted.is_empty() && daemon.state.networks.is_empty() {
            default = [(
                DEFAULT_NETWORK.0.to_string(),
                Some(DEFAULT_NETWORK.1.to_string()),
            )];
            &default[..]
        } else {
            wanted
        };
        for (name, subnets) in wanted {
            let (subnet, subnet6) = inputs::split_network_subnets(subnets.as_deref())
                .map_err(|e| anyhow::anyhow!("--network {name}: {e}"))?;
            match daemon.state.networks.get(name) {
                Some(net) => {
                    if let Some(s) = &subnet {
                        let want = ipam::parse_cidr(s)?;
                        if want != net.pool.config().subnet {
                            anyhow::bail!(
                                "network {name} already exists with subnet {}, not {want}",
                                net.pool.config().subnet
                            );
                        }
                    }
                    if let Some(s) = &subnet6 {
                        let want = ipam::parse_cidr6(s)?;
                        let have = net.pool6.as_ref().map(|p| p.config().subnet);
                        if have != Some(want) {
                            anyhow::bail!(
                                "network {name} already exists {}, not with {want}",
                                have.map_or("without IPv6".to_string(), |h| format!(
                                    "with IPv6 subnet {h}"
                                ))
                            );
                        }
                    }
                }
                None => {
                    let req = NetworkCreate {
                        name: name.clone(),
                        enable_ipv6: subnet6.is_some(),
                        subnet,
                        subnet6,
                        ..Default::default()
                    };
                    daemon.create_network(req)?;
                }
            }
        }
        // Fold the previous run's journal (and any torn last record) into a new snapshot.
        daemon.checkpoint()?;
        for name in &names {
            daemon.reattach(name).await;
        }
        Ok(daemon)
    }

    /// Writes the whole state as a new snapshot and starts an empty journal (at start, on
    /// network changes, every [`crate::state::journal::COMPACT_AFTER`] or more endpoint
    /// changes, and on a clean shutdown). Leases of attaches still in progress are left
    /// out: until their endpoint exists, a crash must not leave a lease without an owner.
    ///
    /// # Errors
    /// The state directory cannot be written.
    pub fn checkpoint(&mut self) -> Result<(), Error> {
        let result = if self.pending.is_empty() {
            self.journal.compact(&mut self.state)
        } else {
            let mut state = self.state.clone();
            for p in self.pending.values() {
                if let Some(net) = state.networks.get_mut(&p.network) {
                    net.release_addrs(p.ip, p.ip6);
                }
            }
            let r = self.journal.compact(&mut state);
            self.state.generation = state.generation;
            r
        };
        result.map_err(|e| Error::State {
            path: state_path(&self.config.state_dir),
            reason: e.to_string(),
        })
    }

    /// Persists one endpoint change: a journal record, or a new snapshot when the journal
    /// is due for compaction (or could not be written last time).
    fn persist(&mut self, network: &str, change: Change<'_>) -> Result<(), Error> {
        let endpoints = self
            .state
            .networks
            .values()
            .map(|n| n.endpoints.len())
            .sum();
        if self.journal.wants_compaction(endpoints) {
            return self.checkpoint();
        }
        let record = match change {
            Change::Put(id) => {
                let Some(ep) = self
                    .state
                    .networks
                    .get(network)
                    .and_then(|n| n.endpoints.get(id))
                else {
                    return self.checkpoint();
                };
                Record::Put {
                    network: network.to_string(),
                    endpoint: ep.clone(),
                }
            }
            Change::Remove(id) => Record::Remove {
                network: network.to_string(),
                id: id.to_string(),
            },
        };
        self.journal.append(&record).map_err(|e| Error::State {
            path: state_path(&self.config.state_dir),
            reason: e.to_string(),
        })
    }

    /// Starts the data path of a network already in `state`.
    fn serve(&mut self, name: &str) -> Result<(), Error> {
        let net = &self.state.networks[name];
        let cfg = net.pool.config();
        let gw_mac = ipam::mac_from_ipv4(cfg.gateway).octets();
        let mut switch_cfg = NetworkConfig::new(gw_mac);
        switch_cfg.icc = net.icc;
        let mut nat_cfg = NatConfig::new(
            cfg.gateway,
            gw_mac,
            (cfg.subnet.network(), cfg.subnet.prefix_len()),
            net.mtu,
        );
        nat_cfg.internal = net.internal;
        nat_cfg.host_loopback = net.host_loopback;
        nat_cfg.max_flows = self.config.max_flows;
        nat_cfg.max_flows_per_endpoint = self.config.max_flows_per_endpoint;
        nat_cfg.tcp_idle_timeout = self.config.tcp_idle_timeout;
        nat_cfg.nat_memory = self.config.nat_memory;
        nat_cfg.udp_timeout = self.config.udp_timeout;
        nat_cfg.connect_timeout = self.config.connect_timeout;
        nat_cfg.dns = self.config.dns.clone();
        let mut gateway = Gateway::new(cfg.gateway, gw_mac);
        let cfg6 = net.pool6.as_ref().map(|p| p.config().clone());
        if let Some(c6) = &cfg6 {
            nat_cfg.ipv6 = Some(Ipv6Config {
                gateway_ip: c6.gateway,
                subnet: (c6.subnet.network(), c6.subnet.prefix_len()),
            });
            gateway = gateway.with_ipv6(c6.gateway);
        }
        let nat = Nat::new(nat_cfg).map_err(|e| Error::Datapath(format!("{name}: {e}")))?;
        let datapath = Datapath::spawn(name, switch_cfg, gateway, nat, self.events.clone())
            .map_err(|e| Error::Datapath(format!("{name}: {e}")))?;
        tracing::info!(
            network = name,
            subnet = %cfg.subnet,
            gateway = %cfg.gateway,
            subnet6 = cfg6.as_ref().map(|c| c.subnet.to_string()),
            icc = net.icc,
            internal = net.internal,
            host_loopback = net.host_loopback,
            mtu = net.mtu,
            "serving network"
        );
        self.live.insert(
            name.to_string(),
            Live {
                datapath,
                ports: HashMap::new(),
                lost: HashMap::new(),
                next_port: 1,
                zone: Default::default(),
            },
        );
        Ok(())
    }

    /// Re-opens the persistent TAP of every endpoint of `name` (after a restart).
    async fn reattach(&mut self, name: &str) {
        let net = self.state.networks[name].clone();
        for ep in net.endpoints.values() {
            let spec = AttachSpec {
                netns: ep.netns.clone(),
                reopen: Some(ep.ifname.clone()),
                expect_ns: Some(ep.ns_id),
                mac: ep.mac.octets(),
                ip: ep.ip,
                prefix_len: net.pool.config().subnet.prefix_len(),
                gateway: net.pool.config().gateway,
                ipv6: ep
                    .ip6
                    .zip(net.pool6.as_ref())
                    .map(|(ip6, p)| netns_helper::Ipv6Spec {
                        ip: ip6,
                        prefix_len: p.config().subnet.prefix_len(),
                        gateway: p.config().gateway,
                    }),
                mtu: net.mtu,
                ifname: None,
                gso_max_size: net
                    .overlay
                    .is_some()
                    .then_some(crate::overlay::wire::TAP_GSO_MAX_SIZE),
            };
            let result = match self.call_helper(Request::Attach(spec)).await {
                Ok((_, Some(fd))) => self.plug(name, &ep.id, ep, fd).await.map(|()| {
                    self.names_attached(name, ep);
                }),
                Ok((_, None)) => Err(Error::Datapath("helper sent no fd".into())),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    tracing::info!(network = name, endpoint = ep.name, ip = %ep.ip, "endpoint re-attached");
                    for m in &ep.ports {
                        if let Err(e) = self.publish_one(name, (ep.ip, ep.ip6), *m).await {
                            tracing::warn!(
                                network = name,
                                endpoint = ep.name,
                                "port {m} not restored: {e}"
                            );
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(network = name, endpoint = ep.name, "endpoint lost: {e}");
                    self.events.send(
                        crate::events::Event::new("endpoint", "lost", Some(name))
                            .endpoint(&ep.name)
                            .attr(
                                "reason",
                                format_args!("not re-attached after a restart: {e}"),
                            ),
                    );
                    if let Some(live) = self.live.get_mut(name) {
                        live.lost.insert(ep.id.clone(), e.to_string());
                    }
                }
            }
        }
    }

    /// Hands an endpoint's TAP to its network's data path.
    async fn plug(
        &mut self,
        network: &str,
        id: &str,
        ep: &EndpointState,
        fd: std::os::fd::OwnedFd,
    ) -> Result<(), Error> {
        let live = self
            .live
            .get_mut(network)
            .ok_or_else(|| Error::Datapath(network.to_string()))?;
        let port = PortId(live.next_port);
        live.next_port += 1;
        let role = PortRole::Container {
            mac: ep.mac.octets(),
            ipv4: ep.ip,
            ipv6: ep.ip6,
        };
        live.datapath.attach(port, fd, role, &ep.name).await?;
        live.ports.insert(id.to_string(), port);
        live.lost.remove(id);
        Ok(())
    }

    async fn call_helper(
        &self,
        request: Request,
    ) -> Result<(Reply, Option<std::os::fd::OwnedFd>), Error> {
        call_helper(self.config.helper_exe.clone(), request).await
    }

    /// An endpoint of `network` by name or id.
    fn endpoint(&self, network: &str, container: &str) -> Result<&EndpointState, Error> {
        let net = self.network(network)?;
        let by_name = self
            .taken
            .get(network)
            .and_then(|t| t.names.get(container))
            .and_then(|id| net.endpoints.get(id));
        by_name
            .or_else(|| net.endpoints.get(container))
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "container {container} is not connected to network {network}"
                ))
            })
    }

    /// Adds an endpoint to the state (its lease is already held).
    fn insert_endpoint(&mut self, network: &str, ep: EndpointState) -> Result<(), Error> {
        let net = self
            .state
            .networks
            .get_mut(network)
            .ok_or_else(|| Error::NotFound(format!("network {network} not found")))?;
        let t = self.taken.entry(network.to_string()).or_default();
        t.names.insert(ep.name.clone(), ep.id.clone());
        t.macs.insert(ep.mac, ep.name.clone());
        net.endpoints.insert(ep.id.clone(), ep);
        Ok(())
    }

    /// Removes an endpoint from the state (not its lease).
    fn remove_endpoint(&mut self, network: &str, id: &str) -> Option<EndpointState> {
        let ep = self.state.networks.get_mut(network)?.endpoints.remove(id)?;
        if let Some(t) = self.taken.get_mut(network) {
            t.names.remove(&ep.name);
            t.macs.remove(&ep.mac);
        }
        Some(ep)
    }

    fn network(&self, name: &str) -> Result<&NetworkState, Error> {
        self.state
            .networks
            .get(name)
            .ok_or_else(|| Error::NotFound(format!("network {name} not found")))
    }
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}
