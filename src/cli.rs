//! `vswitchctl`'s verbs (mirroring `docker network ...`) and their output.
//!
//! Exit codes: 0 success; 1 the daemon refused the request (bad input, unknown name, conflict);
//! 2 usage error; 3 the daemon is not running or not reachable. `run` exits with the
//! command's status, or 125 when vswitchctl itself failed (as `docker run` does).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::api::types::{
    Connect, Disconnect, NatStatsView, NetworkCreate, NetworkSummary, PortRequest, PortRow,
};
use crate::client::{Client, ClientError};

mod capture;
mod events;
mod tables;
pub use capture::{CaptureArgs, capture};
pub use events::{EventsArgs, events};
pub use tables::{Format, flows, macs};

/// The daemon refused the request.
pub const EXIT_REFUSED: i32 = 1;
/// The daemon is not running or not reachable.
pub const EXIT_NO_DAEMON: i32 = 3;
/// `run` failed before or around the command.
pub const EXIT_RUN_FAILED: i32 = 125;

/// Control a running vswitchd: networks, container attachments, commands in attached
/// namespaces.
///
/// Exit codes: 0 ok, 1 request refused, 2 usage error, 3 daemon not running; `run` returns
/// the command's status (125 if vswitchctl itself failed).
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Cli {
    /// The daemon's API socket [default: $XDG_RUNTIME_DIR/vswitchd.sock, or
    /// /run/vswitchd.sock as root].
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level verbs.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Manage networks and attachments.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Run a command in a fresh user+net namespace attached to networks; detach when it exits
    /// and return its exit status.
    Run(RunArgs),
    /// Manage published ports at runtime.
    #[command(subcommand)]
    Port(PortCmd),
    /// Show a network's NAT flows and counters as JSON.
    Stats {
        /// Network name.
        network: String,
    },
    /// Capture the frames crossing a network's switch (both directions), or one endpoint's,
    /// as pcap (LINKTYPE_ETHERNET, microsecond timestamps) for tcpdump, tshark or Wireshark.
    /// Stops after -c COUNT frames, on Ctrl-C or SIGTERM, or when the output closes; prints
    /// "N frames captured, M dropped" on stderr (frames are dropped, never delayed, when the
    /// reader is slower than the traffic).
    Capture(CaptureArgs),
    /// Follow the daemon's events as JSON lines: network create/remove, endpoint
    /// connect/disconnect/lost, port publish/unpublish, data path panics. Until Ctrl-C.
    ///
    /// Each line: {"time":"RFC 3339 UTC with nanoseconds","type":"network|endpoint|port|
    /// datapath","action":"...","network":"...","endpoint":"...","attributes":{...}}; fields
    /// without a value are left out. A reader that falls behind gets
    /// {"type":"events","action":"lost","attributes":{"count":"N"}}.
    Events(EventsArgs),
    /// List a network's live NAT flows: protocol, container and remote address:port, state,
    /// age, payload bytes each way (at most 100,000; a warning says when more were left out).
    Flows {
        /// Network name.
        network: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// `vswitchctl port ...`
#[derive(Subcommand, Debug)]
pub enum PortCmd {
    /// Publish a container port: connections to HOSTIP:HOSTPORT reach the container's PORT.
    Add {
        /// Network name.
        network: String,
        /// Endpoint name.
        container: String,
        /// `[HOSTIP:]HOSTPORT:PORT[/tcp|udp]`.
        publish: String,
    },
    /// Withdraw a published port.
    #[command(alias = "remove")]
    Rm {
        /// Network name.
        network: String,
        /// Endpoint name.
        container: String,
        /// `[HOSTIP:]HOSTPORT:PORT[/tcp|udp]`, as published.
        publish: String,
    },
    /// List published ports.
    #[command(alias = "list")]
    Ls {
        /// Only this network.
        network: Option<String>,
    },
}

/// `vswitchctl network ...`
#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Create a network.
    Create(CreateArgs),
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Only print network ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show networks as JSON (shaped like `docker network inspect`, with counters).
    Inspect {
        /// Network names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks (refused while containers are connected).
    #[command(alias = "remove")]
    Rm {
        /// Network names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Attach a container (its network namespace) to a network: eth0, eth1, ... appears in it.
    Connect(ConnectArgs),
    /// List a network's MAC table: MAC, endpoint (`_gateway`, `uplink`, or `-` for none),
    /// port, seconds since last seen (`static` for MACs bound at connect).
    Macs {
        /// Network name.
        network: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Detach a container from a network: its interface is removed and its address freed.
    Disconnect {
        /// Network name.
        network: String,
        /// Endpoint name (or id) given at connect.
        name: String,
    },
}

/// `network create` flags.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Subnet in CIDR form, IPv4 [default: next free of 172.17-31.0.0/16, 192.168.N.0/20]
    /// or, with --ipv6, IPv6 [default: a unique-local fdXX:XXXX:XXXX::/64]. Give it once per
    /// family.
    #[arg(long = "subnet", value_name = "CIDR")]
    pub subnets: Vec<String>,
    /// Gateway address, one per family, inside the subnet of its family [default: the
    /// subnet's first address].
    #[arg(long = "gateway", value_name = "IP")]
    pub gateways: Vec<IpAddr>,
    /// Dual stack: the network also gets an IPv6 subnet, and each container an IPv6
    /// address and default route next to its IPv4 ones.
    #[arg(long)]
    pub ipv6: bool,
    /// Allocate container addresses from this sub-range only.
    #[arg(long, value_name = "CIDR")]
    pub ip_range: Option<String>,
    /// Internal network: no NAT to or from the outside.
    #[arg(long)]
    pub internal: bool,
    /// Driver option KEY=VALUE: icc=false (no container-to-container traffic), mtu=N,
    /// host_loopback=true (the gateway address reaches the host's 127.0.0.1).
    #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
    pub opts: Vec<String>,
    /// Link MTU of the network's interfaces [default: the daemon's --mtu].
    #[arg(long, value_parser = clap::value_parser!(u32).range(68..=65520))]
    pub mtu: Option<u32>,
    /// bridge: this host only (scope local). overlay: every host of the daemon's cluster
    /// (scope global; needs vswitchd --cluster-store and --subnet; containers on different
    /// hosts share it over VXLAN, addresses come from the cluster store) [default: bridge].
    #[arg(short = 'd', long, value_enum, value_name = "DRIVER")]
    pub driver: Option<Driver>,
    /// Network name.
    pub name: String,
}

/// `network create --driver`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// A network of this host only.
    Bridge,
    /// A network of every host in the cluster.
    Overlay,
}

impl Driver {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Bridge => "bridge",
            Driver::Overlay => "overlay",
        }
    }
}

