//! What the daemon persists: every network (with its address pool, which holds the leases)
//! and every endpoint. Written atomically (temp file, fsync, rename) after each change, so a
//! crash leaves either the old or the new state, never a mix.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipam::{AddressPool, MacAddr};
use netns_helper::NsId;
use serde::{Deserialize, Serialize};

/// Version of the state file format.
pub const STATE_VERSION: u32 = 1;

/// The whole persisted state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// Format version ([`STATE_VERSION`]).
    pub version: u32,
    /// Networks by name.
    pub networks: BTreeMap<String, NetworkState>,
}

/// One network.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetworkState {
    /// Name.
    pub name: String,
    /// 64 hex digits.
    pub id: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// Subnet, gateway, range and the leases.
    pub pool: AddressPool,
    /// No NAT in either direction.
    pub internal: bool,
    /// Inter-container communication allowed.
    pub icc: bool,
    /// The gateway address leads to the host's loopback.
    #[serde(default)]
    pub host_loopback: bool,
    /// Link MTU of its endpoints.
    pub mtu: u32,
    /// Endpoints by id.
    pub endpoints: BTreeMap<String, EndpointState>,
}

/// One container attachment.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    /// MAC address.
    pub mac: MacAddr,
    /// Published ports.
    #[serde(default)]
    pub ports: Vec<crate::api::types::PortMapping>,
    /// DNS aliases.
    #[serde(default)]
    pub aliases: Vec<String>,
}

impl State {
    /// Loads the state file, or an empty state if there is none.
    ///
    /// # Errors
    /// Unreadable or corrupt file, or an unknown version.
    pub fn load(path: &Path) -> Result<Self, ipam::IpamError> {
        let state: Option<State> = ipam::load_json(path)?;
        let state = state.unwrap_or(State {
            version: STATE_VERSION,
            networks: BTreeMap::new(),
        });
        Ok(state)
    }

    /// Writes the state atomically.
    ///
    /// # Errors
    /// I/O errors, with the path.
    pub fn save(&self, path: &Path) -> Result<(), ipam::IpamError> {
        ipam::save_json(path, self)
    }
}
