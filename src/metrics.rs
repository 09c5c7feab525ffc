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

use std::collections::HashMap;
use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use switch::DropReason;
use tokio::sync::oneshot;

use crate::daemon::Shared;
use crate::datapath::{HealthReport, Snapshot};

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

/// A port's counters with its labels, for every port of every network with a snapshot.
struct PortRow<'a> {
    network: &'a str,
    endpoint: &'a str,
    counters: &'a switch::PortCounters,
}

fn port_rows(networks: &[NetworkSample]) -> Vec<PortRow<'_>> {
    let mut rows = Vec::new();
    for n in networks {
        let Some(s) = &n.snapshot else { continue };
        for (port, counters) in &s.ports {
            let endpoint = if *port == switch::GATEWAY.0 {
                GATEWAY_ENDPOINT
            } else {
                match n.endpoints.get(port) {
                    Some(name) => name.as_str(),
                    None => continue, // detached since the snapshot was asked for
                }
            };
            rows.push(PortRow {
                network: &n.name,
                endpoint,
                counters,
            });
        }
    }
    rows.sort_by(|a, b| (a.network, a.endpoint).cmp(&(b.network, b.endpoint)));
    rows
}

fn net_labels(n: &NetworkSample) -> Labels<'_> {
    vec![("network", n.name.as_str())]
}

fn port_labels<'a>(r: &PortRow<'a>) -> Labels<'a> {
    vec![("network", r.network), ("endpoint", r.endpoint)]
}

