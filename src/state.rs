//! What the daemon persists: every network (with its address pool, which holds the leases)
//! and every endpoint. `state.json` is a snapshot, written atomically (temp file, fsync,
//! rename), so a crash leaves either the old or the new one, never a mix; the file replaced
//! by each snapshot is kept as `state.json.bak`. Endpoint changes between snapshots are
//! appended to a journal ([`journal`]), which loading replays.
//!
//! A state file is as untrusted as an API body: [`State::parse`] decodes it and then checks
//! it with the same rules the API applies when the networks and endpoints are created
//! (names, subnets, gateways, MTUs, leases, MACs, published ports). Loading never writes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipam::{AddressPool, AddressPool6, MacAddr, Subnet6Config, SubnetConfig};
use netns_helper::NsId;
use serde::{Deserialize, Deserializer, Serialize};

use crate::api::types::PortMapping;
use crate::daemon::inputs::{check_ifname, check_mac, check_mtu, validate_name};
use crate::error::one_line;

pub mod journal;

/// Version of the state file format.
pub const STATE_VERSION: u32 = 1;

/// Name of the state file in the state directory.
pub const STATE_FILE: &str = "state.json";
/// Name of the previous good state, kept by each save.
pub const BACKUP_FILE: &str = "state.json.bak";

/// The whole persisted state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Format version ([`STATE_VERSION`]).
    pub version: u32,
    /// Snapshot generation: the journal that continues this snapshot names it.
    #[serde(default)]
    pub generation: u64,
    /// Networks by name.
    #[serde(deserialize_with = "unique_keys")]
    pub networks: BTreeMap<String, NetworkState>,
}

/// One network.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkState {
    /// Name.
    pub name: String,
    /// 64 hex digits.
    pub id: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// Subnet, gateway, range and the leases.
    pub pool: AddressPool,
    /// The IPv6 subnet, gateway and leases of a dual-stack network (`--ipv6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool6: Option<AddressPool6>,
    /// No NAT in either direction.
    pub internal: bool,
    /// Inter-container communication allowed.
    pub icc: bool,
    /// The gateway address leads to the host's loopback.
    #[serde(default)]
    pub host_loopback: bool,
    /// Link MTU of its endpoints.
    pub mtu: u32,
    /// Endpoints by id (on an overlay network: this host's endpoints only).
    #[serde(deserialize_with = "unique_keys")]
    pub endpoints: BTreeMap<String, EndpointState>,
    /// Set on an overlay network (`--driver overlay`): the network itself lives in the
    /// cluster store; this host keeps its local part (its endpoints and their leases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<OverlayState>,
}

/// The local part of an overlay network.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlayState {
    /// Its VXLAN network identifier (1..=16777215), allocated in the store.
    pub vni: u32,
}

/// One container attachment.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointState {
    /// 64 hex digits.
    pub id: String,
    /// Unique name within the network.
    pub name: String,
    /// The namespace file attached through.
    pub netns: PathBuf,
    /// Identity of that namespace at attach time.
    pub ns_id: NsId,
    /// Interface name inside the container.
    pub ifname: String,
    /// Leased address.
    pub ip: Ipv4Addr,
    /// Leased IPv6 address, on a dual-stack network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    /// MAC address.
    pub mac: MacAddr,
    /// Published ports.
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// DNS aliases.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// Why the state cannot be used. Its message is one line naming the file (the snapshot or
/// the journal), the problem and, when there is one, how to get back to a good state.
#[derive(Debug, thiserror::Error)]
#[error("state file {}: {problem}{}", path.display(), hint.as_deref().map(|h| format!("; {h}")).unwrap_or_default())]
pub struct LoadError {
    /// The state file or journal.
    pub path: PathBuf,
    /// What is wrong (one line).
    pub problem: String,
    /// How to restore a good state, when there is a way.
    pub hint: Option<String>,
}

fn restore_hint(path: &Path, backup: &Path) -> String {
    format!(
        "the previous good state is in {}: move it to {} to restore it",
        backup.display(),
        path.display()
    )
}

