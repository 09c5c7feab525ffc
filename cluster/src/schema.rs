//! What the store holds: the parsed `--cluster-store` URL, the JSON records under
//! [`crate::PREFIX`], their keys, and the [`ClusterView`] the watch builds from them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::{Error, FIRST_VNI, LAST_VNI, PREFIX};

/// A parsed `--cluster-store etcd://HOST:PORT[,HOST:PORT...]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreUrl {
    /// `http://HOST:PORT` per endpoint, as the client wants them.
    pub endpoints: Vec<String>,
}

impl StoreUrl {
    /// Parses `etcd://HOST:PORT[,HOST:PORT...]`.
    ///
    /// # Errors
    /// Another scheme, an empty list, or an endpoint without a valid port.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let rest = s.strip_prefix("etcd://").ok_or_else(|| {
            Error::Invalid(format!(
                "invalid --cluster-store {s:?}: expected etcd://HOST:PORT[,HOST:PORT...]"
            ))
        })?;
        let mut endpoints = Vec::new();
        for part in rest.split(',') {
            let (host, port) = part.rsplit_once(':').ok_or_else(|| {
                Error::Invalid(format!(
                    "invalid --cluster-store {s:?}: endpoint {part:?} has no :PORT"
                ))
            })?;
            let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
            let host_ok = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
            if !port_ok || !host_ok {
                return Err(Error::Invalid(format!(
                    "invalid --cluster-store {s:?}: endpoint {part:?} is not HOST:PORT"
                )));
            }
            endpoints.push(format!("http://{host}:{port}"));
        }
        Ok(StoreUrl { endpoints })
    }
}

/// `/vswitch/v1/hosts/HOSTID`: a member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostRecord {
    /// The host's `--cluster-advertise` address.
    pub advertise: IpAddr,
    /// Its VXLAN UDP port.
    pub vxlan_port: u16,
}

impl HostRecord {
    /// Its VTEP: where VXLAN for its endpoints goes.
    pub fn vtep(&self) -> SocketAddr {
        SocketAddr::new(self.advertise, self.vxlan_port)
    }
}

/// `/vswitch/v1/networks/NAME`: an overlay network, the same on every host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkRecord {
    /// 64 hex digits, the same on every host.
    pub id: String,
    /// IPv4 subnet.
    pub subnet: Ipv4Net,
    /// The gateway address every host serves.
    pub gateway: Ipv4Addr,
    /// Addresses are allocated from this range (default: the subnet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Ipv4Net>,
    /// 24-bit VXLAN network identifier.
    pub vni: u32,
    /// No NAT.
    pub internal: bool,
    /// Inter-container communication.
    pub icc: bool,
    /// RFC 3339 creation time.
    pub created: String,
}

/// `/vswitch/v1/endpoints/NAME/ID`: a container attached on some host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointRecord {
    /// The host it lives on.
    pub host: String,
    /// Its name on the network.
    pub name: String,
    /// Its aliases on the network.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Its MAC address.
    pub mac: String,
    /// Its IPv4 address.
    pub ipv4: Ipv4Addr,
}

/// `/vswitch/v1/ipam/NAME/IP`: who holds an address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LeaseRecord {
    /// The host holding it.
    pub host: String,
    /// The endpoint id it is for.
    pub endpoint: String,
}

/// Everything under the prefix, as of one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// The store revision it was read at.
    pub revision: i64,
    /// Live hosts by id.
    pub hosts: BTreeMap<String, HostRecord>,
    /// Overlay networks by name.
    pub networks: BTreeMap<String, NetworkRecord>,
    /// Network name → endpoint id → endpoint.
    pub endpoints: BTreeMap<String, BTreeMap<String, EndpointRecord>>,
}

impl ClusterView {
    /// Reads a view from the key/values under [`PREFIX`]; anything malformed is skipped.
    pub fn from_kvs<'a>(
        revision: i64,
        kvs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Self {
        let mut view = ClusterView {
            revision,
            ..Default::default()
        };
        for (k, v) in kvs {
            let Ok(key) = std::str::from_utf8(k) else {
                continue;
            };
            let Some(rest) = key.strip_prefix(PREFIX) else {
                continue;
            };
            let parts: Vec<&str> = rest.split('/').collect();
            match parts.as_slice() {
                ["hosts", id] => {
                    if let Some(h) = parse::<HostRecord>(key, v) {
                        view.hosts.insert((*id).to_string(), h);
                    }
                }
                ["networks", name] => {
                    if let Some(n) = parse::<NetworkRecord>(key, v)
                        && n.vni >= 1
                        && n.vni <= LAST_VNI
                        && n.subnet.contains(&n.gateway)
                    {
                        view.networks.insert((*name).to_string(), n);
                    }
                }
                ["endpoints", net, id] => {
                    if let Some(e) = parse::<EndpointRecord>(key, v) {
                        view.endpoints
                            .entry((*net).to_string())
                            .or_default()
                            .insert((*id).to_string(), e);
                    }
                }
                _ => {}
            }
        }
        view
    }
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(key: &str, v: &[u8]) -> Option<T> {
    match serde_json::from_slice(v) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(key, "cluster store: ignoring a malformed value: {e}");
            None
        }
    }
}

/// The innermost cause of a client error (e.g. "Connection refused (os error 111)"): the
/// outer layers (gRPC status, transport) only repeat it at length.
pub(crate) fn root_cause(e: &etcd_client::Error) -> String {
    let mut last: &dyn std::error::Error = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

pub(crate) fn host_key(id: &str) -> String {
    format!("{PREFIX}hosts/{id}")
}
pub(crate) fn network_key(name: &str) -> String {
    format!("{PREFIX}networks/{name}")
}
pub(crate) fn vni_key(vni: u32) -> String {
    format!("{PREFIX}vni/{vni}")
}
pub(crate) fn ipam_prefix(net: &str) -> String {
    format!("{PREFIX}ipam/{net}/")
}
pub(crate) fn ipam_key(net: &str, ip: Ipv4Addr) -> String {
    format!("{PREFIX}ipam/{net}/{ip}")
}
pub(crate) fn endpoints_prefix(net: &str) -> String {
    format!("{PREFIX}endpoints/{net}/")
}
pub(crate) fn endpoint_key(net: &str, id: &str) -> String {
    format!("{PREFIX}endpoints/{net}/{id}")
}

/// The addresses a network hands out, in order: its range (or subnet) without the network
/// and broadcast addresses and the gateway.
pub fn candidates(net: &NetworkRecord) -> impl Iterator<Item = Ipv4Addr> + '_ {
    let range = net.ip_range.unwrap_or(net.subnet);
    let subnet = net.subnet;
    range.hosts().filter(move |ip| {
        *ip != net.gateway && *ip != subnet.network() && *ip != subnet.broadcast()
    })
}

/// The lowest VNI at or above [`FIRST_VNI`] not in `used`.
pub fn free_vni(used: &std::collections::BTreeSet<u32>) -> Option<u32> {
    (FIRST_VNI..=LAST_VNI).find(|v| !used.contains(v))
}
