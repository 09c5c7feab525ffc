//! The JSON contract between `vswitchd` and its clients, defined once.
//!
//! Requests use `PascalCase` field names, as Docker's Engine API does, and refuse unknown
//! fields. `network inspect` returns [`NetworkInspect`], shaped like `docker network inspect`
//! plus our own fields (`Gateway`, per-endpoint `Interface`, `Netns`, `Status`, `Counters`).
//!
//! Endpoints (HTTP/1.1 over the daemon's unix socket, `curl --unix-socket` works):
//! - `GET /_ping` → 200 with `OK` when every data path is healthy; otherwise still 200, with
//!   `DEGRADED` and one line per network: `NAME: ok` or `NAME: N panics, last: ...` /
//!   `NAME: data path stopped` (see [`DatapathHealth`])
//! - `GET /networks` → `[NetworkSummary]`
//! - `POST /networks/create` [`NetworkCreate`] → [`Created`]
//! - `GET /networks/{name}` → [`NetworkInspect`]
//! - `DELETE /networks/{name}` → 204
//! - `POST /networks/{name}/connect` [`Connect`] → [`EndpointInspect`]
//! - `POST /networks/{name}/disconnect` [`Disconnect`] → 204
//! - `POST /networks/{name}/ports` [`PortRequest`] → 201 (publish at runtime)
//! - `POST /networks/{name}/ports/remove` [`PortRequest`] → 204
//! - `GET /ports` (optionally `?network=NAME`) → `[PortRow]`
//! - `GET /networks/{name}/stats` → [`NatStatsView`]
//! - `GET /networks/{name}/macs` → `[MacRow]` (the switch's MAC table)
//! - `GET /networks/{name}/flows` → [`FlowTable`] (live NAT flows, at most [`FLOWS_LIMIT`])
//! - `GET /networks/{name}/capture?endpoint=NAME&count=N&snaplen=N` → a pcap stream, header
//!   `Vswitch-Capture-Id`, trailers `Vswitch-Capture-Frames`/`-Dropped` (see
//!   [`crate::api::stream`])
//! - `DELETE /networks/{name}/capture/{id}` → 204 (the capture's stream ends)
//! - `GET /events?since=RFC3339&until=RFC3339` → JSON lines of [`crate::events::Event`]
//! - `GET /metrics` → Prometheus text
//!
//! Errors: a non-2xx status with [`ErrorBody`].

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Request body of `POST /networks/create`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct NetworkCreate {
    /// Network name: 1–64 of `[A-Za-z0-9_.-]`, starting with a letter or digit.
    pub name: String,
    /// Subnet in CIDR form; default: the next free subnet of Docker's default pools.
    #[serde(default)]
    pub subnet: Option<String>,
    /// Gateway address; default: the subnet's first host address.
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// Sub-range (CIDR) from which addresses are allocated; default: the whole subnet.
    #[serde(default)]
    pub ip_range: Option<String>,
    /// No NAT in either direction: containers reach only each other and the gateway.
    #[serde(default)]
    pub internal: bool,
    /// Driver options: `icc` (or `com.docker.network.bridge.enable_icc`) = `true|false`,
    /// `mtu` (or `com.docker.network.driver.mtu`) = 68..=65520, `host_loopback` =
    /// `true|false` (the gateway address reaches the host's 127.0.0.1; default false).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Link MTU for the network's endpoints; default: the daemon's `--mtu` (1500).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Dual stack: the network also gets an IPv6 subnet (`Subnet6`, or a unique-local /64).
    #[serde(rename = "EnableIPv6", default)]
    pub enable_ipv6: bool,
    /// IPv6 subnet in CIDR form (needs `EnableIPv6`); default: a unique-local /64.
    #[serde(default)]
    pub subnet6: Option<String>,
    /// IPv6 gateway address; default: the IPv6 subnet's `::1`.
    #[serde(default)]
    pub gateway6: Option<Ipv6Addr>,
    /// `bridge` (default: this host only) or `overlay` (every host of the cluster; needs
    /// the daemon's `--cluster-store` and an IPv4 `Subnet`).
    #[serde(default)]
    pub driver: Option<String>,
}

/// Reply of a create.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Created {
    /// The new network's id (64 hex digits).
    pub id: String,
}

/// One row of `GET /networks`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSummary {
    /// Network id.
    pub id: String,
    /// Network name.
    pub name: String,
    /// Always `vswitch`.
    pub driver: String,
    /// Always `local`.
    pub scope: String,
    /// Subnet in CIDR form; a dual-stack network's IPv6 subnet follows after a comma.
    pub subnet: String,
    /// Number of attached endpoints.
    pub endpoints: usize,
}

