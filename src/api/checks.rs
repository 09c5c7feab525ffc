//! Request bodies, decoded and checked exactly as the daemon does before it looks at its
//! state: the handlers call these, and so does the `api_body` fuzz target.
//!
//! Everything here is pure (no sockets, no files): a body is refused with one line naming
//! the value at fault, or turned into typed values the daemon then checks against its state
//! (names in use, overlapping subnets, published ports).

use std::net::{Ipv4Addr, Ipv6Addr};

use ipam::{Ipv4Net, Ipv6Net, MacAddr, Subnet6Config, SubnetConfig};
use serde::de::DeserializeOwned;

use super::types::{Connect, Disconnect, NetworkCreate, PortMapping, PortRequest};
use crate::daemon::inputs::{check_ifname, check_mtu, parse_mac, parse_options, validate_name};
use crate::error::Error;

/// Largest request body the API reads; longer ones get 413.
pub const MAX_BODY: usize = 1024 * 1024;

/// Decodes a JSON request body (unknown fields are refused by the types).
///
/// # Errors
/// [`Error::Invalid`] with serde's one-line reason.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::Invalid(format!("invalid request body: {e}")))
}

/// A network create request, checked.
#[derive(Clone, Debug)]
pub struct CreatePlan {
    /// The requested subnet, when given.
    pub subnet: Option<Ipv4Net>,
    /// The requested allocation range, when given.
    pub ip_range: Option<Ipv4Net>,
    /// The requested gateway, when given.
    pub gateway: Option<Ipv4Addr>,
    /// The MTU, when given (`Mtu` or the `mtu` option).
    pub mtu: Option<u32>,
    /// Inter-container communication (`icc` option; default true).
    pub icc: bool,
    /// The gateway address leads to the host's loopback (`host_loopback` option).
    pub host_loopback: bool,
    /// Dual stack: `Some` with the requested IPv6 subnet (None: a unique-local /64) and
    /// gateway.
    pub ipv6: Option<(Option<Ipv6Net>, Option<Ipv6Addr>)>,
}

/// Checks `POST /networks/create`: name, options, MTU, CIDRs, and (with a subnet) the
/// gateway and range against it.
///
/// # Errors
/// [`Error::Invalid`] or [`Error::Ipam`] naming the value.
pub fn check_create(req: &NetworkCreate) -> Result<CreatePlan, Error> {
    validate_name("network name", &req.name)?;
    let options = parse_options(&req.options)?;
    let mtu = req.mtu.or(options.mtu).map(check_mtu).transpose()?;
    let subnet = req.subnet.as_deref().map(ipam::parse_cidr).transpose()?;
    if let Some(r) = req.ip_range.as_deref().filter(|r| r.contains(':')) {
        return Err(Error::Invalid(format!(
            "--ip-range {r}: a range applies to the IPv4 subnet only; IPv6 addresses are \
             allocated in order from the whole IPv6 subnet (use --ip6 for a static one)"
        )));
    }
    let ip_range = req.ip_range.as_deref().map(ipam::parse_cidr).transpose()?;
    if let Some(subnet) = subnet {
        SubnetConfig::new(subnet, req.gateway, ip_range)?;
    }
    let subnet6 = req.subnet6.as_deref().map(ipam::parse_cidr6).transpose()?;
    if !req.enable_ipv6 {
        if let Some(s) = subnet6 {
            return Err(Error::Invalid(format!(
                "IPv6 subnet {s} given without --ipv6 (EnableIPv6)"
            )));
        }
        if let Some(g) = req.gateway6 {
            return Err(Error::Invalid(format!(
                "IPv6 gateway {g} given without --ipv6 (EnableIPv6)"
            )));
        }
    }
    match (subnet6, req.gateway6) {
        (Some(s), g) => {
            Subnet6Config::new(s, g)?;
        }
        (None, Some(g)) => {
            return Err(Error::Invalid(format!(
                "IPv6 gateway {g} given without an IPv6 subnet"
            )));
        }
        (None, None) => {}
    }
    if req.enable_ipv6
        && let Some(m) = mtu
        && m < 1280
    {
        return Err(Error::Invalid(format!(
            "MTU {m} is below 1280, the minimum for an IPv6 network"
        )));
    }
    Ok(CreatePlan {
        subnet,
        ip_range,
        gateway: req.gateway,
        mtu,
        icc: options.icc,
        host_loopback: options.host_loopback,
        ipv6: req.enable_ipv6.then_some((subnet6, req.gateway6)),
    })
}

