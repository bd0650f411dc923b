//! Writes a data dir that `porchlight --data-dir DIR run` starts on: a hood of nine
//! members (this node's is member 0), and N live items by the other eight, written
//! through the node library's real validate-and-store path (`Engine::ingest`): reports
//! spread over the last two days, one in ten carrying a clip reference, and an update
//! for one report in twenty (updates count towards N).
//!
//! ```sh
//! cargo run --release -p porchlight-tests --bin fill-store -- --items 100000 --data-dir /tmp/big
//! porchlight --data-dir /tmp/big run --listen /ip4/127.0.0.1/tcp/0 --api 127.0.0.1:8484 --no-mdns
//! ```
//!
//! The data dir must not exist yet (or be empty).

use std::path::PathBuf;
use std::time::Instant;

use porchlight_proto::ItemId;
use porchlight_proto::item::Body;
use porchlight_proto::report::{ClipRef, Update};
use porchlight_tests::bench;

fn usage() -> ! {
    eprintln!("usage: fill-store --items N --data-dir DIR [--seed S]");
    std::process::exit(2)
}

/// Items ingested between flushes, so that this tool's own memory stays small.
const CHUNK: usize = 10_000;

fn main() {
    let mut items: Option<usize> = None;
    let mut dir: Option<PathBuf> = None;
    let mut seed = 7u64;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--items" => items = Some(value.parse().unwrap_or_else(|_| usage())),
            "--data-dir" => dir = Some(PathBuf::from(value)),
            "--seed" => seed = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    let (Some(items), Some(dir)) = (items, dir) else {
        usage()
    };
    if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        eprintln!("{} is not empty: give a new data dir", dir.display());
        std::process::exit(2);
    }
    let started = Instant::now();
    let mut h = bench::hood(9, seed);
    let mut engine = bench::member_dir(&dir, &h, 0);
    let authors: Vec<usize> = (1..9).collect();
    let now = h.now;
    let spread = 2 * 24 * 3600;
    let mut written = 0usize;
    let mut n = 0usize;
    while written < items {
        let mut batch = Vec::with_capacity(CHUNK);
        while batch.len() < CHUNK && written + batch.len() < items {
            let author = authors[n % authors.len()];
            let mut body = h.report(&format!(
                "report {n}: a parcel was taken from a porch on the 400 block"
            ));
            let created_at = now - (n as u64 * 7 % spread);
            if let Body::Report(r) = &mut body {
                r.created_at = created_at;
                r.expires_at = created_at + 72 * 3600;
                if n.is_multiple_of(10) {
                    let mut sha256 = [0u8; 32];
                    sha256[..8].copy_from_slice(&(n as u64).to_be_bytes());
                    sha256[8..16].copy_from_slice(&seed.to_be_bytes());
                    r.clips.push(ClipRef {
                        sha256,
                        size: 2_000_000 + n as u64,
                        camera: "front_door".into(),
                        captured_at: created_at,
                    });
                }
            }
            let item = porchlight_proto::Item::sign(&h.members[author].keys, &h.hood(), &body);
            let id = ItemId::of_item(&item.encode());
            let report = h.seal_item(author, &item);
            batch.push(report);
            if n.is_multiple_of(20) && written + batch.len() < items {
                let update = Body::Update(Update {
                    created_at: created_at + 60,
                    expires_at: created_at + 72 * 3600,
                    report: id,
                    severity: None,
                    text: format!("update to report {n}: he left towards 5th"),
                });
                batch.push(h.seal(author, &update));
            }
            n += 1;
        }
        written += batch.len();
        bench::fill(&mut engine, &batch, now);
    }
    let held = engine.store().item_count();
    drop(engine);
    eprintln!(
        "wrote {held} live items into {} in {:.1} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
}
