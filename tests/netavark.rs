//! podman 5's path: the real netavark 2.1 binary, run as root, with `netavark-plugin-vswitch`
//! installed as the `vswitch` driver in a plugin directory; vswitchd runs in a world
//! namespace. netavark is installed by `.ci/run` (`cargo install netavark --version 2.1.0`);
//! outside CI a missing netavark skips these tests loudly, under CI=true it fails them.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::dns::dig;
use common::world::{run, tcp_serve};
use common::{Daemon, Netns, bin, listening, privileged, stdout, wait_until};
use serde_json::{Value, json};

/// The netavark binary: on PATH, else in cargo's bin directory (where `.ci/run` installs it).
fn netavark(test: &str) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("netavark"))
                .collect()
        })
        .unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(c) = cargo_home {
        candidates.push(c.join("bin/netavark"));
    }
    if let Some(found) = candidates.into_iter().find(|p| p.is_file()) {
        return Some(found);
    }
    let msg = format!(
        "{test}: netavark not found (install it: cargo install netavark --version 2.1.0 --locked)"
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg}; under CI=true a skipped test is a failure");
    }
    eprintln!("\n*** SKIPPED {msg} ***\n");
    None
}

/// netavark with a plugin directory holding our plugin as `vswitch`.
struct Netavark {
    exe: PathBuf,
    dir: tempfile::TempDir,
}

impl Netavark {
    fn new(exe: PathBuf) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("plugins")).expect("plugin dir");
        std::fs::create_dir(dir.path().join("config")).expect("config dir");
        std::os::unix::fs::symlink(
            bin("netavark-plugin-vswitch"),
            dir.path().join("plugins/vswitch"),
        )
        .expect("install plugin");
        Netavark { exe, dir }
    }

    /// `netavark --plugin-directory DIR --config DIR ... ARGS < input`.
    fn call(&self, args: &[&str], input: &Value) -> Output {
        let mut child = Command::new(&self.exe)
            .arg("--plugin-directory")
            .arg(self.dir.path().join("plugins"))
            .arg("--config")
            .arg(self.dir.path().join("config"))
            .args(["--rootless", "false", "--firewall-driver", "none"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run netavark");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(input.to_string().as_bytes())
            .expect("write config");
        drop(stdin);
        child.wait_with_output().expect("netavark output")
    }

    /// Like [`Netavark::call`] but panics unless netavark succeeds; returns its JSON.
    fn ok(&self, args: &[&str], input: &Value, d: &Daemon) -> Value {
        let out = self.call(args, input);
        assert!(
            out.status.success(),
            "netavark {args:?} failed: {}{}\n--- daemon log ---\n{}",
            stdout(&out),
            common::stderr(&out),
            d.log()
        );
        let text = stdout(&out);
        if text.trim().is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("netavark printed {text:?}: {e}"))
    }
}

/// Asserts that netavark failed and said `want` (it passes the plugin's message on).
fn fails_with(out: &Output, want: &str) {
    // netavark prints its errors as `{"error": "..."}` on stdout, too.
    let said = stdout(out);
    let said = match serde_json::from_str::<Value>(&said) {
        Ok(v) => v["error"].as_str().map_or(said.clone(), str::to_string),
        Err(_) => said,
    };
    let text = format!("{said}{}", common::stderr(out));
    assert!(!out.status.success(), "netavark succeeded: {text}");
    assert!(text.contains(want), "wanted {want:?} in: {text}");
}

/// The input of `netavark create` for a vswitch network.
fn create_config(name: &str, subnets: Value, socket: &Path) -> Value {
    json!({
        "network": {
            "name": name,
            "id": format!("{:0>64}", name.len()),
            "driver": "vswitch",
            "subnets": subnets,
            "ipv6_enabled": false,
            "internal": false,
            "dns_enabled": true,
            "options": {"socket": socket.to_str().unwrap()},
        },
        "used": {"interfaces": [], "names": {}, "subnets": []},
        "options": {"subnet_pools": [], "default_interface_name": "", "check_used_subnets": false},
    })
}

