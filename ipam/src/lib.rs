//! Address management for vswitchd networks: the bookkeeping layer below the daemon.
//!
//! This crate is pure logic plus atomic on-disk persistence; it never touches the
//! network. It validates user-supplied subnets ([`SubnetConfig`], [`parse_cidr`]),
//! picks default subnets the way Docker does ([`next_free_subnet`]), leases
//! container addresses ([`AddressPool`]), derives container MAC addresses
//! ([`mac_from_ipv4`]), does the same for the IPv6 side of dual-stack networks
//! ([`Subnet6Config`], [`AddressPool6`], unique-local /64s from [`next_free_ula`]) and stores state as JSON without ever leaving a
//! half-written file behind ([`save_json`], [`load_json`]).
#![forbid(unsafe_code)]

mod error;
mod lease;
mod mac;
mod pool;
mod store;
mod subnet;
mod v6;

pub use error::IpamError;
pub use lease::AddressPool;
pub use mac::{InvalidMac, MacAddr, mac_from_ipv4};
pub use pool::{default_subnets, next_free_subnet};
pub use store::{FILE_MODE, load_json, save_json, write_atomic, write_atomic_with_backup};
pub use subnet::{SubnetConfig, check_no_overlap, overlaps, parse_cidr};
pub use v6::{
    AddressPool6, MAX_PREFIX6, MIN_PREFIX6, Subnet6Config, next_free_ula, overlaps6, parse_cidr6,
};

/// Re-exported so callers name the same subnet type as this crate.
pub use ipnet::{Ipv4Net, Ipv6Net};
