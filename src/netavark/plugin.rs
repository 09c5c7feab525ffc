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
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use hyper::StatusCode;
use ipnet::IpNet;

use super::types::{
    API_VERSION, Info, NetAddress, NetInterface, Network, NetworkPluginExec, PortMapping,
    StatusBlock, Subnet,
};
use crate::api::types::{Connect, Disconnect, EndpointInspect, NetworkCreate, NetworkInspect};
use crate::client::{Client, ClientError};

/// The network options this plugin understands (`podman network create -o KEY=VALUE`).
pub const OPTIONS: &[&str] = &["socket", "icc", "internal", "mtu", "host_loopback"];

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

/// The network options, checked.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    socket: PathBuf,
    icc: Option<bool>,
    internal: bool,
    mtu: Option<u32>,
    host_loopback: Option<bool>,
}

fn options(net: &Network) -> Result<Options, PluginError> {
    let empty = HashMap::new();
    let opts = net.options.as_ref().unwrap_or(&empty);
    if let Some(unknown) = opts.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
        return Err(PluginError::Invalid(format!(
            "unknown option {unknown:.64?} for driver {} (known: {})",
            net.driver,
            OPTIONS.join(", ")
        )));
    }
    let flag = |key: &str| -> Result<Option<bool>, PluginError> {
        match opts.get(key).map(String::as_str) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(PluginError::Invalid(format!(
                "invalid option {key}={other:.64?}: must be true or false"
            ))),
        }
    };
    let mtu = match opts.get("mtu") {
        None => None,
        Some(m) => Some(m.parse::<u32>().map_err(|_| {
            PluginError::Invalid(format!("invalid option mtu={m:.64?}: not a number"))
        })?),
    };
    let socket = match opts.get("socket") {
        Some(s) if !s.is_empty() => PathBuf::from(s),
        Some(_) => return Err(PluginError::Invalid("option socket is empty".into())),
        None => default_socket(),
    };
    Ok(Options {
        socket,
        icc: flag("icc")?,
        internal: flag("internal")?.unwrap_or(false),
        mtu,
        host_loopback: flag("host_loopback")?,
    })
}

/// `vswitchctl`'s default, except inside a user namespace (rootless podman's), where the
/// user's own daemon listens in `$XDG_RUNTIME_DIR`.
fn default_socket() -> PathBuf {
    // The initial user namespace maps every uid to itself: "0 0 4294967295".
    let initial = std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
        .unwrap_or(true);
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !initial && !d.is_empty() => PathBuf::from(d).join("vswitchd.sock"),
        _ => crate::paths::socket(),
    }
}

/// The network name doubles as the vswitchd network name and URL path segment.
fn check_name(name: &str) -> Result<(), PluginError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(PluginError::Invalid(format!(
            "invalid network name {name:.64?} for vswitchd: use 1-64 of [A-Za-z0-9_.-], starting with a letter or digit"
        )))
    }
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

fn v4_only(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    }
}

fn v6_only(ip: IpAddr) -> Option<Ipv6Addr> {
    match ip {
        IpAddr::V6(v6) => Some(v6),
        IpAddr::V4(_) => None,
    }
}

/// At most one subnet per family, each gateway of its subnet's family, no lease ranges.
fn split_subnets(subnets: &[Subnet]) -> Result<(Option<Subnet>, Option<Subnet>), PluginError> {
    let (mut v4, mut v6) = (None, None);
    for s in subnets {
        if s.lease_range
            .as_ref()
            .is_some_and(|r| r.start_ip.is_some() || r.end_ip.is_some())
        {
            return Err(PluginError::Invalid(format!(
                "subnet {}: lease ranges are not supported by this plugin",
                s.subnet
            )));
        }
        if let Some(gw) = s.gateway
            && gw.is_ipv4() != s.subnet.addr().is_ipv4()
        {
            return Err(PluginError::Invalid(format!(
                "gateway {gw} is not of the family of subnet {}",
                s.subnet
            )));
        }
        let slot = if s.subnet.addr().is_ipv4() {
            &mut v4
        } else {
            &mut v6
        };
        if slot.is_some() {
            return Err(PluginError::Invalid(format!(
                "subnet {}: vswitchd serves at most one IPv4 and one IPv6 subnet per network",
                s.subnet
            )));
        }
        *slot = Some(s.clone());
    }
    Ok((v4, v6))
}