/// `docker network inspect`-shaped description of a network.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkInspect {
    /// Network name.
    pub name: String,
    /// Network id.
    pub id: String,
    /// Creation time, RFC 3339.
    pub created: String,
    /// `local` (bridge) or `global` (overlay).
    pub scope: String,
    /// `bridge` or `overlay`.
    pub driver: String,
    /// Dual stack (`--ipv6`).
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    /// Address management.
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    /// No NAT for this network.
    pub internal: bool,
    /// Always true: containers connect at any time.
    pub attachable: bool,
    /// Attached endpoints by endpoint id.
    pub containers: BTreeMap<String, EndpointInspect>,
    /// Driver options in Docker's spelling.
    pub options: BTreeMap<String, String>,
    /// Labels (none yet).
    pub labels: BTreeMap<String, String>,
    /// Our own: the gateway endpoint.
    pub gateway: GatewayInspect,
    /// Our own: number of entries in the switch's MAC table.
    pub mac_table_entries: usize,
    /// Our own: NAT flows and counters.
    pub nat: NatStatsView,
    /// Our own: the health of the network's data path thread.
    #[serde(default)]
    pub datapath: DatapathHealth,
    /// Overlay networks: the VNI and MTU, the other hosts with endpoints and those
    /// endpoints (`Containers` holds this host's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<OverlayInspect>,
}

/// The overlay part of an inspect.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OverlayInspect {
    /// VXLAN network identifier.
    #[serde(rename = "VNI")]
    pub vni: u32,
    /// This host's id in the cluster.
    pub host: String,
    /// Other live hosts of the cluster, as in `docker network inspect`'s `Peers`.
    pub peers: Vec<PeerInspect>,
    /// Endpoints on other hosts, by endpoint id.
    pub remote_containers: BTreeMap<String, RemoteEndpointInspect>,
}

/// A cluster member.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PeerInspect {
    /// Host id.
    pub name: String,
    /// Its advertise address.
    #[serde(rename = "IP")]
    pub ip: String,
}

/// An endpoint on another host.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RemoteEndpointInspect {
    /// Its name on the network.
    pub name: String,
    /// The host id it lives on.
    pub host: String,
    /// MAC address.
    pub mac_address: String,
    /// `IP/prefix`.
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    /// DNS aliases.
    pub aliases: Vec<String>,
}

/// The health of a network's data path: panics are caught (the frame is dropped and
/// forwarding goes on), counted and reported here.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DatapathHealth {
    /// Running and never panicked.
    pub healthy: bool,
    /// The thread is running.
    pub running: bool,
    /// Panics caught since the daemon started.
    pub panics: u64,
    /// The last panic: message, location and what was being processed (a frame summary,
    /// never its payload).
    pub last_panic: Option<String>,
}

/// The IPAM section of an inspect.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ipam {
    /// Always `default`.
    pub driver: String,
    /// One entry per subnet: the IPv4 one, then the IPv6 one of a dual-stack network.
    pub config: Vec<IpamConfig>,
}

/// One subnet of a network.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfig {
    /// Subnet in CIDR form.
    pub subnet: String,
    /// Gateway address.
    pub gateway: String,
    /// Allocation range, when restricted.
    #[serde(rename = "IPRange", default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
}

/// The gateway as seen in an inspect.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GatewayInspect {
    /// Gateway IPv4 address.
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    /// Gateway IPv6 address (empty on an IPv4-only network).
    #[serde(rename = "IPv6Address", default)]
    pub ipv6_address: String,
    /// Gateway MAC.
    pub mac_address: String,
    /// ARP and echo replies sent, frames ignored and requests rate limited.
    #[serde(flatten)]
    pub replies: nat::GatewayCounters,
    /// The gateway's switch port counters.
    pub counters: PortCountersView,
}

/// Request body of `POST /networks/{name}/connect`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Connect {
    /// The container's network namespace: a path (`/run/netns/NAME`, `/proc/PID/ns/net`) or a
    /// PID.
    pub container: String,
    /// Endpoint name, unique in the network; default: the namespace's file name or `pid-N`.
    #[serde(default)]
    pub name: Option<String>,
    /// Static address inside the subnet; default: the next free one.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    /// Static IPv6 address inside the network's IPv6 subnet; default: the next free one.
    #[serde(default)]
    pub ip6: Option<Ipv6Addr>,
    /// MAC address; default: 02:42 followed by the IPv4 address.
    #[serde(default)]
    pub mac: Option<String>,
    /// Ports to publish, `[HOSTIP:]HOSTPORT:PORT[/tcp|udp]` each.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Extra DNS names of the container on this network.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Name of the interface inside the container (1-15 of `[A-Za-z0-9_.-]`, not yet taken
    /// there); default: the first free `ethN`.
    #[serde(default)]
    pub interface: Option<String>,
}

/// Request body of `POST /networks/{name}/disconnect`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Disconnect {
    /// Endpoint name or id.
    pub container: String,
}

/// One endpoint in an inspect.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointInspect {
    /// Endpoint name.
    pub name: String,
    /// Endpoint id.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// MAC address.
    pub mac_address: String,
    /// Address with prefix length, e.g. `172.18.0.2/16`.
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    /// IPv6 address with prefix length on a dual-stack network, else empty.
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: String,
    /// Our own: the namespace file the endpoint was attached through.
    pub netns: String,
    /// Our own: interface name inside the container.
    pub interface: String,
    /// Our own: `attached`, or `lost: <why>` when a restarted daemon could not re-open it.
    pub status: String,
    /// Our own: switch port counters.
    pub counters: PortCountersView,
    /// Our own: published ports.
    pub ports: Vec<PortMapping>,
    /// DNS aliases besides the name.
    pub aliases: Vec<String>,
}

