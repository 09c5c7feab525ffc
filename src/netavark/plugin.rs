//! The plugin's four verbs, each one or two calls to the daemon's API:
//! - `create`: the network's subnets come from the request (one IPv4 subnet at most; an IPv6
//!   one makes it dual stack) or from vswitchd's pools; the vswitchd network of the same name
//!   is created (or adopted when it exists with the same subnets) and the completed network
//!   is returned;
//! - `setup NETNS`: connects the namespace as endpoint `container_name`, with its static
//!   addresses, MAC, aliases, interface name and published ports (each `range` expanded, each
//!   protocol of `"tcp,udp"` published), and returns the [`StatusBlock`];
//! - `teardown NETNS`: disconnects that endpoint, which unpublishes its ports; an endpoint
//!   that is already gone (never attached, detached because its namespace vanished, or its
//!   network removed) is success;
//! - `info`: the version and API version.
//!
//! The daemon is found at the network option `socket`, else where `vswitchctl` looks
//! ([`crate::paths::socket`]); inside a user namespace (rootless podman runs netavark in
//! its own), where we look like root but are the user, `$XDG_RUNTIME_DIR/vswitchd.sock`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use hyper::StatusCode;
use ipnet::IpNet;

use super::inputs::{check_name, options, publish_specs, split_subnets, v4_only, v6_only};
use super::types::{
    API_VERSION, Info, NetAddress, NetInterface, Network, NetworkPluginExec, StatusBlock, Subnet,
};
use crate::api::types::{Connect, Disconnect, EndpointInspect, NetworkCreate, NetworkInspect};
use crate::client::{Client, ClientError};

/// Why a verb failed; printed as the one-line `{"error": ...}`.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// Wrong command line.
    #[error("{0}")]
    Usage(String),
    /// stdin is not the JSON netavark sends.
    #[error("invalid {what} JSON on stdin: {reason}")]
    Input {
        /// What was expected.
        what: &'static str,
        /// serde's explanation.
        reason: String,
    },
    /// A value vswitchd cannot serve.
    #[error("{0}")]
    Invalid(String),
    /// The daemon refused, or is not running.
    #[error("vswitchd: {0}")]
    Daemon(#[from] ClientError),
}

/// A verb of the plugin API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verb {
    /// `create`: complete and create a network.
    Create,
    /// `setup NETNS`.
    Setup(String),
    /// `teardown NETNS`.
    Teardown(String),
    /// `info` (also no verb at all, as netavark's own plugins do).
    Info,
}

impl Verb {
    /// Parses the arguments after the program name.
    ///
    /// # Errors
    /// [`PluginError::Usage`] for an unknown verb, a missing or extra argument.
    pub fn parse(args: &[String]) -> Result<Self, PluginError> {
        let usage = "usage: netavark-plugin-vswitch create | setup NETNS | teardown NETNS | info";
        let verb = match args {
            [] => Verb::Info,
            [v] if v == "info" => Verb::Info,
            [v] if v == "create" => Verb::Create,
            [v, ns] if v == "setup" && !ns.is_empty() => Verb::Setup(ns.clone()),
            [v, ns] if v == "teardown" && !ns.is_empty() => Verb::Teardown(ns.clone()),
            [v] | [v, _] if matches!(v.as_str(), "setup" | "teardown") => {
                return Err(PluginError::Usage(format!(
                    "{v}: the netns path argument is missing ({usage})"
                )));
            }
            [v, ..] if ["info", "create", "setup", "teardown"].contains(&v.as_str()) => {
                return Err(PluginError::Usage(format!(
                    "{v}: too many arguments ({usage})"
                )));
            }
            [v, ..] => {
                return Err(PluginError::Usage(format!(
                    "unknown subcommand {v:.64?} ({usage})"
                )));
            }
        };
        Ok(verb)
    }
}

/// Runs one verb with `stdin`'s bytes; returns what to print on stdout.
///
/// # Errors
/// [`PluginError`], one line.
pub async fn run(verb: Verb, stdin: &[u8]) -> Result<String, PluginError> {
    let out = match verb {
        Verb::Info => to_json(&Info {
            version: env!("CARGO_PKG_VERSION").to_string(),
            api_version: API_VERSION.to_string(),
        }),
        Verb::Create => to_json(&create(parse(stdin, "network")?).await?),
        Verb::Setup(netns) => to_json(&setup(&netns, parse(stdin, "setup")?).await?),
        Verb::Teardown(_) => {
            teardown(parse(stdin, "teardown")?).await?;
            String::new()
        }
    };
    Ok(out)
}

