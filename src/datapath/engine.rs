//! The data path thread's engine: the epoll loop that applies [`Command`]s, polls the NAT,
//! ages the MAC table, and forwards frames between TAPs, the switch and the gateway. This is
//! the hot path: frames are read into one preallocated buffer and written out unchanged, with
//! no allocation, lock or clock read per frame. Also returns freed flow memory to the system.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use nat::{Gateway, Nat};
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use nix::sys::eventfd::EventFd;
use switch::vnet::LEN as VNET_HDR_LEN;
use switch::{FrameSummary, GATEWAY, Network, NetworkConfig, OVERLAY, PortId, PortRole, Verdict};

use super::capture::Captures;
use super::guard::{Health, guarded, test_panic_ethertype};
use super::overlay::Overlay;
use super::ports::Ports;
use super::{Command, MacEntry, RX_BATCH, Snapshot};

/// Largest frame: a 64 KiB GSO frame plus Ethernet/VLAN headers and the virtio-net header.
const FRAME_BUF: usize = VNET_HDR_LEN + 14 + 4 + 65535;

/// Epoll token of the command eventfd.
pub(super) const WAKE_TOKEN: u64 = u64::MAX;
/// Epoll token of the NAT engine's own epoll fd.
pub(super) const NAT_TOKEN: u64 = u64::MAX - 1;
/// Epoll token of the overlay's receive ring eventfd.
pub(super) const OVERLAY_TOKEN: u64 = u64::MAX - 2;
/// Datagrams taken from the overlay ring per wakeup before the TAPs get their turn.
const OVERLAY_BATCH: usize = 256;

/// How often learned MACs are aged, in seconds.
const AGE_EVERY: u64 = 10;

/// Everything the thread owns.
pub(super) struct Engine {
    /// The network's name, for logs.
    pub(super) name: String,
    net: Network,
    gateway: Gateway,
    nat: Nat,
    ports: Ports,
    /// The VXLAN side, on an overlay network.
    overlay: Option<Overlay>,
    /// Scratch list of flood targets, reused for every flooded frame.
    flood: Vec<PortId>,
    /// Where the gateway writes its replies (virtio-net header included).
    gw_buf: Vec<u8>,
    /// Shared with the control plane.
    health: Arc<Health>,
    /// Packet captures running (none: one branch per frame).
    captures: Captures,
    /// The daemon's event log (caught panics, failing TAPs).
    events: crate::events::Events,
    /// Endpoint names by port, for events.
    names: std::collections::HashMap<u32, String>,
    /// When the last panic event was sent.
    last_panic_event: Option<Instant>,
    /// Tick 0 of the MAC table's clock (seconds since then).
    start: Instant,
    /// Flow memory freed since the allocator last returned memory, and when that was.
    released: usize,
    last_trim: Instant,
    /// Test-only: frames of this EtherType panic (debug builds only).
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    test_panic_ethertype: Option<u16>,
}

impl Engine {
    /// The thread's state for network `name`, before any port is attached.
    pub(super) fn new(
        name: &str,
        config: NetworkConfig,
        gateway: Gateway,
        nat: Nat,
        health: Arc<Health>,
        events: crate::events::Events,
    ) -> Self {
        Self {
            name: name.to_string(),
            net: Network::new(config),
            gateway,
            nat,
            ports: Ports::default(),
            overlay: None,
            flood: Vec::with_capacity(64),
            gw_buf: vec![0; FRAME_BUF],
            health,
            captures: Captures::default(),
            events,
            names: Default::default(),
            last_panic_event: None,
            start: Instant::now(),
            released: 0,
            last_trim: Instant::now(),
            test_panic_ethertype: test_panic_ethertype(),
        }
    }

