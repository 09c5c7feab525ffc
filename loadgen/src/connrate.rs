//! `connrate`: C connections in flight; each one that is established (and, by default, has
//! brought the server's one-byte greeting, so the whole path has carried it, including a port
//! forwarder's second leg) is closed at once and replaced by a new connect. Counts connects per
//! second, errors by kind, and the time from `connect()` to done (p50/p99).

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::{Close, connect_done, cpu_share, cpu_time, percentile, start_connect};

pub struct Config {
    pub to: SocketAddr,
    pub conns: usize,
    pub secs: Duration,
    pub from: Vec<IpAddr>,
    pub close: Close,
    pub timeout: Duration,
    /// Wait for the server's first byte before closing.
    pub greeting: bool,
    /// Threads, each with its own share of `conns` and its own epoll.
    pub threads: usize,
}

struct Slot {
    sock: TcpStream,
    started: Instant,
}

#[derive(Default)]
struct Stats {
    ok: u64,
    errors: BTreeMap<String, u64>,
    latency_us: Vec<u64>,
}

impl Stats {
    fn error(&mut self, e: &std::io::Error) {
        *self.errors.entry(format!("{:?}", e.kind())).or_default() += 1;
    }
}

struct Run<'a> {
    cfg: &'a Config,
    poll: Poll,
    slots: Vec<Option<Slot>>,
    next_from: usize,
    stats: Stats,
}

impl Run<'_> {
    /// Starts a new connect in slot `i`; on failure the slot stays empty until the next sweep.
    fn open(&mut self, i: usize) {
        let from = if self.cfg.from.is_empty() {
            None
        } else {
            self.next_from = (self.next_from + 1) % self.cfg.from.len();
            self.cfg.from.get(self.next_from).copied()
        };
        let res = start_connect(self.cfg.to, from, self.cfg.close).and_then(|mut sock| {
            self.poll.registry().register(
                &mut sock,
                Token(i),
                Interest::WRITABLE | Interest::READABLE,
            )?;
            Ok(sock)
        });
        let slot = match res {
            Ok(sock) => Some(Slot {
                sock,
                started: Instant::now(),
            }),
            Err(e) => {
                self.stats.error(&e);
                None
            }
        };
        if let Some(s) = self.slots.get_mut(i) {
            *s = slot;
        }
    }

    /// Handles an event on slot `i`: counts and replaces a finished connection.
    fn ready(&mut self, i: usize) {
        let greeting = self.cfg.greeting;
        let Some(Some(slot)) = self.slots.get_mut(i) else {
            return;
        };
        let res = (|| {
            if greeting {
                // One read tells all: the greeting (done), EAGAIN (connect or greeting still
                // under way), or the connect's error.
                let mut b = [0u8; 64];
                return match slot.sock.read(&mut b) {
                    Ok(0) => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
                    Err(e) if e.kind() == std::io::ErrorKind::NotConnected => Ok(false),
                    Err(e) => Err(e),
                };
            }
            connect_done(&slot.sock)
        })();
        match res {
            Ok(false) => return,
            Ok(true) => {
                self.stats.ok += 1;
                let us = slot.started.elapsed().as_micros();
                self.stats
                    .latency_us
                    .push(u64::try_from(us).unwrap_or(u64::MAX));
            }
            Err(e) => self.stats.error(&e),
        }
        // Dropping the socket closes it: a reset with Close::Rst.
        self.open(i);
    }

    /// Retries empty slots and gives up on connects older than the timeout.
    fn sweep(&mut self) {
        for i in 0..self.slots.len() {
            let expired = match self.slots.get(i) {
                Some(Some(s)) => s.started.elapsed() > self.cfg.timeout,
                Some(None) => true,
                None => false,
            };
            if expired {
                if let Some(Some(_)) = self.slots.get(i) {
                    *self.stats.errors.entry("Timeout".into()).or_default() += 1;
                }
                self.open(i);
            }
        }
    }
}

/// One thread's loop over `conns` slots until `end`.
fn worker(cfg: &Config, conns: usize, end: Instant) -> std::io::Result<Stats> {
    let mut run = Run {
        cfg,
        poll: Poll::new()?,
        slots: (0..conns).map(|_| None).collect(),
        next_from: 0,
        stats: Stats::default(),
    };
    let mut events = Events::with_capacity(1024);
    for i in 0..conns {
        run.open(i);
    }
    let mut last_sweep = Instant::now();
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let wait = (end - now).min(Duration::from_millis(50));
        run.poll.poll(&mut events, Some(wait))?;
        for ev in events.iter() {
            run.ready(ev.token().0);
        }
        if last_sweep.elapsed() >= Duration::from_millis(50) {
            run.sweep();
            last_sweep = Instant::now();
        }
    }
    Ok(run.stats)
}

pub fn run(cfg: &Config) -> anyhow::Result<()> {
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let end = t0 + cfg.secs;
    let threads = cfg.threads.clamp(1, cfg.conns.max(1));
    let parts = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                // Spread the slots: the first `conns % threads` threads take one more.
                let n = cfg.conns / threads + usize::from(t < cfg.conns % threads);
                sc.spawn(move || worker(cfg, n, end))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("worker panicked")))
            })
            .collect::<std::io::Result<Vec<Stats>>>()
    })?;
    let mut stats = Stats::default();
    for p in parts {
        stats.ok += p.ok;
        stats.latency_us.extend(p.latency_us);
        for (k, n) in p.errors {
            *stats.errors.entry(k).or_default() += n;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut lat = std::mem::take(&mut stats.latency_us);
    lat.sort_unstable();
    let errors: u64 = stats.errors.values().sum();
    let kinds: Vec<String> = stats
        .errors
        .iter()
        .map(|(k, n)| format!("{k}:{n}"))
        .collect();
    println!(
        "connrate to={} conns={} threads={} secs={:.2} connects={} rate={:.0}/s errors={}{} connect_p50_us={} connect_p99_us={} done_when={} close={} sources={} {}",
        cfg.to,
        cfg.conns,
        threads,
        secs,
        stats.ok,
        stats.ok as f64 / secs,
        errors,
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" error_kinds={}", kinds.join(","))
        },
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        if cfg.greeting {
            "greeting"
        } else {
            "established"
        },
        cfg.close.name(),
        if cfg.from.is_empty() {
            "auto".to_string()
        } else {
            cfg.from.len().to_string()
        },
        cpu_share(cpu0, secs),
    );
    Ok(())
}
