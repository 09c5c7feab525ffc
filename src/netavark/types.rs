//! netavark's plugin API 1.0.0 types, as JSON: our own serde mirror of the fields of
//! netavark 2.1's `src/network/types.rs` that a plugin sees (`Network`, `Subnet`,
//! `PerNetworkOptions`, `PortMapping`, `NetworkPluginExec`, `StatusBlock`), with the same
//! field names, so that we need not depend on the whole netavark crate.
//!
//! As in netavark, a field wrapped in `Option` may be missing (or `null`) and is left out when
//! serialized as `None`; every other field must be present. Unknown fields are ignored, as
//! netavark ignores them. Times (`created`) are passed through as the strings podman wrote.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The plugin API version this plugin implements.
pub const API_VERSION: &str = "1.0.0";

/// A podman network (the input and output of `create`; part of the input of `setup`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Network {
    /// Creation time (RFC 3339), set by netavark after `create`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Whether containers are told to use the network's DNS server.
    pub dns_enabled: bool,
    /// The driver: the plugin's file name (`vswitch`).
    pub driver: String,
    /// Network id (64 hex digits), set by podman.
    pub id: String,
    /// No external routes (for us: no NAT).
    pub internal: bool,
    /// The network has an IPv6 subnet.
    pub ipv6_enabled: bool,
    /// Network name, set by podman.
    pub name: String,
    /// The host-side interface name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_interface: Option<String>,
    /// Driver options (`podman network create -o KEY=VALUE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<HashMap<String, String>>,
    /// IPAM options (`driver`: `host-local`, `dhcp`, `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam_options: Option<HashMap<String, String>>,
    /// The network's subnets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnets: Option<Vec<Subnet>>,
    /// Static routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<Route>>,
    /// DNS servers for aardvark-dns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_dns_servers: Option<Vec<IpAddr>>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<HashMap<String, String>>,
}

/// One subnet of a network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subnet {
    /// The gateway address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Where addresses are leased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_range: Option<LeaseRange>,
    /// The subnet in CIDR form.
    pub subnet: IpNet,
}

/// The range of a subnet in which addresses are leased.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseRange {
    /// Last address to lease.
    #[serde(default)]
    pub end_ip: Option<String>,
    /// First address to lease.
    #[serde(default)]
    pub start_ip: Option<String>,
}

/// A static route of a network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// Next hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Destination in CIDR form.
    pub destination: IpNet,
    /// Route metric.
    #[serde(default)]
    pub metric: Option<u32>,
    /// `unicast`, `blackhole`, `unreachable` or `prohibit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_type: Option<String>,
}

/// The container's options for one network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PerNetworkOptions {
    /// Extra DNS names of the container on this network.
    #[serde(default)]
    pub aliases: Option<Vec<String>>,
    /// The interface name inside the container (`eth0`, ...).
    pub interface_name: String,
    /// Static addresses, at most one per family for vswitchd.
    #[serde(default)]
    pub static_ips: Option<Vec<IpAddr>>,
    /// Static MAC address.
    #[serde(default)]
    pub static_mac: Option<String>,
    /// Driver-specific options of this container.
    #[serde(default)]
    pub options: Option<HashMap<String, String>>,
}

/// One or more published ports (`podman run -p`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The first container port.
    pub container_port: u16,
    /// The host address to listen on; empty for all.
    pub host_ip: String,
    /// The first host port.
    pub host_port: u16,
    /// `tcp`, `udp`, `sctp`, or several of them separated by commas.
    pub protocol: String,
    /// How many consecutive ports, from `host_port` and `container_port` on (1 or more).
    pub range: u16,
}

/// The input of `setup` and `teardown`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkPluginExec {
    /// Container id.
    pub container_id: String,
    /// Container name.
    pub container_name: String,
    /// Published ports.
    #[serde(default)]
    pub port_mappings: Option<Vec<PortMapping>>,
    /// The network (as `create` completed it).
    pub network: Network,
    /// The container's options on this network.
    pub network_options: PerNetworkOptions,
}

/// The output of `setup`: what the container got on the network.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusBlock {
    /// Search domains for the container's /etc/resolv.conf.
    #[serde(default)]
    pub dns_search_domains: Option<Vec<String>>,
    /// Nameservers for the container's /etc/resolv.conf.
    #[serde(default)]
    pub dns_server_ips: Option<Vec<IpAddr>>,
    /// The interfaces made in the container, by name.
    #[serde(default)]
    pub interfaces: Option<HashMap<String, NetInterface>>,
}

