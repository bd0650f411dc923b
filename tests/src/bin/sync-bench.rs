//! Catch-up sync benchmark: what a node that missed N reports costs to bring up to date,
//! and what two nodes already in sync cost each other, measured on the real protocol code
//! (negentropy reconciliation, fetch batches, and `validate` on every fetched envelope).
//!
//! `cargo run --release -p porchlight-tests --bin sync-bench [N ...]` (default 10000 100000).
//! No network: the bytes are those that would cross it; the times are CPU on this machine.

use std::time::Instant;

use porchlight_proto::sync::{self, Element, Initiator, Request, Response};
use porchlight_proto::testkit::{NOW, TestHood};
use porchlight_proto::validate::{RateLimiter, Verdict};
use porchlight_proto::{Body, ItemId, Policy};

fn session(
    mine: &[(u64, [u8; 32])],
    theirs: &sync::NegentropyStorage,
) -> (Vec<[u8; 32]>, usize, usize) {
    let (mut init, mut message) =
        Initiator::start(sync::storage(mine.iter().copied()).expect("set fits")).expect("starts");
    let mut bytes = 0;
    loop {
        bytes += Request::Reconcile(message.clone()).encode().len();
        let reply = sync::respond(theirs, &message).expect("honest reply");
        bytes += Response::Reconcile(reply.clone()).encode().len();
        match init.step(&reply).expect("honest session") {
            Some(next) => message = next,
            None => break,
        }
    }
    let rounds = init.rounds();
    (init.take_need(), bytes, rounds)
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000]
    } else {
        sizes
    };
    println!(
        "| items | generate | reconcile rounds | reconcile bytes | fetch bytes | catch-up CPU (reconcile + validate all) | in-sync bytes |"
    );
    println!("|---|---|---|---|---|---|---|");
    for n in sizes {
        let mut policy = Policy::default();
        policy.rate_limit.max_items = u16::MAX;
        let mut h = TestHood::with_policy(1, policy);
        let author = h.join(0, 0);
        let t = Instant::now();
        let mut envelopes = Vec::with_capacity(n);
        let mut elements = Vec::with_capacity(n);
        for i in 0..n {
            let mut body = h.report(&format!("report number {i}: bicycle taken from a porch"));
            let Body::Report(r) = &mut body else {
                unreachable!()
            };
            // Spread over the last days, as real reports are.
            r.created_at = NOW - (i as u64 % 200_000);
            r.expires_at = r.created_at + 72 * 3600 + 200_000;
            let created_at = r.created_at;
            let bytes = h.seal(author, &body);
            elements.push((created_at, ItemId::of(&bytes).0));
            envelopes.push(bytes);
        }
        let generate = t.elapsed();
        let full = sync::storage(elements.iter().copied()).expect("set fits");

        // A node that missed everything (it holds only the membership log).
        let t = Instant::now();
        let (need, reconcile_bytes, rounds) = session(&[], &full);
        assert_eq!(need.len(), n);
        let mut fetch_bytes = 0;
        for batch in need.chunks(sync::MAX_FETCH_IDS) {
            fetch_bytes += Request::Fetch(batch.to_vec()).encode().len();
        }
        let by_id: std::collections::HashMap<[u8; 32], &Vec<u8>> =
            envelopes.iter().map(|e| (ItemId::of(e).0, e)).collect();
        let mut batch = Vec::new();
        let mut rate = RateLimiter::new();
        let mut accepted = 0;
        for id in &need {
            batch.push(Element::Envelope(by_id[id].clone()));
            if batch.len() == sync::MAX_FETCH_IDS {
                fetch_bytes += Response::Items(std::mem::take(&mut batch)).encode().len();
            }
            match h.validate_with(0, by_id[id], &rate) {
                Verdict::Accept(a) => {
                    rate.record(h.roster.policy(), &a);
                    accepted += 1;
                }
                other => panic!("benchmark item refused: {other:?}"),
            }
        }
        if !batch.is_empty() {
            fetch_bytes += Response::Items(batch).encode().len();
        }
        let catch_up = t.elapsed();
        assert_eq!(accepted, n);

        let (need, in_sync_bytes, _) = session(&elements, &full);
        assert!(need.is_empty());
        println!(
            "| {n} | {:.1} s | {rounds} | {reconcile_bytes} | {:.1} MiB | {:.2} s | {in_sync_bytes} |",
            generate.as_secs_f64(),
            fetch_bytes as f64 / (1024.0 * 1024.0),
            catch_up.as_secs_f64(),
        );
    }
}
