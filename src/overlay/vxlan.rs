//! The host's VXLAN endpoint (VTEP): one UDP socket on the advertise address, shared by every
//! overlay network of the host.
//!
//! Sending: each overlay network's data path gets a dup of the socket ([`Vxlan::network`])
//! and sends from its own thread (`sendmsg` from several threads on one socket is fine).
//!
//! Receiving: one reader thread takes each datagram, drops it unless its source address is a
//! current cluster member ([`Vxlan::set_members`]) and it is VXLAN for a VNI some network
//! registered, and pushes it whole into that network's ring ([`OverlayRx`]), waking its data
//! path through an eventfd. Drops are counted in [`VxlanCounters`]. The reader owns its
//! member set and VNI table: the control plane changes them with messages the reader applies
//! before it handles the next datagram, so nothing is locked per datagram. A network whose
//! data path is gone (its ring abandoned) is forgotten on its next datagram.
//!
//! The reader thread confines itself with the data path's seccomp sandbox
//! ([`crate::sandbox`]) before it reads a datagram.
//!
//! Limits: one datagram carries one frame, at most [`wire::MAX_DATAGRAM`] bytes; a full ring
//! drops the datagram (counted). Receive and send buffers are raised to [`SOCKET_BUFFER`]
//! (with `SO_RCVBUFFORCE` when privileged, else up to `net.core.rmem_max`).

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::ring::{OverlayRx, RECORD_HEADER, RingTx, encode_header};
use super::wire;

/// Bytes of each network's receive ring: room for 64 full-size datagrams.
pub const RING_BYTES: usize = 64 * (RECORD_HEADER + wire::MAX_DATAGRAM);
/// Socket buffer size asked for in both directions.
pub const SOCKET_BUFFER: usize = 16 << 20;
/// How long the reader blocks before it looks for messages and the stop flag.
const READ_TIMEOUT: Duration = Duration::from_millis(100);

/// Datagrams the VXLAN socket received and dropped, by reason (host-wide).
#[derive(Debug, Default)]
pub struct VxlanCounters {
    /// Datagrams received (all of them, dropped ones included).
    pub rx_datagrams: AtomicU64,
    /// Handed to a network's data path.
    pub delivered: AtomicU64,
    /// From an address that is not a cluster member.
    pub not_member: AtomicU64,
    /// For a VNI no network of this host has.
    pub unknown_vni: AtomicU64,
    /// Not VXLAN (too short, I flag clear).
    pub malformed: AtomicU64,
    /// The network's ring was full.
    pub ring_full: AtomicU64,
}

/// A snapshot of [`VxlanCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VxlanStats {
    /// See [`VxlanCounters::rx_datagrams`].
    pub rx_datagrams: u64,
    /// See [`VxlanCounters::delivered`].
    pub delivered: u64,
    /// See [`VxlanCounters::not_member`].
    pub not_member: u64,
    /// See [`VxlanCounters::unknown_vni`].
    pub unknown_vni: u64,
    /// See [`VxlanCounters::malformed`].
    pub malformed: u64,
    /// See [`VxlanCounters::ring_full`].
    pub ring_full: u64,
}

/// Messages from the control plane to the reader thread.
enum Control {
    Members(HashSet<IpAddr>),
    Add(u32, RingTx),
    Remove(u32),
}

