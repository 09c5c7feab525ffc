//! `vswitchctl events`: the daemon's events as JSON lines (see [`crate::events`]), kept ones
//! first with `--since`, then live ones until Ctrl-C or `--until`.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;

use crate::client::Client;

use super::report;

/// `events` flags.
#[derive(Args, Debug)]
pub struct EventsArgs {
    /// First replay the kept events (the last 1024) from this time on: a duration before now
    /// (10m, 1h30m), an RFC 3339 time (2026-11-29T15:04:05Z) or Unix seconds.
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    pub since: Option<SystemTime>,
    /// Stop at this time (same forms as --since; a past time only replays).
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    pub until: Option<SystemTime>,
}

/// A time given as a duration before now, an RFC 3339 time or Unix seconds.
fn parse_when(s: &str) -> Result<SystemTime, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(UNIX_EPOCH + Duration::from_secs(secs));
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return SystemTime::now()
            .checked_sub(d)
            .ok_or_else(|| format!("{s} before now is before the epoch"));
    }
    humantime::parse_rfc3339_weak(s).map_err(|_| {
        format!("{s:?} is neither a duration (10m), an RFC 3339 time nor Unix seconds")
    })
}

/// Runs `events`; returns the exit code.
pub async fn events(client: &Client, a: EventsArgs) -> i32 {
    let mut query = Vec::new();
    for (k, t) in [("since", a.since), ("until", a.until)] {
        if let Some(t) = t {
            query.push(format!("{k}={}", humantime::format_rfc3339_nanos(t)));
        }
    }
    let path = match query.is_empty() {
        true => "/events".to_string(),
        false => format!("/events?{}", query.join("&")),
    };
    let resp = match client.open(Method::GET, &path, None).await {
        Ok(r) => r,
        Err(e) => return report(&e),
    };
    let mut body = resp.into_body();
    let mut out = std::io::stdout().lock();
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            _ = tokio::signal::ctrl_c() => return 0,
        };
        match frame {
            None => return 0,
            Some(Err(e)) => {
                eprintln!("error: event stream broke off: {e}");
                return super::EXIT_NO_DAEMON;
            }
            Some(Ok(f)) => {
                let Ok(data) = f.into_data() else { continue };
                // A closed pipe (`| head`) ends the command quietly.
                if out.write_all(&data).and_then(|()| out.flush()).is_err() {
                    return 0;
                }
            }
        }
    }
}
