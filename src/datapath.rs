//! The data path of one network: a thread that owns the network's switch ([`switch::Network`]),
//! its gateway ([`nat::Gateway`]) and the TAP fds of its endpoints, and moves frames between
//! them. Nothing here is shared: the control plane talks to the thread only through
//! [`Command`]s on a channel, woken by an eventfd, and gets answers on oneshot channels.
//!
//! Per wakeup the thread reads at most [`RX_BATCH`] frames from each ready TAP into one
//! preallocated buffer (virtio-net header included), asks the switch where each goes and
//! writes it, header unchanged, to the destination TAP(s). GSO frames of up to 64 KiB cross
//! unsegmented. No allocation, lock or clock read per frame.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddrV4;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nat::{DnsView, Gateway, GatewayCounters, Nat, NatStats, Protocol, Publish};
use netns_helper::VNET_HDR_LEN;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};
use switch::{GATEWAY, Network, NetworkConfig, PortCounters, PortId, PortRole, Verdict};
use tokio::sync::oneshot;

/// Frames read from one TAP per wakeup before the others get their turn: bounds the latency
/// one busy port can add to the rest while still amortising the epoll wakeup.
pub const RX_BATCH: usize = 64;

/// Largest frame: a 64 KiB GSO frame plus Ethernet/VLAN headers and the virtio-net header.
const FRAME_BUF: usize = VNET_HDR_LEN + 14 + 4 + 65535;

/// Epoll token of the command eventfd.
const WAKE_TOKEN: u64 = u64::MAX;
/// Epoll token of the NAT engine's own epoll fd.
const NAT_TOKEN: u64 = u64::MAX - 1;

/// How often learned MACs are aged, in seconds.
const AGE_EVERY: u64 = 10;

