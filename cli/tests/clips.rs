//! Clip sharing between real processes on 127.0.0.1: a report carries a clip's SHA-256,
//! a neighbor fetches the bytes with `clip get` and they match; the owner's policy
//! decides (`members` shares, `never` refuses, `ask` waits for the owner's `clip allow`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Running, WAIT, eventually, feed, has, ok, verb};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn set_policy(dir: &Path, policy: &str) {
    let path = dir.join("porchlight.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("clip_policy = \"ask\""), "{text}");
    std::fs::write(
        &path,
        text.replace(
            "clip_policy = \"ask\"",
            &format!("clip_policy = \"{policy}\""),
        ),
    )
    .unwrap();
}

/// Posts a report with a clip of `len` pseudo-random bytes; returns (report id, sha hex, bytes).
fn post_clip(dir: &Path, len: usize, seed: u8) -> (String, String, Vec<u8>) {
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let file = dir.join(format!("clip-{seed}.mp4"));
    std::fs::write(&file, &bytes).unwrap();
    let id = ok(
        dir,
        &[
            "post",
            "--category",
            "package-theft",
            "--text",
            "parcel taken",
            "--clip",
            file.to_str().unwrap(),
            "--camera",
            "porch",
        ],
    )
    .trim()
    .to_owned();
    let sha = hex(&Sha256::digest(&bytes));
    (id, sha, bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn neighbors_fetch_clips_as_each_owner_allows() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (a, b, c) = (a.path(), b.path(), c.path());
    ok(a, &["init", "--name", "Alice"]);
    ok(b, &["init", "--name", "Bob"]);
    ok(c, &["init", "--name", "Carol"]);
    set_policy(a, "members");
    set_policy(b, "never");
    // Carol keeps the default, `ask`.
    ok(a, &["hood", "create", "Elm Street"]);
    let alice = Running::run(a);
    ok(b, &["join", ok(a, &["invite"]).trim(), "--no-mdns"]);
    ok(c, &["join", ok(a, &["invite"]).trim(), "--no-mdns"]);
    let bob = Running::run(b);
    let carol = Running::run(c);
    for dir in [a, b, c] {
        assert!(eventually(|| ok(dir, &["--json", "members"])
            .lines()
            .count()
            == 3));
    }

    // Policy `members`: Bob fetches Alice's clip (three chunks and a bit); the bytes match.
    let (report, sha, bytes) = post_clip(a, 3 * 256 * 1024 + 1000, 1);
    assert!(eventually(|| has(b, &report)));
    let clip = &feed(b)
        .into_iter()
        .find(|i| i["id"] == report.as_str())
        .unwrap()["clips"][0];
    assert_eq!(clip["sha256"], sha.as_str());
    assert_eq!(clip["size"], bytes.len());
    assert_eq!(clip["camera"], "porch");
    let out = b.join("fetched.mp4");
    let got: Value = serde_json::from_str(&ok(
        b,
        &["--json", "clip", "get", &sha, "-o", out.to_str().unwrap()],
    ))
    .unwrap();
    assert_eq!(got["size"], bytes.len());
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    assert_eq!(hex(&Sha256::digest(std::fs::read(&out).unwrap())), sha);

    // Policy `never`: Alice's request for Bob's clip is refused, and nothing is written.
    let (report, sha, _) = post_clip(b, 5000, 2);
    assert!(eventually(|| has(a, &report)));
    let out = a.join("refused.mp4");
    let (code, _, err) = verb(a, &["clip", "get", &sha, "-o", out.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("does not share"), "{err}");
    assert!(!out.exists());

    // A hash no report carries: said so.
    let (code, _, err) = verb(
        a,
        &["clip", "get", &"ab".repeat(32), "-o", out.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no live report"), "{err}");

    // Policy `ask`: Alice's fetch of Carol's clip waits until Carol allows it.
    let (report, sha, bytes) = post_clip(c, 300_000, 3);
    assert!(eventually(|| has(a, &report)));
    let out = a.join("asked.mp4");
    let mut waiting = Running::spawn(
        a,
        &[
            "clip",
            "get",
            &sha,
            "-o",
            out.to_str().unwrap(),
            "--wait",
            "60s",
        ],
    );
    let mut asks: Vec<Value> = Vec::new();
    assert!(
        eventually(|| {
            asks = ok(c, &["--json", "clip", "requests"])
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            !asks.is_empty()
        }),
        "Carol sees Alice's request"
    );
    assert_eq!(asks[0]["requester_name"], "Alice");
    assert_eq!(asks[0]["sha256"], sha.as_str());
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        waiting.child.try_wait().unwrap().is_none(),
        "the fetch waits for the owner"
    );
    assert!(!out.exists());
    ok(c, &["clip", "allow", asks[0]["id"].as_str().unwrap()]);
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = waiting.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the fetch did not finish after the owner allowed it"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    assert!(
        ok(c, &["--json", "clip", "requests"]).trim().is_empty(),
        "the request left the list"
    );

    carol.stop();
    bob.stop();
    alice.stop();
}
