//! Arbitrary bytes as a `Welcome`, then taken as a joiner would: its checkpoint, the
//! admitter's signature and its operations.

#![no_main]

use libfuzzer_sys::fuzz_target;
use porchlight_proto::{Body, Op, Roster, Welcome};

fuzz_target!(|data: &[u8]| {
    let Ok(welcome) = Welcome::decode(data) else {
        return;
    };
    assert_eq!(
        welcome.encode(),
        data,
        "a decoded welcome re-encodes to its bytes"
    );
    // The joiner learns the hood from a genesis in the set (bounded by the input's size).
    let genesis = welcome
        .ops
        .iter()
        .find(|item| matches!(item.body(), Ok(Body::Membership(Op::Genesis(_)))));
    if let Some(genesis) = genesis
        && let Ok(roster) = Roster::from_genesis(genesis)
    {
        let _ = Roster::from_items(&roster.hood(), &welcome.ops);
        // As each joiner a join in it names.
        for item in &welcome.ops {
            if let Ok(Body::Membership(Op::Join(join))) = item.body() {
                let _ = Roster::from_welcome(&roster.hood(), &join.request.joiner, &welcome);
            }
        }
    }
});
