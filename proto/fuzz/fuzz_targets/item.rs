//! Arbitrary bytes as an inner item, then its body as the kind it declares.

#![no_main]

use libfuzzer_sys::fuzz_target;
use porchlight_proto::Item;

fuzz_target!(|data: &[u8]| {
    if let Ok(item) = Item::decode(data) {
        assert_eq!(
            item.encode(),
            data,
            "a decoded item re-encodes to its bytes"
        );
        if let Ok(body) = item.body() {
            assert_eq!(
                body.encode(),
                item.body,
                "a decoded body re-encodes to its bytes"
            );
        }
        let _ = item.op_id();
    }
});
