//! The single error type of the address-management layer.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::{Ipv4Net, Ipv6Net};

/// Everything that can go wrong while validating subnets, leasing addresses or persisting state.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// The text is not an IPv4 CIDR.
    #[error("invalid CIDR \"{0}\": expected a.b.c.d/len")]
    InvalidCidr(String),
    /// The subnet (or range) has bits set below its prefix length.
    #[error("subnet {0} has host bits set (did you mean {trunc}?)", trunc = .0.trunc())]
    NotNetworkAddress(Ipv4Net),
    /// The subnet leaves no room for a gateway and at least one container (prefix longer than /30).
    #[error("subnet {0} is too small: the prefix length must be at most /30")]
    SubnetTooSmall(Ipv4Net),
    /// The gateway lies outside the subnet.
    #[error("gateway {gateway} is outside subnet {subnet}")]
    GatewayOutsideSubnet {
        /// The requested gateway.
        gateway: Ipv4Addr,
        /// The subnet it should belong to.
        subnet: Ipv4Net,
    },
    /// The gateway is the network or broadcast address of the subnet.
    #[error("gateway {gateway} is the network or broadcast address of {subnet}")]
    GatewayReserved {
        /// The requested gateway.
        gateway: Ipv4Addr,
        /// The subnet it belongs to.
        subnet: Ipv4Net,
    },
    /// The allocation range is not contained in the subnet.
    #[error("ip range {range} is outside subnet {subnet}")]
    RangeOutsideSubnet {
        /// The requested allocation range.
        range: Ipv4Net,
        /// The subnet it should belong to.
        subnet: Ipv4Net,
    },
    /// Two subnets share addresses.
    #[error("subnet {subnet} overlaps subnet {other}")]
    Overlap {
        /// The subnet being added.
        subnet: Ipv4Net,
        /// The existing subnet it collides with.
        other: Ipv4Net,
    },
    /// Every default address pool is already used.
    #[error("all default address pools are in use; pass an explicit --subnet")]
    PoolsExhausted,
    /// A static address lies outside the subnet.
    #[error("address {ip} is outside subnet {subnet}")]
    AddressOutsideSubnet {
        /// The requested address.
        ip: Ipv4Addr,
        /// The subnet it should belong to.
        subnet: Ipv4Net,
    },
    /// A static address is the network, broadcast or gateway address.
    #[error("address {ip} is reserved (network, broadcast or gateway address)")]
    AddressReserved {
        /// The requested address.
        ip: Ipv4Addr,
    },
    /// A static address is already leased.
    #[error("address {ip} is already in use by {owner}")]
    AddressInUse {
        /// The requested address.
        ip: Ipv4Addr,
        /// The endpoint currently holding it.
        owner: String,
    },
    /// No address is left to allocate.
    #[error("no free address left in {subnet}")]
    Exhausted {
        /// The full subnet.
        subnet: Ipv4Net,
    },
    /// The text is not an IPv6 CIDR.
    #[error("invalid IPv6 CIDR \"{0}\": expected x:y::/len")]
    InvalidCidr6(String),
    /// The IPv6 subnet has bits set below its prefix length.
    #[error("subnet {0} has host bits set (did you mean {trunc}?)", trunc = .0.trunc())]
    NotNetworkAddress6(Ipv6Net),
    /// The IPv6 prefix length is outside what a network may use.
    #[error("subnet {0}: the IPv6 prefix length must be between /16 and /126")]
    Prefix6OutOfRange(Ipv6Net),
    /// The IPv6 subnet touches loopback, link-local, multicast or another special range.
    #[error("subnet {subnet} overlaps the reserved range {range}")]
    Reserved6 {
        /// The requested subnet.
        subnet: Ipv6Net,
        /// The special range it touches.
        range: Ipv6Net,
    },
    /// The IPv6 gateway lies outside its subnet.
    #[error("gateway {gateway} is outside subnet {subnet}")]
    Gateway6OutsideSubnet {
        /// The requested gateway.
        gateway: Ipv6Addr,
        /// The subnet it should belong to.
        subnet: Ipv6Net,
    },
    /// The IPv6 gateway is the subnet-router anycast address.
    #[error("gateway {gateway} is the subnet-router anycast address of {subnet}")]
    Gateway6Reserved {
        /// The requested gateway.
        gateway: Ipv6Addr,
        /// Its subnet.
        subnet: Ipv6Net,
    },
    /// A static IPv6 address lies outside the subnet.
    #[error("address {ip} is outside subnet {subnet}")]
    Address6OutsideSubnet {
        /// The requested address.
        ip: Ipv6Addr,
        /// The subnet.
        subnet: Ipv6Net,
    },
    /// A static IPv6 address is the subnet-router anycast or gateway address.
    #[error("address {ip} is reserved (subnet-router anycast or gateway address)")]
    Address6Reserved {
        /// The requested address.
        ip: Ipv6Addr,
    },
    /// A static IPv6 address is already leased.
    #[error("address {ip} is already in use by {owner}")]
    Address6InUse {
        /// The requested address.
        ip: Ipv6Addr,
        /// Its holder.
        owner: String,
    },
    /// No IPv6 address is left.
    #[error("no free address left in {subnet}")]
    Exhausted6 {
        /// The full subnet.
        subnet: Ipv6Net,
    },
    /// Reading or writing a state file failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A state file exists but does not contain the expected JSON.
    #[error("corrupt state file {}: {source}", path.display())]
    Corrupt {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
}