/// `network connect` flags.
#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// Network name.
    pub network: String,
    /// The container: a PID, /proc/PID/ns/net, or /run/netns/NAME.
    pub netns: String,
    /// Endpoint name, unique on the network [default: the netns file name, or pid-PID].
    #[arg(long)]
    pub name: Option<String>,
    /// Static address [default: next free address].
    #[arg(long, value_name = "IP")]
    pub ip: Option<Ipv4Addr>,
    /// Static IPv6 address on a dual-stack network [default: next free address].
    #[arg(long, value_name = "IPV6")]
    pub ip6: Option<Ipv6Addr>,
    /// MAC address [default: 02:42 + the IPv4 address].
    #[arg(long, value_name = "MAC")]
    pub mac: Option<String>,
    /// Publish a port: `[HOSTIP:]HOSTPORT:PORT[/tcp|udp]` (host IP default 0.0.0.0, protocol
    /// default tcp). The container sees the real client address. Repeatable.
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// Another DNS name for the container on this network. Repeatable.
    #[arg(long = "alias", value_name = "NAME")]
    pub aliases: Vec<String>,
    /// Name of the interface inside the container (1-15 of [A-Za-z0-9_.-], not yet taken
    /// there); default: the first free ethN.
    #[arg(long = "interface", value_name = "IFNAME")]
    pub interface: Option<String>,
}

/// `run` flags.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Networks to attach to, in order (the first gets eth0 and the default route)
    /// [default: bridge].
    #[arg(long = "network", value_name = "NETWORK")]
    pub networks: Vec<String>,
    /// Endpoint name [default: run-PID].
    #[arg(long)]
    pub name: Option<String>,
    /// Static address on the first network.
    #[arg(long, value_name = "IP")]
    pub ip: Option<Ipv4Addr>,
    /// Static IPv6 address on the first network (dual-stack).
    #[arg(long, value_name = "IPV6")]
    pub ip6: Option<Ipv6Addr>,
    /// Publish a port on the first network: `[HOSTIP:]HOSTPORT:PORT[/tcp|udp]`. Repeatable.
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub cmd: Vec<OsString>,
}

