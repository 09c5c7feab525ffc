//! Arbitrary bytes as a request on the slirp4netns drop-in's API socket, through the parser
//! the server uses (`vswitchd::slirp::api::parse_request`). A refusal must be one of
//! slirp4netns's error descriptions: one line, no control characters; an accepted
//! `add_hostfwd` must lead to a host of the network that is not a virtual address.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitchd::slirp::api::{Request, parse_request};

fuzz_target!(|data: &[u8]| {
    let net = "10.0.2.0/24".parse().expect("a network");
    match parse_request(data, net) {
        Err(desc) => assert!(
            desc.starts_with("bad request: ") && !desc.chars().any(char::is_control),
            "{desc:?}"
        ),
        Ok(Request::Add { host, guest, .. }) => {
            let g = u32::from(*guest.ip());
            assert!(host.port() != 0 && guest.port() != 0);
            assert!((0x0a00_0201..=0x0a00_02fe).contains(&g) && g != 0x0a00_0202 && g != 0x0a00_0203);
        }
        Ok(_) => {}
    }
});
