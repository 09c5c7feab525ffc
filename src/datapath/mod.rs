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
//! [`FrameSummary`](switch::FrameSummary), never its payload) and forwarding goes on. The
//! default panic hook stays quiet for caught panics (their location goes into the log line
//! instead). The release profile must keep `panic = "unwind"` for this to work.
//!
//! Each thread confines itself with [`crate::sandbox`] (seccomp allow-list, no_new_privs)
//! before it handles a frame.
//!
//! Test-only hook: in debug builds (`cfg(debug_assertions)`, never in release builds), when
//! `VSWITCHD_TEST_PANIC_ETHERTYPE=0xNNNN` is set, a frame of that EtherType makes the data path
//! panic, so tests can check the recovery without a real bug.
//!
//! The code is split by concern: this file is the control plane's side (the [`Datapath`]
//! handle and its [`Command`]s), `engine.rs` the thread's loop and frame forwarding,
//! `guard.rs` the panic guard and [`Health`], `ports.rs` the table of TAP files, `overlay.rs`
//! the VXLAN side of a network that spans hosts.

pub mod capture;
mod engine;
mod guard;
mod overlay;
mod ports;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use nat::{DnsView, FlowInfo, Gateway, GatewayCounters, Nat, NatStats, Protocol, Publish};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};
use switch::{NetworkConfig, PortCounters, PortId, PortRole};
use tokio::sync::oneshot;

use engine::{Engine, NAT_TOKEN, WAKE_TOKEN};

use guard::install_panic_hook;
pub use guard::{Health, HealthReport};
pub use overlay::OverlayConfig;
pub use switch::RemoteEndpoint;

