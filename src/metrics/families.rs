//! The families `/metrics` writes, in order, from the numbers a scrape gathered (see the
//! list in README.md, "Metrics"). Pure: unit-tested with values.

use switch::DropReason;

use super::{ATTACH_BUCKETS, AttachCounts, GATEWAY_ENDPOINT, Kind, Labels, NetworkSample, Text};
use crate::datapath::Snapshot;

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
pub(super) fn render(networks: &[NetworkSample], attach: &AttachCounts) -> String {
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
    let port_counters: [(&str, PortField, &str); 5] = [
        (
            "rx_frames",
            |c| c.rx_frames,
            "Frames from the endpoint (drops included).",
        ),
        (
            "rx_bytes",
            |c| c.rx_bytes,
            "Bytes from the endpoint (drops included).",
        ),
        (
            "tx_frames",
            |c| c.tx_frames,
            "Frames written to the endpoint.",
        ),
        ("tx_bytes", |c| c.tx_bytes, "Bytes written to the endpoint."),
        (
            "tx_errors",
            |c| c.tx_errors,
            "Frames that could not be written.",
        ),
    ];
    for (name, field, help) in port_counters {
        t.family(
            &format!("vswitch_port_{name}_total"),
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
    let nat_counters: [(&str, NatField, &str); 9] = [
        (
            "tcp_opened",
            |k| k.tcp_opened,
            "TCP flows established with the far side.",
        ),
        (
            "tcp_refused",
            |k| k.tcp_refused,
            "TCP dials the far side refused (RST).",
        ),
        (
            "tcp_unreachable",
            |k| k.tcp_unreachable,
            "TCP dials that failed otherwise.",
        ),
        ("udp_flows_opened", |k| k.udp_flows, "UDP flows created."),
        (
            "icmp_echoes",
            |k| k.icmp_echoes,
            "ICMP echo requests forwarded.",
        ),
        (
            "expired",
            |k| k.expired,
            "Flows removed after their idle timeout.",
        ),
        (
            "forbidden",
            |k| k.forbidden_destination,
            "Packets to forbidden destinations.",
        ),
        (
            "internal_drops",
            |k| k.internal_drops,
            "Packets dropped on internal networks.",
        ),
        (
            "tcp_direct_bytes",
            |k| k.tcp_direct_bytes,
            "Bytes written without buffering.",
        ),
    ];
    for (name, field, help) in nat_counters {
        t.family(
            &format!("vswitch_nat_{name}_total"),
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
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::datapath::HealthReport;
    use crate::metrics::AttachMetrics;

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
