//! Arbitrary bytes as the state journal, replayed onto a real snapshot (one network, one
//! endpoint, generation 4; `seeds/journal_snapshot.json`) through the daemon's replay
//! (`vswitchd::state::journal::replay_bytes`). A replay that succeeds must leave a state that
//! passes the snapshot checks and survives a save/parse round trip; a refusal must be one
//! line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitchd::state::{State, journal};

const SNAPSHOT: &[u8] = include_bytes!("seeds/journal_snapshot.json");

fuzz_target!(|data: &[u8]| {
    let mut state = State::parse(SNAPSHOT).expect("the seed snapshot is valid");
    match journal::replay_bytes(data, &mut state) {
        Ok(_) => {
            let bytes = serde_json::to_vec(&state).expect("a replayed state serializes");
            let again = State::parse(&bytes).expect("a replayed state is a valid snapshot");
            assert_eq!(
                serde_json::to_value(&again).ok(),
                serde_json::to_value(&state).ok()
            );
        }
        Err(e) => assert!(
            !e.is_empty() && !e.chars().any(char::is_control),
            "error not on one line: {e:?}"
        ),
    }
});