/// Frames read from one TAP per wakeup before the others get their turn: bounds the latency
/// one busy port can add to the rest while still amortising the epoll wakeup.
pub const RX_BATCH: usize = 64;

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
        /// The endpoint's name, for events.
        name: String,
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
        host: SocketAddr,
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
    /// List the MAC table.
    Macs {
        /// Every entry.
        reply: oneshot::Sender<Vec<MacEntry>>,
    },
    /// List live NAT flows.
    Flows {
        /// At most this many.
        limit: usize,
        /// The flows, and false when some were left out for the limit.
        reply: oneshot::Sender<(Vec<FlowInfo>, bool)>,
    },
    /// Start a packet capture (see [`capture`]).
    StartCapture {
        /// The data path's end of the capture.
        tap: capture::Tap,
        /// Done, or why not (too many captures).
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// End a packet capture (unknown ids are ignored).
    StopCapture {
        /// The capture's id.
        id: u64,
    },
    /// Make the network an overlay network.
    SetOverlay {
        /// Its VNI and the host's VXLAN socket.
        cfg: OverlayConfig,
        /// Done, or why not.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Replace the endpoints on other hosts.
    SetRemoteEndpoints {
        /// Every remote endpoint of the network.
        endpoints: Vec<RemoteEndpoint>,
        /// Done, or why not.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Replace the VTEPs that get broadcast, multicast and unknown unicast.
    SetFloodVteps {
        /// The other hosts with endpoints on the network.
        vteps: Vec<SocketAddr>,
        /// Done, or why not.
        reply: oneshot::Sender<Result<(), String>>,
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

/// One MAC table entry.
#[derive(Clone, Copy, Debug)]
pub struct MacEntry {
    /// The MAC address.
    pub mac: switch::Mac,
    /// The port it lives behind.
    pub port: PortId,
    /// Seconds since a frame from it was last seen (`None` for pinned entries: container
    /// MACs and the gateway's).
    pub age: Option<u64>,
    /// Whether that port is an uplink (a trunk of many MACs).
    pub uplink: bool,
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
        events: crate::events::Events,
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
        let mut engine = Engine::new(name, config, gateway, nat, health.clone(), events);
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
        name: &str,
    ) -> Result<(), crate::error::Error> {
        let name = name.to_string();
        self.request(|reply| Command::Attach {
            id,
            fd,
            role,
            name,
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
        host: SocketAddr,
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

    /// Makes this network an overlay network (once, before any remote endpoint): frames to
    /// remote endpoints leave through the host's VXLAN socket, and datagrams of `cfg.vni`
    /// enter the switch. The overlay port's counters appear in [`Snapshot::ports`] under
    /// [`switch::OVERLAY`].
    ///
    /// # Errors
    /// When the thread is gone, or the network already is an overlay network.
    pub async fn set_overlay(&self, cfg: OverlayConfig) -> Result<(), crate::error::Error> {
        self.request(|reply| Command::SetOverlay { cfg, reply })
            .await?
            .map_err(crate::error::Error::Conflict)
    }

    /// Replaces the set of remote endpoints of this network (from the store): for each, its
    /// MAC, IPv4 (and optional IPv6) address and the VTEP it lives behind. The switch
    /// forwards unicast to a remote MAC over VXLAN to its VTEP; the gateway answers ARP for
    /// remote IPs locally (ARP suppression); frames from a VTEP are accepted only when their
    /// inner source MAC/IP is an endpoint the store places on that VTEP. An endpoint whose
    /// MAC is a local container's (or the gateway's) is left out, with a warning.
    ///
    /// # Errors
    /// When the thread is gone, or the network is not an overlay network.
    pub async fn set_remote_endpoints(
        &self,
        eps: Vec<RemoteEndpoint>,
    ) -> Result<(), crate::error::Error> {
        self.request(|reply| Command::SetRemoteEndpoints {
            endpoints: eps,
            reply,
        })
        .await?
        .map_err(crate::error::Error::Conflict)
    }

    /// Replaces the VTEPs that get broadcast / multicast / unknown unicast of this network
    /// (head-end replication): the other hosts with endpoints on it.
    ///
    /// # Errors
    /// When the thread is gone, or the network is not an overlay network.
    pub async fn set_flood_vteps(&self, vteps: Vec<SocketAddr>) -> Result<(), crate::error::Error> {
        self.request(|reply| Command::SetFloodVteps { vteps, reply })
            .await?
            .map_err(crate::error::Error::Conflict)
    }

    /// Current counters.
    ///
    /// # Errors
    /// When the thread is gone.
    pub async fn snapshot(&self) -> Result<Snapshot, crate::error::Error> {
        self.request(|reply| Command::Snapshot { reply }).await
    }

    /// Asks for the MAC table without waiting (the caller awaits the answer after
    /// releasing the daemon's lock).
    ///
    /// # Errors
    /// When the thread is gone.
    pub fn request_macs(&self) -> Result<oneshot::Receiver<Vec<MacEntry>>, crate::error::Error> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Macs { reply })?;
        Ok(rx)
    }

    /// Asks for at most `limit` live NAT flows without waiting (see [`Self::request_macs`]).
    ///
    /// # Errors
    /// When the thread is gone.
    pub fn request_flows(
        &self,
        limit: usize,
    ) -> Result<oneshot::Receiver<(Vec<FlowInfo>, bool)>, crate::error::Error> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Flows { limit, reply })?;
        Ok(rx)
    }

    /// Starts a capture.
    ///
    /// # Errors
    /// When the thread is gone or refuses (too many captures).
    pub async fn start_capture(&self, tap: capture::Tap) -> Result<(), crate::error::Error> {
        self.request(|reply| Command::StartCapture { tap, reply })
            .await?
            .map_err(crate::error::Error::Conflict)
    }

    /// A handle that ends capture `id` when dropped (or when [`CaptureStop::stop`] is called).
    pub fn capture_stop(&self, id: u64) -> CaptureStop {
        CaptureStop {
            id,
            tx: self.tx.clone(),
            wake: self.wake.clone(),
        }
    }

    /// Asks for the current counters without waiting: the caller awaits the answer (a
    /// metrics scrape posts every network's request under the daemon's lock, then awaits
    /// them after releasing it).
    ///
    /// # Errors
    /// When the thread is gone.
    pub fn request_snapshot(&self) -> Result<oneshot::Receiver<Snapshot>, crate::error::Error> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Snapshot { reply })?;
        Ok(rx)
    }
}

/// Ends one capture on its data path when dropped: the API's capture stream holds it, so a
/// client that goes away stops its capture.
pub struct CaptureStop {
    id: u64,
    tx: mpsc::Sender<Command>,
    wake: Arc<EventFd>,
}

impl CaptureStop {
    /// Ends the capture now.
    pub fn stop(&self) {
        if self.tx.send(Command::StopCapture { id: self.id }).is_ok() {
            let _ = self.wake.write(1);
        }
    }
}

impl Drop for CaptureStop {
    fn drop(&mut self) {
        self.stop();
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