fn parse<T: serde::de::DeserializeOwned>(
    stdin: &[u8],
    what: &'static str,
) -> Result<T, PluginError> {
    serde_json::from_slice(stdin).map_err(|e| PluginError::Input {
        what,
        reason: e.to_string(),
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    // Our own types, of strings, numbers and maps with string keys: serializing cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

/// Whether a daemon error says "no such network/endpoint".
fn not_found(e: &ClientError) -> bool {
    matches!(e, ClientError::Refused { status, .. } if *status == StatusCode::NOT_FOUND)
}

/// `create`: validates, creates (or adopts) the vswitchd network, completes the config.
async fn create(mut net: Network) -> Result<Network, PluginError> {
    check_name(&net.name)?;
    let opts = options(&net)?;
    if let Some(driver) = net.ipam_options.as_ref().and_then(|o| o.get("driver"))
        && driver != "host-local"
    {
        return Err(PluginError::Invalid(format!(
            "IPAM driver {driver:.64?} is not supported: vswitchd assigns addresses itself (host-local)"
        )));
    }
    if net.routes.as_ref().is_some_and(|r| !r.is_empty()) {
        return Err(PluginError::Invalid(
            "static routes are not supported by vswitchd".into(),
        ));
    }
    if net
        .network_dns_servers
        .as_ref()
        .is_some_and(|d| !d.is_empty())
    {
        return Err(PluginError::Invalid(
            "network DNS servers are not supported: vswitchd relays to its own --dns servers"
                .into(),
        ));
    }
    let (v4, v6) = split_subnets(net.subnets.as_deref().unwrap_or_default())?;
    let client = Client::new(&opts.socket);
    let path = format!("/networks/{}", net.name);
    let existing = match client.get::<NetworkInspect>(&path).await {
        Ok(n) => Some(n),
        Err(e) if not_found(&e) => None,
        Err(e) => return Err(e.into()),
    };
    let inspect = match existing {
        Some(n) => {
            let has = |want: &Option<Subnet>, i: usize| match want {
                None => true,
                Some(s) => n
                    .ipam
                    .config
                    .get(i)
                    .and_then(|c| c.subnet.parse::<IpNet>().ok())
                    .is_some_and(|have| have == s.subnet),
            };
            if !has(&v4, 0) || !has(&v6, 1) || (v6.is_some() && !n.enable_ipv6) {
                let have: Vec<&str> = n.ipam.config.iter().map(|c| c.subnet.as_str()).collect();
                return Err(PluginError::Invalid(format!(
                    "network {} already exists in vswitchd with subnet {}",
                    net.name,
                    have.join(",")
                )));
            }
            n
        }
        None => {
            let mut options = BTreeMap::new();
            if let Some(icc) = opts.icc {
                options.insert("icc".to_string(), icc.to_string());
            }
            if let Some(hl) = opts.host_loopback {
                options.insert("host_loopback".to_string(), hl.to_string());
            }
            let req = NetworkCreate {
                name: net.name.clone(),
                subnet: v4.as_ref().map(|s| s.subnet.to_string()),
                gateway: v4.as_ref().and_then(|s| s.gateway).and_then(v4_only),
                ip_range: None,
                internal: opts.internal || net.internal,
                options,
                mtu: opts.mtu,
                enable_ipv6: net.ipv6_enabled || v6.is_some(),
                subnet6: v6.as_ref().map(|s| s.subnet.to_string()),
                gateway6: v6.as_ref().and_then(|s| s.gateway).and_then(v6_only),
                driver: None,
            };
            client.post("/networks/create", &req).await?;
            client.get::<NetworkInspect>(&path).await?
        }
    };
    let mut subnets = Vec::new();
    for c in &inspect.ipam.config {
        let (Ok(subnet), Ok(gateway)) = (c.subnet.parse(), c.gateway.parse()) else {
            return Err(PluginError::Invalid(format!(
                "vswitchd reported an unreadable subnet {:.64?} / gateway {:.64?}",
                c.subnet, c.gateway
            )));
        };
        subnets.push(Subnet {
            gateway: Some(gateway),
            lease_range: None,
            subnet,
        });
    }
    net.subnets = Some(subnets);
    net.ipv6_enabled = inspect.enable_ipv6;
    net.internal = inspect.internal;
    // There is no host interface: the network is served by vswitchd's network of this name.
    net.network_interface = Some(inspect.name);
    Ok(net)
}

/// `setup NETNS`: connects the namespace and reports what it got.
async fn setup(netns: &str, exec: NetworkPluginExec) -> Result<StatusBlock, PluginError> {
    let net = &exec.network;
    check_name(&net.name)?;
    let opts = options(net)?;
    let client = Client::new(&opts.socket);
    let path = format!("/networks/{}", net.name);
    let inspect: NetworkInspect = client.get(&path).await.map_err(|e| {
        if not_found(&e) {
            PluginError::Invalid(format!(
                "network {} does not exist in vswitchd (socket {}): create it with `podman network create -d vswitch`",
                net.name,
                opts.socket.display()
            ))
        } else {
            e.into()
        }
    })?;
    let po = &exec.network_options;
    let (mut ip, mut ip6) = (None, None);
    for addr in po.static_ips.as_deref().unwrap_or_default() {
        let taken = match addr {
            IpAddr::V4(a) => ip.replace(*a).is_some(),
            IpAddr::V6(a) => ip6.replace(*a).is_some(),
        };
        if taken {
            return Err(PluginError::Invalid(format!(
                "static IP {addr}: vswitchd gives a container one address per family on a network"
            )));
        }
    }
    let mut aliases: Vec<String> = Vec::new();
    for a in po.aliases.as_deref().unwrap_or_default() {
        if *a != exec.container_name && !aliases.contains(a) {
            aliases.push(a.clone());
        }
    }
    let req = Connect {
        container: netns.to_string(),
        name: Some(exec.container_name.clone()),
        ip,
        ip6,
        mac: po.static_mac.clone().filter(|m| !m.is_empty()),
        publish: publish_specs(exec.port_mappings.as_deref().unwrap_or_default())?,
        aliases,
        interface: Some(po.interface_name.clone()).filter(|n| !n.is_empty()),
    };
    let body = client.post(&format!("{path}/connect"), &req).await?;
    let ep: EndpointInspect = serde_json::from_slice(&body)
        .map_err(|e| PluginError::Daemon(ClientError::Protocol(e.to_string())))?;
    Ok(status_block(net.dns_enabled, &inspect, &ep))
}

/// The [`StatusBlock`] of an endpoint: its interface, MAC, addresses with their gateways,
/// and the gateways as nameservers when the network has DNS.
fn status_block(dns: bool, net: &NetworkInspect, ep: &EndpointInspect) -> StatusBlock {
    let mut subnets = Vec::new();
    for (i, addr) in [&ep.ipv4_address, &ep.ipv6_address].into_iter().enumerate() {
        let Ok(ipnet) = addr.parse::<IpNet>() else {
            continue;
        };
        let gateway = net.ipam.config.get(i).and_then(|c| c.gateway.parse().ok());
        subnets.push(NetAddress { gateway, ipnet });
    }
    let dns_server_ips = if dns {
        subnets.iter().filter_map(|s| s.gateway).collect()
    } else {
        Vec::new()
    };
    let iface = NetInterface {
        mac_address: ep.mac_address.clone(),
        subnets: Some(subnets),
    };
    StatusBlock {
        dns_search_domains: Some(Vec::new()),
        dns_server_ips: Some(dns_server_ips),
        interfaces: Some(HashMap::from([(ep.interface.clone(), iface)])),
    }
}

/// `teardown NETNS`: disconnects the endpoint; one that is gone already is success.
async fn teardown(exec: NetworkPluginExec) -> Result<(), PluginError> {
    let net = &exec.network;
    check_name(&net.name)?;
    let opts = options(net)?;
    let client = Client::new(&opts.socket);
    let req = Disconnect {
        container: exec.container_name.clone(),
    };
    match client
        .post(&format!("/networks/{}/disconnect", net.name), &req)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn verbs_and_their_errors() {
        assert_eq!(Verb::parse(&args(&[])).unwrap(), Verb::Info);
        assert_eq!(Verb::parse(&args(&["create"])).unwrap(), Verb::Create);
        assert_eq!(
            Verb::parse(&args(&["setup", "/run/netns/a"])).unwrap(),
            Verb::Setup("/run/netns/a".into())
        );
        for (a, want) in [
            (&["bogus"][..], "unknown subcommand \"bogus\""),
            (&["setup"][..], "netns path argument is missing"),
            (&["teardown", ""][..], "netns path argument is missing"),
            (&["info", "x"][..], "too many arguments"),
        ] {
            let e = Verb::parse(&args(a)).unwrap_err().to_string();
            assert!(e.contains(want), "{a:?}: {e}");
        }
    }
}
