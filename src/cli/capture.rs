//! `vswitchctl capture`: a network's or an endpoint's frames as a pcap file or stream.
//!
//! The daemon streams pcap records; this side writes only whole records (so the file stays
//! readable however the capture ends) and stops after `-c COUNT`, on Ctrl-C or SIGTERM, or
//! when its output is closed (`| head`). To stop, it asks the daemon to end the capture
//! (`DELETE /networks/{name}/capture/{id}`) and reads the stream to its end, whose trailers
//! say how many frames the capture dropped; the summary goes to stderr.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;

use crate::api::stream::{DROPPED_TRAILER, ID_HEADER};
use crate::client::{Client, ClientError};
use crate::datapath::capture::{MAX_SNAPLEN, RECORD_HEADER, record_len};

use super::{EXIT_REFUSED, report};

/// How long the rest of a stopped capture may take to arrive.
const DRAIN: Duration = Duration::from_secs(3);

/// `capture` flags.
#[derive(Args, Debug)]
pub struct CaptureArgs {
    /// Network name.
    pub network: String,
    /// Only this endpoint's frames (both directions) [default: every frame of the network,
    /// the gateway's included].
    #[arg(long, value_name = "NAME")]
    pub endpoint: Option<String>,
    /// Stop after COUNT frames.
    #[arg(short = 'c', long = "count", value_name = "COUNT",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Keep at most SNAPLEN bytes of each frame (1 to 262144).
    #[arg(short = 's', long = "snaplen", value_name = "SNAPLEN", default_value_t = MAX_SNAPLEN,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SNAPLEN)))]
    pub snaplen: u32,
    /// Write the pcap to FILE, or to standard output with `-` (the default when standard
    /// output is not a terminal).
    #[arg(short = 'w', long = "write", value_name = "FILE|-")]
    pub write: Option<PathBuf>,
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where the pcap goes.
fn output(write: Option<&PathBuf>) -> Result<Box<dyn Write>, String> {
    match write {
        Some(p) if p.as_os_str() != "-" => std::fs::File::create(p)
            .map(|f| Box::new(std::io::BufWriter::new(f)) as Box<dyn Write>)
            .map_err(|e| format!("cannot write {}: {e}", p.display())),
        None if std::io::stdout().is_terminal() => Err(
            "refusing to write a pcap to a terminal: give -w FILE, or pipe it (-w - | tcpdump -r -)"
                .to_string(),
        ),
        _ => Ok(Box::new(std::io::BufWriter::new(std::io::stdout()))),
    }
}

/// Why the capture loop ended early.
enum Stop {
    /// Ctrl-C or SIGTERM.
    Signal,
    /// The output failed (closed pipe).
    Output(std::io::Error),
}

/// Runs `capture`; returns the exit code.
pub async fn capture(client: &Client, a: CaptureArgs) -> i32 {
    if let Err(code) = super::tables::check_name(&a.network) {
        return code;
    }
    // Refuse a terminal before asking the daemon for anything.
    if a.write.is_none()
        && std::io::stdout().is_terminal()
        && let Err(e) = output(None)
    {
        eprintln!("error: {e}");
        return 2;
    }
    let mut path = format!("/networks/{}/capture?snaplen={}", a.network, a.snaplen);
    if let Some(e) = &a.endpoint {
        path.push_str(&format!("&endpoint={}", encode(e)));
    }
    if let Some(c) = a.count {
        path.push_str(&format!("&count={c}"));
    }
    let mut sigterm = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot watch for SIGTERM: {e}");
            return EXIT_REFUSED;
        }
    };
    let resp = match client.open(Method::GET, &path, None).await {
        Ok(r) => r,
        Err(e) => return report(&e),
    };
    let id = resp
        .headers()
        .get(ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut out = match output(a.write.as_ref()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_REFUSED;
        }
    };
    let mut body = resp.into_body();
    let mut pending: Vec<u8> = Vec::new();
    let mut header_written = false;
    let mut frames = 0u64;
    let limit = a.count.unwrap_or(u64::MAX);
    let mut dropped: Option<u64> = None;
    let mut stopped: Option<Stop> = None;
    let mut deadline = None;
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            _ = tokio::signal::ctrl_c(), if stopped.is_none() => {
                stopped = Some(Stop::Signal);
                deadline = Some(tokio::time::Instant::now() + DRAIN);
                // Ask the daemon to end the capture, then read what is left.
                stop(client, &a.network, id.as_deref()).await;
                continue;
            }
            _ = sigterm.recv(), if stopped.is_none() => {
                stopped = Some(Stop::Signal);
                deadline = Some(tokio::time::Instant::now() + DRAIN);
                stop(client, &a.network, id.as_deref()).await;
                continue;
            }
            () = sleep_until(deadline) => break,
        };
        match frame {
            None => break,
            Some(Err(e)) => {
                if stopped.is_none() {
                    eprintln!("warning: capture stream broke off: {e}");
                }
                break;
            }
            Some(Ok(f)) => {
                if let Some(t) = f.trailers_ref() {
                    dropped = t
                        .get(DROPPED_TRAILER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok());
                    continue;
                }
                let Ok(data) = f.into_data() else { continue };
                if matches!(stopped, Some(Stop::Output(_))) {
                    continue;
                }
                pending.extend_from_slice(&data);
                let wrote = write_records(
                    &mut *out,
                    &mut pending,
                    &mut header_written,
                    &mut frames,
                    limit,
                );
                if let Err(e) = wrote {
                    stopped = Some(Stop::Output(e));
                    deadline = Some(tokio::time::Instant::now() + DRAIN);
                    stop(client, &a.network, id.as_deref()).await;
                } else if frames >= limit && deadline.is_none() {
                    // The daemon stops at the count too; its trailers follow.
                    deadline = Some(tokio::time::Instant::now() + DRAIN);
                }
            }
        }
    }
    if !header_written && !matches!(stopped, Some(Stop::Output(_))) {
        // Even a capture that saw nothing is a valid (empty) pcap file.
        let header = crate::datapath::capture::file_header(a.snaplen);
        let _ = out.write_all(&header);
    }
    let flushed = out.flush();
    let dropped = dropped.map_or(String::new(), |d| format!(", {d} dropped"));
    eprintln!("{frames} frames captured{dropped}");
    match (stopped, flushed) {
        (Some(Stop::Output(e)), _) | (_, Err(e)) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: cannot write the capture: {e}");
            EXIT_REFUSED
        }
        _ => 0,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Asks the daemon to end capture `id` (best effort: if it fails, dropping the connection
/// ends the capture too).
async fn stop(client: &Client, network: &str, id: Option<&str>) {
    let Some(id) = id else { return };
    let path = format!("/networks/{network}/capture/{id}");
    if let Err(e) = client.call(Method::DELETE, &path, None).await
        && !matches!(e, ClientError::NotRunning { .. })
    {
        tracing::debug!("stopping the capture: {e}");
    }
}

/// Writes the file header and the whole records in `pending` (at most up to `limit` frames
/// in all), keeping a partial record for later.
fn write_records(
    out: &mut dyn Write,
    pending: &mut Vec<u8>,
    header_written: &mut bool,
    frames: &mut u64,
    limit: u64,
) -> std::io::Result<()> {
    let mut at = 0;
    if !*header_written {
        let Some(h) = pending.get(..24) else {
            return Ok(());
        };
        out.write_all(h)?;
        *header_written = true;
        at = 24;
    }
    let start = at;
    while *frames < limit {
        let Some(len) = pending.get(at..).and_then(record_len) else {
            break;
        };
        let end = at + RECORD_HEADER + len;
        if end > pending.len() {
            break;
        }
        at = end;
        *frames += 1;
    }
    if let Some(records) = pending.get(start..at) {
        out.write_all(records)?;
        out.flush()?;
    }
    if *frames >= limit {
        pending.clear();
    } else {
        pending.drain(..at);
    }
    Ok(())
}