/// A connect request, checked.
#[derive(Clone, Debug)]
pub struct ConnectPlan {
    /// The requested MAC, when given (unicast).
    pub mac: Option<MacAddr>,
    /// The ports to publish, none given twice.
    pub mappings: Vec<PortMapping>,
}

/// Checks `POST /networks/{name}/connect`: container reference, name, aliases, MAC and
/// port mappings.
///
/// # Errors
/// [`Error::Invalid`] or [`Error::Conflict`] naming the value.
pub fn check_connect(req: &Connect) -> Result<ConnectPlan, Error> {
    check_container(&req.container)?;
    if let Some(name) = &req.name {
        validate_name("container name", name)?;
    }
    for a in &req.aliases {
        validate_name("alias", a)?;
    }
    if let Some(ifname) = &req.interface {
        check_ifname(ifname)?;
    }
    let mac = req.mac.as_deref().map(parse_mac).transpose()?;
    let mut mappings: Vec<PortMapping> = Vec::new();
    for spec in &req.publish {
        let m: PortMapping = spec.parse().map_err(Error::Invalid)?;
        if mappings
            .iter()
            .any(|o| crate::daemon::same_host_port(o, &m))
        {
            return Err(Error::Conflict(format!("{spec} is given twice")));
        }
        mappings.push(m);
    }
    Ok(ConnectPlan { mac, mappings })
}

/// Checks `POST /networks/{name}/disconnect`.
///
/// # Errors
/// [`Error::Invalid`] for an empty container.
pub fn check_disconnect(req: &Disconnect) -> Result<(), Error> {
    check_container(&req.container)
}

/// Checks `POST /networks/{name}/ports` and `.../ports/remove`; returns the mapping.
///
/// # Errors
/// [`Error::Invalid`] naming the value.
pub fn check_port(req: &PortRequest) -> Result<PortMapping, Error> {
    check_container(&req.container)?;
    req.publish.parse().map_err(Error::Invalid)
}

/// A container reference: a name, an id, a PID or a path; never empty, at most 4096 bytes.
fn check_container(container: &str) -> Result<(), Error> {
    if container.is_empty() || container.len() > 4096 || container.contains('\0') {
        return Err(Error::Invalid(format!(
            "invalid container {container:.64?}: give a name, id, PID or namespace path"
        )));
    }
    Ok(())
}

/// Runs the body of a POST to `path` through the daemon's decoding and checks, as the
/// handler would (no daemon state involved). For the `api_body` fuzz target and tests.
///
/// # Errors
/// The refusal the API would answer with before consulting its state.
pub fn check_body(path: &str, body: &[u8]) -> Result<(), Error> {
    match path {
        "/networks/create" => check_create(&decode(body)?).map(drop),
        "/networks/{name}/connect" => check_connect(&decode(body)?).map(drop),
        "/networks/{name}/disconnect" => check_disconnect(&decode(body)?),
        "/networks/{name}/ports" | "/networks/{name}/ports/remove" => {
            check_port(&decode(body)?).map(drop)
        }
        other => Err(Error::NotFound(format!("no POST endpoint {other}"))),
    }
}

