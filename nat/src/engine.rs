//! `Nat`: the translating half of one network's gateway. It terminates containers' TCP in a
//! smoltcp `Interface` (Medium::Ip, any_ip), re-originates each flow from an ordinary host
//! socket, and carries UDP datagrams and ICMP echoes through per-flow host sockets. It runs
//! inside the network's data path thread: frames come in through [`Nat::on_frame`], host
//! socket readiness through its own epoll fd (which the data path polls), and everything it
//! sends to containers goes straight to the caller's sink.
//!
//! Limits: one flow table per network, at most `max_flows` TCP+UDP+ICMP flows; a new flow
//! beyond that is refused at once (TCP RST, ICMP administratively-prohibited for UDP/ICMP)
//! and counted, while existing flows go on. UDP and ICMP flows expire after
//! `udp_timeout` without traffic; TCP flows live until both sides have closed or one reset.
//! smoltcp matches sockets by a linear scan, so per-packet cost grows with the number of
//! live TCP flows (fine for hundreds, not for tens of thousands).

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, HardwareAddress, IpAddress, IpCidr, IpProtocol, Ipv4Packet,
};

use crate::device::{Framer, Neighbors, OneShot, Sink};
use crate::{dns, dns_relay, dns_tcp, ping, tcp, udp};

/// How the gateway translates for one network.
#[derive(Clone, Debug)]
pub struct NatConfig {
    /// The gateway address (containers' default route).
    pub gateway_ip: Ipv4Addr,
    /// The gateway MAC.
    pub gateway_mac: [u8; 6],
    /// The network's subnet address and prefix length.
    pub subnet: (Ipv4Addr, u8),
    /// Link MTU of the network.
    pub mtu: u32,
    /// No translation at all: containers reach only each other and the gateway.
    pub internal: bool,
    /// Connections to the gateway address go to the host's 127.0.0.1.
    pub host_loopback: bool,
    /// Most TCP+UDP+ICMP flows at once (default 4096).
    pub max_flows: usize,
    /// Idle time after which a UDP or ICMP flow is forgotten (default 60 s).
    pub udp_timeout: Duration,
    /// How long an outbound TCP dial may take before the container is told "unreachable"
    /// (default 10 s).
    pub connect_timeout: Duration,
    /// Receive buffer (container → far side) of each TCP flow's smoltcp socket (default
    /// 4 MiB, zeroed pages the kernel maps only as data queues). A buffer that fills up makes
    /// smoltcp drop segments that straddle its window-scale-rounded right edge: measured at
    /// MTU 65520, 1 MiB gave 9.2 Gbit/s with 133 retransmits, 4 MiB 14.2 Gbit/s with 12.
    pub tcp_rx_buffer: usize,
    /// Send buffer (far side → container) of each TCP flow's smoltcp socket (default 1 MiB:
    /// with window scaling enough to fill a local link; 4 MiB measured no faster for published
    /// ports, 15.5–22.5 against 16.8–19.6 Gbit/s at MTU 65520, within the run-to-run spread).
    pub tcp_tx_buffer: usize,
    /// Upstream resolvers of the DNS responder.
    pub dns: dns::DnsConfig,
}

impl NatConfig {
    /// The defaults for a network.
    pub fn new(
        gateway_ip: Ipv4Addr,
        gateway_mac: [u8; 6],
        subnet: (Ipv4Addr, u8),
        mtu: u32,
    ) -> Self {
        Self {
            gateway_ip,
            gateway_mac,
            subnet,
            mtu,
            internal: false,
            host_loopback: false,
            max_flows: 4096,
            udp_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            tcp_rx_buffer: 4 << 20,
            tcp_tx_buffer: 1 << 20,
            dns: dns::DnsConfig::default(),
        }
    }

    pub(crate) fn in_subnet(&self, ip: Ipv4Addr) -> bool {
        let (net, len) = self.subnet;
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        u32::from(ip) & mask == u32::from(net) & mask
    }
}

/// Transport protocol of a published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// A published port: the host listener and where it leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Publish {
    /// Host address and port listened on.
    pub host: SocketAddrV4,
    /// The container's address.
    pub container_ip: Ipv4Addr,
    /// The container's port.
    pub container_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// What the NAT has done and holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatStats {
    /// Live TCP flows (outbound and published).
    pub tcp_flows: usize,
    /// Live UDP flows (outbound and published).
    pub udp_flows: usize,
    /// Live ICMP echo flows.
    pub icmp_flows: usize,
    /// The flow limit.
    pub max_flows: usize,
    /// Cumulative counters.
    pub counters: NatCounters,
}

