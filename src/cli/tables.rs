//! `vswitchctl network macs` and `vswitchctl flows`: a network's MAC table and live NAT flows,
//! as docker-style tables (by default) or JSON arrays (`--format json`).

use std::io::Write;

use clap::ValueEnum;

use crate::api::types::{FLOWS_LIMIT, FlowTable, MacRow};
use crate::client::Client;

use super::report;

/// Output format of the table verbs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns with a header line.
    #[default]
    Table,
    /// One JSON array.
    Json,
}

/// Prints a network's MAC table; returns the exit code.
pub async fn macs(client: &Client, network: &str, format: Format) -> i32 {
    if let Err(code) = check_name(network) {
        return code;
    }
    let rows = match client
        .get::<Vec<MacRow>>(&format!("/networks/{network}/macs"))
        .await
    {
        Ok(rows) => rows,
        Err(e) => return report(&e),
    };
    if format == Format::Json {
        return print_json(&rows);
    }
    let mut tw = tabwriter::TabWriter::new(std::io::stdout().lock())
        .minwidth(7)
        .padding(3);
    let _ = writeln!(tw, "MAC ADDRESS\tENDPOINT\tPORT\tAGE");
    for r in &rows {
        let age = match r.age {
            Some(secs) => format!("{secs}s"),
            None => "static".to_string(),
        };
        let _ = writeln!(tw, "{}\t{}\t{}\t{}", r.mac_address, r.endpoint, r.port, age);
    }
    let _ = tw.flush();
    0
}

/// Prints a network's live NAT flows; returns the exit code.
pub async fn flows(client: &Client, network: &str, format: Format) -> i32 {
    if let Err(code) = check_name(network) {
        return code;
    }
    let table = match client
        .get::<FlowTable>(&format!("/networks/{network}/flows"))
        .await
    {
        Ok(t) => t,
        Err(e) => return report(&e),
    };
    if table.truncated {
        eprintln!(
            "warning: network {network} has more than {FLOWS_LIMIT} flows; only {} are listed",
            table.flows.len()
        );
    }
    if format == Format::Json {
        return print_json(&table.flows);
    }
    let mut tw = tabwriter::TabWriter::new(std::io::stdout().lock())
        .minwidth(7)
        .padding(3);
    let _ = writeln!(
        tw,
        "PROTO\tCONTAINER\tREMOTE\tSTATE\tAGE\tTO REMOTE\tTO CONTAINER"
    );
    for f in &table.flows {
        let _ = writeln!(
            tw,
            "{}\t{}\t{}\t{}\t{}s\t{}\t{}",
            f.protocol,
            f.container,
            f.remote,
            f.state,
            f.age,
            f.bytes_to_remote,
            f.bytes_to_container
        );
    }
    let _ = tw.flush();
    0
}

/// Refuses a name no network can have before it is put in a request path (where `/`, `?` or
/// a newline would change the request rather than name a network).
pub(super) fn check_name(network: &str) -> Result<(), i32> {
    crate::daemon::inputs::validate_name("network name", network).map_err(|e| {
        eprintln!("error: {e}");
        super::EXIT_REFUSED
    })
}

fn print_json<T: serde::Serialize>(value: &T) -> i32 {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = serde_json::to_writer_pretty(&mut out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: cannot write the output: {e}");
            super::EXIT_REFUSED
        }
    }
}
