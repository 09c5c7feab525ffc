//! vswitchd: Docker's bridge-network model for rootless containers, in userspace.
//!
//! ```text
//!  container netns A        container netns B         container netns C
//!   eth0 = TAP (fd)          eth0 = TAP (fd)           eth0 = TAP (fd)
//!  ┌───┴───────────────────────┴─────────────────────────┴──────────────┐
//!  │ vswitchd (unprivileged)                                           │
//!  │   network net1: datapath thread = switch::Network + nat::Gateway  │
//!  │   network net2: datapath thread = ...                             │
//!  │   control plane: tokio, HTTP/JSON API on a unix socket            │
//!  └───────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Module map:
//! - [`daemon`]: composition root and control-plane operations (create, connect, ...);
//! - [`datapath`]: one thread per network moving frames between TAPs, switch and gateway;
//! - [`state`]: what is persisted (networks, leases, endpoints);
//! - [`api`]: the HTTP router and [`api::types`], the JSON contract;
//! - [`client`]: the HTTP client used by `vswitchctl`;
//! - [`cli`]: `vswitchctl`'s verbs and output formatting;
//! - [`run`]: `vswitchctl run`, a command in a fresh namespace attached to networks;
//! - [`metrics`]: the Prometheus text at `GET /metrics` (API socket and `--metrics-addr`);
//! - [`slirp`]: the slirp4netns drop-in (`vswitchd` run as `slirp4netns`);
//! - [`netavark`]: the netavark plugin (`netavark-plugin-vswitch`), a client of the API;
//! - [`error`]: errors with the value at fault, mapped to HTTP status and exit codes.
//!
//! Namespaces, TAP devices and netlink live in the `netns-helper` crate; frames in `switch`;
//! the gateway's services in `nat`; addresses in `ipam`.

pub mod api;
pub mod cli;
pub mod client;
pub mod daemon;
pub mod datapath;
pub mod error;
pub mod events;
pub mod metrics;
pub mod netavark;
pub mod overlay;
pub mod run;
pub mod sandbox;
pub mod slirp;
pub mod state;

/// Default paths: `$XDG_STATE_HOME/vswitchd` or `/var/lib/vswitchd` as root, and
/// `$XDG_RUNTIME_DIR/vswitchd.sock` or `/run/vswitchd.sock` as root.
pub mod paths {
    use std::path::PathBuf;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// The default state directory.
    pub fn state_dir() -> PathBuf {
        if is_root() {
            return PathBuf::from("/var/lib/vswitchd");
        }
        match std::env::var_os("XDG_STATE_HOME") {
            Some(d) if !d.is_empty() => PathBuf::from(d).join("vswitchd"),
            _ => match std::env::var_os("HOME") {
                Some(h) => PathBuf::from(h).join(".local/state/vswitchd"),
                None => PathBuf::from(format!("/tmp/vswitchd-{}", nix::unistd::geteuid())),
            },
        }
    }

    /// The default API socket.
    pub fn socket() -> PathBuf {
        if is_root() {
            return PathBuf::from("/run/vswitchd.sock");
        }
        match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d).join("vswitchd.sock"),
            _ => PathBuf::from(format!("/tmp/vswitchd-{}.sock", nix::unistd::geteuid())),
        }
    }
}
