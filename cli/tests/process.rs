//! The real `porchlight` binary, run as a neighbor would: separate processes talking over
//! TCP on 127.0.0.1. The full walkthrough is in `walkthrough.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Running, ok, verb};

#[test]
fn up_prints_an_invite_a_neighbor_joins_with_and_both_restart_as_members() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let mut alice = Running::spawn(
        a_dir.path(),
        &[
            "up",
            "--hood",
            "Elm Street",
            "--name",
            "Alice",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
            "--no-mdns",
        ],
    );
    assert_eq!(alice.until("hood:"), "hood:        Elm Street");
    let listening = alice.until("listening:");
    let code = alice.until("porchlight1");
    alice.until("ready");

    // Another node cannot take the port Alice listens on (libp2p's SO_REUSEPORT would
    // let it bind and steal connections; the node checks first).
    let port_taken = listening.trim_start_matches("listening:").trim().to_owned();
    let other = tempfile::tempdir().unwrap();
    ok(other.path(), &["init", "--name", "Mallory"]);
    ok(other.path(), &["hood", "create", "Other"]);
    let (status, _, err) = verb(
        other.path(),
        &[
            "run",
            "--listen",
            &port_taken,
            "--api",
            "127.0.0.1:0",
            "--no-mdns",
        ],
    );
    assert_eq!(status, 1, "{err}");
    assert!(err.contains("another node"), "{err}");

    // `join` needs no running node of its own: it joins, stores the keys and exits.
    let joined = ok(b_dir.path(), &["join", &code, "--name", "Bob", "--no-mdns"]);
    assert!(
        joined.contains("joined \"Elm Street\" (2 members)"),
        "{joined}"
    );
    // Bob's node runs from its data dir, no invite needed, also after a restart.
    for _ in 0..2 {
        let bob = Running::run(b_dir.path());
        let members = ok(b_dir.path(), &["--json", "members"]);
        assert_eq!(members.lines().count(), 2, "{members}");
        bob.stop();
    }
    // `up` again on Alice's data dir runs the same hood; it does not found another.
    alice.stop();
    let mut again = Running::spawn(
        a_dir.path(),
        &[
            "up",
            "--hood",
            "Other",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
            "--no-mdns",
        ],
    );
    assert_eq!(again.until("hood:"), "hood:        Elm Street");
    assert_eq!(again.until("members:"), "members:     2");
    again.until("ready");
    again.stop();
}

#[test]
fn run_without_a_hood_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _, err) = verb(dir.path(), &["run", "--no-mdns"]);
    assert_eq!(status, 2, "{err}");
    assert!(err.contains("porchlight hood create"), "{err}");
    assert!(err.contains("porchlight join"), "{err}");
}

#[test]
fn every_verb_has_help_with_an_example() {
    for verb_name in [
        "init", "join", "run", "up", "id", "invite", "post", "feed", "update", "resolve",
        "retract", "members", "remove", "status",
    ] {
        let out = common::bin().args([verb_name, "--help"]).output().unwrap();
        assert!(out.status.success(), "{verb_name} --help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Example"),
            "{verb_name} --help has no example:\n{text}"
        );
    }
    let out = common::bin()
        .args(["hood", "create", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Example"));
    // A usage mistake is exit 2 (clap's own code agrees with ours).
    let out = common::bin()
        .args(["post", "--text", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
