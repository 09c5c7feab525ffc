//! Runs two overlay hosts in existing namespaces until stdin closes (for
//! `scripts/bench-overlay.sh`): `vxlan_pair HOST_A HOST_B CONTAINER_A CONTAINER_B`. The hosts
//! are wired with a veth at MTU 1500 (198.51.100.1/.2), the containers get 10.77.0.2 and .3.
//! Prints `ready` when both data paths are up, then runs until killed.

#[path = "support/overlay_pair.rs"]
mod overlay_pair;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [ha, hb, ca, cb] = args.as_slice() else {
        eprintln!("usage: vxlan_pair HOST_A HOST_B CONTAINER_A CONTAINER_B");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    overlay_pair::wire_hosts(ha, hb, 1500);
    let (a, b) = overlay_pair::sides(ha, hb, ca, cb);
    let _host_a = overlay_pair::start_host(&rt, &a, &b, true, 1500);
    let _host_b = overlay_pair::start_host(&rt, &b, &a, true, 1500);
    println!("ready");
    loop {
        std::thread::park();
    }
}