    pub(super) fn run(
        &mut self,
        epoll: &Epoll,
        wake: &EventFd,
        commands: &mpsc::Receiver<Command>,
    ) {
        let start = self.start;
        let mut last_age = 0;
        let mut rx = vec![0u8; FRAME_BUF];
        let mut events = [EpollEvent::empty(); 64];
        let mut nat_due = Instant::now();
        loop {
            // The gateway's own timer (periodic Router Advertisements), when it has one.
            let gw_due = self.gateway.next_deadline();
            let wait = gw_due
                .map_or(nat_due, |d| d.min(nat_due))
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
                    OVERLAY_TOKEN => self.drain_overlay(&mut rx),
                    token => self.drain_port(epoll, PortId(token as u32), &mut rx, now),
                }
            }
            if nat_ready || Instant::now() >= nat_due {
                self.poll_nat(now);
                nat_due = Instant::now() + self.nat.poll_delay();
            }
            if gw_due.is_some_and(|d| Instant::now() >= d) {
                self.poll_gateway(now);
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
        // One event per second at most: a stream of bad frames must not flush the event log.
        if self
            .last_panic_event
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.last_panic_event = Some(Instant::now());
            self.events.send(
                crate::events::Event::new("datapath", "panic", Some(&self.name))
                    .attr("message", &what)
                    .attr("panics", before + 1),
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
            captures,
            ..
        } = self;
        let polled = guarded(|| {
            nat.poll(&mut |frame: &[u8]| emit_from_gateway(net, ports, flood, captures, frame, now))
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

    /// Lets the gateway send what its timer made due (a periodic Router Advertisement).
    fn poll_gateway(&mut self, now: u64) {
        let Engine {
            net,
            gateway,
            ports,
            flood,
            gw_buf,
            captures,
            ..
        } = self;
        let polled = guarded(|| {
            let reply = gw_buf.get_mut(VNET_HDR_LEN..)?;
            let n = gateway.poll_at(Instant::now(), reply)?;
            emit_gateway_reply(net, ports, flood, captures, gw_buf, n, now);
            Some(())
        });
        if let Err(msg) = polled {
            self.record_panic(&msg, format_args!("polling the gateway"));
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
                name,
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
                    self.names.insert(id.0, name);
                    // A new port on the link hears the initial Router Advertisements at once.
                    self.gateway.restart_router_adverts();
                    if let PortRole::Container { mac, ipv4, ipv6 } = role {
                        self.nat.set_neighbor(ipv4.into(), mac);
                        if let Some(ip6) = ipv6 {
                            self.nat.set_neighbor(ip6.into(), mac);
                        }
                    }
                }
                let _ = reply.send(res);
            }
            Command::Detach { id, reply } => {
                if let Some(file) = self.ports.remove(id) {
                    let _ = epoll.delete(file.as_fd());
                }
                self.names.remove(&id.0);
                self.captures.port_gone(id);
                if let Some(PortRole::Container { ipv4, ipv6, .. }) = self.net.role(id).copied() {
                    for ip in std::iter::once(ipv4.into()).chain(ipv6.map(Into::into)) {
                        self.nat.remove_publishes_to(ip);
                        self.nat.forget_neighbor(ip);
                    }
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
            Command::Macs { reply } => {
                let now = self.start.elapsed().as_secs();
                let net = &self.net;
                let entries = net
                    .mac_table()
                    .iter_aged(now)
                    .map(|(mac, port, age)| MacEntry {
                        mac,
                        port,
                        age,
                        uplink: matches!(net.role(port), Some(PortRole::Uplink)),
                    });
                let _ = reply.send(entries.collect());
            }
            Command::Flows { limit, reply } => {
                let _ = reply.send(self.nat.flows(limit));
            }
            Command::StartCapture { tap, reply } => {
                let _ = reply.send(self.captures.start(tap, &self.name));
            }
            Command::StopCapture { id } => self.captures.stop(id),
            Command::SetOverlay { cfg, reply } => {
                let res = if self.overlay.is_some() {
                    Err("the network already is an overlay network".to_string())
                } else {
                    let overlay = Overlay::new(cfg);
                    epoll
                        .add(
                            overlay.rx.wake_fd().as_fd(),
                            EpollEvent::new(EpollFlags::EPOLLIN, OVERLAY_TOKEN),
                        )
                        .map(|()| {
                            self.net.enable_overlay();
                            self.overlay = Some(overlay);
                            tracing::info!(network = self.name, "network spans hosts (VXLAN)");
                        })
                        .map_err(|e| format!("epoll: {e}"))
                };
                let _ = reply.send(res);
            }
            Command::SetRemoteEndpoints { endpoints, reply } => {
                let res = if self.overlay.is_none() {
                    Err("not an overlay network".to_string())
                } else {
                    let refused = self.net.set_remote_endpoints(&endpoints);
                    for mac in &refused {
                        tracing::warn!(
                            network = self.name,
                            mac = %switch::MacAddr(*mac),
                            "remote endpoint left out: its MAC is in use on this host"
                        );
                    }
                    self.gateway.set_remote_neighbors(
                        self.net.remote_endpoints().map(|ep| (ep.ip, ep.mac)),
                    );
                    self.gateway.set_remote_neighbors6(
                        self.net
                            .remote_endpoints()
                            .filter_map(|ep| Some((ep.ip6?, ep.mac))),
                    );
                    Ok(())
                };
                let _ = reply.send(res);
            }
            Command::SetFloodVteps { vteps, reply } => {
                let res = match &mut self.overlay {
                    Some(o) => {
                        o.set_flood(vteps);
                        Ok(())
                    }
                    None => Err("not an overlay network".to_string()),
                };
                let _ = reply.send(res);
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
                    let mut lost = crate::events::Event::new("endpoint", "lost", Some(&self.name))
                        .attr("reason", format_args!("interface read failed: {e}"));
                    if let Some(name) = self.names.get(&port.0) {
                        lost = lost.endpoint(name);
                    }
                    self.events.send(lost);
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
        if !self.captures.is_empty() {
            self.captures.ingress(ingress, buf);
        }
        #[cfg(debug_assertions)]
        if let Some(t) = self.test_panic_ethertype
            && frame.get(12..14) == Some(&t.to_be_bytes()[..])
        {
            panic!("test panic hook: EtherType {t:#06x} (VSWITCHD_TEST_PANIC_ETHERTYPE)");
        }
        match self.net.forward(ingress, frame, now) {
            Verdict::Unicast(GATEWAY) => self.deliver_to_gateway(frame, now),
            Verdict::Unicast(OVERLAY) => self.send_overlay(frame, buf),
            Verdict::Unicast(dst) => self.transmit(dst, buf),
            Verdict::Flood => {
                let mut targets = std::mem::take(&mut self.flood);
                targets.clear();
                self.net.for_each_flood_target(ingress, |p| targets.push(p));
                for &dst in &targets {
                    if dst == GATEWAY {
                        self.deliver_to_gateway(frame, now);
                    } else if dst == OVERLAY {
                        self.flood_overlay(buf);
                    } else {
                        self.transmit(dst, buf);
                    }
                }
                self.flood = targets;
            }
            Verdict::Drop(_) => {}
        }
    }

    /// Sends a frame for a remote endpoint to its VTEP.
    fn send_overlay(&mut self, frame: &[u8], buf: &[u8]) {
        let vtep = frame
            .first_chunk::<6>()
            .and_then(|dst| self.net.remote_vtep(dst));
        let ok = match (&self.overlay, vtep) {
            (Some(o), Some(vtep)) => o.send(vtep, buf),
            _ => false,
        };
        self.net.count_tx(OVERLAY, frame.len(), ok);
    }

    /// Sends a flooded frame to every flood VTEP (head-end replication).
    fn flood_overlay(&mut self, buf: &[u8]) {
        let Some(o) = &self.overlay else { return };
        let (sent, failed) = o.flood(buf);
        let len = buf.len().saturating_sub(VNET_HDR_LEN);
        for _ in 0..sent {
            self.net.count_tx(OVERLAY, len, true);
        }
        for _ in 0..failed {
            self.net.count_tx(OVERLAY, len, false);
        }
    }

    /// Takes datagrams of this network from the overlay ring and forwards each.
    fn drain_overlay(&mut self, rx: &mut [u8]) {
        let Some(o) = &mut self.overlay else { return };
        o.rx.ack();
        for _ in 0..OVERLAY_BATCH {
            let Some(o) = &mut self.overlay else { return };
            let Some((len, vtep)) = o.rx.pop(rx) else {
                return;
            };
            let Some(buf) = rx.get(..len).filter(|b| b.len() > VNET_HDR_LEN) else {
                continue;
            };
            if let Err(msg) = guarded(|| self.forward_from_vtep(vtep, buf)) {
                let frame = buf.get(VNET_HDR_LEN..).unwrap_or_default();
                self.record_panic(
                    &msg,
                    format_args!("forwarding from VTEP {vtep}: {}", FrameSummary(frame)),
                );
            }
        }
        // More than a batch waiting: come back after the TAPs had their turn.
        if let Some(o) = &self.overlay {
            o.rx.rearm();
        }
    }

    /// Forwards one frame (virtio-net header + Ethernet frame) that came from `vtep`: only
    /// to local containers, after the switch checked it against the store.
    fn forward_from_vtep(&mut self, vtep: std::net::SocketAddr, buf: &[u8]) {
        let Some(frame) = buf.get(VNET_HDR_LEN..) else {
            return;
        };
        match self.net.forward_from_vtep(vtep, frame) {
            Verdict::Unicast(dst) if dst != GATEWAY && dst != OVERLAY => self.transmit(dst, buf),
            Verdict::Flood => {
                let mut targets = std::mem::take(&mut self.flood);
                targets.clear();
                self.net.for_each_flood_target(OVERLAY, |p| targets.push(p));
                for &dst in &targets {
                    if dst != GATEWAY && dst != OVERLAY {
                        self.transmit(dst, buf);
                    }
                }
                self.flood = targets;
            }
            _ => {}
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
            captures,
            ..
        } = self;
        net.count_tx(GATEWAY, frame.len(), true);
        let Some(reply) = gw_buf.get_mut(VNET_HDR_LEN..) else {
            return;
        };
        match gateway.on_frame(frame, reply) {
            Some(n) => emit_gateway_reply(net, ports, flood, captures, gw_buf, n, now),
            None => {
                nat.on_frame(frame, &mut |f: &[u8]| {
                    emit_from_gateway(net, ports, flood, captures, f, now)
                });
            }
        }
    }

    /// Writes one buffer (header + frame) to port `dst`'s TAP and counts it.
    fn transmit(&mut self, dst: PortId, buf: &[u8]) {
        transmit(&mut self.net, &mut self.ports, &mut self.captures, dst, buf);
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

/// Sends the reply of `n` bytes the gateway wrote after the virtio-net header room in
/// `gw_buf`, with a zeroed header (no offload flags, no GSO).
fn emit_gateway_reply(
    net: &mut Network,
    ports: &mut Ports,
    flood: &mut Vec<PortId>,
    captures: &mut Captures,
    gw_buf: &mut [u8],
    n: usize,
    now: u64,
) {
    if let Some(out) = gw_buf.get_mut(..VNET_HDR_LEN + n) {
        out.iter_mut().take(VNET_HDR_LEN).for_each(|b| *b = 0);
        emit_from_gateway(net, ports, flood, captures, out, now);
    }
}

/// Writes one buffer (header + frame) to port `dst`'s TAP and counts it.
fn transmit(
    net: &mut Network,
    ports: &mut Ports,
    captures: &mut Captures,
    dst: PortId,
    buf: &[u8],
) {
    if !captures.is_empty() {
        captures.egress(dst, buf);
    }
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
    captures: &mut Captures,
    buf: &[u8],
    now: u64,
) {
    let Some(frame) = buf.get(VNET_HDR_LEN..) else {
        return;
    };
    if !captures.is_empty() {
        captures.from_gateway(buf);
    }
    match net.forward(GATEWAY, frame, now) {
        Verdict::Unicast(dst) if dst != GATEWAY => transmit(net, ports, captures, dst, buf),
        Verdict::Flood => {
            flood.clear();
            net.for_each_flood_target(GATEWAY, |p| flood.push(p));
            for &dst in flood.iter() {
                transmit(net, ports, captures, dst, buf);
            }
        }
        _ => {}
    }
}
