//! The walkthrough from issue #5, end to end, with the real binary as separate processes
//! on 127.0.0.1: three neighbors, reports both ways, a removal, a restart; then every
//! bad input gives exit 2, names the problem and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Running, eventually, feed, has, ok, verb};
use serde_json::Value;

fn post(dir: &std::path::Path, args: &[&str]) -> String {
    let mut all = vec!["post"];
    all.extend_from_slice(args);
    let id = ok(dir, &all).trim().to_owned();
    assert_eq!(id.len(), 64, "a post prints its id: {id:?}");
    id
}

fn item(dir: &std::path::Path, id: &str) -> Value {
    feed(dir).into_iter().find(|i| i["id"] == id).unwrap()
}

/// The README's paragraph on Carol's removal, on one line.
fn readme_removal_paragraph() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme
        .find("Alice, the hood's admin, removes Carol")
        .expect("the README's walkthrough removes Carol");
    let end = start + readme[start..].find("```").unwrap();
    readme[start..end]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first `quoted` text after `phrase` in `text`.
fn quoted_after(text: &str, phrase: &str) -> String {
    let at = text
        .find(phrase)
        .unwrap_or_else(|| panic!("the README says {phrase:?}: {text}"));
    let rest = &text[at + phrase.len()..];
    let open = rest.find('`').unwrap() + 1;
    let close = open + rest[open..].find('`').unwrap();
    rest[open..close].to_owned()
}

