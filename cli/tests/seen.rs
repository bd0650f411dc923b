//! "Seen by" (issue #22) with the real binary as separate processes on 127.0.0.1: Alice
//! posts an urgent report that asks who has seen it; Bob says so with `porchlight seen`,
//! Carol reads it in `porchlight feed`; Dave's node, whose person only has a program
//! polling `--json feed`, sends nothing. Alice's feed says "seen by 2 of 3", and only
//! hers says who.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{Running, eventually, feed, ok, verb};
use serde_json::Value;

fn item(dir: &Path, id: &str) -> Option<Value> {
    feed(dir).into_iter().find(|i| i["id"] == id)
}

/// Live items in the node's store (reports and the acks it holds).
fn items(dir: &Path) -> u64 {
    let status: Value = serde_json::from_str(&ok(dir, &["--json", "status"])).unwrap();
    status["items"].as_u64().unwrap()
}

#[test]
fn an_urgent_alert_shows_seen_by_two_of_three_after_two_neighbors_read_it() {
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let [a, b, c, d] = [0, 1, 2, 3].map(|i| dirs[i].path());
    ok(a, &["init", "--name", "Alice"]);
    ok(a, &["hood", "create", "Elm Street"]);
    let _alice = Running::run(a);
    let mut nodes = Vec::new();
    for (dir, name) in [(b, "Bob"), (c, "Carol"), (d, "Dave")] {
        let code = ok(a, &["invite", "--expires", "1h"]).trim().to_owned();
        ok(dir, &["init", "--name", name]);
        ok(dir, &["join", &code, "--no-mdns"]);
        nodes.push(Running::run(dir));
    }
    for dir in [a, b, c, d] {
        assert!(
            eventually(|| ok(dir, &["--json", "members"]).lines().count() == 4),
            "every node knows all four members"
        );
    }

    // Only an urgent report may ask; the refusal changes nothing.
    let (code, _, err) = verb(
        a,
        &[
            "post",
            "--category",
            "fire",
            "--text",
            "smoke",
            "--ask-seen",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("only an urgent report"), "{err}");
    assert_eq!(items(a), 0);

    let id = ok(
        a,
        &[
            "post",
            "--category",
            "fire",
            "--severity",
            "urgent",
            "--text",
            "smoke coming from the garage",
            "--where",
            "Elm St, 400 block",
            "--ask-seen",
        ],
    )
    .trim()
    .to_owned();
    assert_eq!(id.len(), 64, "{id}");
    // The report reaches everyone. Reading `--json feed` is a program's read: no ack.
    for dir in [b, c, d] {
        assert!(
            eventually(|| item(dir, &id).is_some()),
            "the alert reaches {dir:?}"
        );
        let seen = item(dir, &id).unwrap();
        assert_eq!(seen["ask_seen"], true);
        assert_eq!(seen["acknowledged"], false);
        assert!(
            seen.get("seen").is_none(),
            "who has seen it is the author's alone"
        );
    }
    let mine = item(a, &id).unwrap();
    assert_eq!(mine["seen"], serde_json::json!({"n": 0, "of": 3, "by": []}));

    // Bob says so; Carol reads her feed in a terminal.
    let said = ok(b, &["seen", &id[..8]]);
    assert!(said.contains("told Alice"), "{said}");
    let read = ok(c, &["feed"]);
    assert!(read.contains("smoke coming from the garage"), "{read}");

    assert!(
        eventually(|| ok(a, &["feed"]).contains("seen by 2 of 3")),
        "Alice's feed says seen by 2 of 3: {}",
        ok(a, &["feed"])
    );
    let mine = item(a, &id).unwrap();
    let mut by: Vec<&str> = mine["seen"]["by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    by.sort_unstable();
    assert_eq!(by, ["Bob", "Carol"]);
    for dir in [b, c] {
        let theirs = item(dir, &id).unwrap();
        assert_eq!(theirs["acknowledged"], true);
        assert!(theirs.get("seen").is_none());
    }

    // Every node holds the report and two acks, Dave's included, and nothing from
    // Dave: his person did not read it, so his node sent nothing (an ack of his would be
    // a third item everywhere). An ack goes out by gossip at once; sync, every 15 s,
    // would bring one that gossip missed: wait past a round.
    for dir in [a, b, c, d] {
        assert!(
            eventually(|| items(dir) == 3),
            "{dir:?} holds the report and two acks: {}",
            items(dir)
        );
    }
    std::thread::sleep(std::time::Duration::from_secs(17));
    for dir in [a, b, c, d] {
        assert_eq!(items(dir), 3, "still two acks at {dir:?}");
    }
    assert_eq!(item(d, &id).unwrap()["acknowledged"], false);

    // Once per member: asked again, Bob's node sends nothing more.
    let again = ok(b, &["seen", &id[..8]]);
    assert!(again.contains("already"), "{again}");
    // The author cannot acknowledge her own report.
    let (code, _, err) = verb(a, &["seen", &id[..8]]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("yours"), "{err}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(items(a), 3);
    assert!(ok(a, &["feed"]).contains("seen by 2 of 3"));
    drop(nodes);
}
