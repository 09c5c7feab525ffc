//! kill -9 at any moment of attach/detach churn loses no lease and never gives one address
//! twice: the daemon is killed at random points while two clients attach and detach
//! containers, restarted on the same state, and checked against what the clients were told.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;

/// xorshift64*: enough randomness for kill points, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What a client was told about a container.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Told {
    /// `connect` succeeded (at this address) and no `disconnect` since.
    Attached,
    /// `disconnect` succeeded, or never attached.
    Detached,
    /// The request was cut off by the kill: either outcome is fine.
    Unknown,
}

/// Endpoint name → IPv4 address, from `network inspect`.
fn endpoints(d: &Daemon) -> BTreeMap<String, String> {
    d.inspect("n")["Containers"]
        .as_object()
        .expect("Containers")
        .values()
        .map(|e| {
            let ip = e["IPv4Address"]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap();
            (e["Name"].as_str().unwrap().to_string(), ip.to_string())
        })
        .collect()
}

/// One client: attaches and detaches its own containers until the daemon dies.
fn churn(
    d_socket: std::path::PathBuf,
    names: Vec<(String, String)>,
    mut told: HashMap<String, Told>,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> (HashMap<String, Told>, usize) {
    let mut rng = Rng(seed | 1);
    let mut done = 0;
    while !stop.load(Ordering::SeqCst) {
        let (name, path) = &names[rng.below(names.len() as u64) as usize];
        let attached = told[name] == Told::Attached;
        let args: Vec<&str> = if attached {
            vec!["network", "disconnect", "n", name]
        } else {
            vec!["network", "connect", "n", path, "--name", name]
        };
        let out = std::process::Command::new(bin("vswitchctl"))
            .arg("--socket")
            .arg(&d_socket)
            .args(&args)
            .output()
            .expect("vswitchctl");
        let now = match out.status.code() {
            Some(0) if attached => Told::Detached,
            Some(0) => Told::Attached,
            // The daemon died under the request (or before it): the outcome is unknown,
            // and this client stops.
            _ if stop.load(Ordering::SeqCst) || out.status.code() == Some(3) => {
                told.insert(name.clone(), Told::Unknown);
                break;
            }
            _ => panic!("{args:?} refused: {}", stderr(&out)),
        };
        told.insert(name.clone(), now);
        done += 1;
    }
    (told, done)
}

#[test]
fn kill_9_during_attach_churn_loses_no_lease_and_never_gives_an_address_twice() {
    if !privileged("kill_9_during_attach_churn_loses_no_lease_and_never_gives_an_address_twice") {
        return;
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill -9 churn seed {seed}");
    let mut rng = Rng(seed | 1);
    let mut d = Daemon::start(&["--network", "n=10.98.1.0/24"]);
    let containers: Vec<Netns> = (0..6).map(|i| Netns::new(&format!("k{i}"))).collect();
    let names: Vec<(String, String)> = containers
        .iter()
        .enumerate()
        .map(|(i, ns)| (format!("k{i}"), ns.path()))
        .collect();
    let mut told: HashMap<String, Told> = names
        .iter()
        .map(|(n, _)| (n.clone(), Told::Detached))
        .collect();

    let rounds = 20;
    let (mut ops, mut cut) = (0, 0);
    for round in 0..rounds {
        // Check what survived the last kill against what the clients were told.
        let now = endpoints(&d);
        for (name, t) in &told {
            match t {
                Told::Attached => assert!(
                    now.contains_key(name),
                    "round {round}: {name} was attached but is gone after kill -9: {now:?}\n{}",
                    d.log()
                ),
                Told::Detached => assert!(
                    !now.contains_key(name),
                    "round {round}: {name} was detached but is back: {now:?}"
                ),
                Told::Unknown => {}
            }
        }
        let mut seen = HashMap::new();
        for (name, ip) in &now {
            if let Some(other) = seen.insert(ip.clone(), name.clone()) {
                panic!("round {round}: {name} and {other} share {ip}");
            }
        }
        for (name, _) in &names {
            let state = if now.contains_key(name) {
                Told::Attached
            } else {
                Told::Detached
            };
            told.insert(name.clone(), state);
        }
        // A new attach never gets an address that is already leased.
        if let Some(i) = names.iter().position(|(n, _)| !now.contains_key(n)) {
            let name = &names[i].0;
            let ip = d.connect("n", &containers[i], name);
            assert!(
                !now.values().any(|v| *v == ip),
                "round {round}: {name} got {ip}, already leased: {now:?}"
            );
            told.insert(name.clone(), Told::Attached);
        }
        let leftovers: Vec<String> = std::fs::read_dir(&d.state_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp."))
            .collect();
        assert!(
            leftovers.is_empty(),
            "round {round}: temp files of cut-short saves: {leftovers:?}"
        );
        if round + 1 == rounds {
            break;
        }
        eprintln!("round {round}: {} attached", now.len());

        // Two clients churn over disjoint containers; the daemon is killed at a random point.
        let stop = Arc::new(AtomicBool::new(false));
        let halves = [names[..3].to_vec(), names[3..].to_vec()];
        let clients: Vec<_> = halves
            .into_iter()
            .map(|half| {
                let mine = half.iter().map(|(n, _)| (n.clone(), told[n])).collect();
                let (socket, stop, seed) = (d.socket.clone(), stop.clone(), rng.next());
                std::thread::spawn(move || churn(socket, half, mine, seed, stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20 + rng.below(400)));
        stop.store(true, Ordering::SeqCst);
        d.crash();
        for c in clients {
            let (mine, done) = c.join().expect("client thread");
            ops += done;
            cut += mine.values().filter(|t| **t == Told::Unknown).count();
            told.extend(mine);
        }
        d.restart();
    }
    eprintln!("{ops} attaches/detaches acknowledged, {cut} cut off by kill -9");
    assert!(
        ops >= 2 * rounds,
        "the clients hardly churned: {ops} operations"
    );
}