/// The input of `netavark setup|teardown` for one container on `network`.
fn setup_config(network: &Value, ctr: &str, per_network: Value, ports: Value) -> Value {
    let name = network["name"].as_str().unwrap();
    json!({
        "container_id": format!("{ctr:a>64}"),
        "container_name": ctr,
        "port_mappings": ports,
        "networks": {name: per_network},
        "network_info": {name: network},
    })
}

#[test]
fn containers_set_up_by_netavark_talk_resolve_publish_and_are_torn_down() {
    if !privileged("netavark") {
        return;
    }
    let Some(exe) = netavark("netavark") else {
        return;
    };
    let d = Daemon::start(&[]);
    let nv = Netavark::new(exe);

    // podman network create -d vswitch --subnet 10.89.7.0/24 pn
    let cfg = create_config("pn", json!([{"subnet": "10.89.7.0/24"}]), &d.socket);
    let net = nv.ok(&["create"], &cfg, &d);
    assert_eq!(net["name"], "pn");
    assert_eq!(net["driver"], "vswitch");
    assert_eq!(net["id"], cfg["network"]["id"], "{net}");
    assert_eq!(
        net["subnets"],
        json!([{"subnet": "10.89.7.0/24", "gateway": "10.89.7.1"}]),
        "{net}"
    );
    let inspect = d.inspect("pn");
    assert_eq!(inspect["IPAM"]["Config"][0]["Subnet"], "10.89.7.0/24");
    // Creating it again (the vswitchd network exists with that subnet) succeeds.
    assert_eq!(nv.ok(&["create"], &cfg, &d)["subnets"], net["subnets"]);
    // ...but not with another subnet.
    let other = create_config("pn", json!([{"subnet": "10.89.8.0/24"}]), &d.socket);
    fails_with(
        &nv.call(&["create"], &other),
        "network pn already exists in vswitchd with subnet 10.89.7.0/24",
    );

    let a = Netns::new("a");
    let b = Netns::new("b");
    // ca: static address and MAC, alias "web", ports 18080-18081 → 80-81.
    let cfg_a = setup_config(
        &net,
        "ca",
        json!({"interface_name": "eth0", "aliases": ["web"], "static_ips": ["10.89.7.50"],
               "static_mac": "02:aa:bb:cc:dd:01"}),
        json!([{"host_ip": "", "container_port": 80, "host_port": 18080, "range": 2,
                "protocol": "tcp"}]),
    );
    let status = nv.ok(&["setup", &a.path()], &cfg_a, &d);
    assert_eq!(
        status["pn"],
        json!({
            "dns_search_domains": [],
            "dns_server_ips": ["10.89.7.1"],
            "interfaces": {"eth0": {"mac_address": "02:aa:bb:cc:dd:01",
                "subnets": [{"ipnet": "10.89.7.50/24", "gateway": "10.89.7.1"}]}}
        }),
        "{status}"
    );
    // cb: the next free address, alias "db", and an interface name of its own.
    let cfg_b = setup_config(
        &net,
        "cb",
        json!({"interface_name": "ens5", "aliases": ["db", "cb"]}),
        Value::Null,
    );
    let status = nv.ok(&["setup", &b.path()], &cfg_b, &d);
    let ens5 = &status["pn"]["interfaces"]["ens5"];
    let b_ip = ens5["subnets"][0]["ipnet"]
        .as_str()
        .expect("ipnet")
        .to_string();
    let b_ip = b_ip.split('/').next().unwrap().to_string();
    assert!(b_ip.starts_with("10.89.7."), "{status}");
    assert!(b.exec(&["ip", "link", "show", "ens5"]).status.success());
    assert_eq!(d.endpoint("pn", "cb")["Interface"], "ens5");
    assert_eq!(d.endpoint("pn", "cb")["MacAddress"], ens5["mac_address"]);

    assert!(a.ping(&b_ip), "ca cannot ping cb at {b_ip}");
    assert!(b.ping("10.89.7.50"), "cb cannot ping ca");
    // Each resolves the other's alias at the gateway, the nameserver setup returned.
    assert!(
        dig(&b, "10.89.7.1", "web").resolves_to(&["10.89.7.50"]),
        "{}",
        dig(&b, "10.89.7.1", "web")
    );
    assert!(dig(&a, "10.89.7.1", "db").resolves_to(&[&b_ip]));

    // The published ports (the range: 18080 → 80 and 18081 → 81) answer from the world.
    let _srv80 = tcp_serve(&a, 80, "echo port80");
    let _srv81 = tcp_serve(&a, 81, "echo port81");
    for (port, want) in [(18080, "port80"), (18081, "port81")] {
        let r = run(
            &d.world,
            10,
            &format!("socat -T 3 - TCP:127.0.0.1:{port} </dev/null"),
        );
        assert_eq!(r.stdout().trim(), want, "{r}");
    }

    // teardown: the interface, the endpoint and its ports are gone; again is success.
    nv.ok(&["teardown", &a.path()], &cfg_a, &d);
    assert!(!a.exec(&["ip", "link", "show", "eth0"]).status.success());
    let eps = d.inspect("pn")["Containers"].clone();
    assert!(
        eps.as_object().unwrap().values().all(|e| e["Name"] != "ca"),
        "{eps}"
    );
    assert!(
        wait_until(5, || !listening(&d.world, "tcp", 18080)),
        "port 18080 still published"
    );
    nv.ok(&["teardown", &a.path()], &cfg_a, &d);
    // A container whose namespace is already gone tears down too.
    let b_path = b.path();
    drop(b);
    nv.ok(&["teardown", &b_path], &cfg_b, &d);
    assert_eq!(d.inspect("pn")["Containers"], json!({}));
}

