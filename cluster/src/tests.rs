use crate::*;

fn net() -> NetworkRecord {
    NetworkRecord {
        id: "0".repeat(64),
        subnet: "10.80.0.0/29".parse().unwrap(),
        gateway: "10.80.0.1".parse().unwrap(),
        ip_range: None,
        vni: FIRST_VNI,
        internal: false,
        icc: true,
        created: String::new(),
    }
}

#[test]
fn candidates_skip_the_gateway_network_and_broadcast() {
    let got: Vec<String> = candidates(&net()).map(|i| i.to_string()).collect();
    assert_eq!(
        got,
        [
            "10.80.0.2",
            "10.80.0.3",
            "10.80.0.4",
            "10.80.0.5",
            "10.80.0.6"
        ]
    );
}

#[test]
fn store_urls() {
    let u = StoreUrl::parse("etcd://198.51.100.2:2379,etcd1:2380").unwrap();
    assert_eq!(
        u.endpoints,
        ["http://198.51.100.2:2379", "http://etcd1:2380"]
    );
    for bad in [
        "consul://x:1",
        "etcd://",
        "etcd://x",
        "etcd://x:0",
        "etcd://x:99999",
        "etcd://a b:1",
    ] {
        assert!(StoreUrl::parse(bad).is_err(), "{bad} accepted");
    }
}

#[test]
fn views_skip_malformed_keys_and_values() {
    let host = br#"{"Advertise":"198.51.100.11","VxlanPort":4789}"#;
    let ep = br#"{"Host":"h1","Name":"c1","Mac":"02:42:0a:50:00:02","Ipv4":"10.80.0.2"}"#;
    let kvs: Vec<(&[u8], &[u8])> = vec![
        (b"/vswitch/v1/hosts/h1", host),
        (b"/vswitch/v1/hosts/h2", b"{not json"),
        (b"/vswitch/v1/endpoints/n/e1", ep),
        (b"/vswitch/v1/endpoints/n", ep),
        (b"/vswitch/v1/endpoints/n/e1/extra", ep),
        (b"\xff\xfe", ep),
        (b"/other/hosts/h3", host),
    ];
    let v = ClusterView::from_kvs(7, kvs);
    assert_eq!(v.hosts.len(), 1);
    assert_eq!(v.hosts["h1"].vtep().to_string(), "198.51.100.11:4789");
    assert_eq!(v.endpoints["n"].len(), 1);
    assert_eq!(v.endpoints["n"]["e1"].name, "c1");
}

#[test]
fn vnis_start_at_4096_and_fill_gaps() {
    let mut used = std::collections::BTreeSet::new();
    assert_eq!(free_vni(&used), Some(4096));
    used.extend([4096, 4097, 4099]);
    assert_eq!(free_vni(&used), Some(4098));
}
