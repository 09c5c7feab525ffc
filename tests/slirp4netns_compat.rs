//! The slirp4netns drop-in, seen the way its users see it: Debian's unmodified rootless podman
//! 4.3 and rootlesskit 1.1, run by the unprivileged user `vswitch-test`, with the binary under
//! test as their slirp4netns. A container gets tap0 10.0.2.100/24 via 10.0.2.2 at the MTU it
//! asked for, reaches servers in the world, resolves through 10.0.2.3, is reached through
//! published ports (podman's rootlessport and slirp4netns port handlers, rootlesskit's
//! slirp4netns and builtin port drivers), reaches the host's loopback at 10.0.2.2 only when
//! allowed, and its slirp4netns ends with the container.
//!
//! The binary under test is `$VSWITCH_SLIRP4NETNS` if set, else vswitchd (which acts as
//! slirp4netns under that name). `VSWITCH_SLIRP4NETNS=/usr/bin/slirp4netns cargo test --test
//! slirp4netns_compat` runs the same assertions against the real slirp4netns 1.2.
//!
//! Everything runs inside a world namespace the test builds (`tests/common/slirp.rs`): the
//! "host" of slirp4netns is that world, its DNS is a dnsmasq the test runs, and no address
//! outside the test's namespaces is used.

mod common;

use common::slirp::*;
use common::world::*;
use common::*;
use std::process::Output;

/// Port of the SERVERS test server (answers the peer address it saw).
const SRV_PORT: u16 = 8080;
/// Port of the server on the world's 127.0.0.1.
const LO_PORT: u16 = 7001;
/// Host port published to the container's port 80 (podman) or 8080 (rootlesskit).
const PUB_PORT: u16 = 18080;