#[test]
fn three_neighbors_report_remove_and_restart() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    let (a, b, c) = (a.path(), b.path(), c.path());

    // A: init, hood create, run.
    assert!(ok(a, &["init", "--name", "Alice"]).contains("fingerprint"));
    assert!(ok(a, &["hood", "create", "Elm Street"]).contains("Elm Street"));
    let alice = Running::run(a);
    let code = ok(a, &["invite", "--expires", "1h"]).trim().to_owned();
    assert!(code.starts_with("porchlight1"), "{code}");

    // B: init, join (no node of B's running), run.
    ok(b, &["init", "--name", "Bob"]);
    let joined: Value =
        serde_json::from_str(&ok(b, &["--json", "join", &code, "--no-mdns"])).unwrap();
    assert_eq!(joined["hood_name"], "Elm Street");
    let mut bob = Running::run(b);

    // C: invited by B.
    let code_c = ok(b, &["invite"]).trim().to_owned();
    ok(c, &["init", "--name", "Carol"]);
    ok(c, &["join", &code_c, "--no-mdns"]);
    let mut carol = Running::run(c);
    for dir in [a, b, c] {
        assert!(
            eventually(|| ok(dir, &["--json", "members"]).lines().count() == 3),
            "every node knows all three members"
        );
    }

    // B follows the feed as a stream.
    let mut follow = Running::spawn(b, &["--json", "feed", "--follow"]);
    std::thread::sleep(Duration::from_millis(500));

    // A posts a suspicious-activity report with behavior and where; B and C see it.
    let first = post(
        a,
        &[
            "--category",
            "suspicious-activity",
            "--text",
            "man trying car doors",
            "--behavior",
            "tried the handles of three parked cars",
            "--where",
            "Elm St, 400 block",
        ],
    );
    for dir in [b, c] {
        assert!(
            eventually(|| has(dir, &first)),
            "the report reaches {dir:?}"
        );
        let seen = item(dir, &first);
        assert_eq!(seen["author_name"], "Alice");
        assert_eq!(seen["category"], "suspicious-activity");
        assert_eq!(seen["severity"], "warning");
        assert_eq!(seen["text"], "man trying car doors");
        assert_eq!(seen["behavior"], "tried the handles of three parked cars");
        assert_eq!(seen["where"], "Elm St, 400 block");
        assert!(seen["expires_at"].as_u64() > seen["created_at"].as_u64());
        assert_eq!(seen["clips"], serde_json::json!([]));
        assert_eq!(seen["author"].as_str().unwrap().len(), 64);
    }
    let streamed: Value = serde_json::from_str(&follow.until_contains(&first)).unwrap();
    assert_eq!(streamed["id"], first.as_str());

    // C posts; A sees it.
    let second = post(
        c,
        &[
            "--category",
            "lost-pet",
            "--text",
            "grey cat, answers to Miso",
        ],
    );
    assert!(eventually(|| has(a, &second)), "C's report reaches A");

    // A removes C, then posts again: B sees it, C does not.
    let mut carol_follows = Running::spawn(c, &["feed", "--follow"]);
    std::thread::sleep(Duration::from_millis(500));
    let removed: Value = serde_json::from_str(&ok(a, &["--json", "remove", "Carol"])).unwrap();
    assert_eq!(removed["removed"].as_str().unwrap().len(), 64);
    assert_eq!(removed["name"], "Carol", "the answer names her");

    // Carol's node is told, as the README's walkthrough says: each claim of its removal
    // paragraph is read from the README and checked against her node.
    let claims = readme_removal_paragraph();
    assert!(
        claims.contains("Carol's node is told") && !claims.contains("not told"),
        "{claims}"
    );
    let logged = quoted_after(&claims, "its log says");
    carol.until_contains(&logged);
    let printed = quoted_after(&claims, "`feed --follow` prints");
    assert_eq!(printed, porchlight_node::api::REMOVED_NOTICE);
    carol_follows.until_contains(&printed);
    let count = claims
        .split_once("`porchlight members` lists ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .expect("the README says how many members Carol's node lists");
    let count = ["zero", "one", "two", "three"]
        .iter()
        .position(|w| *w == count)
        .unwrap_or_else(|| panic!("a number word: {count}"));
    assert!(
        eventually(|| ok(c, &["--json", "members"]).lines().count() == count),
        "Carol's node lists {count} members"
    );
    let says = quoted_after(&claims, "`porchlight status` says");
    assert!(
        ok(c, &["status"]).contains(&says),
        "Carol's status says {says}"
    );
    assert!(
        claims.contains("her node refuses to post or invite"),
        "{claims}"
    );
    for args in [
        vec!["invite"],
        vec!["post", "--category", "other", "--text", "am I still in?"],
    ] {
        let (code, _, err) = verb(c, &args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("removed from the hood"), "{err}");
    }
    drop(carol_follows);
    let third = post(
        a,
        &[
            "--category",
            "hazard",
            "--text",
            "downed power line",
            "--where",
            "Oak Ave",
        ],
    );
    assert!(
        eventually(|| has(b, &third)),
        "the post after the removal reaches B"
    );
    assert!(
        eventually(|| ok(b, &["--json", "members"]).lines().count() == 2),
        "B learns of the removal"
    );
    // Give C every chance to receive it: it must not.
    std::thread::sleep(Duration::from_secs(5));
    assert!(!has(c, &third), "a removed member does not get new reports");
    // A removed member's own reports go from every store.
    assert!(eventually(|| !has(b, &second)));

    // B restarts and still has every report it had.
    let before: Vec<Value> = feed(b);
    assert!(before.iter().any(|i| i["id"] == first.as_str()));
    assert!(before.iter().any(|i| i["id"] == third.as_str()));
    drop(follow); // a reader; it has nothing to flush
    bob.stop();
    bob = Running::run(b);
    assert_eq!(feed(b), before, "B's feed survives a restart unchanged");

    bob.stop();
    carol.stop();
    alice.stop();
}