/// Writes the whole exposition from the gathered numbers. Pure: unit-tested with values.
fn render(networks: &[NetworkSample], attach: &AttachCounts) -> String {
    use Kind::{Counter, Gauge};
    let mut t = Text(String::new());
    let version = env!("CARGO_PKG_VERSION");
    t.family(
        "vswitch_build_info",
        Gauge,
        "The vswitchd build (always 1).",
        [(vec![("version", version)], 1)],
    );
    t.family(
        "vswitch_networks",
        Gauge,
        "Networks served.",
        [(vec![], networks.len())],
    );
    let net = net_labels;
    t.family(
        "vswitch_endpoints",
        Gauge,
        "Endpoints of the network in the state (attached or lost).",
        networks.iter().map(|n| (net(n), n.endpoint_count)),
    );
    t.family(
        "vswitch_datapath_healthy",
        Gauge,
        "1 when the network's data path runs, never panicked and answered this scrape.",
        networks.iter().map(|n| {
            let ok = n.health.healthy() && n.snapshot.is_some();
            (net(n), u8::from(ok))
        }),
    );
    t.family(
        "vswitch_datapath_panics_total",
        Counter,
        "Panics caught on the network's data path (each dropped one frame, poll or command).",
        networks.iter().map(|n| (net(n), n.health.panics)),
    );

    let ports = port_rows(networks);
    let port = port_labels;
    type PortField = fn(&switch::PortCounters) -> u64;
    let port_counters: [(&str, &str, PortField); 5] = [
        (
            "vswitch_port_rx_frames_total",
            "Frames received from the endpoint (dropped ones included).",
            |c| c.rx_frames,
        ),
        (
            "vswitch_port_rx_bytes_total",
            "Bytes received from the endpoint (dropped frames included).",
            |c| c.rx_bytes,
        ),
        (
            "vswitch_port_tx_frames_total",
            "Frames written to the endpoint.",
            |c| c.tx_frames,
        ),
        (
            "vswitch_port_tx_bytes_total",
            "Bytes written to the endpoint.",
            |c| c.tx_bytes,
        ),
        (
            "vswitch_port_tx_errors_total",
            "Frames that could not be written to the endpoint.",
            |c| c.tx_errors,
        ),
    ];
    for (name, help, field) in port_counters {
        t.family(
            name,
            Counter,
            help,
            ports.iter().map(|r| (port(r), field(r.counters))),
        );
    }
    t.family(
        "vswitch_port_drops_total",
        Counter,
        "Frames from the endpoint the switch dropped, by reason.",
        ports.iter().flat_map(|r| {
            DropReason::ALL
                .iter()
                .filter(|reason| **reason != DropReason::UnknownPort)
                .map(move |reason| {
                    let mut l = port(r);
                    l.push(("reason", reason.name()));
                    (l, r.counters.dropped(*reason))
                })
        }),
    );

    let snaps: Vec<(&NetworkSample, &Snapshot)> = networks
        .iter()
        .filter_map(|n| n.snapshot.as_ref().map(|s| (n, s)))
        .collect();
    t.family(
        "vswitch_mac_table_entries",
        Gauge,
        "Entries in the network's MAC table.",
        snaps.iter().map(|(n, s)| (net(n), s.mac_entries)),
    );
    t.family(
        "vswitch_gateway_replies_total",
        Counter,
        "Requests the gateway answered itself, by kind (ARP, ping, Neighbor Solicitation, ping6).",
        snaps.iter().flat_map(|(n, s)| {
            let k = &s.gateway;
            [
                ("arp", k.arp_replies),
                ("echo", k.echo_replies),
                ("neighbor_advert", k.neighbor_adverts),
                ("echo6", k.echo6_replies),
            ]
            .map(|(kind, v)| {
                let mut l = net(n);
                l.push(("kind", kind));
                (l, v)
            })
        }),
    );
    t.family(
        "vswitch_gateway_ignored_total",
        Counter,
        "Frames to the gateway that produced no reply (not for it, unsupported or malformed).",
        snaps.iter().map(|(n, s)| (net(n), s.gateway.ignored)),
    );
    t.family(
        "vswitch_gateway_rate_limited_total",
        Counter,
        "ARP, Neighbor Solicitation and ping requests dropped by the per-container rate limit.",
        snaps.iter().map(|(n, s)| (net(n), s.gateway.rate_limited)),
    );

    t.family(
        "vswitch_nat_flows",
        Gauge,
        "Live NAT flows, by protocol.",
        snaps.iter().flat_map(|(n, s)| {
            [
                ("tcp", s.nat.tcp_flows),
                ("udp", s.nat.udp_flows),
                ("icmp", s.nat.icmp_flows),
            ]
            .map(|(p, v)| {
                let mut l = net(n);
                l.push(("protocol", p));
                (l, v)
            })
        }),
    );
    t.family(
        "vswitch_nat_max_flows",
        Gauge,
        "The network's NAT flow limit (--max-flows).",
        snaps.iter().map(|(n, s)| (net(n), s.nat.max_flows)),
    );
    t.family(
        "vswitch_nat_buffer_bytes",
        Gauge,
        "Bytes the network's TCP flows hold in buffers.",
        snaps.iter().map(|(n, s)| (net(n), s.nat.buffer_bytes)),
    );
    t.family(
        "vswitch_nat_buffer_limit_bytes",
        Gauge,
        "The network's TCP buffer budget (--nat-memory).",
        snaps.iter().map(|(n, s)| (net(n), s.nat.buffer_limit)),
    );
    type NatField = fn(&nat::NatCounters) -> u64;
    let nat_counters: [(&str, &str, NatField); 9] = [
        (
            "vswitch_nat_tcp_opened_total",
            "TCP flows established with the far side.",
            |k| k.tcp_opened,
        ),
        (
            "vswitch_nat_tcp_refused_total",
            "Outbound TCP dials the far side refused (the container got RST).",
            |k| k.tcp_refused,
        ),
        (
            "vswitch_nat_tcp_unreachable_total",
            "Outbound TCP dials that failed otherwise (the container got ICMP unreachable).",
            |k| k.tcp_unreachable,
        ),
        (
            "vswitch_nat_udp_flows_opened_total",
            "UDP flows created.",
            |k| k.udp_flows,
        ),
        (
            "vswitch_nat_icmp_echoes_total",
            "ICMP echo requests forwarded.",
            |k| k.icmp_echoes,
        ),
        (
            "vswitch_nat_expired_total",
            "Flows removed after their idle timeout.",
            |k| k.expired,
        ),
        (
            "vswitch_nat_forbidden_total",
            "Packets refused because their destination is the daemon itself or reserved.",
            |k| k.forbidden_destination,
        ),
        (
            "vswitch_nat_internal_drops_total",
            "Packets dropped because the network is internal.",
            |k| k.internal_drops,
        ),
        (
            "vswitch_nat_tcp_direct_bytes_total",
            "Bytes from containers written straight from their frames to host sockets.",
            |k| k.tcp_direct_bytes,
        ),
    ];
    for (name, help, field) in nat_counters {
        t.family(
            name,
            Counter,
            help,
            snaps.iter().map(|(n, s)| (net(n), field(&s.nat.counters))),
        );
    }
    t.family(
        "vswitch_nat_refused_total",
        Counter,
        "New NAT flows refused, by reason: limit (table full), endpoint_quota (the container's \
         share spent), memory (buffer budget spent).",
        snaps.iter().flat_map(|(n, s)| {
            let k = &s.nat.counters;
            [
                ("limit", k.refused_limit),
                ("endpoint_quota", k.refused_endpoint_quota),
                ("memory", k.refused_memory),
            ]
            .map(|(reason, v)| {
                let mut l = net(n);
                l.push(("reason", reason));
                (l, v)
            })
        }),
    );
    t.family(
        "vswitch_dns_queries_total",
        Counter,
        "DNS queries to the gateway, by outcome: local (answered by the gateway), relayed (sent \
         upstream), refused (too many relayed in flight), servfail (no upstream answered), \
         dropped (unreadable or a response).",
        snaps.iter().flat_map(|(n, s)| {
            let k = &s.nat.counters;
            [
                ("local", k.dns_local),
                ("relayed", k.dns_relayed),
                ("refused", k.dns_refused),
                ("servfail", k.dns_servfail),
                ("dropped", k.dns_dropped),
            ]
            .map(|(outcome, v)| {
                let mut l = net(n);
                l.push(("outcome", outcome));
                (l, v)
            })
        }),
    );

    let name = "vswitch_attach_duration_seconds";
    t.header(
        name,
        Kind::Histogram,
        "Time a successful network connect took, from request to answer.",
    );
    let mut cumulative = 0;
    for (i, count) in attach.buckets.iter().enumerate() {
        cumulative += count;
        let le = ATTACH_BUCKETS
            .get(i)
            .map_or_else(|| "+Inf".to_string(), f64::to_string);
        t.sample(&format!("{name}_bucket"), &[("le", &le)], cumulative);
    }
    t.sample(&format!("{name}_sum"), &[], attach.sum);
    t.sample(&format!("{name}_count"), &[], cumulative);
    t.family(
        "vswitch_attach_failures_total",
        Counter,
        "Network connect requests that failed (bad input, conflicts, helper errors).",
        [(vec![], attach.failures)],
    );
    t.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_network(name: &str) -> NetworkSample {
        let mut snap = Snapshot::default();
        let mut c = switch::PortCounters {
            rx_frames: 7,
            ..Default::default()
        };
        c.drops[DropReason::SpoofedIp as usize] = 2;
        snap.ports.insert(3, c);
        snap.ports.insert(9, switch::PortCounters::default()); // detached meanwhile
        snap.ports
            .insert(switch::GATEWAY.0, switch::PortCounters::default());
        NetworkSample {
            name: name.to_string(),
            endpoints: HashMap::from([(3, "web".to_string())]),
            endpoint_count: 1,
            health: HealthReport {
                running: true,
                ..Default::default()
            },
            snapshot: Some(snap),
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        escape_label(&mut s, "a\\b\"c\nd");
        assert_eq!(s, r#"a\\b\"c\nd"#);
    }

    #[test]
    fn families_are_contiguous_with_help_and_type() {
        let text = render(
            &[sample_network("n1"), sample_network("n\"2")],
            &AttachCounts::default(),
        );
        assert!(text.contains("vswitch_port_rx_frames_total{network=\"n1\",endpoint=\"web\"} 7\n"));
        assert!(text.contains(
            "vswitch_port_drops_total{network=\"n\\\"2\",endpoint=\"web\",reason=\"spoofed_ip\"} 2\n"
        ));
        assert!(text.contains("endpoint=\"_gateway\""));
        assert!(!text.contains("unknown_port"));
        let mut seen = Vec::new();
        let mut last = "";
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            if family != last {
                assert!(!seen.contains(&family), "{family} is split");
                seen.push(family);
                last = family;
                assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
                assert!(text.contains(&format!("# HELP {family} ")), "{family}");
            }
        }
    }

    #[test]
    fn the_histogram_is_cumulative_and_counts_every_attach() {
        let m = AttachMetrics::default();
        m.observe(Duration::from_micros(500), true);
        m.observe(Duration::from_millis(7), true);
        m.observe(Duration::from_secs(9), true);
        m.observe(Duration::from_millis(1), false);
        let text = render(&[], &m.read());
        assert!(text.contains("vswitch_attach_duration_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("vswitch_attach_duration_seconds_bucket{le=\"0.01\"} 2\n"));
        assert!(text.contains("vswitch_attach_duration_seconds_bucket{le=\"5\"} 2\n"));
        assert!(text.contains("vswitch_attach_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("vswitch_attach_duration_seconds_count 3\n"));
        assert!(text.contains("vswitch_attach_failures_total 1\n"));
        assert!(text.contains("vswitch_networks 0\n"));
    }
}
