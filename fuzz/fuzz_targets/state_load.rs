//! Arbitrary bytes as a state file, through the daemon's loading and validation
//! (`vswitchd::state::State::parse`). A state that passes must survive a save/parse round
//! trip unchanged; a refusal must be one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitchd::state::State;

fuzz_target!(|data: &[u8]| {
    match State::parse(data) {
        Ok(state) => {
            let bytes = serde_json::to_vec(&state).expect("a valid state serializes");
            let again = State::parse(&bytes).expect("a valid state stays valid after a save");
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
