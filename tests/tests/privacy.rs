//! Traffic privacy at the transport boundary: three members on TCP over 127.0.0.1 join,
//! post, update and sync while every byte their sockets move is captured
//! (`porchlight_node::mesh::instrument::start_capture`). No report text, behavior, place, geohash, member name, hood
//! name or member id appears in the capture, and every sealed report's ciphertext is
//! exactly a padding bucket (reports of very different lengths look the same size).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use porchlight_node::mesh::instrument;
use porchlight_node::node::{Config, Node, Setup};
use porchlight_proto::Policy;
use porchlight_proto::envelope::{BUCKETS, Envelope};
use porchlight_proto::item::Body;
use porchlight_proto::report::{Category, Location, Report, Severity};
use porchlight_tests::eventually;

/// Distinctive strings: none occurs by chance in a few megabytes of ciphertext.
const HOOD: &str = "Quillfeather Court";
const NAMES: [&str; 3] = ["Ysoldabrin", "Thorvanquil", "Merequaxe"];
const TEXT_SHORT: &str = "Zephyrmoth seen";
const TEXT_MID: &str = "Hollowbrinkle: two men checking car doors, one on a bike";
const TEXT_LONG: &str = "Vermillionquay: a man in a grey van tried the handles of three \
     parked cars, then walked towards the Oxbridgewell footpath carrying a long bag";
const BEHAVIOR: &str = "tried Glimmerhaust door handles";
const PLACE: &str = "Brackenvoe Lane, 400 block";
const GEOHASH: &str = "9q8yykb";
const UPDATE: &str = "Sunderquell update: left by bike";

fn tcp_only(dir: &std::path::Path, name: &str) -> Config {
    let mut config = Config::loopback(dir, name);
    // Only TCP: the capture sits on the TCP transport.
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    config
}

fn report(text: &str, now: u64) -> Body {
    Body::Report(Report {
        created_at: now,
        expires_at: now + 3600,
        category: Category::SuspiciousActivity,
        severity: Severity::Warning,
        text: text.into(),
        behavior: Some(BEHAVIOR.into()),
        location: Location {
            text: PLACE.into(),
            geohash: Some(GEOHASH.into()),
        },
        clips: vec![],
        ask_seen: None,
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_readable_crosses_the_wire_and_sizes_fall_in_buckets() {
    instrument::start_capture();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (alice, alice_task) = Node::start(
        tcp_only(dirs[0].path(), NAMES[0]),
        Setup::Found {
            hood_name: HOOD.into(),
            policy: Policy::default(),
        },
    )
    .await
    .unwrap();
    let mut nodes = vec![(alice, alice_task)];
    for i in 1..3 {
        let code = nodes[i - 1]
            .0
            .invite(Duration::from_secs(600))
            .await
            .unwrap();
        let joined = Node::start(tcp_only(dirs[i].path(), NAMES[i]), Setup::Join { code })
            .await
            .unwrap();
        nodes.push(joined);
    }
    for (node, _) in &nodes {
        assert!(eventually(|| async { node.members().await.unwrap().len() == 3 }).await);
    }

    let now = porchlight_node::now();
    let short = nodes[0].0.post(report(TEXT_SHORT, now)).await.unwrap();
    let mid = nodes[2].0.post(report(TEXT_MID, now)).await.unwrap();
    let long = nodes[1].0.post(report(TEXT_LONG, now)).await.unwrap();
    let update = nodes[1]
        .0
        .post(Body::Update(porchlight_proto::report::Update {
            created_at: now,
            expires_at: now + 3600,
            report: long,
            severity: None,
            text: UPDATE.into(),
        }))
        .await
        .unwrap();
    for (node, _) in &nodes {
        for id in [short, mid, long, update] {
            assert!(
                eventually(|| async { node.feed().await.unwrap().iter().any(|i| i.id == id) })
                    .await,
                "every member gets every item"
            );
        }
    }
    // A catch-up round too, so sync traffic is in the capture.
    for (node, _) in &nodes {
        node.sync_now().await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let capture = instrument::stop_capture();

    assert!(
        capture.bytes.len() > 20_000,
        "the capture holds the traffic ({} bytes)",
        capture.bytes.len()
    );
    assert_eq!(capture.dropped, 0);
    let mut secrets: Vec<(String, Vec<u8>)> = [
        HOOD, TEXT_SHORT, TEXT_MID, TEXT_LONG, BEHAVIOR, PLACE, GEOHASH, UPDATE,
    ]
    .iter()
    .chain(NAMES.iter())
    .map(|s| (s.to_string(), s.as_bytes().to_vec()))
    .collect();
    // Distinctive pieces too, so a partly visible string is caught.
    for piece in [
        "Zephyrmoth",
        "Hollowbrinkle",
        "Vermillionquay",
        "Oxbridgewell",
        "Glimmerhaust",
        "Brackenvoe",
        "Sunderquell",
    ] {
        secrets.push((piece.into(), piece.as_bytes().to_vec()));
    }
    for (node, _) in &nodes {
        let id = node.member();
        secrets.push((format!("member id {}", id.fingerprint()), id.0.to_vec()));
    }
    for (what, bytes) in &secrets {
        assert!(
            !contains(&capture.bytes, bytes),
            "{what:?} crossed the wire in clear"
        );
    }
    // The test would see them if they were there: the marker is found when planted.
    let mut planted = capture.bytes[..1000].to_vec();
    planted.extend_from_slice(TEXT_SHORT.as_bytes());
    assert!(contains(&planted, TEXT_SHORT.as_bytes()));

    // Sealed sizes: every ciphertext is a bucket plus the AEAD tag, and a 15-byte and a
    // 57-byte report seal to the same size (a 160-byte one takes the next bucket).
    let mut sizes = Vec::new();
    for id in [short, mid, long, update] {
        let bytes = nodes[0].0.envelope(id).await.unwrap().unwrap();
        let envelope = Envelope::decode(&bytes).unwrap();
        let padded = envelope.ciphertext.len() - 16;
        assert!(
            BUCKETS.contains(&padded) || padded.is_multiple_of(16384),
            "padded plaintext of {padded} bytes is not a bucket"
        );
        sizes.push(bytes.len());
    }
    assert_eq!(
        sizes[0], sizes[1],
        "reports of different lengths look the same size"
    );
    assert!(sizes[2] > sizes[1], "a longer report takes the next bucket");
    eprintln!(
        "captured {} bytes of TCP traffic; none of {} secrets found; sealed sizes {:?}",
        capture.bytes.len(),
        secrets.len(),
        sizes
    );

    for (node, task) in nodes {
        node.shutdown().await;
        let _ = task.await;
    }
}
