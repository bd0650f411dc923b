//! Arbitrary bytes as an envelope. Oracle: what decodes re-encodes to the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use porchlight_proto::Envelope;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::decode(data) {
        assert_eq!(
            envelope.encode(),
            data,
            "a decoded envelope re-encodes to its bytes"
        );
    }
});
