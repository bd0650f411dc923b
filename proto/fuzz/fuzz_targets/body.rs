//! Arbitrary bytes as a body: the first byte picks the kind, the rest is the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use porchlight_proto::{Body, Kind};

const KINDS: [Kind; 6] = [
    Kind::Report,
    Kind::Update,
    Kind::Resolve,
    Kind::Retract,
    Kind::Membership,
    Kind::Seen,
];

fuzz_target!(|data: &[u8]| {
    let Some((first, bytes)) = data.split_first() else {
        return;
    };
    let kind = KINDS[usize::from(*first) % KINDS.len()];
    if let Ok(body) = Body::decode(kind, bytes) {
        assert_eq!(body.kind(), kind, "the kind byte decides the type");
        assert_eq!(
            body.encode(),
            bytes,
            "a decoded body re-encodes to its bytes"
        );
        let _ = body.times();
    }
});