/// Cumulative NAT counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatCounters {
    /// TCP flows established with the far side.
    pub tcp_opened: u64,
    /// Outbound dials refused by the far side (container got RST).
    pub tcp_refused: u64,
    /// Outbound dials that failed otherwise (container got ICMP unreachable).
    pub tcp_unreachable: u64,
    /// UDP flows created.
    pub udp_flows: u64,
    /// ICMP echo requests forwarded.
    pub icmp_echoes: u64,
    /// New flows refused because the table was full.
    pub refused_limit: u64,
    /// UDP/ICMP flows removed after their idle timeout.
    pub expired: u64,
    /// Packets dropped because the network is internal.
    pub internal_drops: u64,
}

/// One entry of the slot table; the epoll token of a host socket is its slot index.
pub(crate) enum Slot {
    Tcp(tcp::TcpFlow),
    TcpListener(tcp::Listener),
    Udp(udp::UdpFlow),
    UdpListener(udp::Listener),
    Ping(ping::PingFlow),
    Dns(dns_relay::Pending),
    DnsTcp(dns_tcp::DnsTcp),
}

/// The translation engine of one network.
pub struct Nat {
    pub(crate) cfg: NatConfig,
    pub(crate) epoll: Epoll,
    pub(crate) iface: Interface,
    pub(crate) sockets: SocketSet<'static>,
    pub(crate) slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    pub(crate) tcp_keys: HashMap<tcp::Key, usize, foldhash::fast::RandomState>,
    pub(crate) udp_keys: HashMap<udp::Key, usize, foldhash::fast::RandomState>,
    pub(crate) udp_published:
        HashMap<udp::PublishedKey, udp::PublishedFlow, foldhash::fast::RandomState>,
    pub(crate) ping_keys: HashMap<ping::Key, usize, foldhash::fast::RandomState>,
    pub(crate) listeners: HashMap<(SocketAddrV4, Protocol), usize, foldhash::fast::RandomState>,
    pub(crate) framer: Framer,
    pub(crate) counters: NatCounters,
    pub(crate) tcp_live: usize,
    pub(crate) udp_live: usize,
    pub(crate) ping_live: usize,
    pub(crate) dns: dns::Dns,
    /// Scratch buffer for reading UDP/ICMP datagrams from host sockets.
    pub(crate) dgram: Vec<u8>,
    start: std::time::Instant,
    last_sweep: std::time::Instant,
    events: Vec<EpollEvent>,
    ping_unavailable_logged: bool,
}