fn out_text(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

/// What the container sees of its network: addresses, routes and the MTU of tap0.
fn tap0_report(p: &Podman, name: &str) -> String {
    let o = p.exec_sh(
        name,
        "ip -4 addr show tap0; ip route; echo mtu=$(cat /sys/class/net/tap0/mtu)",
    );
    assert!(o.status.success(), "podman exec failed: {}", out_text(&o));
    stdout(&o)
}

fn assert_slirp_config(report: &str, mtu: u32) {
    assert!(
        report.contains(&format!("inet {GUEST_IP}/24")),
        "tap0 has no {GUEST_IP}/24:\n{report}"
    );
    assert!(
        report.contains(&format!("default via {SLIRP_GW} dev tap0")),
        "no default route via {SLIRP_GW}:\n{report}"
    );
    assert!(
        report.contains(&format!("mtu={mtu}\n")),
        "tap0's MTU is not {mtu}:\n{report}"
    );
}

/// The one slirp4netns podman started for a container is the binary under test.
fn assert_one_slirp(w: &SlirpWorld) {
    let pids = w.slirp_pids();
    assert_eq!(
        pids.len(),
        1,
        "expected exactly one process of the binary under test ({}), found {:?}",
        w.slirp.display(),
        w.slirp_cmdlines()
    );
}

#[test]
fn podman_default_slirp4netns_network_with_rootlessport() {
    if !ready("podman_default_slirp4netns_network_with_rootlessport") {
        return;
    }
    let p = Podman::start(&[]);
    let _srv = p.server_peer(SRV_PORT);
    p.start_server("web", "slirp4netns", &["-p", &format!("{PUB_PORT}:80")]);
    assert_one_slirp(&p);

    // tap0 as slirp4netns -c configures it, at podman's default MTU.
    assert_slirp_config(&tap0_report(&p, "web"), 65520);

    // Outbound: a server in the world sees the connection come from the world's address.
    let o = p.exec_sh("web", &format!("nc -w 5 {SERVER_IP} {SRV_PORT} </dev/null"));
    assert!(
        stdout(&o).starts_with(&format!("{WORLD_IP} ")),
        "container -> {SERVER_IP}:{SRV_PORT} failed: {}",
        out_text(&o)
    );

    // DNS through slirp's resolver 10.0.2.3, which asks the world's resolver.
    let o = p.exec_sh("web", &format!("nslookup -type=a {WORLD_NAME} {SLIRP_DNS}"));
    assert!(
        stdout(&o).contains(WORLD_NAME_ADDR),
        "{WORLD_NAME} did not resolve through {SLIRP_DNS}: {}",
        out_text(&o)
    );

    // Inbound through rootlessport: a client elsewhere in the world reaches the container.
    let peer = p.peer_from_servers(WORLD_IP, PUB_PORT);
    assert!(
        !peer.is_empty(),
        "-p {PUB_PORT}:80 not reachable from SERVERS"
    );

    // podman stop ends the slirp4netns process, and rm leaves nothing behind.
    let o = p.podman(&["stop", "--time", "1", "web"]);
    assert!(o.status.success(), "podman stop: {}", out_text(&o));
    assert!(
        wait_until(10, || p.slirp_pids().is_empty()),
        "slirp4netns still running after podman stop: {:?}",
        p.slirp_cmdlines()
    );
    let o = p.podman(&["rm", "web"]);
    assert!(o.status.success(), "podman rm: {}", out_text(&o));
    assert!(p.slirp_pids().is_empty());
    assert!(
        p.peer_from_servers(WORLD_IP, PUB_PORT).is_empty(),
        "the published port still answers after podman rm"
    );
}

#[test]
fn podman_port_handler_slirp4netns_keeps_the_client_address() {
    if !ready("podman_port_handler_slirp4netns_keeps_the_client_address") {
        return;
    }
    let p = Podman::start(&[]);
    let _srv = p.server_peer(SRV_PORT);
    let net = "slirp4netns:port_handler=slirp4netns,mtu=1500";
    p.start_server("web", net, &["-p", &format!("{PUB_PORT}:80")]);
    assert_one_slirp(&p);
    assert_slirp_config(&tap0_report(&p, "web"), 1500);

    // A client elsewhere in the world is seen with its own address (the API-socket hostfwd
    // preserves it; that is why users choose this handler) ...
    let peer = p.peer_from_servers(WORLD_IP, PUB_PORT);
    assert_eq!(
        peer, SERVER_IP,
        "client from {SERVER_IP} through -p {PUB_PORT}:80 (empty: not reachable)"
    );
    // ... and a client on the host's loopback appears as the gateway, as slirp4netns shows it.
    let peer = p.peer_from_world("127.0.0.1", PUB_PORT);
    assert_eq!(
        peer, SLIRP_GW,
        "client from 127.0.0.1 through -p {PUB_PORT}:80 (empty: not reachable)"
    );

    // Outbound still works at MTU 1500, with more than one segment of data.
    let o = p.exec_sh(
        "web",
        &format!("nc -w 5 {SERVER_IP} {SRV_PORT} </dev/null && head -c 200000 /dev/zero | nc -w 5 {SERVER_IP} {SRV_PORT} >/dev/null"),
    );
    assert!(
        stdout(&o).starts_with(&format!("{WORLD_IP} ")),
        "container -> {SERVER_IP}:{SRV_PORT} at MTU 1500 failed: {}",
        out_text(&o)
    );

    let o = p.podman(&["rm", "--force", "--time", "0", "web"]);
    assert!(o.status.success(), "podman rm -f: {}", out_text(&o));
    assert!(
        wait_until(10, || p.slirp_pids().is_empty()),
        "slirp4netns still running after podman rm -f: {:?}",
        p.slirp_cmdlines()
    );
    assert!(
        p.peer_from_servers(WORLD_IP, PUB_PORT).is_empty(),
        "the published port still answers after podman rm"
    );
}

#[test]
fn podman_host_loopback_only_with_allow_host_loopback() {
    if !ready("podman_host_loopback_only_with_allow_host_loopback") {
        return;
    }
    let p = Podman::start(&[]);
    let _srv = p.server_peer(SRV_PORT);
    let _lo = p.loopback_server(LO_PORT, "host-loopback-reached");
    let probe = format!(
        "nc -w 5 {SERVER_IP} {SRV_PORT} </dev/null; echo; nc -w 3 {SLIRP_GW} {LO_PORT} </dev/null; true"
    );

    let o = p.run_sh("slirp4netns:allow_host_loopback=true", &[], &probe);
    let seen = out_text(&o);
    assert!(
        seen.contains("host-loopback-reached"),
        "allow_host_loopback=true: {SLIRP_GW}:{LO_PORT} did not reach the host's 127.0.0.1: {seen}"
    );

    // podman's default (allow_host_loopback=false): the world is reached, its loopback not.
    let o = p.run_sh("slirp4netns", &[], &probe);
    let seen = out_text(&o);
    assert!(
        seen.contains(&format!("{WORLD_IP} ")),
        "default: the container has no outbound network at all: {seen}"
    );
    assert!(
        !seen.contains("host-loopback-reached"),
        "default (allow_host_loopback=false) reached the host's 127.0.0.1: {seen}"
    );
    assert!(
        wait_until(10, || p.slirp_pids().is_empty()),
        "slirp4netns left behind by podman run --rm: {:?}",
        p.slirp_cmdlines()
    );
    drop((_lo, _srv, p));

    // The same option as a default in containers.conf (`network_cmd_options`, as README.md
    // shows it) applies to a plain `--network slirp4netns`.
    let p = Podman::start(&["allow_host_loopback=true"]);
    let _lo = p.loopback_server(LO_PORT, "host-loopback-reached");
    let o = p.run_sh("slirp4netns", &[], &probe);
    let seen = out_text(&o);
    assert!(
        seen.contains("host-loopback-reached"),
        "network_cmd_options = [\"allow_host_loopback=true\"] did not reach the host's 127.0.0.1: {seen}"
    );
}

/// podman passes `--enable-ipv6` by default; real slirp4netns then advertises fd00::/64 and
/// the container takes a SLAAC address. `VSWITCH_SLIRP4NETNS_NO_IPV6=1` checks only that the
/// flag is accepted and IPv4 works (for a binary that does not serve IPv6 yet), loudly.
#[test]
fn podman_enable_ipv6_gives_a_slaac_address() {
    if !ready("podman_enable_ipv6_gives_a_slaac_address") {
        return;
    }
    let want_v6 = std::env::var("VSWITCH_SLIRP4NETNS_NO_IPV6").as_deref() != Ok("1");
    let p = Podman::start(&[]);
    let _srv = p.server_peer(SRV_PORT);
    let o = p.run_sh(
        "slirp4netns:enable_ipv6=true",
        &[],
        &format!(
            "nc -w 5 {SERVER_IP} {SRV_PORT} </dev/null; \
             for i in $(seq 50); do ip -6 addr show tap0 scope global | grep -q 'inet6 fd00::' && break; sleep 0.2; done; \
             ip -6 addr show tap0 scope global; ip -6 route show default; ping -6 -c 1 -W 3 fd00::2 >/dev/null && echo gw6-answers"
        ),
    );
    let seen = out_text(&o);
    assert!(
        seen.starts_with(&format!("{WORLD_IP} ")),
        "with --enable-ipv6, IPv4 outbound failed: {seen}"
    );
    if !want_v6 {
        eprintln!(
            "\n*** podman_enable_ipv6_gives_a_slaac_address: IPv6 NOT CHECKED \
             (VSWITCH_SLIRP4NETNS_NO_IPV6=1) ***\n"
        );
        return;
    }
    assert!(
        seen.contains("inet6 fd00::") && seen.contains("/64 scope global"),
        "no SLAAC address in fd00::/64 on tap0: {seen}"
    );
    assert!(
        seen.contains("default via fe80::"),
        "no IPv6 default route from the router advertisement: {seen}"
    );
    assert!(
        seen.contains("gw6-answers"),
        "fd00::2 does not answer ping: {seen}"
    );
}

/// rootlessctl's answer to add-ports starts with the port's id.
fn port_id(out: &Output) -> String {
    stdout(out)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A server in the rootlesskit child on 8080 answering the client address it saw.
fn child_server(rk: &RootlessKit) -> Bg {
    let bg = rk.spawn(&[
        "socat",
        "TCP-LISTEN:8080,reuseaddr,fork",
        "SYSTEM:echo $SOCAT_PEERADDR",
    ]);
    wait_for("a server in the rootlesskit child", || {
        !stdout(&rk.exec(&["ss", "-Hltn", "sport = :8080"]))
            .trim()
            .is_empty()
    });
    bg
}

#[test]
fn rootlesskit_slirp4netns_port_driver() {
    if !ready("rootlesskit_slirp4netns_port_driver") {
        return;
    }
    let rk = RootlessKit::start(&["--port-driver=slirp4netns"]);
    assert_one_slirp(&rk);
    let link = stdout(&rk.exec(&["ip", "addr", "show", "tap0"]));
    assert!(
        link.contains("mtu 65520") && link.contains(&format!("inet {GUEST_IP}/24")),
        "rootlesskit's tap0: {link}"
    );

    // Outbound, DNS, and the host's loopback (not disabled here) at 10.0.2.2.
    let _srv = rk.server_peer(SRV_PORT);
    let _lo = rk.loopback_server(LO_PORT, "host-loopback-reached");
    let got = rk.sh(&format!(
        "busybox nc -w 5 {SERVER_IP} {SRV_PORT} </dev/null"
    ));
    assert!(
        got.starts_with(&format!("{WORLD_IP} ")),
        "child -> {SERVER_IP}:{SRV_PORT}: {got:?}\n{}",
        rk.log()
    );
    let got = rk.sh(&format!(
        "busybox nslookup -type=a {WORLD_NAME} {SLIRP_DNS}"
    ));
    assert!(
        got.contains(WORLD_NAME_ADDR),
        "DNS via {SLIRP_DNS}: {got:?}"
    );
    let got = rk.sh(&format!("busybox nc -w 3 {SLIRP_GW} {LO_PORT} </dev/null"));
    assert_eq!(got, "host-loopback-reached", "host loopback at {SLIRP_GW}");

    // Inbound through the slirp4netns API socket, with the client's address kept.
    let _child_srv = child_server(&rk);
    let spec = format!("0.0.0.0:{PUB_PORT}:8080/tcp");
    let o = rk.ctl(&["add-ports", &spec]);
    assert!(o.status.success(), "add-ports {spec}: {}", out_text(&o));
    let id = port_id(&o);
    assert_eq!(
        rk.fetch_from_servers(WORLD_IP, PUB_PORT),
        SERVER_IP,
        "SERVERS -> {WORLD_IP}:{PUB_PORT} -> child:8080 (empty: not reachable)"
    );
    // Removing it closes the port.
    let o = rk.ctl(&["remove-ports", &id]);
    assert!(o.status.success(), "remove-ports {id}: {}", out_text(&o));
    assert_eq!(
        rk.fetch_from_servers(WORLD_IP, PUB_PORT),
        "",
        "the port still answers after remove-ports"
    );
}

#[test]
fn rootlesskit_builtin_port_driver_with_disable_host_loopback() {
    if !ready("rootlesskit_builtin_port_driver_with_disable_host_loopback") {
        return;
    }
    let rk = RootlessKit::start(&[
        "--port-driver=builtin",
        "--disable-host-loopback",
        "--mtu=1500",
    ]);
    assert_one_slirp(&rk);
    let link = stdout(&rk.exec(&["ip", "addr", "show", "tap0"]));
    assert!(link.contains("mtu 1500"), "rootlesskit's tap0: {link}");

    let _srv = rk.server_peer(SRV_PORT);
    let _lo = rk.loopback_server(LO_PORT, "host-loopback-reached");
    let got = rk.sh(&format!(
        "busybox nc -w 5 {SERVER_IP} {SRV_PORT} </dev/null"
    ));
    assert!(
        got.starts_with(&format!("{WORLD_IP} ")),
        "child -> {SERVER_IP}:{SRV_PORT}: {got:?}\n{}",
        rk.log()
    );
    let got = rk.sh(&format!(
        "busybox nc -w 3 {SLIRP_GW} {LO_PORT} </dev/null; true"
    ));
    assert!(
        !got.contains("host-loopback-reached"),
        "--disable-host-loopback still reached the host's 127.0.0.1"
    );

    let _child_srv = child_server(&rk);
    let spec = format!("0.0.0.0:{PUB_PORT}:8080/tcp");
    let o = rk.ctl(&["add-ports", &spec]);
    assert!(o.status.success(), "add-ports {spec}: {}", out_text(&o));
    assert!(
        !rk.fetch_from_servers(WORLD_IP, PUB_PORT).is_empty(),
        "SERVERS -> {WORLD_IP}:{PUB_PORT} -> child:8080 not reachable"
    );
}
