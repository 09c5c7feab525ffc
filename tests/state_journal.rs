//! Attaches and detaches are journaled beside `state.json`: a daemon killed after many of
//! them comes back with every one, a record torn by the crash is ignored, and a journal that
//! is not one the daemon wrote stops the start with one line and leaves the state alone.

mod common;

use std::collections::BTreeMap;

use common::*;

/// Endpoint name → (address, status), from `network inspect`.
fn endpoints(d: &Daemon, network: &str) -> BTreeMap<String, (String, String)> {
    d.inspect(network)["Containers"]
        .as_object()
        .expect("Containers")
        .values()
        .map(|e| {
            (
                e["Name"].as_str().unwrap().to_string(),
                (
                    e["IPv4Address"].as_str().unwrap().to_string(),
                    e["Status"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

fn journal(d: &Daemon) -> std::path::PathBuf {
    d.state_dir.join("state.journal")
}

fn records(d: &Daemon) -> usize {
    std::fs::read_to_string(journal(d))
        .unwrap()
        .lines()
        .count()
        .saturating_sub(1)
}

#[test]
fn a_crash_after_many_attaches_and_detaches_loses_none_of_them() {
    if !privileged("a_crash_after_many_attaches_and_detaches_loses_none_of_them") {
        return;
    }
    let mut d = Daemon::start(&["--network", "j=10.93.0.0/22"]);
    let cs: Vec<Netns> = (0..40).map(|i| Netns::new(&format!("j{i}"))).collect();
    for (i, c) in cs.iter().enumerate() {
        d.connect("j", c, &format!("c{i}"));
    }
    for i in (0..40).step_by(4) {
        d.ctl_ok(&["network", "disconnect", "j", &format!("c{i}")]);
    }
    let before = endpoints(&d, "j");
    assert_eq!(before.len(), 30);
    let snapshot = std::fs::read(d.state_dir.join("state.json")).unwrap();
    assert_eq!(records(&d), 50, "one journal record per attach and detach");

    d.crash();
    d.restart();
    assert_eq!(endpoints(&d, "j"), before, "the journal was replayed");
    assert_ne!(
        std::fs::read(d.state_dir.join("state.json")).unwrap(),
        snapshot,
        "the start folded the journal into a new snapshot"
    );
    assert_eq!(records(&d), 0);
    let last = before["c39"].0.split('/').next().unwrap().to_string();
    assert!(
        cs[1].ping(&last),
        "traffic flows between replayed endpoints"
    );
    // Freed addresses stay free, taken ones stay taken.
    let n = Netns::new("jn");
    let ip = d.connect("j", &n, "new");
    assert_eq!(ip, "10.93.0.2", "c0's address was freed by its detach");
    assert!(
        before
            .values()
            .all(|(a, _)| !a.starts_with(&format!("{ip}/")))
    );
}

#[test]
fn a_record_torn_by_a_crash_is_ignored_and_the_journal_goes_on() {
    if !privileged("a_record_torn_by_a_crash_is_ignored_and_the_journal_goes_on") {
        return;
    }
    let mut d = Daemon::start(&["--network", "t=10.93.4.0/24"]);
    let cs: Vec<Netns> = (0..5).map(|i| Netns::new(&format!("t{i}"))).collect();
    for (i, c) in cs.iter().take(4).enumerate() {
        d.connect("t", c, &format!("c{i}"));
    }
    d.crash();
    // A crash in the middle of writing the fourth record.
    let text = std::fs::read(journal(&d)).unwrap();
    std::fs::write(journal(&d), &text[..text.len() - 40]).unwrap();
    d.restart();
    let eps = endpoints(&d, "t");
    assert_eq!(
        eps.keys().collect::<Vec<_>>(),
        ["c0", "c1", "c2"],
        "the torn record is ignored"
    );
    assert!(d.log().contains("torn"), "the start says so: {}", d.log());
    // Appends after the restart land on whole records: another crash replays them.
    d.connect("t", &cs[4], "c4");
    d.crash();
    d.restart();
    let eps = endpoints(&d, "t");
    assert_eq!(
        eps.keys().collect::<Vec<_>>(),
        ["c0", "c1", "c2", "c4"],
        "{eps:?}"
    );
    assert_eq!(eps["c4"].1, "attached");
}

#[test]
fn a_garbage_journal_stops_the_start_with_one_line_and_touches_nothing() {
    if !privileged("a_garbage_journal_stops_the_start_with_one_line_and_touches_nothing") {
        return;
    }
    let mut d = Daemon::start(&["--network", "g=10.93.5.0/24"]);
    let c = Netns::new("g0");
    d.connect("g", &c, "c0");
    d.crash();
    let state = std::fs::read(d.state_dir.join("state.json")).unwrap();
    let mut garbage = std::fs::read(journal(&d)).unwrap();
    garbage.extend_from_slice(b"{\"op\":\"put\",\"network\":\"g\",\"endpoint\":7}\n");
    std::fs::write(journal(&d), &garbage).unwrap();
    let out = cmd(
        bin("vswitchd").to_str().unwrap(),
        &[
            "--state-dir",
            d.state_dir.to_str().unwrap(),
            "--socket",
            d.dir.path().join("other.sock").to_str().unwrap(),
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(journal(&d).to_str().unwrap()), "{err}");
    assert!(err.contains("record 3: not valid"), "{err}");
    assert_eq!(
        std::fs::read(d.state_dir.join("state.json")).unwrap(),
        state,
        "snapshot untouched"
    );
    assert_eq!(
        std::fs::read(journal(&d)).unwrap(),
        garbage,
        "journal untouched"
    );
    // Moving the journal aside, as the error says, starts from the snapshot.
    std::fs::rename(journal(&d), d.state_dir.join("journal.bad")).unwrap();
    d.restart();
    assert!(d.ctl_ok(&["network", "ls"]).contains("g"));
}