/// Errors of the runtime API.
#[derive(Debug, thiserror::Error)]
pub enum NatError {
    /// The host address/port is already published on this network.
    #[error("{0} is already published")]
    AlreadyPublished(String),
    /// Nothing is published there.
    #[error("{0} is not published")]
    NotPublished(String),
    /// The network is internal.
    #[error("network is internal: no published ports")]
    Internal,
    /// An OS error.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl Nat {
    /// Builds the engine.
    ///
    /// # Errors
    /// When the epoll instance cannot be created.
    pub fn new(cfg: NatConfig) -> io::Result<Self> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let start = std::time::Instant::now();
        let mut framer = Framer {
            gateway_mac: cfg.gateway_mac,
            neighbors: Neighbors::default(),
            buf: vec![0; crate::vnet::LEN + crate::device::ETH_LEN + 65_536],
        };
        let mut sink = |_: &[u8]| {};
        let mut dev = OneShot {
            rx: None,
            framer: &mut framer,
            sink: &mut sink,
            mtu: cfg.mtu as usize,
        };
        let mut iface = Interface::new(
            Config::new(HardwareAddress::Ip),
            &mut dev,
            SmolInstant::ZERO,
        );
        iface.set_any_ip(true);
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(cfg.gateway_ip), cfg.subnet.1));
        });
        let _ = iface.routes_mut().add_default_ipv4_route(cfg.gateway_ip);
        Ok(Self {
            epoll,
            iface,
            sockets: SocketSet::new(Vec::new()),
            slots: Vec::new(),
            free: Vec::new(),
            tcp_keys: HashMap::default(),
            udp_keys: HashMap::default(),
            udp_published: HashMap::default(),
            ping_keys: HashMap::default(),
            listeners: HashMap::default(),
            framer,
            counters: NatCounters::default(),
            tcp_live: 0,
            udp_live: 0,
            ping_live: 0,
            dns: dns::Dns {
                cfg: cfg.dns.clone(),
                ..Default::default()
            },
            dgram: vec![0; 65_536],
            start,
            last_sweep: start,
            events: vec![EpollEvent::empty(); 64],
            ping_unavailable_logged: false,
            cfg,
        })
    }

    /// The fd the data path must poll for readability; then call [`Nat::poll`].
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }

    /// Records that container `ip` has `mac` (frames to it are addressed there).
    pub fn set_neighbor(&mut self, ip: Ipv4Addr, mac: [u8; 6]) {
        self.framer.neighbors.insert(ip, mac);
    }

    /// Forgets a container address.
    pub fn forget_neighbor(&mut self, ip: Ipv4Addr) {
        self.framer.neighbors.remove(&ip);
    }

    pub(crate) fn now(&self) -> SmolInstant {
        SmolInstant::from_micros(self.start.elapsed().as_micros() as i64)
    }

    pub(crate) fn flows(&self) -> usize {
        self.tcp_live + self.udp_live + self.ping_live
    }

    /// Whether a new flow may be created; counts the refusal when not.
    pub(crate) fn admit(&mut self) -> bool {
        if self.flows() >= self.cfg.max_flows {
            self.counters.refused_limit += 1;
            return false;
        }
        true
    }

    pub(crate) fn insert_slot(&mut self, slot: Slot) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        }
    }

    pub(crate) fn take_slot(&mut self, i: usize) -> Option<Slot> {
        let s = self.slots.get_mut(i)?.take();
        if s.is_some() {
            self.free.push(i);
        }
        s
    }

    pub(crate) fn register(
        &self,
        fd: BorrowedFd<'_>,
        token: usize,
        flags: EpollFlags,
    ) -> io::Result<()> {
        self.epoll
            .add(fd, EpollEvent::new(flags, token as u64))
            .map_err(io::Error::from)
    }

    pub(crate) fn deregister(&self, fd: BorrowedFd<'_>) {
        let _ = self.epoll.delete(fd);
    }

    /// Handles one IPv4 frame (no virtio header) sent to the gateway MAC that the gateway's
    /// own services did not answer; replies and translated traffic go to `sink`.
    pub fn on_frame(&mut self, frame: &[u8], sink: &mut Sink<'_>) {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return;
        };
        if eth.ethertype() != EthernetProtocol::Ipv4 || eth.dst_addr().0 != self.cfg.gateway_mac {
            return;
        }
        let payload = eth.payload();
        let Ok(ip) = Ipv4Packet::new_checked(payload) else {
            return;
        };
        let src = ip.src_addr();
        let dst = ip.dst_addr();
        if !self.cfg.in_subnet(src) || self.cfg.in_subnet(dst) && dst != self.cfg.gateway_ip {
            return;
        }
        if ip.more_frags() || ip.frag_offset() != 0 {
            return;
        }
        if self.cfg.internal && dst != self.cfg.gateway_ip {
            self.counters.internal_drops += 1;
            crate::emit::unreachable(
                self,
                payload,
                smoltcp::wire::Icmpv4DstUnreachable::CommProhibited,
                sink,
            );
            return;
        }
        let len = (ip.total_len() as usize).min(payload.len());
        let packet = &payload[..len];
        match ip.next_header() {
            IpProtocol::Tcp => tcp::on_packet(self, packet, sink),
            IpProtocol::Udp => udp::on_packet(self, packet, sink),
            IpProtocol::Icmp => ping::on_packet(self, packet, sink),
            _ => {}
        }
    }

    /// Feeds one IP packet (or none) to smoltcp and lets it transmit.
    pub(crate) fn poll_iface(&mut self, rx: Option<&[u8]>, sink: &mut Sink<'_>) {
        let now = self.now();
        let mut dev = OneShot {
            rx,
            framer: &mut self.framer,
            sink,
            mtu: self.cfg.mtu as usize,
        };
        self.iface.poll(now, &mut dev, &mut self.sockets);
    }

    /// Serves host sockets that are ready, moves data between the two sides of every TCP
    /// flow, and expires idle flows. Call when [`Nat::as_fd`] is readable and after
    /// [`Nat::poll_delay`] has passed.
    pub fn poll(&mut self, sink: &mut Sink<'_>) {
        let mut events = std::mem::take(&mut self.events);
        // Bounded: at most 64 events per call; the epoll fd stays readable if more wait.
        let n = self.epoll.wait(&mut events, 0u8).unwrap_or(0);
        for ev in &events[..n] {
            let token = ev.data() as usize;
            let flags = ev.events();
            match self.slots.get(token).and_then(Option::as_ref) {
                Some(Slot::Tcp(_)) => tcp::on_host_event(self, token, flags, sink),
                Some(Slot::TcpListener(_)) => tcp::on_accept(self, token, sink),
                Some(Slot::Udp(_)) => udp::on_host_readable(self, token, sink),
                Some(Slot::UdpListener(_)) => udp::on_listener_readable(self, token, sink),
                Some(Slot::Ping(_)) => ping::on_host_readable(self, token, sink),
                Some(Slot::Dns(_)) => dns_relay::on_upstream(self, token, sink),
                Some(Slot::DnsTcp(_)) | None => {}
            }
        }
        self.events = events;
        tcp::check_dials(self, sink);
        dns_relay::expire(self, std::time::Instant::now(), sink);
        self.poll_iface(None, sink);
        tcp::pump_all(self, sink);
        let now = std::time::Instant::now();
        if now.duration_since(self.last_sweep) >= Duration::from_secs(1) {
            self.last_sweep = now;
            udp::expire(self, now);
            ping::expire(self, now);
        }
    }

    /// How soon [`Nat::poll`] must run again even without host events (smoltcp timers,
    /// pending dials, expiry sweeps).
    pub fn poll_delay(&mut self) -> Duration {
        let now = self.now();
        let smol = self
            .iface
            .poll_delay(now, &self.sockets)
            .map(|d| Duration::from_micros(d.total_micros()))
            .unwrap_or(Duration::from_secs(1));
        let dns = dns_relay::next_deadline(self)
            .map(|d| d.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or(Duration::from_secs(1));
        smol.min(dns).min(Duration::from_secs(1))
    }

    /// Replaces what each querier may resolve (pushed by the daemon on every change).
    pub fn set_dns_view(&mut self, view: dns::DnsView) {
        self.dns.view = view;
    }

    /// Starts serving a published port on an already bound host socket (a listening TCP
    /// socket or a bound UDP socket, non-blocking).
    ///
    /// # Errors
    /// [`NatError::AlreadyPublished`], [`NatError::Internal`], or registration failure.
    pub fn add_publish(&mut self, p: Publish, socket: OwnedFd) -> Result<(), NatError> {
        if self.cfg.internal {
            return Err(NatError::Internal);
        }
        let key = (p.host, p.protocol);
        if self.listeners.contains_key(&key) {
            return Err(NatError::AlreadyPublished(format!("{}", p.host)));
        }
        let slot = match p.protocol {
            Protocol::Tcp => Slot::TcpListener(tcp::Listener::new(p, socket)),
            Protocol::Udp => Slot::UdpListener(udp::Listener::new(p, socket)),
        };
        let token = self.insert_slot(slot);
        let fd = match &self.slots[token] {
            Some(Slot::TcpListener(l)) => l.as_fd(),
            Some(Slot::UdpListener(l)) => l.as_fd(),
            _ => unreachable!("just inserted"),
        };
        if let Err(e) = self.register(fd, token, EpollFlags::EPOLLIN) {
            self.take_slot(token);
            return Err(e.into());
        }
        self.listeners.insert(key, token);
        Ok(())
    }

    /// Stops serving a published port (existing connections go on). Returns whether it was
    /// published.
    pub fn remove_publish(&mut self, host: SocketAddrV4, protocol: Protocol) -> bool {
        let Some(token) = self.listeners.remove(&(host, protocol)) else {
            return false;
        };
        match self.take_slot(token) {
            Some(Slot::TcpListener(l)) => self.deregister(l.as_fd()),
            Some(Slot::UdpListener(l)) => {
                self.deregister(l.as_fd());
                self.udp_published.retain(|_, f| f.listener != token);
                self.udp_live = self.udp_keys.len() + self.udp_published.len();
            }
            _ => {}
        }
        true
    }

    /// Removes every published port leading to `ip` (the container left).
    pub fn remove_publishes_to(&mut self, ip: Ipv4Addr) {
        let doomed: Vec<(SocketAddrV4, Protocol)> = self
            .listeners
            .iter()
            .filter(|(_, t)| match self.slots[**t].as_ref() {
                Some(Slot::TcpListener(l)) => l.publish.container_ip == ip,
                Some(Slot::UdpListener(l)) => l.publish.container_ip == ip,
                _ => false,
            })
            .map(|(k, _)| *k)
            .collect();
        for (host, proto) in doomed {
            self.remove_publish(host, proto);
        }
    }

    /// Live flows and counters.
    pub fn stats(&self) -> NatStats {
        NatStats {
            tcp_flows: self.tcp_live,
            udp_flows: self.udp_live,
            icmp_flows: self.ping_live,
            max_flows: self.cfg.max_flows,
            counters: self.counters.clone(),
        }
    }

    pub(crate) fn log_ping_unavailable(&mut self, e: &io::Error) {
        if !self.ping_unavailable_logged {
            self.ping_unavailable_logged = true;
            tracing::warn!(
                "ping to outside addresses unavailable: cannot open an unprivileged ICMP socket ({e}); \
                 allow it with sysctl net.ipv4.ping_group_range=\"0 2147483647\""
            );
        }
    }
}