/// A request from the control plane to a data path thread.
pub enum Command {
    /// Attach a container's TAP.
    AddPort {
        /// Port id, unique in the network.
        id: PortId,
        /// The TAP (non-blocking, with virtio-net header).
        fd: OwnedFd,
        /// Its anti-spoofing binding.
        role: PortRole,
        /// Done, or why not.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Detach a port, closing its fd; answers its final counters.
    RemovePort {
        /// Port id.
        id: PortId,
        /// Final counters, None if the port was unknown.
        reply: oneshot::Sender<Option<PortCounters>>,
    },
    /// Serve a published port on a bound host socket.
    AddPublish {
        /// What is published.
        publish: Publish,
        /// The bound socket (listening TCP or bound UDP, non-blocking).
        fd: OwnedFd,
        /// Done, or why not.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Stop serving a published port.
    RemovePublish {
        /// Host address and port.
        host: SocketAddrV4,
        /// Protocol.
        protocol: Protocol,
        /// Whether it was published.
        reply: oneshot::Sender<bool>,
    },
    /// Replace what each container may resolve.
    SetDns(DnsView),
    /// Report counters.
    Snapshot {
        /// The snapshot.
        reply: oneshot::Sender<Snapshot>,
    },
    /// End the thread (ports are closed; persistent TAPs stay in the containers).
    Stop,
}

/// Counters of a network at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Every port's counters, the gateway's included.
    pub ports: HashMap<u32, PortCounters>,
    /// The gateway's own counters.
    pub gateway: GatewayCounters,
    /// Entries in the MAC table.
    pub mac_entries: usize,
    /// NAT flows and counters.
    pub nat: NatStats,
}

/// The control plane's handle on a data path thread.
pub struct Datapath {
    name: String,
    tx: mpsc::Sender<Command>,
    wake: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
}

impl Datapath {
    /// Starts the thread for network `name`.
    ///
    /// # Errors
    /// When epoll, the eventfd or the thread cannot be created.
    pub fn spawn(
        name: &str,
        config: NetworkConfig,
        gateway: Gateway,
        nat: Nat,
    ) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let wake = Arc::new(EventFd::from_flags(
            EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC,
        )?);
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(
            wake.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, WAKE_TOKEN),
        )?;
        epoll.add(nat.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, NAT_TOKEN))?;
        let mut engine = Engine {
            net: Network::new(config),
            gateway,
            nat,
            ports: Ports::default(),
            flood: Vec::with_capacity(64),
            gw_buf: vec![0; FRAME_BUF],
        };
        let thread_wake = wake.clone();
        let thread = std::thread::Builder::new()
            .name(format!("dp-{name}"))
            .spawn(move || engine.run(&epoll, &thread_wake, &rx))?;
        Ok(Self {
            name: name.to_string(),
            tx,
            wake,
            thread: Some(thread),
        })
    }

    fn send(&self, cmd: Command) -> Result<(), crate::error::Error> {
        self.tx
            .send(cmd)
            .map_err(|_| crate::error::Error::Datapath(self.name.clone()))?;
        let _ = self.wake.write(1);
        Ok(())
    }

    /// Sends a command carrying a reply channel and waits for the answer.
    async fn request<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, crate::error::Error> {
        let (reply, rx) = oneshot::channel();
        self.send(command(reply))?;
        rx.await
            .map_err(|_| crate::error::Error::Datapath(self.name.clone()))
    }

    /// Attaches a TAP as port `id`.
    ///
    /// # Errors
    /// When the thread is gone or refuses the port.
    pub async fn add_port(
        &self,
        id: PortId,
        fd: OwnedFd,
        role: PortRole,
    ) -> Result<(), crate::error::Error> {
        self.request(|reply| Command::AddPort {
            id,
            fd,
            role,
            reply,
        })
        .await?
        .map_err(crate::error::Error::Conflict)
    }

    /// Detaches port `id`; returns its final counters.
    ///
    /// # Errors
    /// When the thread is gone.
    pub async fn remove_port(
        &self,
        id: PortId,
    ) -> Result<Option<PortCounters>, crate::error::Error> {
        self.request(|reply| Command::RemovePort { id, reply })
            .await
    }

    /// Serves a published port.
    ///
    /// # Errors
    /// When the thread is gone or the NAT refuses.
    pub async fn add_publish(
        &self,
        publish: Publish,
        fd: OwnedFd,
    ) -> Result<(), crate::error::Error> {
        self.request(|reply| Command::AddPublish { publish, fd, reply })
            .await?
            .map_err(crate::error::Error::Conflict)
    }

    /// Stops serving a published port; returns whether it was published.
    ///
    /// # Errors
    /// When the thread is gone.
    pub async fn remove_publish(
        &self,
        host: SocketAddrV4,
        protocol: Protocol,
    ) -> Result<bool, crate::error::Error> {
        self.request(|reply| Command::RemovePublish {
            host,
            protocol,
            reply,
        })
        .await
    }

    /// Replaces the network's name view (fire and forget: the thread applies it in order).
    ///
    /// # Errors
    /// When the thread is gone.
    pub fn set_dns(&self, view: DnsView) -> Result<(), crate::error::Error> {
        self.send(Command::SetDns(view))
    }

    /// Current counters.
    ///
    /// # Errors
    /// When the thread is gone.
    pub async fn snapshot(&self) -> Result<Snapshot, crate::error::Error> {
        self.request(|reply| Command::Snapshot { reply }).await
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Stop);
        let _ = self.wake.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// TAP files by port id; dense storage for the per-frame lookup.
#[derive(Default)]
struct Ports {
    files: Vec<(PortId, File)>,
    index: HashMap<u32, usize, foldhash::fast::RandomState>,
}

impl Ports {
    fn get(&mut self, id: PortId) -> Option<&mut File> {
        let slot = *self.index.get(&id.0)?;
        Some(&mut self.files[slot].1)
    }

    fn insert(&mut self, id: PortId, file: File) {
        self.index.insert(id.0, self.files.len());
        self.files.push((id, file));
    }

    fn remove(&mut self, id: PortId) -> Option<File> {
        let slot = self.index.remove(&id.0)?;
        let (_, file) = self.files.swap_remove(slot);
        if let Some((moved, _)) = self.files.get(slot) {
            self.index.insert(moved.0, slot);
        }
        Some(file)
    }
}

/// Everything the thread owns.
struct Engine {
    net: Network,
    gateway: Gateway,
    nat: Nat,
    ports: Ports,
    /// Scratch list of flood targets, reused for every flooded frame.
    flood: Vec<PortId>,
    /// Where the gateway writes its replies (virtio-net header included).
    gw_buf: Vec<u8>,
}