impl State {
    /// An empty state of the current version.
    pub fn empty() -> Self {
        State {
            version: STATE_VERSION,
            generation: 0,
            networks: BTreeMap::new(),
        }
    }

    /// Decodes and checks the bytes of a state file.
    ///
    /// # Errors
    /// One line: the JSON error, or the first rule the content breaks.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let state: State =
            serde_json::from_slice(bytes).map_err(|e| one_line(&format!("not valid: {e}")))?;
        state.validate().map_err(|e| one_line(&e))?;
        Ok(state)
    }

    /// Loads `state.json` from `dir` (or an empty state if there is none) and replays the
    /// journal that continues it. Never writes.
    ///
    /// # Errors
    /// An unreadable, corrupt or invalid snapshot or journal ([`LoadError`]).
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        Ok(Self::load_replayed(dir)?.0)
    }

    /// [`State::load`], also saying what the journal held.
    ///
    /// # Errors
    /// As [`State::load`].
    pub fn load_replayed(dir: &Path) -> Result<(Self, journal::Replayed), LoadError> {
        let path = dir.join(STATE_FILE);
        let fail = |problem: String| {
            let backup = dir.join(BACKUP_FILE);
            LoadError {
                path: path.clone(),
                problem: one_line(&problem),
                hint: backup.is_file().then(|| restore_hint(&path, &backup)),
            }
        };
        let mut state = match std::fs::read(&path) {
            Ok(b) => Self::parse(&b).map_err(fail)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::empty(),
            Err(e) => return Err(fail(format!("cannot read it: {e}"))),
        };
        let replayed = journal::replay(dir, &mut state)?;
        Ok((state, replayed))
    }

    /// Writes the state atomically to `dir/state.json` (mode 0600), keeping the file it
    /// replaces as `state.json.bak`. The daemon writes snapshots through
    /// [`journal::Journal::compact`], which also starts a new journal.
    ///
    /// # Errors
    /// I/O errors, with the path.
    pub fn save(&self, dir: &Path) -> Result<(), ipam::IpamError> {
        let path = dir.join(STATE_FILE);
        let mut bytes =
            serde_json::to_vec_pretty(self).map_err(|source| ipam::IpamError::Corrupt {
                path: path.clone(),
                source,
            })?;
        bytes.push(b'\n');
        ipam::write_atomic_with_backup(&path, &bytes, &dir.join(BACKUP_FILE))
    }

    /// Checks every rule the API enforces when networks and endpoints are created.
    ///
    /// # Errors
    /// The first broken rule, naming the network, endpoint and value.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != STATE_VERSION {
            return Err(format!(
                "has version {}, this daemon reads {STATE_VERSION}",
                self.version
            ));
        }
        let mut subnets: Vec<(&str, ipam::Ipv4Net)> = Vec::new();
        let mut subnets6: Vec<(&str, ipam::Ipv6Net)> = Vec::new();
        let mut ids = BTreeSet::new();
        let mut host_ports: Vec<(&str, &str, &PortMapping)> = Vec::new();
        for (key, net) in &self.networks {
            let n = &net.name;
            let at = |e: &dyn std::fmt::Display| format!("network {n:?}: {e}");
            if key != n {
                return Err(format!("network {n:?} is filed under the name {key:?}"));
            }
            validate_name("network name", n).map_err(|e| e.to_string())?;
            check_id(&net.id).map_err(|e| at(&e))?;
            if !ids.insert(net.id.as_str()) {
                return Err(at(&format!("id {} is used twice", net.id)));
            }
            check_mtu(net.mtu).map_err(|e| at(&e))?;
            if let Some(o) = &net.overlay
                && !(1..=0xff_ffff).contains(&o.vni)
            {
                return Err(at(&format!("VNI {} is not 1..=16777215", o.vni)));
            }
            let cfg = net.pool.config();
            let checked = SubnetConfig::new(cfg.subnet, Some(cfg.gateway), cfg.ip_range)
                .map_err(|e| at(&e))?;
            if let Some((other, s)) = subnets
                .iter()
                .find(|(_, s)| ipam::overlaps(s, &checked.subnet))
            {
                return Err(at(&format!(
                    "subnet {} overlaps subnet {s} of network {other:?}",
                    checked.subnet
                )));
            }
            subnets.push((n, checked.subnet));
            let checked6 = match &net.pool6 {
                None => None,
                Some(p) => {
                    let c = p.config();
                    let c = Subnet6Config::new(c.subnet, Some(c.gateway)).map_err(|e| at(&e))?;
                    if let Some((other, s)) =
                        subnets6.iter().find(|(_, s)| ipam::overlaps6(s, &c.subnet))
                    {
                        return Err(at(&format!(
                            "subnet {} overlaps subnet {s} of network {other:?}",
                            c.subnet
                        )));
                    }
                    if net.mtu < 1280 {
                        return Err(at(&format!(
                            "MTU {} is below 1280, the IPv6 minimum",
                            net.mtu
                        )));
                    }
                    subnets6.push((n, c.subnet));
                    Some(c)
                }
            };
            net.validate_endpoints(checked, checked6, &mut host_ports)
                .map_err(|e| at(&e))?;
        }
        Ok(())
    }
}