/// The POST endpoints whose bodies [`check_body`] knows.
pub const POST_ENDPOINTS: [&str; 5] = [
    "/networks/create",
    "/networks/{name}/connect",
    "/networks/{name}/disconnect",
    "/networks/{name}/ports",
    "/networks/{name}/ports/remove",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzz finding (api_body): serde copies an unknown field's name, newline included, into
    /// its message; the message clients get must still be one line.
    #[test]
    fn an_unknown_field_with_a_newline_is_reported_on_one_line() {
        let body = b"{\"Contai\\\\\\ne@r\":\"/run/c1\",\"Name\":\r\r\r";
        let e = check_body("/networks/{name}/connect", body).unwrap_err();
        assert!(e.to_string().contains('\n'), "the raw text has the newline");
        let msg = e.message();
        assert!(
            !msg.contains('\n') && msg.contains("unknown field"),
            "{msg}"
        );
        let mac = br#"{"Container":"1","Mac":"\n\u001b[31m"}"#;
        let msg = check_body("/networks/{name}/connect", mac)
            .unwrap_err()
            .message();
        assert!(!msg.chars().any(char::is_control), "{msg}");
    }

    #[test]
    fn bodies_are_refused_with_one_line() {
        for (path, body) in [
            ("/networks/create", &b"{"[..]),
            ("/networks/create", br#"{"Name":""}"#),
            (
                "/networks/create",
                br#"{"Name":"n","Subnet":"10.0.0.1/24"}"#,
            ),
            ("/networks/create", br#"{"Name":"n","Mtu":20}"#),
            (
                "/networks/create",
                br#"{"Name":"n","Subnet":"10.0.0.0/24","Gateway":"10.1.0.1"}"#,
            ),
            (
                "/networks/create",
                br#"{"Name":"n","Options":{"icc":"maybe"}}"#,
            ),
            ("/networks/create", br#"{"Name":"n","Bogus":1}"#),
            ("/networks/{name}/connect", br#"{"Container":""}"#),
            (
                "/networks/{name}/connect",
                br#"{"Container":"1","Mac":"ff:ff:ff:ff:ff:ff"}"#,
            ),
            (
                "/networks/{name}/connect",
                br#"{"Container":"1","Publish":["80:80","80:81"]}"#,
            ),
            (
                "/networks/{name}/ports",
                br#"{"Container":"c","Publish":"0:80"}"#,
            ),
            ("/networks/{name}/disconnect", br#"[]"#),
        ] {
            let e = check_body(path, body).unwrap_err().message();
            assert!(!e.is_empty() && !e.contains('\n'), "{path} {body:?}: {e}");
        }
        check_body(
            "/networks/create",
            br#"{"Name":"n","Subnet":"10.0.0.0/24","IpRange":"10.0.0.128/25","Options":{"icc":"false"}}"#,
        )
        .unwrap();
        check_body(
            "/networks/{name}/connect",
            br#"{"Container":"/run/netns/a","Name":"a","Publish":["8080:80","53:53/udp"]}"#,
        )
        .unwrap();
    }
}

#[cfg(test)]
mod ipv6_tests {
    use super::*;

    #[test]
    fn ipv6_create_bodies_are_refused_with_one_line_naming_the_value() {
        for (body, needle) in [
            (r#"{"Name":"n","Subnet6":"fd00:60::/64"}"#, "without --ipv6"),
            (
                r#"{"Name":"n","EnableIPv6":true,"Subnet6":"fd00:60::/129"}"#,
                "invalid IPv6 CIDR",
            ),
            (
                r#"{"Name":"n","EnableIPv6":true,"Subnet6":"fd00:60::/127"}"#,
                "prefix length",
            ),
            (
                r#"{"Name":"n","EnableIPv6":true,"Subnet6":"fd00:60::/64","Gateway6":"fd00:61::1"}"#,
                "outside subnet",
            ),
            (
                r#"{"Name":"n","EnableIPv6":true,"Gateway6":"fd00:61::1"}"#,
                "without an IPv6 subnet",
            ),
            (r#"{"Name":"n","EnableIPv6":true,"Mtu":1000}"#, "below 1280"),
            (
                r#"{"Name":"n","EnableIPv6":true,"Subnet6":"fe80::/64"}"#,
                "reserved range",
            ),
            (
                r#"{"Name":"n","EnableIPv6":true,"IpRange":"fd00:60::/80"}"#,
                "IPv4 subnet only",
            ),
        ] {
            let msg = check_body("/networks/create", body.as_bytes())
                .unwrap_err()
                .message();
            assert!(msg.contains(needle), "{body}: {msg}");
            assert!(!msg.contains('\n'));
        }
        let plan = check_create(&decode(br#"{"Name":"n","EnableIPv6":true}"#).unwrap()).unwrap();
        assert_eq!(plan.ipv6, Some((None, None)));
    }
}