#[test]
fn dual_stack_subnets_through_create_and_setup() {
    if !privileged("netavark_ipv6") {
        return;
    }
    let Some(exe) = netavark("netavark_ipv6") else {
        return;
    };
    let d = Daemon::start(&[]);
    let nv = Netavark::new(exe);
    let cfg = create_config(
        "p6",
        json!([{"subnet": "10.89.9.0/24"}, {"subnet": "fd00:89:9::/64"}]),
        &d.socket,
    );
    let net = nv.ok(&["create"], &cfg, &d);
    assert_eq!(net["ipv6_enabled"], true, "{net}");
    assert_eq!(net["subnets"][1]["gateway"], "fd00:89:9::1", "{net}");
    let c = Netns::new("c");
    let cfg_c = setup_config(
        &net,
        "c6",
        json!({"interface_name": "eth0", "static_ips": ["fd00:89:9::50"]}),
        Value::Null,
    );
    let status = nv.ok(&["setup", &c.path()], &cfg_c, &d);
    let eth0 = &status["p6"]["interfaces"]["eth0"];
    assert_eq!(eth0["subnets"][1]["ipnet"], "fd00:89:9::50/64", "{status}");
    assert_eq!(
        status["p6"]["dns_server_ips"],
        json!(["10.89.9.1", "fd00:89:9::1"])
    );
    assert!(c.ping("fd00:89:9::1"), "c6 cannot ping its IPv6 gateway");
    nv.ok(&["teardown", &c.path()], &cfg_c, &d);
    assert_eq!(d.inspect("p6")["Containers"], json!({}));
}

