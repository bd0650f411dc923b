//! A straight loop of `Engine::ingest` over N pre-sealed reports (sealing is done first),
//! for profiling the validate-and-store path without criterion's interleaving:
//!
//! ```sh
//! cargo build --release -p porchlight-node --example ingest_loop
//! CACHE_MB=8 perf record -g -D 9000 target/release/examples/ingest_loop 100000
//! ```
//!
//! `CACHE_MB` sets sled's page cache (default: the node's `CACHE_BYTES`). Reports are
//! created one second apart, oldest first, as a node receives them; `SAME_SECOND=1`
//! creates them all in the same second instead (random order within the records' time
//! key: the worst case for the store).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use porchlight_node::engine::Engine;
use porchlight_node::store::{CACHE_BYTES, Store};
use porchlight_proto::testkit::TestHood;
use porchlight_proto::{Body, Policy};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("a number of items"))
        .unwrap_or(50_000);
    let cache = std::env::var("CACHE_MB")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(CACHE_BYTES, |mb| mb << 20);
    let mut policy = Policy::default();
    policy.rate_limit.max_items = u16::MAX;
    let mut hood = TestHood::with_policy(7, policy);
    hood.now = porchlight_node::now();
    for _ in 0..16 {
        hood.join(0, 0);
    }
    let now = hood.now;
    let same_second = std::env::var("SAME_SECOND").is_ok_and(|v| v == "1");
    let envelopes: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            if !same_second {
                hood.now = now - n as u64 + i as u64;
            }
            let body: Body = hood.report(&format!(
                "report {i}: a parcel was taken from a porch on the 400 block, around noon"
            ));
            hood.seal(1 + i % 16, &body)
        })
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_with_cache(&dir.path().join("db"), cache).expect("store");
    let log: Vec<_> = hood.roster.items().cloned().collect();
    let mut engine =
        Engine::from_log(store, hood.members[0].keys.clone(), &hood.hood(), &log).expect("engine");
    eprintln!("sealed {n}; ingesting");
    let t = Instant::now();
    for e in &envelopes {
        engine.ingest(e, now).expect("store works");
    }
    let elapsed = t.elapsed();
    println!(
        "{:.1} µs/item over {n} items; store holds {}",
        elapsed.as_secs_f64() * 1e6 / n as f64,
        engine.store().item_count()
    );
}