/// One interface in a [`StatusBlock`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetInterface {
    /// Its MAC address.
    pub mac_address: String,
    /// Its addresses.
    #[serde(default)]
    pub subnets: Option<Vec<NetAddress>>,
}

/// An address of an interface, with its prefix, and the subnet's gateway.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetAddress {
    /// The subnet's gateway.
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// The interface's address with the subnet's prefix length (`10.88.0.5/16`).
    pub ipnet: IpNet,
}

/// The output of `info`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Info {
    /// The plugin's version.
    pub version: String,
    /// [`API_VERSION`].
    pub api_version: String,
}

/// What the plugin prints (with exit status 1) when it fails.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorJson {
    /// One line.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of netavark's `plugin-API.md` (v2.1.0), verbatim.
    const CREATE_EXAMPLE: &str = include_str!("fixtures/plugin-api-create.json");
    const SETUP_EXAMPLE: &str = include_str!("fixtures/plugin-api-setup.json");
    const STATUS_EXAMPLE: &str = include_str!("fixtures/plugin-api-status.json");
    /// netavark's `src/test/config/portmapping.json` (v2.1.0), a full setup config.
    const PORTMAPPING_CONFIG: &str = include_str!("fixtures/portmapping.json");

    fn same_json<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
        text: &str,
    ) -> T {
        let parsed: T = serde_json::from_str(text).unwrap();
        let again = serde_json::to_string(&parsed).unwrap();
        assert_eq!(serde_json::from_str::<T>(&again).unwrap(), parsed);
        // Nothing the example holds is lost or changed (its `null`s become absent fields).
        let mut orig: serde_json::Value = serde_json::from_str(text).unwrap();
        strip_nulls(&mut orig);
        let mut ours: serde_json::Value = serde_json::from_str(&again).unwrap();
        strip_nulls(&mut ours);
        assert_eq!(ours, orig);
        parsed
    }

    fn strip_nulls(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.retain(|_, v| !v.is_null());
                m.values_mut().for_each(strip_nulls);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip_nulls),
            _ => {}
        }
    }

    #[test]
    fn plugin_api_examples_round_trip() {
        let net: Network = same_json(CREATE_EXAMPLE);
        assert_eq!(net.name, "example1");
        assert_eq!(
            net.subnets.unwrap()[0].gateway,
            Some("10.0.0.1".parse().unwrap())
        );
        let exec: NetworkPluginExec = same_json(SETUP_EXAMPLE);
        assert_eq!(exec.container_name, "testctr");
        assert_eq!(exec.network_options.interface_name, "eth0");
        assert_eq!(
            exec.network_options.static_ips,
            Some(vec!["10.88.0.50".parse().unwrap()])
        );
        let pm = &exec.port_mappings.unwrap()[0];
        assert_eq!((pm.host_port, pm.container_port, pm.range), (8080, 80, 1));
        let status: StatusBlock = same_json(STATUS_EXAMPLE);
        let eth0 = &status.interfaces.unwrap()["eth0"];
        assert_eq!(eth0.mac_address, "aa:bb:cc:dd:aa:00");
        assert_eq!(
            eth0.subnets.as_ref().unwrap()[0].ipnet,
            "10.88.0.50/16".parse::<IpNet>().unwrap()
        );
    }

    #[test]
    fn a_real_setup_config_parses_into_our_types() {
        let config: serde_json::Value = serde_json::from_str(PORTMAPPING_CONFIG).unwrap();
        let net: Network =
            serde_json::from_value(config["network_info"]["podman"].clone()).unwrap();
        assert_eq!(
            net.created.as_deref(),
            Some("2021-11-18T01:58:22.148419519Z")
        );
        assert_eq!(net.ipam_options.unwrap()["driver"], "host-local");
        let opts: PerNetworkOptions =
            serde_json::from_value(config["networks"]["podman"].clone()).unwrap();
        assert_eq!(opts.aliases, Some(vec!["ad1df727792c".to_string()]));
        assert_eq!(opts.static_mac, None);
        let pms: Vec<PortMapping> =
            serde_json::from_value(config["port_mappings"].clone()).unwrap();
        assert_eq!(pms[0].host_ip, "");
    }

    #[test]
    fn missing_required_fields_are_refused() {
        let mut v: serde_json::Value = serde_json::from_str(SETUP_EXAMPLE).unwrap();
        v["network_options"]
            .as_object_mut()
            .unwrap()
            .remove("interface_name");
        let err = serde_json::from_value::<NetworkPluginExec>(v).unwrap_err();
        assert!(err.to_string().contains("interface_name"), "{err}");
    }
}
