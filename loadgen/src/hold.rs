//! `hold`: fills a NAT's flow table. Opens N TCP connections (at most `batch` connects in
//! flight) and M connected UDP sockets that each send one datagram, repeated every
//! `keepalive` so that the NAT does not forget them; holds all of them until killed.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::{Close, connect_done, start_connect};

pub struct Config {
    pub to: SocketAddr,
    pub tcp: usize,
    pub udp: usize,
    pub udp_to: SocketAddr,
    pub keepalive: Duration,
    pub batch: usize,
}

/// How long opening all TCP connections may take before the rest count as errors.
const OPEN_DEADLINE: Duration = Duration::from_secs(120);

pub fn run(cfg: &Config) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let held = open_tcp(cfg, &mut errors)?;
    let mut udp = Vec::with_capacity(cfg.udp);
    let bind: SocketAddr = if cfg.udp_to.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    for i in 0..cfg.udp {
        if i % 64 == 63 {
            // Paced: a burst of thousands would overflow the path's queues and lose flows.
            std::thread::sleep(Duration::from_millis(2));
        }
        let res = UdpSocket::bind(bind).and_then(|s| {
            s.connect(cfg.udp_to)?;
            s.send(&u64::MAX.to_le_bytes())?;
            Ok(s)
        });
        match res {
            Ok(s) => udp.push(s),
            Err(e) => *errors.entry(format!("udp:{:?}", e.kind())).or_default() += 1,
        }
    }
    let kinds: Vec<String> = errors.iter().map(|(k, n)| format!("{k}:{n}")).collect();
    println!(
        "hold tcp={}/{} udp={}/{} errors={}{} secs={:.2} ready",
        held.len(),
        cfg.tcp,
        udp.len(),
        cfg.udp,
        errors.values().sum::<u64>(),
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" error_kinds={}", kinds.join(","))
        },
        t0.elapsed().as_secs_f64()
    );
    std::io::stdout().flush()?;
    loop {
        std::thread::sleep(cfg.keepalive);
        for s in &udp {
            // A lost keepalive is retried at the next one.
            let _ = s.send(&u64::MAX.to_le_bytes());
        }
    }
}

/// Opens the TCP connections; returns the established ones.
fn open_tcp(cfg: &Config, errors: &mut BTreeMap<String, u64>) -> anyhow::Result<Vec<TcpStream>> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut pending: Vec<Option<TcpStream>> = (0..cfg.batch).map(|_| None).collect();
    let mut held = Vec::with_capacity(cfg.tcp);
    let (mut started, mut in_flight, mut failed) = (0usize, 0usize, 0usize);
    let deadline = Instant::now() + OPEN_DEADLINE;
    let mut fail = |errors: &mut BTreeMap<String, u64>, e: &std::io::Error, n: usize| {
        *errors.entry(format!("tcp:{:?}", e.kind())).or_default() += n as u64;
        failed += n;
    };
    loop {
        for (i, slot) in pending.iter_mut().enumerate() {
            if slot.is_some() || started >= cfg.tcp {
                continue;
            }
            started += 1;
            let res = start_connect(cfg.to, None, Close::Fin).and_then(|mut s| {
                poll.registry()
                    .register(&mut s, Token(i), Interest::WRITABLE)?;
                Ok(s)
            });
            match res {
                Ok(s) => {
                    *slot = Some(s);
                    in_flight += 1;
                }
                Err(e) => fail(errors, &e, 1),
            }
        }
        if in_flight == 0 {
            if started >= cfg.tcp {
                break;
            }
            continue;
        }
        if Instant::now() >= deadline {
            let e = std::io::Error::from(std::io::ErrorKind::TimedOut);
            fail(errors, &e, cfg.tcp - started + in_flight);
            break;
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for ev in events.iter() {
            let Some(slot) = pending.get_mut(ev.token().0) else {
                continue;
            };
            let Some(s) = slot.as_ref() else { continue };
            match connect_done(s) {
                Ok(false) => continue,
                Ok(true) => {
                    if let Some(mut s) = slot.take() {
                        poll.registry().deregister(&mut s)?;
                        held.push(s);
                    }
                }
                Err(e) => {
                    fail(errors, &e, 1);
                    *slot = None;
                }
            }
            in_flight -= 1;
        }
    }
    debug_assert!(held.len() + failed <= cfg.tcp);
    Ok(held)
}
