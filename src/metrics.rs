//! Metrics in the Prometheus text exposition format (version 0.0.4), for `GET /metrics` on
//! the API socket and on `--metrics-addr`.
//!
//! Model: nothing is counted for metrics. The data path already keeps plain `u64` counters
//! in its own thread (ports, gateway, NAT, DNS); a scrape asks every network's thread for a
//! [`Snapshot`] (one command on its channel, the same as `network inspect`), reads the
//! health each thread shares, and writes the text. The only counters kept here are the
//! control plane's attach histogram and failures ([`AttachMetrics`], atomics touched once per
//! attach). The daemon is locked only to post the snapshot requests and copy names; the
//! answers are awaited after it is released, each within [`SNAPSHOT_TIMEOUT`], so a wedged
//! data path costs a scrape its numbers (and reports `vswitch_datapath_healthy 0`), never
//! hangs it.
//!
//! Why the text is written here rather than by a crate: `prometheus-client` (the official
//! Rust client) fits the snapshot-at-scrape-time model through its custom collectors, but
//! encodes only OpenMetrics (`application/openmetrics-text`, `# EOF`, counters declared
//! without their `_total` suffix), not the 0.0.4 text format this contract names; the `prometheus`
//! crate writes 0.0.4 but makes each scrape build protobuf `MetricFamily` objects. The
//! format is small: `# HELP`, `# TYPE`, one sample per line, label values escaped
//! (`\\`, `\"`, `\n`), families contiguous; `promtool check metrics` checks it in the tests.
//!
//! Labels: `network`; `endpoint` (the container's name; the gateway's own port is
//! `_gateway`, which no container name can be); `reason`, `protocol`, `kind`, `outcome`.
//!
//! This file gathers the numbers and holds the text writer; `families.rs` says which
//! families are written from them.

use std::collections::HashMap;
use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::oneshot;

use crate::daemon::Shared;
use crate::datapath::{HealthReport, Snapshot};

mod families;
use families::render;

/// The Content-Type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// How long a scrape waits for the data paths' snapshots (all of them together).
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(2);
/// Upper bounds of the attach latency buckets, in seconds.
pub const ATTACH_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// The endpoint label of the gateway's port.
pub const GATEWAY_ENDPOINT: &str = "_gateway";

/// Attach latency and failures, observed by the control plane around each `network connect`.
#[derive(Debug, Default)]
pub struct AttachMetrics {
    /// Attaches per bucket (not cumulative); the last one is above every bound.
    buckets: [AtomicU64; ATTACH_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    failures: AtomicU64,
}

impl AttachMetrics {
    /// Records one attach: its duration when it succeeded, a failure otherwise.
    pub fn observe(&self, took: Duration, ok: bool) {
        if !ok {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let secs = took.as_secs_f64();
        let slot = ATTACH_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(ATTACH_BUCKETS.len());
        if let Some(b) = self.buckets.get(slot) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn read(&self) -> AttachCounts {
        AttachCounts {
            buckets: std::array::from_fn(|i| {
                self.buckets.get(i).map_or(0, |b| b.load(Ordering::Relaxed))
            }),
            sum: Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)).as_secs_f64(),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

/// [`AttachMetrics`] at one moment.
#[derive(Clone, Debug, Default)]
struct AttachCounts {
    buckets: [u64; ATTACH_BUCKETS.len() + 1],
    sum: f64,
    failures: u64,
}

/// What a scrape takes from the daemon for one network, under its lock.
pub struct NetworkInput {
    /// Network name.
    pub name: String,
    /// Port id → endpoint name, for attached endpoints.
    pub endpoints: HashMap<u32, String>,
    /// Endpoints in the state (attached or lost).
    pub endpoint_count: usize,
    /// The data path's shared health.
    pub health: HealthReport,
    /// The snapshot requested from its thread (None when the request could not be posted).
    pub snapshot: Option<oneshot::Receiver<Snapshot>>,
}

/// One network as the text is written from it.
struct NetworkSample {
    name: String,
    endpoints: HashMap<u32, String>,
    endpoint_count: usize,
    health: HealthReport,
    snapshot: Option<Snapshot>,
}

/// The scrape handler (API socket and `--metrics-addr`).
pub async fn handler(State(d): State<Shared>) -> Response {
    let body = scrape(&d).await;
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

/// The router of `--metrics-addr`: `GET /metrics`, and 404 for anything else.
pub fn router(daemon: Shared) -> Router {
    let not_found = || async { StatusCode::NOT_FOUND };
    Router::new()
        .route("/metrics", get(handler).fallback(not_found))
        .fallback(not_found)
        .with_state(daemon)
}

/// Gathers every network's snapshot and writes the metrics text.
pub async fn scrape(d: &Shared) -> String {
    let (inputs, attach) = {
        let daemon = d.lock().await;
        (daemon.scrape_inputs(), daemon.attach_metrics().read())
    };
    let deadline = tokio::time::Instant::now() + SNAPSHOT_TIMEOUT;
    let mut networks = Vec::with_capacity(inputs.len());
    for n in inputs {
        let snapshot = match n.snapshot {
            Some(rx) => match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(s)) => Some(s),
                Ok(Err(_)) | Err(_) => {
                    tracing::warn!(network = n.name, "metrics: no snapshot from the data path");
                    None
                }
            },
            None => None,
        };
        networks.push(NetworkSample {
            name: n.name,
            endpoints: n.endpoints,
            endpoint_count: n.endpoint_count,
            health: n.health,
            snapshot,
        });
    }
    networks.sort_by(|a, b| a.name.cmp(&b.name));
    render(&networks, &attach)
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The text being written.
struct Text(String);

/// One sample's labels (name, value).
type Labels<'a> = Vec<(&'static str, &'a str)>;

impl Text {
    /// Writes a family (HELP, TYPE, samples); nothing when it has no samples.
    fn family<'a, V: Display>(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'a>, V)>,
    ) {
        let mut samples = samples.into_iter().peekable();
        if samples.peek().is_none() {
            return;
        }
        self.header(name, kind, help);
        for (labels, value) in samples {
            self.sample(name, &labels, value);
        }
    }

    fn header(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"");
                escape_label(&mut self.0, v);
                self.0.push('"');
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// Appends a label value escaped as the format wants: `\` → `\\`, `"` → `\"`, newline → `\n`.
fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        escape_label(&mut s, "a\\b\"c\nd");
        assert_eq!(s, r#"a\\b\"c\nd"#);
    }
}