impl NetworkState {
    /// Gives back the addresses (both families) `ep` leased.
    pub fn release(&mut self, ep: &EndpointState) {
        self.release_addrs(ep.ip, ep.ip6);
    }

    /// Gives back an IPv4 lease and, on a dual-stack network, an IPv6 one.
    pub fn release_addrs(&mut self, ip: Ipv4Addr, ip6: Option<Ipv6Addr>) {
        self.pool.release(ip);
        if let (Some(pool6), Some(ip6)) = (&mut self.pool6, ip6) {
            pool6.release(ip6);
        }
    }

    /// Endpoints and leases: each endpoint valid and holding exactly its own lease (replayed
    /// through the same reservation the API uses for `--ip`), no lease without an endpoint,
    /// unique names and MACs, no host port published twice.
    fn validate_endpoints<'a>(
        &'a self,
        config: SubnetConfig,
        config6: Option<Subnet6Config>,
        host_ports: &mut Vec<(&'a str, &'a str, &'a PortMapping)>,
    ) -> Result<(), String> {
        let mut replay = AddressPool::new(config);
        let mut replay6 = config6.map(AddressPool6::new);
        let mut names = BTreeSet::new();
        let mut macs = HashMap::new();
        for (key, ep) in &self.endpoints {
            let e = &ep.name;
            let at = |x: &dyn std::fmt::Display| format!("endpoint {e:?}: {x}");
            if key != &ep.id {
                return Err(format!("endpoint {e:?} is filed under the id {key:?}"));
            }
            check_id(&ep.id).map_err(|x| at(&x))?;
            validate_name("container name", e).map_err(|x| at(&x))?;
            if !names.insert(e.as_str()) {
                return Err(format!("container name {e:?} is used twice"));
            }
            for a in &ep.aliases {
                validate_name("alias", a).map_err(|x| at(&x))?;
            }
            if !ep.netns.is_absolute() || ep.netns.as_os_str().len() > 4096 {
                return Err(at(&format!(
                    "network namespace {:?} is not an absolute path",
                    ep.netns
                )));
            }
            check_ifname(&ep.ifname).map_err(|x| at(&x))?;
            check_mac(ep.mac).map_err(|x| at(&x))?;
            if let Some(other) = macs.insert(ep.mac, e) {
                return Err(at(&format!(
                    "MAC address {} is also used by {other:?}",
                    ep.mac
                )));
            }
            replay.reserve(ep.ip, &ep.id).map_err(|x| at(&x))?;
            if self.pool.owner(ep.ip) != Some(ep.id.as_str()) {
                return Err(at(&format!("address {} has no lease of its own", ep.ip)));
            }
            match (&mut replay6, ep.ip6) {
                (None, None) => {}
                (None, Some(ip6)) => {
                    return Err(at(&format!(
                        "has IPv6 address {ip6} on a network without IPv6"
                    )));
                }
                (Some(_), None) => return Err(at(&"has no IPv6 address on a dual-stack network")),
                (Some(r), Some(ip6)) => {
                    r.reserve(ip6, &ep.id).map_err(|x| at(&x))?;
                    let own = self.pool6.as_ref().and_then(|p| p.owner(ip6));
                    if own != Some(ep.id.as_str()) {
                        return Err(at(&format!("address {ip6} has no lease of its own")));
                    }
                }
            }
            for m in &ep.ports {
                if self.internal {
                    return Err(at(&format!("publishes {m} on an internal network")));
                }
                if m.host_port == 0 || m.container_port == 0 {
                    return Err(at(&format!("port mapping {m} has port 0")));
                }
                if let Some((net, other, _)) = host_ports
                    .iter()
                    .find(|(_, _, o)| crate::daemon::same_host_port(o, m))
                {
                    return Err(at(&format!(
                        "host port {m} is also published by {other:?} on network {net:?}"
                    )));
                }
                host_ports.push((&self.name, e, m));
            }
        }
        if let Some((ip, owner)) = self
            .pool
            .leases()
            .find(|(ip, owner)| replay.owner(*ip) != Some(*owner))
        {
            return Err(format!(
                "lease of {ip} belongs to {owner:?}, which is no endpoint of this network"
            ));
        }
        if let (Some(pool6), Some(r)) = (&self.pool6, &replay6)
            && let Some((ip, owner)) = pool6.leases().find(|(ip, o)| r.owner(*ip) != Some(*o))
        {
            return Err(format!(
                "lease of {ip} belongs to {owner:?}, which is no endpoint of this network"
            ));
        }
        Ok(())
    }
}

