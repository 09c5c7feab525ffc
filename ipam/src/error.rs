//! The single error type of the address-management layer.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

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
