//! Arbitrary bytes as the JSON body of every POST endpoint, through the decoding and checks
//! the daemon's handlers use (`vswitchd::api::checks`). No sockets, no daemon state.
//! The first byte picks the endpoint; the rest is the body. A refusal must reach the client
//! as one line without control characters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitchd::api::checks::{POST_ENDPOINTS, check_body};

fuzz_target!(|data: &[u8]| {
    let Some((pick, body)) = data.split_first() else {
        return;
    };
    let path = POST_ENDPOINTS[usize::from(*pick) % POST_ENDPOINTS.len()];
    if let Err(e) = check_body(path, body) {
        // What the client receives and prints.
        let msg = e.message();
        assert!(
            !msg.is_empty() && !msg.chars().any(char::is_control),
            "{path}: error not on one line: {msg:?}"
        );
    }
});
