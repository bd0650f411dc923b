//! Arbitrary bytes as the answer to a join request (what a joiner gets from a peer).

#![no_main]

use libfuzzer_sys::fuzz_target;
use porchlight_proto::JoinResponse;

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = JoinResponse::decode(data) {
        assert_eq!(
            response.encode(),
            data,
            "a decoded response re-encodes to its bytes"
        );
    }
});