/// Expands netavark's port mappings into vswitchd's `[HOSTIP:]HOSTPORT:PORT/PROTO` specs:
/// `range` consecutive ports, each protocol of the comma-separated list.
///
/// # Errors
/// [`PluginError::Invalid`] for a bad host address, protocol (vswitchd has no SCTP), a zero
/// port or a range that runs past 65535.
pub fn publish_specs(mappings: &[PortMapping]) -> Result<Vec<String>, PluginError> {
    let mut specs = Vec::new();
    for pm in mappings {
        let bad = |why: String| {
            PluginError::Invalid(format!(
                "port mapping {}:{}:{}/{} range {}: {why}",
                pm.host_ip, pm.host_port, pm.container_port, pm.protocol, pm.range
            ))
        };
        let host_ip: IpAddr = match pm.host_ip.as_str() {
            "" => Ipv4Addr::UNSPECIFIED.into(),
            ip => ip
                .parse()
                .map_err(|_| bad(format!("{ip:.64?} is not an IP address")))?,
        };
        let mut protocols = Vec::new();
        for p in pm.protocol.split(',').map(str::trim) {
            protocols.push(match p {
                "tcp" | "" => crate::api::types::Protocol::Tcp,
                "udp" => crate::api::types::Protocol::Udp,
                other => return Err(bad(format!("protocol {other:.16?} is not supported"))),
            });
        }
        if pm.host_port == 0 || pm.container_port == 0 {
            return Err(bad("port 0".into()));
        }
        let range = pm.range.max(1);
        let last = |first: u16| first.checked_add(range - 1);
        if last(pm.host_port).is_none() || last(pm.container_port).is_none() {
            return Err(bad("the range runs past port 65535".into()));
        }
        for i in 0..range {
            for &protocol in &protocols {
                let m = crate::api::types::PortMapping {
                    host_ip,
                    host_port: pm.host_port + i,
                    container_port: pm.container_port + i,
                    protocol,
                };
                specs.push(m.to_string());
            }
        }
    }
    Ok(specs)
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

    fn pm(host_ip: &str, host: u16, ctr: u16, proto: &str, range: u16) -> PortMapping {
        PortMapping {
            container_port: ctr,
            host_ip: host_ip.into(),
            host_port: host,
            protocol: proto.into(),
            range,
        }
    }

    #[test]
    fn port_ranges_and_protocol_lists_expand() {
        let specs = publish_specs(&[
            pm("", 8080, 80, "tcp", 1),
            pm("127.0.0.1", 9000, 90, "tcp,udp", 3),
            pm("::1", 7000, 70, "udp", 0),
        ])
        .unwrap();
        assert_eq!(
            specs,
            [
                "0.0.0.0:8080:80/tcp",
                "127.0.0.1:9000:90/tcp",
                "127.0.0.1:9000:90/udp",
                "127.0.0.1:9001:91/tcp",
                "127.0.0.1:9001:91/udp",
                "127.0.0.1:9002:92/tcp",
                "127.0.0.1:9002:92/udp",
                "[::1]:7000:70/udp",
            ]
        );
        for (bad, why) in [
            (pm("", 8080, 80, "sctp", 1), "protocol \"sctp\""),
            (pm("x", 8080, 80, "tcp", 1), "not an IP address"),
            (pm("", 65535, 80, "tcp", 2), "past port 65535"),
            (pm("", 0, 80, "tcp", 1), "port 0"),
        ] {
            let e = publish_specs(&[bad]).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }

    fn network(options: &[(&str, &str)]) -> Network {
        Network {
            created: None,
            dns_enabled: true,
            driver: "vswitch".into(),
            id: "0".repeat(64),
            internal: false,
            ipv6_enabled: false,
            name: "n1".into(),
            network_interface: None,
            options: Some(
                options
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ipam_options: None,
            subnets: None,
            routes: None,
            network_dns_servers: None,
            labels: None,
        }
    }

    #[test]
    fn options_are_checked() {
        let o = options(&network(&[
            ("socket", "/x.sock"),
            ("icc", "false"),
            ("mtu", "9000"),
            ("internal", "true"),
        ]))
        .unwrap();
        assert_eq!(o.socket, PathBuf::from("/x.sock"));
        assert_eq!((o.icc, o.mtu, o.internal), (Some(false), Some(9000), true));
        for (opts, why) in [
            (&[("icc", "no")][..], "icc=\"no\": must be true or false"),
            (&[("mtu", "big")][..], "mtu=\"big\": not a number"),
            (&[("color", "red")][..], "unknown option \"color\""),
        ] {
            let e = options(&network(opts)).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn subnets_one_per_family() {
        let s = |net: &str, gw: Option<&str>| Subnet {
            gateway: gw.map(|g| g.parse().unwrap()),
            lease_range: None,
            subnet: net.parse().unwrap(),
        };
        let (v4, v6) = split_subnets(&[s("fd00:1::/64", None), s("10.1.0.0/24", None)]).unwrap();
        assert_eq!(v4.unwrap().subnet.to_string(), "10.1.0.0/24");
        assert_eq!(v6.unwrap().subnet.to_string(), "fd00:1::/64");
        let e = split_subnets(&[s("10.1.0.0/24", None), s("10.2.0.0/24", None)]).unwrap_err();
        assert!(e.to_string().contains("at most one IPv4"), "{e}");
        let e = split_subnets(&[s("10.1.0.0/24", Some("fd00::1"))]).unwrap_err();
        assert!(e.to_string().contains("not of the family"), "{e}");
    }
}
