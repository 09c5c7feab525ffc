//! `vswitchctl run`: a command in a fresh namespace, attached for as long as it runs.

mod common;

use common::*;

#[test]
fn run_attaches_the_command_and_returns_its_status() {
    if !privileged("run_attaches_the_command_and_returns_its_status") {
        return;
    }
    let d = Daemon::start(&[
        "--network",
        "net1=10.98.1.0/24",
        "--network",
        "net2=10.98.2.0/24",
    ]);
    let peer = Netns::new("peer");
    let ip_peer = d.connect("net1", &peer, "peer");

    let out = d.ctl(&[
        "run",
        "--network",
        "net1",
        "--network",
        "net2",
        "--name",
        "job",
        "--",
        "sh",
        "-c",
        &format!(
            "ip -br addr show eth0; ip -br addr show eth1; ping -c 1 -W 2 {ip_peer} >/dev/null && \
             ping -c 1 -W 2 10.98.2.1 >/dev/null && exit 3"
        ),
    ]);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(3),
        "status passed through: {text}{}",
        stderr(&out)
    );
    assert!(
        text.contains("10.98.1.3/24") && text.contains("10.98.2.2/24"),
        "{text}"
    );
    // Detached afterwards: no endpoint left, addresses free.
    assert_eq!(
        d.inspect("net1")["Containers"].as_object().unwrap().len(),
        1
    );
    assert_eq!(
        d.inspect("net2")["Containers"].as_object().unwrap().len(),
        0
    );

    // stdin/stdout pass through.
    let out = std::process::Command::new(bin("vswitchctl"))
        .args([
            "--socket",
            d.socket.to_str().unwrap(),
            "run",
            "--network",
            "net1",
            "--",
            "cat",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"through\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(stdout(&out), "through\n");

    // Failures: unknown command → 127; unknown network → 125 and nothing left behind.
    assert_eq!(
        d.ctl(&["run", "--network", "net1", "--", "/nonexistent/cmd"])
            .status
            .code(),
        Some(127)
    );
    let out = d.ctl(&[
        "run",
        "--network",
        "net1",
        "--network",
        "nope",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("network nope not found"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        d.inspect("net1")["Containers"].as_object().unwrap().len(),
        1,
        "rolled back"
    );
}