/// 64 lowercase hex digits, as [`crate::daemon`] makes them.
fn check_id(id: &str) -> Result<(), String> {
    if id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(format!("id {id:.80?} is not 64 hex digits"))
    }
}

/// Deserializes a JSON object into a map, refusing a key given twice (serde's default keeps
/// the last one and silently drops the rest).
fn unique_keys<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Visit<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Visit<V> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, v)) = map.next_entry::<String, V>()? {
                if out.contains_key(&k) {
                    return Err(serde::de::Error::custom(format!(
                        "key {k:?} is given twice"
                    )));
                }
                out.insert(k, v);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_map(Visit(std::marker::PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_ID: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const EP_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    /// A valid state with one network and one endpoint, as the daemon writes it.
    fn good() -> serde_json::Value {
        serde_json::json!({
            "version": 1,
            "networks": {
                "net1": {
                    "name": "net1",
                    "id": NET_ID,
                    "created": "2026-01-01T00:00:00Z",
                    "pool": {
                        "config": {"subnet": "10.7.0.0/24", "gateway": "10.7.0.1"},
                        "leases": {"10.7.0.2": EP_A}
                    },
                    "internal": false,
                    "icc": true,
                    "host_loopback": false,
                    "mtu": 1500,
                    "endpoints": {
                        EP_A: {
                            "id": EP_A,
                            "name": "a",
                            "netns": "/run/netns/a",
                            "ns_id": {"dev": 4, "ino": 4026532000u64},
                            "ifname": "eth0",
                            "ip": "10.7.0.2",
                            "mac": "02:42:0a:07:00:02",
                            "ports": [{"HostIp": "0.0.0.0", "HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp"}],
                            "aliases": ["web"]
                        }
                    }
                }
            }
        })
    }

    fn parse(v: &serde_json::Value) -> Result<State, String> {
        State::parse(&serde_json::to_vec(v).unwrap())
    }

    fn refused(v: &serde_json::Value, needle: &str) {
        let e = parse(v).unwrap_err();
        assert!(e.contains(needle), "expected {needle:?} in {e:?}");
        assert!(!e.contains('\n'), "{e:?}");
    }

    #[test]
    fn a_good_state_round_trips() {
        let s = parse(&good()).unwrap();
        let again = State::parse(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(again.networks["net1"].endpoints.len(), 1);
    }

    #[test]
    fn every_rule_of_create_applies_on_load() {
        let mut v = good();
        v["networks"]["net1"]["pool"]["config"]["subnet"] = "10.7.0.1/24".into();
        refused(&v, "host bits");

        let mut v = good();
        v["networks"]["net1"]["pool"]["config"]["gateway"] = "10.8.0.1".into();
        refused(&v, "gateway 10.8.0.1 is outside subnet");

        let mut v = good();
        v["networks"]["net1"]["mtu"] = 20.into();
        refused(&v, "invalid MTU 20");

        let mut v = good();
        let long = "n".repeat(65);
        let net = v["networks"]["net1"].clone();
        v["networks"] = serde_json::json!({ long.clone(): net });
        v["networks"][&long]["name"] = long.clone().into();
        refused(&v, "invalid network name");

        let mut v = good();
        v["networks"]["net1"]["name"] = "other".into();
        refused(&v, "filed under the name");

        let mut v = good();
        let mut net2 = v["networks"]["net1"].clone();
        net2["name"] = "net2".into();
        net2["id"] = "2".repeat(64).into();
        net2["pool"]["config"]["subnet"] = "10.7.0.0/16".into();
        net2["pool"]["leases"] = serde_json::json!({});
        net2["endpoints"] = serde_json::json!({});
        v["networks"]["net2"] = net2;
        refused(&v, "overlaps subnet 10.7.0.0/24 of network \"net1\"");

        let mut v = good();
        v["networks"]["net1"]["endpoints"][EP_A]["ip"] = "10.9.0.2".into();
        v["networks"]["net1"]["pool"]["leases"] = serde_json::json!({"10.9.0.2": EP_A});
        refused(&v, "address 10.9.0.2 is outside subnet 10.7.0.0/24");

        let mut v = good();
        v["networks"]["net1"]["endpoints"][EP_A]["ip"] = "10.7.0.1".into();
        v["networks"]["net1"]["pool"]["leases"] = serde_json::json!({"10.7.0.1": EP_A});
        refused(&v, "reserved");

        let mut v = good();
        v["networks"]["net1"]["pool"]["leases"]["10.7.0.9"] = "b".repeat(64).into();
        refused(&v, "lease of 10.7.0.9");

        let mut v = good();
        v["networks"]["net1"]["pool"]["leases"] = serde_json::json!({});
        refused(&v, "has no lease of its own");

        let mut v = good();
        v["networks"]["net1"]["endpoints"][EP_A]["mac"] = "01:00:5e:00:00:01".into();
        refused(&v, "multicast");

        let mut v = good();
        v["networks"]["net1"]["endpoints"][EP_A]["ifname"] = "../../etc".into();
        refused(&v, "interface name");

        let mut v = good();
        v["networks"]["net1"]["endpoints"][EP_A]["netns"] = "relative".into();
        refused(&v, "absolute");

        let mut v = good();
        v["networks"]["net1"]["internal"] = true.into();
        refused(&v, "internal network");

        let mut v = good();
        v["version"] = 7.into();
        refused(&v, "version 7");

        let mut v = good();
        v["surprise"] = 1.into();
        refused(&v, "unknown field");
    }

    #[test]
    fn duplicate_endpoints_names_ips_and_macs_are_refused() {
        let ep_b = "b".repeat(64);
        let mut v = good();
        let mut b = v["networks"]["net1"]["endpoints"][EP_A].clone();
        b["id"] = ep_b.clone().into();
        b["ports"] = serde_json::json!([]);
        b["ip"] = "10.7.0.3".into();
        b["mac"] = "02:42:0a:07:00:03".into();
        v["networks"]["net1"]["pool"]["leases"]["10.7.0.3"] = ep_b.clone().into();
        v["networks"]["net1"]["endpoints"][&ep_b] = b.clone();
        refused(&v, "container name \"a\" is used twice");

        v["networks"]["net1"]["endpoints"][&ep_b]["name"] = "b".into();
        parse(&v).unwrap();

        let mut w = v.clone();
        w["networks"]["net1"]["endpoints"][&ep_b]["ip"] = "10.7.0.2".into();
        refused(&w, "address 10.7.0.2 is already in use");

        let mut w = v.clone();
        w["networks"]["net1"]["endpoints"][&ep_b]["mac"] = "02:42:0a:07:00:02".into();
        refused(&w, "is also used by");

        let mut w = v.clone();
        w["networks"]["net1"]["endpoints"][&ep_b]["ports"] =
            v["networks"]["net1"]["endpoints"][EP_A]["ports"].clone();
        refused(&w, "also published");
    }

    /// `good()` made dual stack: fd00:7::/64, the endpoint on fd00:7::2.
    fn good6() -> serde_json::Value {
        let mut v = good();
        v["networks"]["net1"]["pool6"] = serde_json::json!({
            "config": {"subnet": "fd00:7::/64", "gateway": "fd00:7::1"},
            "leases": {"fd00:7::2": EP_A}
        });
        v["networks"]["net1"]["endpoints"][EP_A]["ip6"] = "fd00:7::2".into();
        v
    }

    #[test]
    fn dual_stack_state_is_checked_like_the_api() {
        let s = parse(&good6()).unwrap();
        let again = State::parse(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(
            again.networks["net1"].endpoints[EP_A].ip6,
            Some("fd00:7::2".parse().unwrap())
        );
        let mut v = good6();
        v["networks"]["net1"]["endpoints"][EP_A]
            .as_object_mut()
            .unwrap()
            .remove("ip6");
        refused(&v, "has no IPv6 address on a dual-stack network");
        let mut v = good6();
        v["networks"]["net1"]["endpoints"][EP_A]["ip6"] = "fd00:8::2".into();
        refused(&v, "outside subnet");
        let mut v = good6();
        v["networks"]["net1"]["pool6"]["config"]["subnet"] = "fe80::/64".into();
        refused(&v, "reserved range");
        let mut v = good6();
        v["networks"]["net1"]["mtu"] = 1200.into();
        refused(&v, "below 1280");
        let mut v = good6();
        v["networks"]["net1"]["pool6"]["leases"]["fd00:7::9"] = EP_A.into();
        refused(&v, "lease of fd00:7::9");
        let mut v = good();
        v["networks"]["net1"]["endpoints"][EP_A]["ip6"] = "fd00:7::2".into();
        refused(&v, "on a network without IPv6");
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        let text = serde_json::to_string(&good()).unwrap();
        let net = serde_json::to_string(&good()["networks"]["net1"]).unwrap();
        let twice = text.replacen(
            "\"networks\":{",
            &format!("\"networks\":{{\"net1\":{net},"),
            1,
        );
        let e = State::parse(twice.as_bytes()).unwrap_err();
        assert!(e.contains("given twice"), "{e}");
    }

    /// The fuzz seeds are state files the daemon wrote (networks with every option,
    /// endpoints with ports, aliases, static IP and MAC): each loads.
    #[test]
    fn state_files_written_by_the_daemon_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/state_load");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let s = State::parse(&std::fs::read(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += s.networks.len();
        }
        assert!(n >= 5, "seeds hold networks");
    }

    #[test]
    fn load_names_the_file_and_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        assert!(State::load(dir.path()).unwrap().networks.is_empty());
        let s = parse(&good()).unwrap();
        s.save(dir.path()).unwrap();
        s.save(dir.path()).unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{\"version\":").unwrap();
        let e = State::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(&dir.path().join(STATE_FILE).display().to_string()),
            "{e}"
        );
        assert!(e.contains("state.json.bak: move it to"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
}
