//! `vswitchd-loadgen`: the load generator of `scripts/bench-scale.sh`.
//!
//! One process, one thread, one epoll loop per mode (mio), so that it is not what limits a
//! measurement: `connrate` keeps C non-blocking connects in flight and closes each with a
//! reset (SO_LINGER 0) so that no TIME_WAIT state eats ephemeral ports; `serve` accepts and
//! resets (or echoes and holds) and counts UDP datagrams; `hold` fills a NAT's flow table
//! with idle flows; `udpflood` sends small datagrams as fast as one core can.
//!
//! Every mode prints one `key=value` line per result on stdout, for scripts to read.

mod connrate;
mod hold;
mod serve;
mod udp;

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "vswitchd-loadgen",
    version,
    about = "Load generator for vswitchd's benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

/// How a TCP connection is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Close {
    /// Reset (SO_LINGER 0): no TIME_WAIT, ephemeral ports are reused at once.
    Rst,
    /// Orderly FIN: the closing side keeps the port in TIME_WAIT for 60 s.
    Fin,
}

impl Close {
    fn name(self) -> &'static str {
        match self {
            Close::Rst => "rst(SO_LINGER=0)",
            Close::Fin => "fin",
        }
    }
}

/// What `serve` does with an accepted TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TcpMode {
    /// Send one byte and close (`connrate` counts a connection when the byte arrives).
    Greet,
    /// Echo what arrives until the peer closes (`hold`, latency).
    Echo,
    /// Close at once (see --close).
    Close,
}

#[derive(Subcommand)]
enum Mode {
    /// Serve TCP and/or count UDP datagrams; runs until killed. After each UDP burst (no
    /// datagram for --idle-ms) prints `serve udp received=N ... pps=X highest_seq=S loss=L%`.
    Serve {
        /// TCP address to listen on.
        #[arg(long, value_name = "ADDR")]
        tcp: Option<SocketAddr>,
        /// What to do with an accepted connection.
        #[arg(long, value_enum, default_value_t = TcpMode::Greet)]
        tcp_mode: TcpMode,
        /// How accepted connections are closed with --tcp-mode close.
        #[arg(long, value_enum, default_value_t = Close::Rst)]
        close: Close,
        /// UDP address to count datagrams on.
        #[arg(long, value_name = "ADDR")]
        udp: Option<SocketAddr>,
        /// A UDP burst ends after this many milliseconds without a datagram.
        #[arg(long, default_value_t = 500, value_name = "MS", value_parser = clap::value_parser!(u64).range(10..=60_000))]
        idle_ms: u64,
    },
    /// Open and close TCP connections as fast as possible for SECS seconds, CONNS at a time,
    /// and print `connrate ... connects=N rate=R/s errors=E ...`.
    Connrate {
        /// Server to connect to.
        #[arg(long, value_name = "ADDR")]
        to: SocketAddr,
        /// Connections in flight at once.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65_536))]
        conns: u64,
        /// Seconds to run.
        #[arg(long, default_value_t = 3.0, value_parser = parse_secs)]
        secs: f64,
        /// Source addresses to bind to, round robin (comma list); more ports with FIN close.
        #[arg(long, value_name = "IP,...", value_delimiter = ',')]
        from: Vec<IpAddr>,
        /// How each connection is closed once it is established.
        #[arg(long, value_enum, default_value_t = Close::Rst)]
        close: Close,
        /// A connect that takes longer than this is counted as an error (timeout) and retried.
        #[arg(long, default_value_t = 3000, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=600_000))]
        timeout_ms: u64,
        /// Count a connection once it is established, without waiting for the server's
        /// first byte (`serve`'s greeting). A published port's listener completes the
        /// handshake itself, so only the greeting shows the connection reached the container.
        #[arg(long)]
        no_greeting: bool,
        /// Threads, each with its share of --conns and its own epoll.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
        threads: u64,
    },
    /// Open N idle TCP connections and M UDP flows (one datagram each, repeated every
    /// --keepalive-secs) and hold them until killed. Prints `hold tcp=OK/N udp=M/M ... ready`
    /// once they are open.
    Hold {
        /// TCP server (an echo server: `serve --echo`).
        #[arg(long, value_name = "ADDR")]
        to: SocketAddr,
        /// Idle TCP connections to open.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
        tcp: u64,
        /// UDP flows (one socket each) to open.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
        udp: u64,
        /// UDP destination [default: the --to address].
        #[arg(long, value_name = "ADDR")]
        udp_to: Option<SocketAddr>,
        /// Seconds between the datagrams that keep each UDP flow alive.
        #[arg(long, default_value_t = 20, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
        keepalive_secs: u64,
        /// Connects in flight at once while opening.
        #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65_536))]
        batch: u64,
    },
    /// Send UDP datagrams of SIZE payload bytes (a sequence number in the first 8) as fast as
    /// possible for SECS seconds; print `udpflood ... sent=N pps=X`.
    Udpflood {
        /// Receiver (`serve --udp`).
        #[arg(long, value_name = "ADDR")]
        to: SocketAddr,
        /// Payload bytes per datagram (8 to 65507).
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(8..=65_507))]
        size: u64,
        /// Seconds to send.
        #[arg(long, default_value_t = 3.0, value_parser = parse_secs)]
        secs: f64,
        /// Sending threads, one socket each (the sequence numbers are shared).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
        threads: u64,
    },
}

