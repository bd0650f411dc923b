//! Arbitrary bytes, as (lossy) UTF-8 text, pasted as an invite code.

#![no_main]

use libfuzzer_sys::fuzz_target;
use porchlight_proto::invite::{self, SignedTicket};
use porchlight_proto::testkit::NOW;

fuzz_target!(|data: &[u8]| {
    let code = String::from_utf8_lossy(data);
    if let Ok(signed) = SignedTicket::from_code(&code) {
        // What parses has a canonical code that parses back to the same ticket.
        assert_eq!(
            SignedTicket::from_code(&signed.to_code()).ok(),
            Some(signed)
        );
    }
    let _ = invite::parse(&code, NOW);
});
