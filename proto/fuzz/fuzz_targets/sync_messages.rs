//! Arbitrary bytes as a sync request, a sync response, and a negentropy frame: what a
//! member's peer can send during catch-up.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use porchlight_proto::sync::{self, NegentropyStorage, Request, Response};

fn storage() -> &'static NegentropyStorage {
    static STORAGE: OnceLock<NegentropyStorage> = OnceLock::new();
    STORAGE.get_or_init(|| {
        sync::storage((0u32..2000).map(|i| {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            (u64::from(i), id)
        }))
        .unwrap_or_default()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = Request::decode(data) {
        assert_eq!(request.encode(), data, "a decoded request re-encodes to its bytes");
    }
    if let Ok(response) = Response::decode(data) {
        assert_eq!(response.encode(), data, "a decoded response re-encodes to its bytes");
    }
    let _ = sync::respond(storage(), data);
    if let Ok(storage) = sync::storage(std::iter::empty())
        && let Ok((mut initiator, _)) = sync::Initiator::start(storage)
    {
        let _ = initiator.step(data);
    }
});