/// Runs the plugin directly; returns (exit code, stdout).
fn plugin(args: &[&str], input: &str) -> (Option<i32>, String) {
    let mut child = Command::new(bin("netavark-plugin-vswitch"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run plugin");
    let mut stdin = child.stdin.take().expect("stdin");
    // A verb that reads nothing may have exited already.
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    let out = child.wait_with_output().expect("plugin output");
    (out.status.code(), stdout(&out))
}

#[test]
fn bad_input_gets_one_line_of_error_json_and_exit_1() {
    let setup = include_str!("../src/netavark/fixtures/plugin-api-setup.json");
    let mut missing: Value = serde_json::from_str(setup).unwrap();
    missing["network"]["options"] = json!({"socket": "/nonexistent/vswitchd.sock"});
    let missing = missing.to_string();
    for (args, input, want) in [
        (&["create"][..], "{", "invalid network JSON on stdin"),
        (&["create"][..], "[]", "invalid network JSON on stdin"),
        (
            &["setup", "/run/netns/x"][..],
            "not json",
            "invalid setup JSON",
        ),
        (
            &["teardown", "/run/netns/x"][..],
            "{}",
            "invalid teardown JSON",
        ),
        (&["setup"][..], setup, "netns path argument is missing"),
        (&["frobnicate"][..], "", "unknown subcommand \"frobnicate\""),
        (
            &["setup", "/run/netns/x"][..],
            &missing,
            "daemon not running",
        ),
        (
            &["teardown", "/run/netns/x"][..],
            &missing,
            "daemon not running",
        ),
    ] {
        let (code, out) = plugin(args, input);
        assert_eq!(code, Some(1), "{args:?}: {out}");
        assert_eq!(out.trim_end().lines().count(), 1, "{args:?}: {out:?}");
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out:?}: {e}"));
        let msg = v["error"].as_str().unwrap_or_else(|| panic!("{v}"));
        assert!(msg.contains(want), "{args:?}: {msg}");
    }
    let (code, out) = plugin(&["info"], "");
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["api_version"], "1.0.0");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn netavark_reports_the_plugins_error() {
    if !privileged("netavark_errors") {
        return;
    }
    let Some(exe) = netavark("netavark_errors") else {
        return;
    };
    let d = Daemon::start(&[]);
    let nv = Netavark::new(exe);
    // A network vswitchd does not have: setup fails with our message, nothing is attached.
    let cfg = create_config(
        "ghost",
        json!([{"subnet": "10.89.10.0/24", "gateway": "10.89.10.1"}]),
        &d.socket,
    );
    let mut net = cfg["network"].clone();
    net["subnets"] = json!([{"subnet": "10.89.10.0/24", "gateway": "10.89.10.1"}]);
    let n = Netns::new("n");
    let out = nv.call(
        &["setup", &n.path()],
        &setup_config(&net, "cn", json!({"interface_name": "eth0"}), Value::Null),
    );
    fails_with(&out, "network ghost does not exist in vswitchd");
    assert!(!n.exec(&["ip", "link", "show", "eth0"]).status.success());
    // An option the plugin does not know fails the create.
    let mut bad = cfg.clone();
    bad["network"]["options"]["color"] = json!("red");
    fails_with(&nv.call(&["create"], &bad), "unknown option \"color\"");
    assert!(d.ctl(&["network", "inspect", "ghost"]).status.code() != Some(0));
}

#[test]
fn create_without_subnet_takes_a_pool_subnet_and_passes_the_options_on() {
    if !privileged("netavark_options") {
        return;
    }
    let Some(exe) = netavark("netavark_options") else {
        return;
    };
    let d = Daemon::start(&[]);
    let nv = Netavark::new(exe);
    let mut cfg = create_config("po", Value::Null, &d.socket);
    cfg["network"]["internal"] = json!(true);
    cfg["network"]["options"]["icc"] = json!("false");
    cfg["network"]["options"]["mtu"] = json!("9000");
    let net = nv.ok(&["create"], &cfg, &d);
    let inspect = d.inspect("po");
    let subnet = inspect["IPAM"]["Config"][0]["Subnet"].clone();
    assert_ne!(
        subnet, "172.17.0.0/16",
        "the pool's next subnet, not bridge's"
    );
    assert_eq!(net["subnets"][0]["subnet"], subnet, "{net}");
    assert_eq!(
        net["subnets"][0]["gateway"],
        inspect["IPAM"]["Config"][0]["Gateway"]
    );
    assert_eq!(net["internal"], true);
    assert_eq!(inspect["Internal"], true, "{inspect}");
    assert_eq!(
        inspect["Options"]["com.docker.network.bridge.enable_icc"],
        "false"
    );
    assert_eq!(inspect["Options"]["com.docker.network.driver.mtu"], "9000");
}
