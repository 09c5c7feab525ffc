//! The data path of one network: a thread that owns the network's switch ([`switch::Network`]),
//! its gateway ([`nat::Gateway`]) and the TAP fds of its endpoints, and moves frames between
//! them. Nothing here is shared: the control plane talks to the thread only through
//! [`Command`]s on a channel, woken by an eventfd, and gets answers on oneshot channels.
//!
//! Per wakeup the thread reads at most [`RX_BATCH`] frames from each ready TAP into one
//! preallocated buffer (virtio-net header included), asks the switch where each goes and
//! writes it, header unchanged, to the destination TAP(s). GSO frames of up to 64 KiB cross
//! unsegmented. No allocation, lock or clock read per frame.
//!
//! **Panics do not take a network down.** Each frame (switch, gateway and NAT included), each
//! NAT poll and each command runs under [`std::panic::catch_unwind`]: a panic drops that frame,
//! is counted in the network's [`Health`], is logged once per network (with the frame's
//! [`FrameSummary`], never its payload) and forwarding goes on. The default panic hook stays
//! quiet for caught panics (their location goes into the log line instead). The release
//! profile must keep `panic = "unwind"` for this to work.
//!
//! Each thread confines itself with [`crate::sandbox`] (seccomp allow-list, no_new_privs)
//! before it handles a frame.
//!
//! Test-only hook: in debug builds (`cfg(debug_assertions)`, never in release builds), when
//! `VSWITCHD_TEST_PANIC_ETHERTYPE=0xNNNN` is set, a frame of that EtherType makes the data path
//! panic, so tests can check the recovery without a real bug.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddrV4;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nat::{DnsView, Gateway, GatewayCounters, Nat, NatStats, Protocol, Publish};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};
use switch::vnet::LEN as VNET_HDR_LEN;
use switch::{
    FrameSummary, GATEWAY, Network, NetworkConfig, PortCounters, PortId, PortRole, Verdict,
};
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
    Attach {
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
    Detach {
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
    /// Change which zones one container resolves (the zones' names change in place).
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

/// Panics caught on one network's data path, shared with the control plane (read without a
/// round trip through the thread, so a wedged thread can still be reported).
#[derive(Debug, Default)]
pub struct Health {
    panics: AtomicU64,
    last_panic: Mutex<Option<String>>,
}

/// The health of a data path at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthReport {
    /// The thread is still running (it only stops when told to, or on an unrecoverable error).
    pub running: bool,
    /// Panics caught (each dropped one frame, NAT poll or command).
    pub panics: u64,
    /// The last one: message, source location, and what was being processed.
    pub last_panic: Option<String>,
}

impl HealthReport {
    /// Running and never panicked.
    pub fn healthy(&self) -> bool {
        self.running && self.panics == 0
    }
}

thread_local! {
    /// Set while a data path thread runs guarded code: the panic hook then records the
    /// location here instead of printing.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that keeps caught data path panics off stderr.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if GUARDED.with(Cell::get) {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()));
                PANIC_LOCATION.with(|p| *p.borrow_mut() = at);
            } else {
                default(info);
            }
        }));
    });
}

/// Runs `f`, catching a panic; the panic's message and location on failure.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    GUARDED.with(|g| g.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(false));
    result.map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_string());
        match PANIC_LOCATION.with(|p| p.borrow_mut().take()) {
            Some(at) => format!("{msg} at {at}"),
            None => msg,
        }
    })
}

/// The test-only panic trigger (see the module docs); always `None` in release builds.
fn test_panic_ethertype() -> Option<u16> {
    #[cfg(debug_assertions)]
    {
        let v = std::env::var("VSWITCHD_TEST_PANIC_ETHERTYPE").ok()?;
        let t = u16::from_str_radix(v.trim_start_matches("0x"), 16);
        if t.is_err() {
            tracing::warn!("ignoring VSWITCHD_TEST_PANIC_ETHERTYPE={v:?}: not a hex EtherType");
        }
        t.ok()
    }
    #[cfg(not(debug_assertions))]
    None
}