/// Prints a one-line error and returns the exit code for it.
pub fn report(e: &ClientError) -> i32 {
    eprintln!("error: {e}");
    match e {
        ClientError::NotRunning { .. } => EXIT_NO_DAEMON,
        _ => EXIT_REFUSED,
    }
}

/// Runs a `network` verb; returns the exit code.
pub async fn network(client: &Client, cmd: NetworkCmd) -> i32 {
    match cmd {
        NetworkCmd::Create(a) => {
            let mut options = BTreeMap::new();
            for o in &a.opts {
                match o.split_once('=') {
                    Some((k, v)) => {
                        options.insert(k.to_string(), v.to_string());
                    }
                    None => {
                        eprintln!("error: invalid option {o:?}: expected KEY=VALUE");
                        return 2;
                    }
                }
            }
            let req = match create_request(a, options) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return 2;
                }
            };
            match client.post("/networks/create", &req).await {
                Ok(body) => {
                    let id = serde_json::from_slice::<crate::api::types::Created>(&body)
                        .map(|c| c.id)
                        .unwrap_or_default();
                    println!("{id}");
                    0
                }
                Err(e) => report(&e),
            }
        }
        NetworkCmd::Ls { quiet } => match client.get::<Vec<NetworkSummary>>("/networks").await {
            Ok(list) => {
                print_table(&list, quiet);
                0
            }
            Err(e) => report(&e),
        },
        NetworkCmd::Inspect { names } => {
            let mut out = Vec::new();
            let mut code = 0;
            for n in &names {
                match client
                    .call(hyper::Method::GET, &format!("/networks/{n}"), None)
                    .await
                {
                    Ok(body) => out.push(body),
                    Err(e) => code = code.max(report(&e)),
                }
            }
            if (!out.is_empty() || code == 0)
                && let Err(e) = print_pretty(&out)
            {
                code = code.max(report(&ClientError::Protocol(e.to_string())));
            }
            code
        }
        NetworkCmd::Rm { names } => {
            let mut code = 0;
            for n in &names {
                match client.delete(&format!("/networks/{n}")).await {
                    Ok(()) => println!("{n}"),
                    Err(e) => code = code.max(report(&e)),
                }
            }
            code
        }
        NetworkCmd::Connect(a) => {
            let req = Connect {
                container: a.netns,
                name: a.name,
                ip: a.ip,
                ip6: a.ip6,
                mac: a.mac,
                publish: a.publish,
                aliases: a.aliases,
                interface: a.interface,
            };
            match client
                .post(&format!("/networks/{}/connect", a.network), &req)
                .await
            {
                Ok(body) => {
                    if let Ok(ep) =
                        serde_json::from_slice::<crate::api::types::EndpointInspect>(&body)
                    {
                        let v6 = if ep.ipv6_address.is_empty() {
                            String::new()
                        } else {
                            format!(" {}", ep.ipv6_address)
                        };
                        println!(
                            "{} {} {} {}{v6}",
                            ep.name, ep.interface, ep.ipv4_address, ep.mac_address
                        );
                    }
                    0
                }
                Err(e) => report(&e),
            }
        }
        NetworkCmd::Macs { network, format } => macs(client, &network, format).await,
        NetworkCmd::Disconnect { network, name } => {
            let req = Disconnect { container: name };
            match client
                .post(&format!("/networks/{network}/disconnect"), &req)
                .await
            {
                Ok(_) => 0,
                Err(e) => report(&e),
            }
        }
    }
}