/// Seconds as a positive decimal number, at most a day.
fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds in (0, 86400]")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // 10,000 flows need 10,000 descriptors; the soft limit is often 1024.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("warning: could not raise the open-file limit: {e}");
    }
    let res = match cli.mode {
        Mode::Serve {
            tcp,
            tcp_mode,
            close,
            udp,
            idle_ms,
        } => serve::run(tcp, tcp_mode, close, udp, Duration::from_millis(idle_ms)),
        Mode::Connrate {
            to,
            conns,
            secs,
            from,
            close,
            timeout_ms,
            no_greeting,
            threads,
        } => connrate::run(&connrate::Config {
            to,
            conns: conns as usize,
            secs: Duration::from_secs_f64(secs),
            from,
            close,
            timeout: Duration::from_millis(timeout_ms),
            greeting: !no_greeting,
            threads: threads as usize,
        }),
        Mode::Hold {
            to,
            tcp,
            udp,
            udp_to,
            keepalive_secs,
            batch,
        } => hold::run(&hold::Config {
            to,
            tcp: tcp as usize,
            udp: udp as usize,
            udp_to: udp_to.unwrap_or(to),
            keepalive: Duration::from_secs(keepalive_secs),
            batch: batch as usize,
        }),
        Mode::Udpflood {
            to,
            size,
            secs,
            threads,
        } => udp::flood(
            to,
            size as usize,
            Duration::from_secs_f64(secs),
            threads as usize,
        ),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A non-blocking TCP socket with its connect under way (or already done, on loopback).
pub fn start_connect(
    to: SocketAddr,
    from: Option<IpAddr>,
    close: Close,
) -> std::io::Result<mio::net::TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(
        Domain::for_address(to),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    if close == Close::Rst {
        sock.set_linger(Some(Duration::ZERO))?;
    }
    if let Some(ip) = from {
        sock.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match sock.connect(&to.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(mio::net::TcpStream::from_std(sock.into()))
}

/// Whether a connect started by [`start_connect`] finished: `Ok(true)` connected,
/// `Ok(false)` not yet, `Err` failed.
pub fn connect_done(s: &mio::net::TcpStream) -> std::io::Result<bool> {
    if let Some(e) = s.take_error()? {
        return Err(e);
    }
    match s.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// CPU time this process (all threads) has used so far, from /proc/self/stat (user + system,
/// in the kernel's 100 Hz USER_HZ ticks), if readable.
pub fn cpu_time() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = s.get(s.rfind(')')? + 1..)?;
    let mut f = rest.split_whitespace().skip(11); // utime is field 14 overall, 12th here
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// `cpu=NN%`: CPU used since `start` over `wall` seconds, as % of one core (100% per
/// thread means the generator itself was the limit).
pub fn cpu_share(start: Option<Duration>, wall: f64) -> String {
    match (start, cpu_time()) {
        (Some(a), Some(b)) if wall > 0.0 => {
            format!(
                "cpu={:.0}%",
                100.0 * b.saturating_sub(a).as_secs_f64() / wall
            )
        }
        _ => "cpu=unknown".into(),
    }
}

/// The p-th percentile (0..=100) of sorted values, 0 when empty.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_picks_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 51);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn cpu_time_grows_with_work() {
        let a = cpu_time().expect("/proc/self/stat readable");
        let t = std::time::Instant::now();
        let mut b = a;
        // Spin until the next 10 ms tick is charged (bounded, for a starved machine).
        while b <= a && t.elapsed() < Duration::from_secs(10) {
            std::hint::black_box((0..10_000u64).sum::<u64>());
            b = cpu_time().expect("/proc/self/stat readable");
        }
        assert!(b > a, "{a:?} -> {b:?}");
    }

    #[test]
    fn secs_must_be_positive() {
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("x").is_err());
        assert_eq!(parse_secs("1.5"), Ok(1.5));
    }
}