/// Per-port counters as shown to users: the switch's own [`switch::PortCounters`], whose
/// JSON is `RxFrames`, `RxBytes`, `TxFrames`, `TxBytes`, `TxErrors` and `Drops` (reason name →
/// count, only non-zero reasons).
pub type PortCountersView = switch::PortCounters;

/// Body of every error reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorBody {
    /// One line: what failed, the value at fault, why.
    pub message: String,
}

/// A published port (`[HOSTIP:]HOSTPORT:PORT[/tcp|udp]`) and its protocol: the NAT's own types.
pub use nat::{PortMapping, Protocol};

/// Request body of `POST /networks/{name}/ports` and `POST /networks/{name}/ports/remove`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PortRequest {
    /// Endpoint name or id.
    pub container: String,
    /// `[HOSTIP:]HOSTPORT:PORT[/tcp|udp]`.
    pub publish: String,
}

/// One row of `GET /ports`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortRow {
    /// Network name.
    pub network: String,
    /// Endpoint name.
    pub container: String,
    /// The mapping.
    #[serde(flatten)]
    pub mapping: PortMapping,
}

/// `GET /networks/{name}/stats`: the NAT's flows and counters.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NatStatsView {
    /// Live flows by protocol.
    pub flows: FlowCounts,
    /// The per-network flow limit.
    pub max_flows: usize,
    /// Bytes the TCP flows' buffers hold now.
    pub buffer_bytes: usize,
    /// What they may hold together (`--nat-memory`).
    pub buffer_limit: usize,
    /// Cumulative counters.
    pub counters: nat::NatCounters,
}

/// Live flows by protocol.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FlowCounts {
    /// TCP flows.
    pub tcp: usize,
    /// UDP flows.
    pub udp: usize,
    /// ICMP echo flows.
    pub icmp: usize,
}

/// One entry of a network's MAC table (`GET /networks/{name}/macs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MacRow {
    /// The MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac_address: String,
    /// The endpoint's name; `_gateway` for the gateway, `uplink` for an uplink port, `-` for
    /// a port no endpoint owns.
    pub endpoint: String,
    /// The switch port id.
    pub port: u32,
    /// Pinned (bound at connect, never aged or moved): container MACs and the gateway's.
    pub static_entry: bool,
    /// Seconds since a frame from it was last seen; `null` for static entries.
    pub age: Option<u64>,
}

/// At most this many flows are listed per `GET /networks/{name}/flows`.
pub const FLOWS_LIMIT: usize = 100_000;

/// Reply of `GET /networks/{name}/flows`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FlowTable {
    /// The flows, in no particular order.
    pub flows: Vec<FlowRow>,
    /// True when the network had more than [`FLOWS_LIMIT`] flows and the rest were left out.
    pub truncated: bool,
}

/// One live NAT flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FlowRow {
    /// `tcp`, `udp` or `icmp`.
    pub protocol: nat::FlowProtocol,
    /// The container's address and port (`[v6]:port` for IPv6; ICMP: the echo identifier).
    pub container: SocketAddr,
    /// The remote side as the container addresses it (ICMP: port 0); for a published
    /// port, the client as the container sees it.
    pub remote: SocketAddr,
    /// TCP: `DIALING` (the host connection is pending) or smoltcp's state name
    /// (`ESTABLISHED`, `FIN-WAIT-1`, ...); UDP and ICMP: `active`.
    pub state: String,
    /// Seconds since the flow was opened.
    pub age: u64,
    /// Payload bytes from the container to the remote side.
    pub bytes_to_remote: u64,
    /// Payload bytes from the remote side to the container.
    pub bytes_to_container: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_mappings_parse_like_docker_publish() {
        let m: PortMapping = "8080:80".parse().unwrap();
        assert_eq!(
            m,
            PortMapping {
                host_ip: Ipv4Addr::UNSPECIFIED.into(),
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp
            }
        );
        let m: PortMapping = "127.0.0.1:5353:53/udp".parse().unwrap();
        assert_eq!(
            (m.host_ip, m.host_port, m.container_port, m.protocol),
            (Ipv4Addr::LOCALHOST.into(), 5353, 53, Protocol::Udp)
        );
        assert_eq!(m.to_string(), "127.0.0.1:5353:53/udp");
        assert_eq!(
            m.to_string().parse::<PortMapping>().unwrap(),
            m,
            "round trip"
        );
    }

    #[test]
    fn bad_port_mappings_name_the_problem() {
        for (spec, why) in [
            ("80", "wrong number of fields"),
            ("a:b:c:d", "wrong number of fields"),
            ("8080:80/sctp", "unknown protocol"),
            ("0:80", "not a port"),
            ("8080:70000", "not a port"),
            ("300.1.1.1:80:80", "not an IPv4 address"),
        ] {
            let err = spec.parse::<PortMapping>().unwrap_err();
            assert!(err.contains(why) && err.contains(spec), "{spec}: {err}");
        }
    }
}