/// The create body from the flags: `--subnet` and `--gateway` sorted by family, at most
/// one of each per family.
fn create_request(
    a: CreateArgs,
    options: BTreeMap<String, String>,
) -> Result<NetworkCreate, String> {
    let (mut subnet, mut subnet6) = (None, None);
    for s in a.subnets {
        let slot = if s.contains(':') {
            &mut subnet6
        } else {
            &mut subnet
        };
        if let Some(first) = slot.replace(s.clone()) {
            return Err(format!(
                "--subnet {s}: a network has one subnet per family, {first} is already given"
            ));
        }
    }
    let (mut gateway, mut gateway6) = (None, None);
    for g in a.gateways {
        let dup = match g {
            IpAddr::V4(v4) => gateway.replace(v4).is_some(),
            IpAddr::V6(v6) => gateway6.replace(v6).is_some(),
        };
        if dup {
            return Err(format!("--gateway {g}: one gateway per family"));
        }
    }
    Ok(NetworkCreate {
        name: a.name,
        subnet,
        gateway,
        ip_range: a.ip_range,
        internal: a.internal,
        options,
        mtu: a.mtu,
        driver: a.driver.map(|d| d.as_str().to_string()),
        enable_ipv6: a.ipv6,
        subnet6,
        gateway6,
    })
}

/// `docker network ls`-style table: Go tabwriter(minwidth 10, padding 3) equivalent.
fn print_table(list: &[NetworkSummary], quiet: bool) {
    let stdout = std::io::stdout();
    if quiet {
        let mut out = stdout.lock();
        for n in list {
            let _ = writeln!(out, "{}", &n.id[..n.id.len().min(12)]);
        }
        return;
    }
    let mut tw = tabwriter::TabWriter::new(stdout.lock())
        .minwidth(7)
        .padding(3);
    let _ = writeln!(tw, "NETWORK ID\tNAME\tDRIVER\tSCOPE\tSUBNET\tENDPOINTS");
    for n in list {
        let _ = writeln!(
            tw,
            "{}\t{}\t{}\t{}\t{}\t{}",
            &n.id[..n.id.len().min(12)],
            n.name,
            n.driver,
            n.scope,
            n.subnet,
            n.endpoints
        );
    }
    let _ = tw.flush();
}

/// Runs a `port` verb; returns the exit code.
pub async fn port(client: &Client, cmd: PortCmd) -> i32 {
    let add = matches!(cmd, PortCmd::Add { .. });
    match cmd {
        PortCmd::Add {
            network,
            container,
            publish,
        }
        | PortCmd::Rm {
            network,
            container,
            publish,
        } => {
            let path = match add {
                true => format!("/networks/{network}/ports"),
                false => format!("/networks/{network}/ports/remove"),
            };
            match client
                .post(&path, &PortRequest { container, publish })
                .await
            {
                Ok(_) => 0,
                Err(e) => report(&e),
            }
        }
        PortCmd::Ls { network } => {
            let path = match &network {
                Some(n) => format!("/ports?network={n}"),
                None => "/ports".to_string(),
            };
            match client.get::<Vec<PortRow>>(&path).await {
                Ok(rows) => {
                    let mut tw = tabwriter::TabWriter::new(std::io::stdout().lock())
                        .minwidth(7)
                        .padding(3);
                    let _ = writeln!(tw, "NETWORK\tCONTAINER\tPROTO\tHOST\tPORT");
                    for r in rows {
                        let m = r.mapping;
                        let _ = writeln!(
                            tw,
                            "{}\t{}\t{}\t{}:{}\t{}",
                            r.network,
                            r.container,
                            m.protocol,
                            m.host_ip,
                            m.host_port,
                            m.container_port
                        );
                    }
                    let _ = tw.flush();
                    0
                }
                Err(e) => report(&e),
            }
        }
    }
}

/// Prints a network's NAT stats; returns the exit code.
pub async fn stats(client: &Client, network: &str) -> i32 {
    match client
        .get::<NatStatsView>(&format!("/networks/{network}/stats"))
        .await
    {
        Ok(s) => {
            println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
            0
        }
        Err(e) => report(&e),
    }
}

/// Prints JSON documents as one pretty JSON array, re-indenting them as they stream by
/// (a network with 10,000 endpoints is not first decoded into its types).
fn print_pretty(docs: &[hyper::body::Bytes]) -> Result<(), serde_json::Error> {
    use serde::ser::{SerializeSeq, Serializer};
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut ser = serde_json::Serializer::pretty(&mut out);
    let mut seq = ser.serialize_seq(Some(docs.len()))?;
    for doc in docs {
        let mut de = serde_json::Deserializer::from_slice(doc);
        seq.serialize_element(&serde_transcode::Transcoder::new(&mut de))?;
        de.end()?;
    }
    seq.end()?;
    out.write_all(b"\n").map_err(serde_json::Error::io)?;
    out.flush().map_err(serde_json::Error::io)
}
