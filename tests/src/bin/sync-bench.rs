//! Catch-up sync benchmark: what a node that missed N reports costs to bring up to date,
//! and what two nodes already in sync cost each other, measured on the real protocol code
//! (negentropy reconciliation, fetch batches, and `validate` on every fetched envelope).
//!
//! `cargo run --release -p porchlight-tests --bin sync-bench [N ...]` (default 10000 100000).
//! No network: the bytes are those that would cross it; the times are CPU on this machine.
//!
//! `--loopback N` (default 10000; 0 to skip) then measures the same on two real nodes over
//! loopback TCP: a node that holds N reports, and a member that missed them all starts,
//! dials it and catches up through the node's own sync sessions (reconcile, fetch in
//! batches, `Engine::ingest`, flush). Time is wall clock from the second node's start to
//! its store holding all N; bytes are the sync messages it sent and received. Then one
//! more session between the two, now in sync.

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

/// Two real nodes on loopback: one holds `n` reports, the other catches up.
#[tokio::main]
async fn loopback(n: usize) {
    use porchlight_node::node::{Config, Setup};
    use porchlight_tests::bench;
    use std::time::Duration;

    let mut h = bench::hood(3, 11);
    let full_dir = tempfile::tempdir().expect("temp dir");
    let mut engine = bench::member_dir(full_dir.path(), &h, 0);
    let now = h.now;
    for first in (0..n).step_by(10_000) {
        let envelopes = bench::reports(&mut h, &[2], first..(first + 10_000).min(n), 24 * 3600);
        bench::fill(&mut engine, &envelopes, now);
    }
    drop(engine);
    let empty_dir = tempfile::tempdir().expect("temp dir");
    drop(bench::member_dir(empty_dir.path(), &h, 1));

    let tcp: libp2p::Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr");
    let mut config = Config::loopback(full_dir.path(), "full");
    config.listen = vec![tcp.clone()];
    let (full, full_task) = bench::start_node(config, Setup::Existing).await;
    let addr = full.status().await.expect("status").listen[0]
        .clone()
        .with(libp2p::multiaddr::Protocol::P2p(full.peer_id()));

    let mut config = Config::loopback(empty_dir.path(), "behind");
    config.listen = vec![tcp];
    config.bootstrap = vec![addr];
    let t = Instant::now();
    let (behind, behind_task) = bench::start_node(config, Setup::Existing).await;
    let deadline = t + Duration::from_secs(120);
    let mut held = 0;
    while Instant::now() < deadline {
        held = behind.status().await.expect("status").items;
        if held >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let caught_up = t.elapsed();
    let stats = behind.status().await.expect("status").sync;
    // Let the session end (its last fetch answer is empty), then one more, in sync.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = behind.status().await.expect("status").sync;
    behind.sync_now().await.expect("sync");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = behind.status().await.expect("status").sync;
    println!();
    println!("Loopback, two real nodes (`--loopback {n}`):");
    println!();
    println!(
        "| missed items | caught up | time to hold all | sync bytes sent | sync bytes received | next session, in sync: bytes sent + received |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {n} | {held} | {:.2} s | {} | {:.1} MiB | {} (in {} session) |",
        caught_up.as_secs_f64(),
        stats.bytes_sent,
        stats.bytes_received as f64 / (1024.0 * 1024.0),
        (after.bytes_sent - before.bytes_sent) + (after.bytes_received - before.bytes_received),
        after.sessions - before.sessions,
    );
    for (node, task) in [(behind, behind_task), (full, full_task)] {
        node.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut loopback_items = 10_000;
    if let Some(i) = args.iter().position(|a| a == "--loopback") {
        loopback_items = args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .expect("--loopback takes a number of items");
        args.drain(i..i + 2);
    }
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
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
            let item = porchlight_proto::Item::sign(&h.members[author].keys, &h.hood(), &body);
            let bytes = h.seal_item(author, &item);
            elements.push((created_at, ItemId::of_item(&item.encode()).0));
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
        let by_id: std::collections::HashMap<[u8; 32], &Vec<u8>> = elements
            .iter()
            .map(|(_, id)| *id)
            .zip(envelopes.iter())
            .collect();
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
    if loopback_items > 0 {
        loopback(loopback_items);
    }
}
