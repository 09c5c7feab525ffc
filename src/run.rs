//! `vswitchctl run`: a command in a fresh user+net namespace, attached to networks for as
//! long as it runs.
//!
//! Order of events: the child enters its new namespaces and waits; the parent connects it to
//! every requested network; the child executes the command; when it exits the parent
//! disconnects it (freeing its addresses) and exits with the command's status. SIGINT from
//! the terminal reaches the command (same process group); the parent outlives it to clean up,
//! and forwards SIGTERM/SIGHUP it receives. The command gets its own /etc/resolv.conf (the
//! gateway answers DNS), /etc/hosts and hostname (`--name`), as in a container.

use std::os::unix::process::ExitStatusExt;

use netns_helper::fresh::FreshChild;
use tokio::signal::unix::{SignalKind, signal};

use crate::api::types::{Connect, Disconnect, EndpointInspect, NetworkInspect};
use crate::cli::{EXIT_RUN_FAILED, RunArgs, report};
use crate::client::{Client, ClientError};
use netns_helper::fresh::Setup;

/// Runs the command; returns the exit code for vswitchctl.
pub async fn run(client: &Client, args: RunArgs) -> i32 {
    let networks = if args.networks.is_empty() {
        vec![crate::daemon::DEFAULT_NETWORK.0.to_string()]
    } else {
        args.networks.clone()
    };
    // Refuse early, before creating anything, if the daemon is down.
    if let Err(e) = client.call(hyper::Method::GET, "/_ping", None).await {
        report(&e);
        return EXIT_RUN_FAILED;
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot find own executable: {e}");
            return EXIT_RUN_FAILED;
        }
    };
    let mut child = match FreshChild::spawn(&exe, &args.cmd) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_RUN_FAILED;
        }
    };
    let pid = child.pid();
    let name = args.name.clone().unwrap_or_else(|| format!("run-{pid}"));
    let mut attached: Vec<String> = Vec::new();
    let mut addresses: Vec<String> = Vec::new();
    for (i, net) in networks.iter().enumerate() {
        let req = Connect {
            container: format!("/proc/{pid}/ns/net"),
            name: Some(name.clone()),
            ip: if i == 0 { args.ip } else { None },
            ip6: if i == 0 { args.ip6 } else { None },
            mac: None,
            publish: if i == 0 {
                args.publish.clone()
            } else {
                Vec::new()
            },
            aliases: Vec::new(),
            interface: None,
        };
        match client.post(&format!("/networks/{net}/connect"), &req).await {
            Ok(body) => {
                if let Ok(ep) = serde_json::from_slice::<EndpointInspect>(&body) {
                    for a in [&ep.ipv4_address, &ep.ipv6_address] {
                        if let Some(ip) = a.split('/').next().filter(|ip| !ip.is_empty()) {
                            addresses.push(ip.to_string());
                        }
                    }
                }
            }
            Err(e) => {
                report(&e);
                let _ = child.child.kill();
                let _ = child.child.wait();
                detach_all(client, &attached, &name).await;
                return EXIT_RUN_FAILED;
            }
        }
        attached.push(net.clone());
    }
    let setup = setup(client, &networks[0], &name, &addresses).await;
    if let Err(e) = child.start(&setup) {
        eprintln!("error: the command's process went away: {e}");
        let _ = child.child.wait();
        detach_all(client, &attached, &name).await;
        return EXIT_RUN_FAILED;
    }
    let status = wait_forwarding_signals(child).await;
    detach_all(client, &attached, &name).await;
    match status {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        Err(e) => {
            eprintln!("error: waiting for the command: {e}");
            EXIT_RUN_FAILED
        }
    }
}

async fn wait_forwarding_signals(child: FreshChild) -> std::io::Result<std::process::ExitStatus> {
    let pid = nix::unistd::Pid::from_raw(child.pid() as i32);
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut proc = child.child;
    let mut wait = tokio::task::spawn_blocking(move || proc.wait());
    loop {
        tokio::select! {
            r = &mut wait => return r.map_err(std::io::Error::other)?,
            // The terminal sent SIGINT to the whole process group; the command got it too.
            _ = int.recv() => {}
            _ = term.recv() => { let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM); }
            _ = hup.recv() => { let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGHUP); }
        }
    }
}

/// The command's resolv.conf (the first network's gateway answers DNS, on each of its
/// addresses: IPv4 first, then IPv6 on a dual-stack network), hosts (its own name on each
/// address) and hostname.
async fn setup(client: &Client, first: &str, name: &str, addresses: &[String]) -> Setup {
    let gateways: Vec<String> = client
        .get::<NetworkInspect>(&format!("/networks/{first}"))
        .await
        .map(|n| n.ipam.config.into_iter().map(|c| c.gateway).collect())
        .unwrap_or_default();
    let resolv_conf = if gateways.is_empty() {
        String::new()
    } else {
        let mut r = format!("# written by vswitchctl run: the gateway of {first} answers DNS\n");
        for gw in &gateways {
            r.push_str(&format!("nameserver {gw}\n"));
        }
        r.push_str("options ndots:0\n");
        r
    };
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for ip in addresses {
        hosts.push_str(&format!("{ip}\t{name}\n"));
    }
    Setup {
        resolv_conf,
        hosts,
        hostname: name.to_string(),
    }
}

async fn detach_all(client: &Client, networks: &[String], name: &str) {
    for net in networks {
        let req = Disconnect {
            container: name.to_string(),
        };
        match client
            .post(&format!("/networks/{net}/disconnect"), &req)
            .await
        {
            // The daemon saw the namespace go first and detached it already.
            Ok(_)
            | Err(ClientError::Refused {
                status: hyper::StatusCode::NOT_FOUND,
                ..
            }) => {}
            Err(e) => eprintln!("warning: could not disconnect {name} from {net}: {e}"),
        }
    }
}
