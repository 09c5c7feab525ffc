//! `netavark-plugin-vswitch`: netavark's plugin API 1.0.0 for vswitchd networks (installed
//! as `vswitch` in a netavark plugin directory). `create`, `setup NETNS`, `teardown NETNS`
//! and `info` read JSON on stdin and print JSON on stdout; a failure prints
//! `{"error": "..."}` (one line) and exits 1. See [`vswitchd::netavark`].

use std::io::Read;

use vswitchd::netavark::plugin::{PluginError, Verb, run};
use vswitchd::netavark::types::ErrorJson;

fn main() {
    let code = match exec() {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            0
        }
        Err(e) => {
            let error = ErrorJson {
                error: vswitchd::error::one_line(&e.to_string()),
            };
            println!(
                "{}",
                serde_json::to_string(&error).unwrap_or_else(|_| r#"{"error":"?"}"#.into())
            );
            1
        }
    };
    std::process::exit(code);
}

fn exec() -> Result<String, PluginError> {
    let mut args = Vec::new();
    for a in std::env::args_os().skip(1) {
        match a.into_string() {
            Ok(s) => args.push(s),
            Err(a) => {
                return Err(PluginError::Usage(format!("argument {a:?} is not UTF-8")));
            }
        }
    }
    if matches!(args.first().map(String::as_str), Some("--help" | "-h")) {
        return Ok(HELP.trim_end().to_string());
    }
    if matches!(args.first().map(String::as_str), Some("--version" | "-V")) {
        return Ok(format!(
            "netavark-plugin-vswitch {}",
            env!("CARGO_PKG_VERSION")
        ));
    }
    let verb = Verb::parse(&args)?;
    let mut stdin = Vec::new();
    if matches!(verb, Verb::Create | Verb::Setup(_) | Verb::Teardown(_)) {
        std::io::stdin()
            .take(16 << 20)
            .read_to_end(&mut stdin)
            .map_err(|e| PluginError::Usage(format!("cannot read stdin: {e}")))?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PluginError::Usage(format!("cannot start runtime: {e}")))?;
    rt.block_on(run(verb, &stdin))
}

const HELP: &str = "\
netavark-plugin-vswitch: podman networks served by vswitchd (netavark plugin API 1.0.0)

Install it as `vswitch` in a netavark plugin directory (/usr/libexec/netavark-plugins or a
directory of containers.conf's netavark_plugin_dirs), then:
    podman network create -d vswitch [--subnet CIDR] [-o socket=PATH] [-o icc=false]
                          [-o internal=true] [-o mtu=N] [-o host_loopback=true] NAME

Usage (netavark calls these, with JSON on stdin):
    netavark-plugin-vswitch create           complete and create a network in vswitchd
    netavark-plugin-vswitch setup NETNS      attach the container's namespace; print its status
    netavark-plugin-vswitch teardown NETNS   detach it (success when it is already gone)
    netavark-plugin-vswitch info             print the version and API version

Options (-o KEY=VALUE of podman network create):
    socket=PATH          the vswitchd API socket (default: vswitchctl's; in a user namespace
                         $XDG_RUNTIME_DIR/vswitchd.sock)
    icc=true|false       traffic between containers (default true)
    internal=true|false  no NAT (also podman's --internal)
    mtu=N                link MTU of the containers (68-65520)
    host_loopback=true|false  the gateway address reaches the host's 127.0.0.1

On failure it prints {\"error\": \"...\"} on stdout and exits 1.
";
