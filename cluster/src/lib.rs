//! The cluster store of vswitchd's overlay networks, in etcd (v3 API).
//!
//! Every host of a cluster runs one [`Store`]: it registers the host under a lease
//! (`--cluster-ttl`, kept alive at a third of the TTL), creates overlay networks and their
//! VNIs, allocates addresses cluster-wide with one etcd transaction per address, publishes
//! the host's endpoints under its lease, and [`Store::watch`]es the whole prefix, handing
//! the daemon a complete [`ClusterView`] after every change.
//!
//! The layout (all values JSON; see README "Cluster store"):
//! ```text
//! /vswitch/v1/hosts/HOSTID            {"Advertise": IP, "VxlanPort": N}            host lease
//! /vswitch/v1/networks/NAME           NetworkRecord                                 no lease
//! /vswitch/v1/vni/VNI                 "NAME"                                        no lease
//! /vswitch/v1/ipam/NAME/IPV4          {"Host": HOSTID, "Endpoint": ID}              host lease
//! /vswitch/v1/endpoints/NAME/ID       EndpointRecord                                host lease
//! ```
//! A host that stops keeping its lease alive (killed, cut off) loses its host key, its
//! endpoints and its addresses when the lease expires; the others see them go in the watch.
//! A host whose lease expired while it was cut off (or that restarted) gets a new lease and
//! publishes again what it holds ([`Store`] remembers every key it published).
//!
//! Everything read from the store is untrusted: keys and values that do not parse are
//! skipped with a warning, never indexed blindly.
//!
//! Modules: [`schema`] (the records, keys and the parsed [`ClusterView`]) and `store` (the
//! [`Store`]: lease, transactions, watch).

pub mod schema;
mod store;

use std::time::Duration;

pub use schema::*;
pub use store::Store;

/// The versioned prefix of every key.
pub const PREFIX: &str = "/vswitch/v1/";
/// The lowest VNI handed out (Docker's overlay starts at 4096 too).
pub const FIRST_VNI: u32 = 4096;
/// The highest VNI (24 bits).
pub const LAST_VNI: u32 = (1 << 24) - 1;
/// How long one store operation may take before it counts as unreachable.
pub const OP_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// etcd did not answer (down, cut off, or too slow).
    #[error("cluster store {store} is unreachable: {why}")]
    Unreachable {
        /// The `--cluster-store` value.
        store: String,
        /// What failed.
        why: String,
    },
    /// The request conflicts with the cluster's state (name or address taken).
    #[error("{0}")]
    Conflict(String),
    /// Something named does not exist in the store.
    #[error("{0}")]
    NotFound(String),
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests;