/// The host's VXLAN endpoint.
pub struct Vxlan {
    socket: UdpSocket,
    local: SocketAddr,
    control: mpsc::Sender<Control>,
    counters: Arc<VxlanCounters>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

/// What an overlay network's data path needs from the host's [`Vxlan`].
pub struct VxlanPort {
    /// A dup of the host's socket, to send from.
    pub socket: OwnedFd,
    /// Datagrams for this network's VNI.
    pub rx: OverlayRx,
}

impl Vxlan {
    /// Binds the VXLAN socket on `advertise` (port 0 picks a free one, for tests) and starts
    /// the reader thread. No cluster member yet: everything is dropped until
    /// [`set_members`](Self::set_members).
    ///
    /// # Errors
    /// When the socket cannot be bound or the thread not started.
    pub fn bind(advertise: SocketAddr) -> io::Result<Self> {
        let socket = Socket::new(
            Domain::for_address(advertise),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        socket.set_cloexec(true)?;
        // Privileged: past net.core.{r,w}mem_max; otherwise as much as they allow.
        use nix::sys::socket::{setsockopt, sockopt};
        if setsockopt(&socket, sockopt::RcvBufForce, &SOCKET_BUFFER).is_err() {
            let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        }
        if setsockopt(&socket, sockopt::SndBufForce, &SOCKET_BUFFER).is_err() {
            let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
        }
        if advertise.is_ipv4() {
            no_udp_checksum(&socket);
        }
        socket.bind(&advertise.into())?;
        let socket: UdpSocket = socket.into();
        socket.set_read_timeout(Some(READ_TIMEOUT))?;
        let local = socket.local_addr()?;
        let (control, rx) = mpsc::channel();
        let counters = Arc::new(VxlanCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let socket = socket.try_clone()?;
            let counters = counters.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("vxlan-rx".into())
                .spawn(move || read_loop(&socket, &rx, &counters, &stop))?
        };
        tracing::info!(vtep = %local, "VXLAN endpoint bound");
        Ok(Self {
            socket,
            local,
            control,
            counters,
            stop,
            reader: Some(reader),
        })
    }

    /// The bound address (the VTEP other hosts send to).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Replaces the set of hosts datagrams are accepted from (their advertise addresses).
    pub fn set_members(&self, members: Vec<IpAddr>) {
        let set = members.into_iter().map(canonical).collect();
        let _ = self.control.send(Control::Members(set));
    }

    /// Registers network `vni` (replacing an earlier registration) and returns what its data
    /// path needs: a socket to send from and the ring its datagrams arrive in.
    ///
    /// # Errors
    /// When the socket cannot be duplicated or the eventfd created.
    pub fn network(&self, vni: u32) -> io::Result<VxlanPort> {
        let socket = self.socket.as_fd().try_clone_to_owned()?;
        let (tx, rx) = OverlayRx::pair(RING_BYTES)?;
        let _ = self.control.send(Control::Add(vni & wire::MAX_VNI, tx));
        Ok(VxlanPort { socket, rx })
    }

    /// [`network`](Self::network) packaged for
    /// [`Datapath::set_overlay`](crate::datapath::Datapath::set_overlay).
    ///
    /// # Errors
    /// As [`network`](Self::network).
    pub fn overlay_config(
        &self,
        vni: u32,
        underlay_mtu: u32,
    ) -> io::Result<crate::datapath::OverlayConfig> {
        Ok(crate::datapath::OverlayConfig {
            vni,
            local_vtep: self.local,
            underlay_mtu,
            port: self.network(vni)?,
        })
    }

    /// Forgets network `vni`: its datagrams are dropped as unknown from now on.
    pub fn remove_network(&self, vni: u32) {
        let _ = self.control.send(Control::Remove(vni & wire::MAX_VNI));
    }

    /// The counters now.
    pub fn stats(&self) -> VxlanStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        VxlanStats {
            rx_datagrams: l(&c.rx_datagrams),
            delivered: l(&c.delivered),
            not_member: l(&c.not_member),
            unknown_vni: l(&c.unknown_vni),
            malformed: l(&c.malformed),
            ring_full: l(&c.ring_full),
        }
    }
}

impl Drop for Vxlan {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.reader.take() {
            let _ = t.join();
        }
    }
}

/// The MTU of the interface holding `ip` (the underlay of an overlay network whose hosts
/// advertise `ip`).
///
/// # Errors
/// When no interface of this network namespace has `ip`, or its MTU cannot be read.
pub fn underlay_mtu(ip: IpAddr) -> io::Result<u32> {
    let ifaces = nix::ifaddrs::getifaddrs()?;
    for ifa in ifaces {
        let has = ifa.address.as_ref().is_some_and(|a| {
            a.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())) == Some(ip)
                || a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())) == Some(ip)
        });
        if has {
            let path = format!("/sys/class/net/{}/mtu", ifa.interface_name);
            let text = std::fs::read_to_string(&path)?;
            return text
                .trim()
                .parse()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {e}")));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no interface has the advertise address {ip}"),
    ))
}

