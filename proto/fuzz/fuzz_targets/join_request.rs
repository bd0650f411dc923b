//! Arbitrary bytes as a join request, then verified.

#![no_main]

use libfuzzer_sys::fuzz_target;
use porchlight_proto::JoinRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = JoinRequest::decode(data) {
        assert_eq!(
            request.encode(),
            data,
            "a decoded request re-encodes to its bytes"
        );
        let _ = request.verify();
    }
});