#[test]
fn bad_input_exits_2_names_the_problem_and_changes_nothing() {
    let a = tempfile::tempdir().unwrap();
    let a = a.path();
    ok(a, &["init", "--name", "Alice"]);
    ok(a, &["hood", "create", "Elm Street"]);

    // No running node: said, with how to start one.
    let (code, _, err) = verb(a, &["feed"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no node is running") && err.contains("porchlight run"),
        "{err}"
    );
    let (code, _, err) = verb(a, &["post", "--category", "other", "--text", "x"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no node is running"), "{err}");

    let alice = Running::run(a);
    let good = post(a, &["--category", "other", "--text", "bins are out early"]);
    let code = ok(a, &["invite"]).trim().to_owned();
    let status_before: Value = serde_json::from_str(&ok(a, &["--json", "status"])).unwrap();
    let feed_before = feed(a);
    let clips_before = std::fs::read_dir(a.join("clips"))
        .map(|d| d.count())
        .unwrap_or(0);

    let long = "x".repeat(1001);
    let missing = a.join("no-such-clip.mp4");
    let missing = missing.to_str().unwrap();
    let real_clip = a.join("real.mp4");
    std::fs::write(&real_clip, b"not really video, but bytes").unwrap();
    let real_clip = real_clip.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["post", "--category", "nope", "--text", "x"],
            "unknown category",
        ),
        (
            vec![
                "post",
                "--category",
                "suspicious-activity",
                "--text",
                "someone",
            ],
            "behavior",
        ),
        (vec!["post", "--category", "other", "--text", &long], "text"),
        (
            vec![
                "post",
                "--category",
                "other",
                "--text",
                "x",
                "--clip",
                missing,
            ],
            "no-such-clip.mp4",
        ),
        // A good clip with a bad report: the clip must not stay in the library.
        (
            vec![
                "post",
                "--category",
                "other",
                "--text",
                "x",
                "--clip",
                real_clip,
                "--geohash",
                "9q8yyk8zz",
            ],
            "geohash",
        ),
        (
            vec![
                "post",
                "--category",
                "other",
                "--text",
                "x",
                "--severity",
                "huge",
            ],
            "severity",
        ),
        (
            vec![
                "post",
                "--category",
                "other",
                "--text",
                "x",
                "--expires",
                "soon",
            ],
            "duration",
        ),
        (vec!["update", &good[..8], "--text", ""], "text"),
        (vec!["retract", "ffffffff"], "no live report"),
        (vec!["remove", "Nobody"], "no member matches"),
        (
            vec!["invite", "--expires", "0h"],
            "an invite is valid from 1 second to 30 days",
        ),
        (vec!["feed", "--category", "nope"], "unknown category"),
        (vec!["hood", "create", "Second"], "a node is running"),
        (vec!["init", "--name", "  "], "name"),
    ];
    for (args, says) in &cases {
        let (code, _, err) = verb(a, args);
        assert_eq!(code, 2, "{args:?} → {err}");
        assert!(
            err.to_lowercase().contains(&says.to_lowercase()),
            "{args:?} should name {says:?}: {err}"
        );
    }

    // A mistyped invite: the checksum says so; nothing is created for the joiner.
    let fresh = tempfile::tempdir().unwrap();
    let joiner = fresh.path().join("bob");
    let mut typo: Vec<char> = code.chars().collect();
    let at = typo.len() / 2;
    typo[at] = if typo[at] == 'q' { 'p' } else { 'q' };
    let typo: String = typo.into_iter().collect();
    let (status, _, err) = verb(&joiner, &["join", &typo, "--no-mdns"]);
    assert_eq!(status, 2, "{err}");
    assert!(err.contains("checksum"), "{err}");
    assert!(!joiner.exists(), "a refused join writes nothing");
    // Joining a hood this data dir already has is refused too.
    let (status, _, err) = verb(a, &["join", &code, "--no-mdns"]);
    assert_eq!(status, 2, "{err}");

    // Nothing changed.
    let status_after: Value = serde_json::from_str(&ok(a, &["--json", "status"])).unwrap();
    assert_eq!(status_after["items"], status_before["items"]);
    assert_eq!(status_after["members"], status_before["members"]);
    assert_eq!(status_after["epoch"], status_before["epoch"]);
    assert_eq!(feed(a), feed_before);
    assert_eq!(
        std::fs::read_dir(a.join("clips"))
            .map(|d| d.count())
            .unwrap_or(0),
        clips_before,
        "no clip stays in the library for a refused post"
    );

    // A good clip attaches: its SHA-256 is in the report, its bytes in the library.
    let with_clip = post(
        a,
        &[
            "--category",
            "package-theft",
            "--text",
            "parcel taken",
            "--clip",
            real_clip,
        ],
    );
    let clip = &item(a, &with_clip)["clips"][0];
    let sha = clip["sha256"].as_str().unwrap();
    assert_eq!(clip["size"], 27);
    assert_eq!(
        std::fs::read(a.join("clips").join(sha)).unwrap(),
        b"not really video, but bytes"
    );

    // Lifecycle of one's own report.
    let update = ok(a, &["update", &good[..8], "--text", "collected now"])
        .trim()
        .to_owned();
    assert_eq!(item(a, &update)["kind"], "update");
    ok(a, &["retract", &good[..8]]);
    assert!(!has(a, &good), "a retracted report is gone");
    alice.stop();
}