/// Sends IPv4 datagrams with a zero UDP checksum, as RFC 7348 recommends for VXLAN over
/// IPv4 (and as the kernel's VXLAN does by default); receivers then skip verifying it. The
/// inner frames keep their own checksums. Best effort: without it, checksums are sent.
fn no_udp_checksum(socket: &Socket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a plain setsockopt on a socket we own, with a pointer to a c_int that outlives
    // the call and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!("SO_NO_CHECK: {}", io::Error::last_os_error());
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What the reader knows: members and registered networks.
#[derive(Default)]
struct Demux {
    members: HashSet<IpAddr>,
    networks: HashMap<u32, RingTx>,
}

impl Demux {
    fn apply(&mut self, msg: Control) {
        match msg {
            Control::Members(m) => self.members = m,
            Control::Add(vni, tx) => {
                self.networks.insert(vni, tx);
            }
            Control::Remove(vni) => {
                self.networks.remove(&vni);
            }
        }
    }

    /// Handles one datagram received from `src`; `buf` holds a free record header in its
    /// first [`RECORD_HEADER`] bytes and the datagram after them.
    fn deliver(&mut self, buf: &mut [u8], n: usize, src: SocketAddr, c: &VxlanCounters) {
        c.rx_datagrams.fetch_add(1, Ordering::Relaxed);
        if !self.members.contains(&canonical(src.ip())) {
            c.not_member.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(datagram) = buf.get(RECORD_HEADER..RECORD_HEADER + n) else {
            return;
        };
        let (vni, vnet, len) = match wire::parse(datagram) {
            Ok(v) => (v.vni, v.vnet, v.payload.len()),
            Err(_) => {
                c.malformed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let Some(net) = self.networks.get_mut(&vni) else {
            c.unknown_vni.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if net.producer.is_abandoned() {
            self.networks.remove(&vni);
            c.unknown_vni.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // The record header goes right before the payload, over the VXLAN header's end.
        let start = RECORD_HEADER + wire::HEADER_LEN - RECORD_HEADER;
        let Some(record) = buf.get_mut(start..RECORD_HEADER + n) else {
            return;
        };
        let Some(head) = record.first_chunk_mut::<RECORD_HEADER>() else {
            return;
        };
        encode_header(head, len, vnet, src);
        if net.producer.push_entire_slice(record).is_err() {
            c.ring_full.fetch_add(1, Ordering::Relaxed);
            return;
        }
        net.pending = true;
        c.delivered.fetch_add(1, Ordering::Relaxed);
    }

    /// Wakes every network that got datagrams since the last call (once per burst).
    fn wake_pending(&mut self) {
        for net in self.networks.values_mut() {
            net.wake_if_pending();
        }
    }
}

/// Datagrams read without blocking after the first of a burst, before the data paths are
/// woken: one eventfd write per network per burst instead of one per datagram.
const BURST: usize = 64;

/// Receives one datagram if one is queued, without blocking.
fn recv_now(socket: &UdpSocket, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
    use nix::sys::socket::{MsgFlags, SockaddrStorage, recvmsg};
    use std::os::fd::AsRawFd;
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg =
        recvmsg::<SockaddrStorage>(socket.as_raw_fd(), &mut iov, None, MsgFlags::MSG_DONTWAIT)
            .ok()?;
    let addr = msg.address?;
    let src = if let Some(v4) = addr.as_sockaddr_in() {
        SocketAddr::from(std::net::SocketAddrV4::from(*v4))
    } else {
        SocketAddr::from(std::net::SocketAddrV6::from(*addr.as_sockaddr_in6()?))
    };
    Some((msg.bytes, src))
}

/// The receive path without a socket, for the fuzz target: datagrams from `src` go through
/// the reader's checks into one network's ring and out as the data path takes them.
#[doc(hidden)]
pub struct RxHarness {
    demux: Demux,
    rx: OverlayRx,
    counters: VxlanCounters,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl RxHarness {
    /// One network `vni` and one cluster member.
    ///
    /// # Errors
    /// When the eventfd cannot be created.
    pub fn new(vni: u32, member: IpAddr) -> io::Result<Self> {
        let mut demux = Demux::default();
        let (tx, rx) = OverlayRx::pair(RING_BYTES)?;
        demux.apply(Control::Add(vni, tx));
        demux.apply(Control::Members(HashSet::from([canonical(member)])));
        Ok(Self {
            demux,
            rx,
            counters: VxlanCounters::default(),
            buf: vec![0; RECORD_HEADER + wire::MAX_DATAGRAM],
            out: vec![0; wire::MAX_DATAGRAM + switch::vnet::LEN],
        })
    }

    /// Offers one datagram (truncated to [`wire::MAX_DATAGRAM`]) from `src`; returns what
    /// the data path would take from the ring (virtio-net header + frame) and its source.
    pub fn offer(&mut self, datagram: &[u8], src: SocketAddr) -> Option<(&[u8], SocketAddr)> {
        let n = datagram.len().min(wire::MAX_DATAGRAM);
        self.buf
            .get_mut(RECORD_HEADER..RECORD_HEADER + n)?
            .copy_from_slice(datagram.get(..n)?);
        self.demux.deliver(&mut self.buf, n, src, &self.counters);
        let (len, from) = self.rx.pop(&mut self.out)?;
        Some((self.out.get(..len)?, from))
    }
}

fn read_loop(
    socket: &UdpSocket,
    control: &mpsc::Receiver<Control>,
    counters: &VxlanCounters,
    stop: &AtomicBool,
) {
    if let Err(e) = crate::sandbox::enter() {
        tracing::warn!("VXLAN reader runs without its seccomp sandbox: {e}");
    }
    let mut demux = Demux::default();
    let mut buf = vec![0u8; RECORD_HEADER + wire::MAX_DATAGRAM + 1];
    while !stop.load(Ordering::Relaxed) {
        let got = match buf.get_mut(RECORD_HEADER..) {
            Some(b) => socket.recv_from(b),
            None => return,
        };
        while let Ok(msg) = control.try_recv() {
            demux.apply(msg);
        }
        match got {
            Ok((n, src)) => {
                demux.deliver(&mut buf, n, src, counters);
                for _ in 0..BURST {
                    let Some(b) = buf.get_mut(RECORD_HEADER..) else {
                        break;
                    };
                    let Some((n, src)) = recv_now(socket, b) else {
                        break;
                    };
                    demux.deliver(&mut buf, n, src, counters);
                }
                demux.wake_pending();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                tracing::warn!("VXLAN socket receive failed: {e}");
                std::thread::sleep(READ_TIMEOUT);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_A: u32 = 100;

    fn datagram(vni: u32, frame: &[u8]) -> Vec<u8> {
        let mut d = wire::header(vni, false).to_vec();
        d.extend_from_slice(frame);
        d
    }

    /// A Demux with one member and one network; returns it, the network's ring and counters.
    fn demux() -> (Demux, OverlayRx, VxlanCounters) {
        let mut d = Demux::default();
        let (tx, rx) = OverlayRx::pair(RING_BYTES).unwrap();
        d.apply(Control::Add(NET_A, tx));
        d.apply(Control::Members(HashSet::from([IpAddr::from([
            198, 51, 100, 2,
        ])])));
        (d, rx, VxlanCounters::default())
    }

    fn offer(d: &mut Demux, c: &VxlanCounters, src: &str, bytes: &[u8]) {
        let mut buf = vec![0u8; RECORD_HEADER + bytes.len()];
        buf[RECORD_HEADER..].copy_from_slice(bytes);
        d.deliver(&mut buf, bytes.len(), src.parse().unwrap(), c);
    }

    #[test]
    fn member_datagram_reaches_its_network() {
        let (mut d, mut rx, c) = demux();
        let frame = [7u8; 60];
        offer(&mut d, &c, "198.51.100.2:4789", &datagram(NET_A, &frame));
        let mut out = [0u8; 100];
        let (n, src) = rx.pop(&mut out).unwrap();
        assert_eq!(src, "198.51.100.2:4789".parse().unwrap());
        assert_eq!(&out[12..n], &frame);
        assert_eq!(c.delivered.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn strangers_unknown_vnis_and_junk_are_dropped_and_counted() {
        let (mut d, mut rx, c) = demux();
        let frame = [7u8; 60];
        offer(&mut d, &c, "198.51.100.9:4789", &datagram(NET_A, &frame));
        offer(
            &mut d,
            &c,
            "198.51.100.2:4789",
            &datagram(NET_A + 1, &frame),
        );
        offer(&mut d, &c, "198.51.100.2:4789", &[0u8; 30]);
        let mut out = [0u8; 100];
        assert!(rx.pop(&mut out).is_none());
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!(
            (
                l(&c.not_member),
                l(&c.unknown_vni),
                l(&c.malformed),
                l(&c.delivered)
            ),
            (1, 1, 1, 0)
        );
        // A member that leaves the cluster is no longer heard.
        d.apply(Control::Members(HashSet::new()));
        offer(&mut d, &c, "198.51.100.2:4789", &datagram(NET_A, &frame));
        assert_eq!(l(&c.not_member), 2);
    }

    #[test]
    fn a_gone_network_is_forgotten() {
        let (mut d, rx, c) = demux();
        drop(rx);
        offer(
            &mut d,
            &c,
            "198.51.100.2:4789",
            &datagram(NET_A, &[7u8; 60]),
        );
        assert_eq!(c.unknown_vni.load(Ordering::Relaxed), 1);
        assert!(d.networks.is_empty());
    }

    #[test]
    fn underlay_mtu_is_that_of_the_interface_with_the_address() {
        assert_eq!(underlay_mtu(IpAddr::from([127, 0, 0, 1])).unwrap(), 65536);
        let err = underlay_mtu(IpAddr::from([198, 51, 100, 250])).unwrap_err();
        assert!(err.to_string().contains("198.51.100.250"), "{err}");
    }

    #[test]
    fn bound_socket_filters_by_membership() {
        let v = Vxlan::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut port = v.network(NET_A).unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let d = datagram(NET_A, &[9u8; 64]);
        peer.send_to(&d, v.local_addr()).unwrap();
        v.set_members(vec![IpAddr::from([127, 0, 0, 1])]);
        let mut out = vec![0u8; 200];
        let mut got = None;
        for _ in 0..100 {
            peer.send_to(&d, v.local_addr()).unwrap();
            std::thread::sleep(Duration::from_millis(10));
            if let Some(r) = port.rx.pop(&mut out) {
                got = Some(r);
                break;
            }
        }
        let (n, src) = got.expect("a member's datagram arrives");
        assert_eq!(src, peer.local_addr().unwrap());
        assert_eq!(n, 12 + 64);
        assert!(v.stats().rx_datagrams >= 2);
    }
}
