use super::*;

fn serve(args: &[&str]) -> Plan {
    match parse(args.iter().copied()) {
        Ok(Invocation::Serve(p)) => *p,
        other => panic!("{args:?}: {other:?}"),
    }
}

fn refused(args: &[&str]) -> String {
    match parse(args.iter().copied()) {
        Err(e) => e,
        Ok(other) => panic!("{args:?} accepted: {other:?}"),
    }
}

#[test]
fn podmans_command_line_is_understood() {
    // containers/common's createBasicSlirpCmdArgs + Setup, fds 1 and 2 standing in for 3 and 4.
    let p = serve(&[
        "--disable-host-loopback",
        "--mtu=65520",
        "--enable-sandbox",
        "--enable-seccomp",
        "--enable-ipv6",
        "-c",
        "-r",
        "1",
        "-e",
        "2",
        "--api-socket",
        "/tmp/x.net",
        "--netns-type=path",
        "/run/user/1000/netns/netns-1",
        "tap0",
    ]);
    assert_eq!(p.netns, PathBuf::from("/run/user/1000/netns/netns-1"));
    assert_eq!(p.userns, None);
    assert_eq!(p.tapname, "tap0");
    assert!(p.configure && p.ipv6 && p.sandbox && p.seccomp && !p.host_loopback);
    assert_eq!((p.ready_fd, p.exit_fd), (Some(1), Some(2)));
    assert_eq!(p.mtu, 65520);
    assert_eq!(p.api_socket, Some(PathBuf::from("/tmp/x.net")));
    assert_eq!(p.guest(), Ipv4Addr::new(10, 0, 2, 100));
    assert_eq!(p.gateway(), Ipv4Addr::new(10, 0, 2, 2));
    assert_eq!(p.dns_ip(), Ipv4Addr::new(10, 0, 2, 3));
}

#[test]
fn rootlesskits_command_line_is_understood() {
    let p = serve(&[
        "--mtu",
        "1500",
        "-r",
        "1",
        "--cidr",
        "10.0.3.0/24",
        "--api-socket",
        "/tmp/s",
        "4242",
        "tap0",
    ]);
    assert_eq!(p.netns, PathBuf::from("/proc/4242/ns/net"));
    assert_eq!(p.userns, Some(PathBuf::from("/proc/4242/ns/user")));
    assert!(!p.configure && p.host_loopback && p.dns);
    assert_eq!(p.mtu, 1500);
    assert_eq!(p.gateway(), Ipv4Addr::new(10, 0, 3, 2));
}

#[test]
fn getopt_forms_attached_bundled_and_permuted_are_accepted() {
    let p = serve(&[
        "-r1",
        "4242",
        "-c6",
        "--no-host-loopback",
        "mytap",
        "-m",
        "9000",
    ]);
    assert_eq!(p.ready_fd, Some(1));
    assert!(p.configure && p.ipv6 && !p.host_loopback);
    assert_eq!(p.tapname, "mytap");
    assert_eq!(p.mtu, 9000);
}

#[test]
fn defaults_are_slirps_network_with_the_issues_mtu() {
    let p = serve(&["1"]);
    assert_eq!(p.cidr.to_string(), "10.0.2.0/24");
    assert_eq!(p.mtu, 65520);
    assert_eq!(p.tapname, "tap0");
    assert!(p.host_loopback && p.dns && !p.ipv6 && p.api_socket.is_none());
}

#[test]
fn help_and_version_win_over_everything_else() {
    assert!(matches!(parse(["--help"]), Ok(Invocation::Help)));
    assert!(matches!(parse(["-h", "1"]), Ok(Invocation::Help)));
    assert!(matches!(parse(["--version"]), Ok(Invocation::Version)));
    assert!(VERSION.starts_with("slirp4netns version "));
    for probed in [
        "--netns-type",
        "--disable-host-loopback",
        "--mtu",
        "--enable-sandbox",
        "--enable-seccomp",
        "--cidr",
        "--outbound-addr",
        "--enable-ipv6",
        "--api-socket",
    ] {
        assert!(USAGE.contains(probed), "--help lacks {probed}");
    }
}

#[test]
fn bad_inputs_get_one_line_naming_them() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "missing PID|PATH"),
        (&["abc"], "PID must be a positive integer"),
        (&["0"], "PID must be a positive integer"),
        (&["1", "tap0", "x"], "too many arguments: x"),
        (&["--cidr=10.0.2.0/26", "1"], "prefix length must be 1..25"),
        (&["--cidr=10.0.2.5/24", "1"], "did you mean 10.0.2.0/24"),
        (&["--cidr=fd00::/64", "1"], "invalid CIDR"),
        (&["--mtu=0", "1"], "MTU must be between 68 and 65520"),
        (&["--mtu=65536", "1"], "MTU must be between 68 and 65520"),
        (
            &["-6", "--mtu=1200", "1"],
            "at least 1280 with --enable-ipv6",
        ),
        (
            &["--macaddress=02:00:00:00:00:01", "1"],
            "only be used with -c",
        ),
        (&["-c", "--macaddress=zz", "1"], "invalid MAC address"),
        (&["-c", "--macaddress=01:00:00:00:00:01", "1"], "multicast"),
        (&["--netns-type=tapfd", "3"], "tapfd is not supported"),
        (&["--netns-type=foo", "3"], "unknown netns type: foo"),
        (&["--target-type=bess", "1"], "bess is not supported"),
        (
            &["-r", "999", "1"],
            "ready-fd 999 is not an open file descriptor",
        ),
        (&["-e", "-1", "1"], "exit-fd must be a non-negative integer"),
        (
            &["--userns-path=/nonexistent/user", "1"],
            "userns path doesn't exist",
        ),
        (&["1", "a/b"], "invalid TAPNAME"),
        (&["--outbound-addr6=::1", "1"], "needs --enable-ipv6"),
        (
            &["--outbound-addr=nosuchif0", "1"],
            "neither an IP address nor an interface",
        ),
        (&["--bogus", "1"], "--bogus"),
    ];
    for (args, want) in cases {
        let e = refused(args);
        assert!(e.contains(want), "{args:?}: {e:?} lacks {want:?}");
        assert!(!e.contains('\n'), "{args:?}: {e:?} is more than one line");
    }
    let long = format!("--api-socket=/tmp/{}", "x".repeat(120));
    assert!(refused(&[&long, "1"]).contains("too long"));
}

#[test]
fn outbound_addresses_take_an_interface_name() {
    let p = serve(&["--outbound-addr=lo", "-6", "--outbound-addr6=::1", "1"]);
    assert_eq!(p.outbound4, Some(Ipv4Addr::LOCALHOST));
    assert_eq!(p.outbound6, Some(Ipv6Addr::LOCALHOST));
}
