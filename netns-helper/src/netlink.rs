//! Link, address and route configuration inside the joined namespace, through a blocking
//! rtnetlink socket (netavark's approach): rtnetlink's message builders, netlink-sys's socket,
//! no tokio. The socket is created after `setns`, so it speaks to the container's namespace.

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::errno::Errno;
use rtnetlink::{AddressMessageBuilder, LinkUnspec, RouteMessageBuilder};

use crate::HelperError;

/// A route-netlink socket bound in the current network namespace.
pub struct Netlink {
    socket: Socket,
    seq: Cell<u32>,
}

impl Netlink {
    /// Opens the socket in the current network namespace.
    ///
    /// # Errors
    /// [`HelperError::Netlink`] when the socket cannot be created.
    pub fn open() -> Result<Self, HelperError> {
        let fail = |e: std::io::Error| HelperError::Netlink {
            what: "netlink socket".into(),
            reason: e.to_string(),
        };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(fail)?;
        socket.bind_auto().map_err(fail)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(fail)?;
        Ok(Self {
            socket,
            seq: Cell::new(1),
        })
    }

    /// The index of interface `name`, or None if there is none.
    ///
    /// # Errors
    /// [`HelperError::Netlink`] on any other failure.
    pub fn link_index(&self, name: &str) -> Result<Option<u32>, HelperError> {
        match nix::net::if_::if_nametoindex(name) {
            Ok(i) => Ok(Some(i)),
            Err(Errno::ENODEV) => Ok(None),
            Err(e) => Err(HelperError::Netlink {
                what: format!("lookup of {name}"),
                reason: e.desc().into(),
            }),
        }
    }

    /// Brings link `index` up, optionally setting its MAC and MTU first.
    ///
    /// # Errors
    /// [`HelperError::Netlink`] with the kernel's reason.
    pub fn set_link_up(
        &self,
        index: u32,
        mac: Option<[u8; 6]>,
        mtu: Option<u32>,
    ) -> Result<(), HelperError> {
        let mut b = LinkUnspec::new_with_index(index).up();
        if let Some(mac) = mac {
            b = b.address(mac.to_vec());
        }
        if let Some(mtu) = mtu {
            b = b.mtu(mtu);
        }
        self.request(RouteNetlinkMessage::SetLink(b.build()), 0)
            .map_err(|e| fail(&format!("link {index}"), e))
    }

    /// Caps the GSO frames the kernel hands to link `index` at `size` bytes (an overlay
    /// network's TAP: a GSO frame must fit one VXLAN datagram).
    ///
    /// # Errors
    /// [`HelperError::Netlink`] with the kernel's reason.
    pub fn set_gso_max_size(&self, index: u32, size: u32) -> Result<(), HelperError> {
        let b = LinkUnspec::new_with_index(index)
            .append_extra_attribute(netlink_packet_route::link::LinkAttribute::GsoMaxSize(size));
        self.request(RouteNetlinkMessage::SetLink(b.build()), 0)
            .map_err(|e| fail(&format!("link {index} gso_max_size {size}"), e))
    }

    /// Adds `ip/prefix_len` to link `index`. An IPv6 address is added without duplicate
    /// address detection, as netavark does: it is the container's lease, which IPAM and the
    /// switch's anti-spoofing already keep unique on the network, and it is usable as soon
    /// as the attach returns. The link-local address still goes through DAD.
    ///
    /// # Errors
    /// [`HelperError::Netlink`] with the kernel's reason.
    pub fn add_address(&self, index: u32, ip: IpAddr, prefix_len: u8) -> Result<(), HelperError> {
        let msg = match ip {
            IpAddr::V4(v4) => AddressMessageBuilder::<Ipv4Addr>::new()
                .index(index)
                .address(v4, prefix_len)
                .build(),
            IpAddr::V6(v6) => {
                let mut msg = AddressMessageBuilder::<Ipv6Addr>::new()
                    .index(index)
                    .address(v6, prefix_len)
                    .build();
                msg.attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
                msg
            }
        };
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map_err(|e| fail(&format!("address {ip}/{prefix_len}"), e))
    }

    /// Adds the default route of `gateway`'s family via `gateway` on link `index` unless
    /// the namespace already has one. Returns whether it was added.
    ///
    /// # Errors
    /// [`HelperError::Netlink`] with the kernel's reason.
    pub fn add_default_route(&self, index: u32, gateway: IpAddr) -> Result<bool, HelperError> {
        let msg = match gateway {
            IpAddr::V4(v4) => RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(v4)
                .output_interface(index)
                .build(),
            IpAddr::V6(v6) => RouteMessageBuilder::<Ipv6Addr>::new()
                .gateway(v6)
                .output_interface(index)
                .build(),
        };
        match self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(()) => Ok(true),
            Err(Errno::EEXIST) => Ok(false),
            Err(e) => Err(fail(&format!("default route via {gateway}"), e)),
        }
    }

    /// Deletes link `index`.
    ///
    /// # Errors
    /// [`HelperError::Netlink`] with the kernel's reason.
    pub fn delete_link(&self, index: u32) -> Result<(), HelperError> {
        let msg = LinkUnspec::new_with_index(index).build();
        self.request(RouteNetlinkMessage::DelLink(msg), 0)
            .map_err(|e| fail(&format!("removal of link {index}"), e))
    }

    /// Sends one request with NLM_F_REQUEST|NLM_F_ACK|`flags` and waits for its ack.
    fn request(&self, payload: RouteNetlinkMessage, flags: u16) -> Result<(), Errno> {
        let seq = self.seq.get();
        self.seq.set(seq.wrapping_add(1));
        let mut msg = NetlinkMessage::from(payload);
        msg.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        msg.header.sequence_number = seq;
        msg.finalize();
        let mut out = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut out);
        self.socket.send(&out, 0).map_err(io_errno)?;
        let mut buf: Vec<u8> = Vec::with_capacity(16384);
        loop {
            buf.clear();
            let n = self.socket.recv(&mut buf, 0).map_err(io_errno)?;
            let mut off = 0;
            while off < n {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[off..n])
                    .map_err(|_| Errno::EPROTO)?;
                let len = reply.header.length as usize;
                if reply.header.sequence_number == seq
                    && let NetlinkPayload::Error(err) = reply.payload
                {
                    return match err.code {
                        None => Ok(()),
                        Some(code) => Err(Errno::from_raw(-code.get())),
                    };
                }
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
            }
        }
    }
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn fail(what: &str, e: Errno) -> HelperError {
    HelperError::Netlink {
        what: what.to_string(),
        reason: e.desc().to_string(),
    }
}