/// The control plane's handle on a data path thread.
pub struct Datapath {
    name: String,
    tx: mpsc::Sender<Command>,
    wake: Arc<EventFd>,
    health: Arc<Health>,
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
        install_panic_hook();
        let health = Arc::new(Health::default());
        let mut engine = Engine {
            name: name.to_string(),
            net: Network::new(config),
            gateway,
            nat,
            ports: Ports::default(),
            flood: Vec::with_capacity(64),
            gw_buf: vec![0; FRAME_BUF],
            health: health.clone(),
            released: 0,
            last_trim: Instant::now(),
            test_panic_ethertype: test_panic_ethertype(),
        };
        let thread_wake = wake.clone();
        let thread = std::thread::Builder::new()
            .name(format!("dp-{name}"))
            .spawn(move || {
                match crate::sandbox::enter() {
                    Ok(()) => tracing::debug!(network = engine.name, "data path sandboxed"),
                    Err(e) => tracing::warn!(
                        network = engine.name,
                        "data path runs without its seccomp sandbox: {e}"
                    ),
                }
                engine.run(&epoll, &thread_wake, &rx)
            })?;
        Ok(Self {
            name: name.to_string(),
            tx,
            wake,
            health,
            thread: Some(thread),
        })
    }

    /// The data path's health now (no round trip through the thread).
    pub fn health(&self) -> HealthReport {
        HealthReport {
            running: self.thread.as_ref().is_some_and(|t| !t.is_finished()),
            panics: self.health.panics.load(Ordering::Relaxed),
            last_panic: self
                .health
                .last_panic
                .lock()
                .map(|l| l.clone())
                .unwrap_or_default(),
        }
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
    pub async fn attach(
        &self,
        id: PortId,
        fd: OwnedFd,
        role: PortRole,
    ) -> Result<(), crate::error::Error> {
        self.request(|reply| Command::Attach {
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
    pub async fn detach(&self, id: PortId) -> Result<Option<PortCounters>, crate::error::Error> {
        self.request(|reply| Command::Detach { id, reply }).await
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

    /// Changes which zones one container resolves (fire and forget: the thread applies
    /// changes in order).
    ///
    /// # Errors
    /// When the thread is gone.
    pub fn set_dns(&self, change: DnsView) -> Result<(), crate::error::Error> {
        self.send(Command::SetDns(change))
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
    /// The network's name, for logs.
    name: String,
    net: Network,
    gateway: Gateway,
    nat: Nat,
    ports: Ports,
    /// Scratch list of flood targets, reused for every flooded frame.
    flood: Vec<PortId>,
    /// Where the gateway writes its replies (virtio-net header included).
    gw_buf: Vec<u8>,
    /// Shared with the control plane.
    health: Arc<Health>,
    /// Flow memory freed since the allocator last returned memory, and when that was.
    released: usize,
    last_trim: Instant,
    /// Test-only: frames of this EtherType panic (debug builds only).
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    test_panic_ethertype: Option<u16>,
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

    /// Records a caught panic: counted always, logged at error level only the first time.
    fn record_panic(&mut self, message: &str, context: std::fmt::Arguments<'_>) {
        let what = format!("{message} (while {context})");
        let before = self.health.panics.fetch_add(1, Ordering::Relaxed);
        if before == 0 {
            tracing::error!(
                network = self.name,
                "data path panicked; dropped what it was processing and keeps forwarding \
                 (further panics are only counted, see `network inspect`): {what}"
            );
        } else {
            tracing::debug!(
                network = self.name,
                panics = before + 1,
                "data path panicked: {what}"
            );
        }
        if let Ok(mut last) = self.health.last_panic.lock() {
            *last = Some(what);
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
        let polled = guarded(|| {
            nat.poll(&mut |frame: &[u8]| emit_from_gateway(net, ports, flood, frame, now))
        });
        if let Err(msg) = polled {
            self.record_panic(&msg, format_args!("polling the NAT"));
        }
        self.released += self.nat.take_released();
        if self.released >= TRIM_AFTER && self.last_trim.elapsed() >= TRIM_EVERY {
            give_back_memory();
            self.released = 0;
            self.last_trim = Instant::now();
        }
    }

    /// Applies queued commands, each under the panic guard; false when the thread must stop.
    fn apply_commands(&mut self, epoll: &Epoll, commands: &mpsc::Receiver<Command>) -> bool {
        while let Ok(cmd) = commands.try_recv() {
            match guarded(|| self.apply(epoll, cmd)) {
                Ok(true) => {}
                Ok(false) => return false,
                // The command's reply channel was dropped: its caller gets an error.
                Err(msg) => self.record_panic(&msg, format_args!("applying a command")),
            }
        }
        true
    }

    /// Applies one command; false when the thread must stop.
    fn apply(&mut self, epoll: &Epoll, cmd: Command) -> bool {
        match cmd {
            Command::Attach {
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
            Command::Detach { id, reply } => {
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
                let _ = reply.send(self.nat.add_publish(publish, fd).map_err(|e| e.to_string()));
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
        true
    }

    /// Reads up to [`RX_BATCH`] frames from `port` and forwards each.
    fn drain_port(&mut self, epoll: &Epoll, port: PortId, rx: &mut [u8], now: u64) {
        for _ in 0..RX_BATCH {
            let Some(file) = self.ports.get(port) else {
                return;
            };
            match file.read(rx) {
                Ok(len) if len > VNET_HDR_LEN => {
                    let Some(buf) = rx.get(..len) else { return };
                    if let Err(msg) = guarded(|| self.forward(port, buf, now)) {
                        let frame = buf.get(VNET_HDR_LEN..).unwrap_or_default();
                        self.record_panic(
                            &msg,
                            format_args!("forwarding from port {port}: {}", FrameSummary(frame)),
                        );
                    }
                }
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
        let Some(frame) = buf.get(VNET_HDR_LEN..) else {
            return;
        };
        #[cfg(debug_assertions)]
        if let Some(t) = self.test_panic_ethertype
            && frame.get(12..14) == Some(&t.to_be_bytes()[..])
        {
            panic!("test panic hook: EtherType {t:#06x} (VSWITCHD_TEST_PANIC_ETHERTYPE)");
        }
        match self.net.forward(ingress, frame, now) {
            Verdict::Unicast(GATEWAY) => self.deliver_to_gateway(frame, now),
            Verdict::Unicast(dst) => self.transmit(dst, buf),
            Verdict::Flood => {
                let mut targets = std::mem::take(&mut self.flood);
                targets.clear();
                self.net.for_each_flood_target(ingress, |p| targets.push(p));
                for &dst in &targets {
                    if dst == GATEWAY {
                        self.deliver_to_gateway(frame, now);
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
        let Engine {
            net,
            gateway,
            nat,
            ports,
            flood,
            gw_buf,
            ..
        } = self;
        net.count_tx(GATEWAY, frame.len(), true);
        let Some(reply) = gw_buf.get_mut(VNET_HDR_LEN..) else {
            return;
        };
        match gateway.on_frame(frame, reply) {
            Some(n) => {
                if let Some(out) = gw_buf.get_mut(..VNET_HDR_LEN + n) {
                    // A zeroed virtio-net header: no offload flags, no GSO.
                    out.iter_mut().take(VNET_HDR_LEN).for_each(|b| *b = 0);
                    emit_from_gateway(net, ports, flood, out, now);
                }
            }
            None => {
                nat.on_frame(frame, &mut |f: &[u8]| {
                    emit_from_gateway(net, ports, flood, f, now)
                });
            }
        }
    }

    /// Writes one buffer (header + frame) to port `dst`'s TAP and counts it.
    fn transmit(&mut self, dst: PortId, buf: &[u8]) {
        transmit(&mut self.net, &mut self.ports, dst, buf);
    }
}

/// Freed flow buffers after which the allocator is asked to return free memory, at most
/// every [`TRIM_EVERY`] (the NAT is polled at least once a second, so what flows free is
/// returned within about a second of their closing).
const TRIM_AFTER: usize = 1 << 20;
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// Returns the allocator's free pages to the system. glibc keeps freed chunks in its arenas,
/// so after thousands of flows close the daemon would otherwise keep their memory (100 MiB
/// for 10,000 flows) although nothing uses it.
fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only releases memory that is free.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Writes one buffer (header + frame) to port `dst`'s TAP and counts it.
fn transmit(net: &mut Network, ports: &mut Ports, dst: PortId, buf: &[u8]) {
    let ok = match ports.get(dst) {
        Some(file) => matches!(file.write(buf), Ok(n) if n == buf.len()),
        None => false,
    };
    net.count_tx(dst, buf.len().saturating_sub(VNET_HDR_LEN), ok);
}

/// Sends a frame the gateway produced (header + Ethernet) to wherever the switch says.
fn emit_from_gateway(
    net: &mut Network,
    ports: &mut Ports,
    flood: &mut Vec<PortId>,
    buf: &[u8],
    now: u64,
) {
    let Some(frame) = buf.get(VNET_HDR_LEN..) else {
        return;
    };
    match net.forward(GATEWAY, frame, now) {
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