impl Engine {
    fn run(&mut self, epoll: &Epoll, wake: &EventFd, commands: &mpsc::Receiver<Command>) {
        let start = Instant::now();
        let mut last_age = 0;
        let mut rx = vec![0u8; FRAME_BUF];
        let mut events = [EpollEvent::empty(); 64];
        let mut nat_due = Instant::now();
        loop {
            let wait = nat_due
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1));
            let timeout = u16::try_from(wait.as_millis()).unwrap_or(1000);
            let n = match epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!("data path epoll failed: {e}");
                    return;
                }
            };
            let now = start.elapsed().as_secs();
            let mut nat_ready = false;
            for ev in &events[..n] {
                match ev.data() {
                    WAKE_TOKEN => {
                        let _ = wake.read();
                        if !self.apply_commands(epoll, commands) {
                            return;
                        }
                    }
                    NAT_TOKEN => nat_ready = true,
                    token => self.drain_port(epoll, PortId(token as u32), &mut rx, now),
                }
            }
            if nat_ready || Instant::now() >= nat_due {
                self.poll_nat(now);
                nat_due = Instant::now() + self.nat.poll_delay();
            }
            if now >= last_age + AGE_EVERY {
                self.net.age(now);
                last_age = now;
            }
        }
    }

    /// Lets the NAT serve host sockets and timers; what it emits goes through the switch.
    fn poll_nat(&mut self, now: u64) {
        let Engine {
            net,
            ports,
            flood,
            nat,
            ..
        } = self;
        nat.poll(&mut |frame: &[u8]| emit_from_gateway(net, ports, flood, frame, now));
    }

    /// Applies queued commands; false when the thread must stop.
    fn apply_commands(&mut self, epoll: &Epoll, commands: &mpsc::Receiver<Command>) -> bool {
        while let Ok(cmd) = commands.try_recv() {
            match cmd {
                Command::AddPort {
                    id,
                    fd,
                    role,
                    reply,
                } => {
                    let res = self
                        .net
                        .add_port(id, role)
                        .map_err(|e| e.to_string())
                        .and_then(|()| {
                            epoll
                                .add(
                                    fd.as_fd(),
                                    EpollEvent::new(EpollFlags::EPOLLIN, u64::from(id.0)),
                                )
                                .map_err(|e| {
                                    self.net.remove_port(id);
                                    format!("epoll: {e}")
                                })
                        });
                    if res.is_ok() {
                        self.ports.insert(id, File::from(fd));
                        if let PortRole::Container { mac, ipv4 } = role {
                            self.nat.set_neighbor(ipv4, mac);
                        }
                    }
                    let _ = reply.send(res);
                }
                Command::RemovePort { id, reply } => {
                    if let Some(file) = self.ports.remove(id) {
                        let _ = epoll.delete(file.as_fd());
                    }
                    if let Some(PortRole::Container { ipv4, .. }) = self.net.role(id).copied() {
                        self.nat.remove_publishes_to(ipv4);
                        self.nat.forget_neighbor(ipv4);
                    }
                    let _ = reply.send(self.net.remove_port(id));
                }
                Command::AddPublish { publish, fd, reply } => {
                    let _ =
                        reply.send(self.nat.add_publish(publish, fd).map_err(|e| e.to_string()));
                }
                Command::RemovePublish {
                    host,
                    protocol,
                    reply,
                } => {
                    let _ = reply.send(self.nat.remove_publish(host, protocol));
                }
                Command::SetDns(view) => self.nat.set_dns_view(view),
                Command::Snapshot { reply } => {
                    let ports = self
                        .net
                        .ports()
                        .filter_map(|(id, _)| Some((id.0, self.net.counters(id)?.clone())))
                        .collect();
                    let _ = reply.send(Snapshot {
                        ports,
                        gateway: self.gateway.counters().clone(),
                        mac_entries: self.net.mac_table().len(),
                        nat: self.nat.stats(),
                    });
                }
                Command::Stop => return false,
            }
        }
        true
    }

    /// Reads up to [`RX_BATCH`] frames from `port` and forwards each.
    fn drain_port(&mut self, epoll: &Epoll, port: PortId, rx: &mut [u8], now: u64) {
        for _ in 0..RX_BATCH {
            let Some(file) = self.ports.get(port) else {
                return;
            };
            match file.read(rx) {
                Ok(len) if len > VNET_HDR_LEN => self.forward(port, &rx[..len], now),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // The interface was deleted inside the container (EBADFD) or similar: stop
                    // polling it; the port stays registered until the endpoint is disconnected.
                    tracing::warn!("port {}: read failed, no longer polled: {e}", port.0);
                    let _ = epoll.delete(file.as_fd());
                    return;
                }
            }
        }
    }

    /// Forwards one frame (virtio-net header + Ethernet frame) received on `ingress`.
    fn forward(&mut self, ingress: PortId, buf: &[u8], now: u64) {
        match self.net.forward(ingress, &buf[VNET_HDR_LEN..], now) {
            Verdict::Unicast(GATEWAY) => self.deliver_to_gateway(&buf[VNET_HDR_LEN..], now),
            Verdict::Unicast(dst) => self.transmit(dst, buf),
            Verdict::Flood => {
                let mut targets = std::mem::take(&mut self.flood);
                targets.clear();
                self.net.for_each_flood_target(ingress, |p| targets.push(p));
                for &dst in &targets {
                    if dst == GATEWAY {
                        self.deliver_to_gateway(&buf[VNET_HDR_LEN..], now);
                    } else {
                        self.transmit(dst, buf);
                    }
                }
                self.flood = targets;
            }
            Verdict::Drop(_) => {}
        }
    }

    /// Delivers a frame to the gateway: its own services answer ARP and pings to it, the NAT
    /// takes the rest; whatever they send goes back through the switch.
    fn deliver_to_gateway(&mut self, frame: &[u8], now: u64) {
        self.net.count_tx(GATEWAY, frame.len(), true);
        let mut out = std::mem::take(&mut self.gw_buf);
        match self.gateway.on_frame(frame, &mut out[VNET_HDR_LEN..]) {
            Some(n) => {
                // A zeroed virtio-net header: no offload flags, no GSO.
                out[..VNET_HDR_LEN].fill(0);
                emit_from_gateway(
                    &mut self.net,
                    &mut self.ports,
                    &mut self.flood,
                    &out[..VNET_HDR_LEN + n],
                    now,
                );
            }
            None => {
                let Engine {
                    net,
                    ports,
                    flood,
                    nat,
                    ..
                } = self;
                nat.on_frame(frame, &mut |f: &[u8]| {
                    emit_from_gateway(net, ports, flood, f, now)
                });
            }
        }
        self.gw_buf = out;
    }

    /// Writes one buffer (header + frame) to port `dst`'s TAP and counts it.
    fn transmit(&mut self, dst: PortId, buf: &[u8]) {
        transmit(&mut self.net, &mut self.ports, dst, buf);
    }
}

/// Writes one buffer (header + frame) to port `dst`'s TAP and counts it.
fn transmit(net: &mut Network, ports: &mut Ports, dst: PortId, buf: &[u8]) {
    let ok = match ports.get(dst) {
        Some(file) => matches!(file.write(buf), Ok(n) if n == buf.len()),
        None => false,
    };
    net.count_tx(dst, buf.len() - VNET_HDR_LEN, ok);
}

/// Sends a frame the gateway produced (header + Ethernet) to wherever the switch says.
fn emit_from_gateway(
    net: &mut Network,
    ports: &mut Ports,
    flood: &mut Vec<PortId>,
    buf: &[u8],
    now: u64,
) {
    match net.forward(GATEWAY, &buf[VNET_HDR_LEN..], now) {
        Verdict::Unicast(dst) if dst != GATEWAY => transmit(net, ports, dst, buf),
        Verdict::Flood => {
            flood.clear();
            net.for_each_flood_target(GATEWAY, |p| flood.push(p));
            for &dst in flood.iter() {
                transmit(net, ports, dst, buf);
            }
        }
        _ => {}
    }
}
