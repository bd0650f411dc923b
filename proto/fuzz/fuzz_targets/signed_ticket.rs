//! Arbitrary bytes as a signed ticket (the bytes inside a code), then opened.

#![no_main]

use libfuzzer_sys::fuzz_target;
use porchlight_proto::codec;
use porchlight_proto::invite::{MAX_TICKET_BYTES, SignedTicket};

fuzz_target!(|data: &[u8]| {
    if let Ok(signed) = codec::decode::<SignedTicket>(data, MAX_TICKET_BYTES) {
        assert_eq!(
            codec::encode(&signed),
            data,
            "a decoded ticket re-encodes to its bytes"
        );
        let _ = signed.open();
        // Every ticket that decodes has a text code, and the code gives it back.
        assert_eq!(
            SignedTicket::from_code(&signed.to_code()).ok(),
            Some(signed)
        );
    }
});
