//! Two "hosts" (network namespaces joined by a veth) each running one overlay network's data
//! path with its own VXLAN endpoint, and one container per host, driven through the library's
//! `Datapath` API (no daemon, no etcd). Shared by `tests/vxlan_datapath.rs` and the
//! `vxlan_pair` example that `scripts/bench-overlay.sh` runs.
//!
//! The namespaces themselves are made by the caller; this only enters them (from short-lived
//! threads, so the calling thread's namespace never changes) to bind the VXLAN socket, start
//! the data path (whose NAT sockets, if any, then live in the host namespace) and create each
//! container's TAP.
#![allow(dead_code)]

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::process::Command;

use nat::{Gateway, Nat, NatConfig};
use nix::sched::{CloneFlags, setns};
use switch::{NetworkConfig, PortId, PortRole};
use vswitchd::datapath::{Datapath, RemoteEndpoint};
use vswitchd::overlay::{Vxlan, wire};

/// The overlay network both hosts serve.
pub const SUBNET: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 77, 0, 0), 24);
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const GATEWAY_MAC: [u8; 6] = [0x02, 0x42, 10, 77, 0, 1];
pub const VNI: u32 = 4242;
/// The container's port id on its host.
pub const PORT: PortId = PortId(1);

/// One host of the pair, as the caller laid it out.
#[derive(Clone, Debug)]
pub struct Side {
    /// The host's network namespace name (`/run/netns/NAME`).
    pub host_ns: String,
    /// Its advertise address (VXLAN socket).
    pub vtep: SocketAddr,
    /// The container's namespace name.
    pub container_ns: String,
    /// The container's MAC and address on the overlay network.
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
}

/// A running host: its data path and VXLAN endpoint (dropping it stops both).
pub struct Host {
    pub dp: Datapath,
    pub vxlan: Vxlan,
}

/// Runs `f` on a new thread inside network namespace `name`.
pub fn in_netns<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{name}");
    std::thread::spawn(move || {
        let ns = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        setns(ns, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
        f()
    })
    .join()
    .expect("netns thread")
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates the container's TAP `eth0` (virtio-net header, offloads) and configures it for
/// an overlay network on an underlay of `underlay_mtu`.
pub fn container_tap(side: &Side, underlay_mtu: u32) -> OwnedFd {
    let fd = in_netns(&side.container_ns, || {
        netns_helper::tap::open("eth0", netns_helper::tap::Mode::CreateTransient)
            .expect("create TAP")
    });
    let ns = side.container_ns.as_str();
    let mac = switch::MacAddr(side.mac).to_string();
    let mtu = (underlay_mtu - wire::OVERHEAD).to_string();
    let gso = wire::TAP_GSO_MAX_SIZE.to_string();
    let addr = format!("{}/{}", side.ip, SUBNET.1);
    ip(&[
        "-n",
        ns,
        "link",
        "set",
        "eth0",
        "address",
        &mac,
        "mtu",
        &mtu,
        "gso_max_size",
        &gso,
    ]);
    ip(&["-n", ns, "addr", "add", &addr, "dev", "eth0"]);
    ip(&["-n", ns, "link", "set", "eth0", "up"]);
    ip(&[
        "-n",
        ns,
        "route",
        "add",
        "default",
        "via",
        &GATEWAY_IP.to_string(),
    ]);
    fd
}

/// Starts `me`'s host: VXLAN endpoint, data path with the container attached, overlay set up
/// with `peer` as the only other host.
pub fn start_host(
    rt: &tokio::runtime::Runtime,
    me: &Side,
    peer: &Side,
    icc: bool,
    underlay_mtu: u32,
) -> Host {
    let tap = container_tap(me, underlay_mtu);
    let (vtep, host_ns) = (me.vtep, me.host_ns.clone());
    let (dp, vxlan) = in_netns(&host_ns, move || {
        let vxlan = Vxlan::bind(vtep).expect("bind VXLAN socket");
        let mut config = NetworkConfig::new(GATEWAY_MAC);
        config.icc = icc;
        let nat_cfg = NatConfig::new(
            GATEWAY_IP,
            GATEWAY_MAC,
            SUBNET,
            underlay_mtu - wire::OVERHEAD,
        );
        let nat = Nat::new(nat_cfg).expect("NAT");
        let dp = Datapath::spawn(
            "ovl",
            config,
            Gateway::new(GATEWAY_IP, GATEWAY_MAC),
            nat,
            vswitchd::events::Events::default(),
        )
        .expect("data path");
        (dp, vxlan)
    });
    vxlan.set_members(vec![peer.vtep.ip()]);
    let role = PortRole::Container {
        mac: me.mac,
        ipv4: me.ip,
        ipv6: None,
    };
    rt.block_on(async {
        dp.attach(PORT, tap, role, "eth0").await.expect("attach");
        dp.set_overlay(
            vxlan
                .overlay_config(VNI, underlay_mtu)
                .expect("overlay config"),
        )
        .await
        .expect("set_overlay");
        dp.set_remote_endpoints(vec![RemoteEndpoint {
            mac: peer.mac,
            ip: peer.ip,
            ip6: None,
            vtep: peer.vtep,
        }])
        .await
        .expect("remote endpoints");
        dp.set_flood_vteps(vec![peer.vtep])
            .await
            .expect("flood VTEPs");
    });
    Host { dp, vxlan }
}

/// The usual pair: hosts at 198.51.100.1 and .2 (port 4789), containers .2 and .3 of the
/// overlay subnet.
pub fn sides(host_a: &str, host_b: &str, c_a: &str, c_b: &str) -> (Side, Side) {
    let a = Side {
        host_ns: host_a.into(),
        vtep: SocketAddr::new(IpAddr::from([198, 51, 100, 1]), wire::DEFAULT_PORT),
        container_ns: c_a.into(),
        mac: [0x02, 0x42, 10, 77, 0, 2],
        ip: Ipv4Addr::new(10, 77, 0, 2),
    };
    let b = Side {
        host_ns: host_b.into(),
        vtep: SocketAddr::new(IpAddr::from([198, 51, 100, 2]), wire::DEFAULT_PORT),
        container_ns: c_b.into(),
        mac: [0x02, 0x42, 10, 77, 0, 3],
        ip: Ipv4Addr::new(10, 77, 0, 3),
    };
    (a, b)
}

/// Joins two host namespaces with a veth (198.51.100.1/24 and .2/24, MTU `mtu`).
pub fn wire_hosts(host_a: &str, host_b: &str, mtu: u32) {
    let mtu = mtu.to_string();
    ip(&[
        "link", "add", "vxa", "netns", host_a, "mtu", &mtu, "type", "veth", "peer", "name", "vxb",
        "netns", host_b, "mtu", &mtu,
    ]);
    ip(&["-n", host_a, "addr", "add", "198.51.100.1/24", "dev", "vxa"]);
    ip(&["-n", host_b, "addr", "add", "198.51.100.2/24", "dev", "vxb"]);
    ip(&["-n", host_a, "link", "set", "vxa", "up"]);
    ip(&["-n", host_b, "link", "set", "vxb", "up"]);
}
