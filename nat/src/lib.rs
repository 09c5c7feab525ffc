//! The gateway of one network: the virtual router address containers use as their default route.
//!
//! The switch hands this crate every Ethernet frame addressed to the gateway (unicast to
//! its MAC, or broadcast/multicast). Today the gateway only provides its own services:
//! it answers ARP for the gateway address (`arp.rs`) and replies to ICMP echo sent to
//! it (`icmp.rs`). Outbound NAT and DNS come later in `tcp.rs`, `udp.rs` and `dns.rs`.
#![forbid(unsafe_code)]

mod arp;
mod gateway;
mod icmp;

pub use gateway::{Gateway, GatewayCounters};
