//! Arbitrary bytes as the JSON body of each local-API request that changes state, judged
//! by the same functions the handlers use before they touch anything.

#![no_main]

use libfuzzer_sys::fuzz_target;
use porchlight_node::api::{Endpoint, judge_body};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let endpoint = Endpoint::ALL[usize::from(selector) % Endpoint::ALL.len()];
    let _ = judge_body(endpoint, body, 1_700_000_000);
});
