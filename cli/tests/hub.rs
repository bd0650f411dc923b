//! The hub verbs with the real binary: a webhook event becomes a draft that `drafts`
//! lists and `approve` posts to a neighbor; `discard`, bad ids and bad hub URLs are
//! exit 2; a node whose broker is away still runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{Running, eventually, ok, verb};
use serde_json::{Value, json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `POST /v1/hub/events` with the node's token, as a doorbell would.
fn webhook(dir: &Path, body: Value) -> (u16, Value) {
    let addr = std::fs::read_to_string(dir.join("api.addr")).unwrap();
    let token = std::fs::read_to_string(dir.join("api.token")).unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .post(format!("http://{}/v1/hub/events", addr.trim()))
        .header("Authorization", format!("Bearer {}", token.trim()))
        .send_json(body)
        .unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_json().unwrap_or(Value::Null),
    )
}

fn drafts(dir: &Path) -> Vec<Value> {
    ok(dir, &["--json", "drafts"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn hub_verbs_have_help_with_an_example() {
    for name in ["drafts", "approve", "discard"] {
        let out = common::bin().args([name, "--help"]).output().unwrap();
        assert!(out.status.success(), "{name} --help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Example"), "{name} --help:\n{text}");
    }
    let out = common::bin().args(["run", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--mqtt") && text.contains("--frigate"),
        "{text}"
    );
}

#[test]
fn a_webhook_draft_is_listed_approved_by_the_verb_and_reaches_a_neighbor() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (a, b) = (a.path(), b.path());
    ok(a, &["init", "--name", "Alice"]);
    ok(a, &["hood", "create", "Elm Street"]);
    // The broker is not there: the bridge retries in the background; the node runs.
    let broker = format!("mqtt://127.0.0.1:{}", free_port());
    let alice = Running::run_with(a, &["--mqtt", &broker]);
    let code = ok(a, &["invite"]).trim().to_owned();
    ok(b, &["init", "--name", "Bob"]);
    ok(b, &["join", &code, "--no-mdns"]);
    let bob = Running::run_with(b, &[]);

    assert!(drafts(a).is_empty());
    assert!(ok(a, &["drafts"]).contains("no drafts"));
    let clip = a.join("doorbell.mp4");
    std::fs::write(&clip, vec![42u8; 100_000]).unwrap();
    let (status, draft) = webhook(
        a,
        json!({"camera": "doorbell", "label": "person", "clip_path": clip}),
    );
    assert_eq!(status, 201, "{draft}");
    let listed = drafts(a);
    assert_eq!(listed.len(), 1);
    let sha = listed[0]["clip_sha256"].as_str().unwrap().to_owned();
    assert_eq!(listed[0]["camera"], "doorbell");
    assert_eq!(listed[0]["id"], draft["id"]);
    assert_eq!(listed[0]["share"], "ask", "the owner's clip policy");
    let id = listed[0]["id"].as_str().unwrap()[..8].to_owned();
    let table = ok(a, &["drafts"]);
    assert!(table.contains(&id), "the table shows the id: {table}");
    assert!(
        table.contains("SHARE") && table.contains(" ask "),
        "{table}"
    );

    // Bad ids and bad approvals are exit 2 and change nothing.
    for args in [
        vec!["approve", "zz"],
        vec!["approve", "00000000"],
        vec!["discard", "00000000"],
        vec!["approve", &id, "--category", "suspicious-activity"],
        vec!["approve", &id, "--severity", "extreme"],
        vec!["approve", &id, "--share", "everyone"],
    ] {
        let (code, _, err) = verb(a, &args);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
    assert_eq!(drafts(a).len(), 1);

    let report = ok(
        a,
        &[
            "approve",
            &id,
            "--behavior",
            "tried the front door handle twice",
            "--where",
            "Elm St, 400 block",
            "--share",
            "members",
        ],
    )
    .trim()
    .to_owned();
    assert_eq!(report.len(), 64, "{report}");
    assert!(drafts(a).is_empty());
    let got = eventually(|| common::has(b, &report));
    assert!(got, "bob's feed has the approved report");
    let item = common::feed(b)
        .into_iter()
        .find(|i| i["id"] == report)
        .unwrap();
    assert_eq!(item["category"], "suspicious-activity", "{item}");
    assert_eq!(item["clips"][0]["sha256"], sha);
    assert_eq!(item["clips"][0]["camera"], "doorbell");
    // Approved with --share members: Bob's `clip get` needs no `clip allow` from
    // Alice, whose clip_policy is `ask`.
    let out = b.join("doorbell.mp4");
    ok(
        b,
        &[
            "clip",
            "get",
            &sha,
            "-o",
            out.to_str().unwrap(),
            "--wait",
            "20s",
        ],
    );
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&clip).unwrap());
    assert!(
        ok(a, &["--json", "clip", "requests"]).trim().is_empty(),
        "Alice was not asked"
    );

    // A second event, discarded: nothing posted.
    let (status, second) = webhook(a, json!({"camera": "doorbell", "label": "package"}));
    assert_eq!(status, 201, "{second}");
    let second_id = second["id"].as_str().unwrap();
    let out: Value = serde_json::from_str(&ok(a, &["--json", "discard", second_id])).unwrap();
    assert_eq!(out["discarded"], second_id);
    assert!(drafts(a).is_empty());
    bob.stop();
    alice.stop();
}

#[test]
fn bad_hub_urls_are_exit_2_before_anything_starts() {
    let a = tempfile::tempdir().unwrap();
    let a = a.path();
    ok(a, &["init", "--name", "Alice"]);
    ok(a, &["hood", "create", "Elm Street"]);
    for (args, says) in [
        (vec!["run", "--no-mdns", "--mqtt", "mqtts://broker"], "TLS"),
        (vec!["run", "--no-mdns", "--mqtt", "broker:1883"], "mqtt://"),
        (
            vec![
                "run",
                "--no-mdns",
                "--mqtt",
                "mqtt://b",
                "--frigate",
                "https://nvr",
            ],
            "https",
        ),
        (
            vec!["run", "--no-mdns", "--frigate", "http://nvr:5000"],
            "--mqtt",
        ),
    ] {
        let (code, _, err) = verb(a, &args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    std::fs::write(a.join("porchlight.toml"), "mqtt = \"mqtt://:1883\"\n").unwrap();
    let (code, _, err) = verb(a, &["run", "--no-mdns"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("porchlight.toml"), "{err}");
}
