//! The netavark plugin (`netavark-plugin-vswitch`, installed as `vswitch` in a netavark
//! plugin directory): podman 5 networks created with `podman network create -d vswitch` are
//! served by vswitchd. Each container gets a TAP from vswitchd instead of a veth.
//!
//! netavark runs the plugin once per call (`create`, `setup NETNS`, `teardown NETNS`,
//! `info`) with JSON on stdin and expects JSON on stdout, or `{"error": "..."}` and exit
//! status 1 ([`types`]). The plugin holds no state of its own: it is a thin client of the
//! daemon's HTTP API ([`crate::client`]), as `vswitchctl` is ([`plugin`]); what it takes
//! from netavark's JSON is checked first ([`inputs`]).

pub mod inputs;
pub mod plugin;
pub mod types;
