//! Issue #17, a newcomer's first hour, through the real binary on 127.0.0.1: the last
//! admin cannot leave without handing the role on, a removed node refuses with one
//! message, a hood's policy is set at creation and followed, a failed command leaves
//! nothing behind, limits are said in the user's terms, and help texts are true.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Running, eventually, ok, verb};
use serde_json::{Value, json};

fn status(dir: &Path) -> Value {
    serde_json::from_str(&ok(dir, &["--json", "status"])).unwrap()
}

fn members(dir: &Path) -> Vec<Value> {
    ok(dir, &["--json", "members"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs a verb that must fail with exit 2; returns its stderr.
fn refused(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = verb(dir, args);
    assert_eq!(code, 2, "porchlight {args:?} should be refused: {out}{err}");
    err
}

/// What a directory holds, by name.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Alice founds a hood (with `policy` flags) and runs; Bob joins with her invite and
/// runs. Returns both nodes, connected.
fn two_neighbors(a: &Path, b: &Path, policy: &[&str]) -> (Running, Running) {
    ok(a, &["init", "--name", "Alice"]);
    let mut create = vec!["hood", "create", "Elm Street"];
    create.extend_from_slice(policy);
    ok(a, &create);
    let alice = Running::run(a);
    let code = ok(a, &["invite", "--expires", "1h"]).trim().to_owned();
    ok(b, &["join", &code, "--name", "Bob", "--no-mdns"]);
    let bob = Running::run(b);
    for dir in [a, b] {
        assert!(
            eventually(|| members(dir).len() == 2 && status(dir)["connected_members"] == 1),
            "both nodes know both members and are connected"
        );
    }
    (alice, bob)
}

#[test]
fn the_last_admin_hands_the_role_on_before_leaving_and_a_removed_node_refuses() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (a, b) = (a.path(), b.path());
    let (alice, bob) = two_neighbors(a, b, &[]);

    // The only admin cannot remove herself: the error says how to hand the role on.
    let err = refused(a, &["remove", "Alice"]);
    assert!(
        err.contains("only admin") && err.contains("porchlight promote"),
        "{err}"
    );
    assert_eq!(members(a).len(), 2, "nothing changed");
    // Only an admin promotes.
    let err = refused(b, &["promote", "Bob"]);
    assert!(err.contains("admin"), "{err}");

    // She promotes Bob (the answer names him), then leaves.
    let promoted = ok(a, &["promote", "bob"]);
    assert!(promoted.starts_with("Bob ("), "{promoted}");
    assert!(promoted.contains("is an admin now"), "{promoted}");
    let err = refused(a, &["promote", "Bob"]);
    assert!(err.contains("Bob is already an admin"), "{err}");
    assert!(
        eventually(|| members(b)
            .iter()
            .any(|m| m["name"] == "Bob" && m["role"] == "admin")),
        "Bob's node learns he is an admin"
    );
    let removed = ok(a, &["remove", "Alice"]);
    assert!(removed.starts_with("removed Alice ("), "{removed}");

    // Her node refuses what only a member may do, with one message.
    for args in [
        vec!["invite"],
        vec!["post", "--category", "other", "--text", "still here?"],
        vec!["promote", "Bob"],
        vec!["remove", "Bob"],
    ] {
        let err = refused(a, &args);
        assert!(
            err.contains("this node's member was removed from the hood"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(status(a)["removed"], true);

    // Bob's node: one member, and every status line has a value (no blank `epoch:`).
    assert!(eventually(|| members(b).len() == 1));
    let text = ok(b, &["status"]);
    for line in text.lines().filter(|l| !l.starts_with(' ')) {
        let (_, value) = line.split_once(':').unwrap();
        assert!(
            !value.trim().is_empty(),
            "a blank status line: {line:?}\n{text}"
        );
    }
    assert!(text.contains("epoch:"), "{text}");
    // Bob, the admin now, posts: the hood rekeys and the epoch is a real one again.
    ok(
        b,
        &["post", "--category", "other", "--text", "Alice moved away"],
    );
    assert!(status(b)["epoch"].is_string());
    bob.stop();
    alice.stop();
}

#[test]
fn a_hood_follows_the_policy_it_was_created_with() {
    // Flags that contradict each other are refused before anything is created.
    let fresh = tempfile::tempdir().unwrap();
    let never = fresh.path().join("never");
    let err = refused(
        &never,
        &[
            "hood",
            "create",
            "X",
            "--expires",
            "10d",
            "--max-expires",
            "7d",
        ],
    );
    assert!(err.contains("--max-expires"), "{err}");
    let err = refused(&never, &["hood", "create", "X", "--max-expires", "40d"]);
    assert!(err.contains("30 days"), "{err}");
    assert!(!never.exists(), "a refused hood create writes nothing");

    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (a, b) = (a.path(), b.path());
    let policy = [
        "--invite",
        "admins",
        "--posts-per-hour",
        "30",
        "--expires",
        "24h",
        "--max-expires",
        "7d",
    ];
    let (alice, bob) = two_neighbors(a, b, &policy);

    // `status` shows the policy, on the founder's node and on a joiner's.
    for dir in [a, b] {
        let p = &status(dir)["policy"];
        assert_eq!(p["invite"], "admins");
        assert_eq!(p["posts_per_window"], 30);
        assert_eq!(p["window_secs"], 3600);
        assert_eq!(p["default_report_lifetime_secs"], 24 * 3600);
        assert_eq!(p["max_report_lifetime_secs"], 7 * 86_400);
        let text = ok(dir, &["status"]);
        assert!(
            text.contains(
                "policy:      admins may invite, admins may remove; at most 30 posts per \
                 member per hour; reports live 1 day unless their author says otherwise, \
                 at most 7 days"
            ),
            "{text}"
        );
    }

    // Invites are for admins: Bob's is refused when he asks, not when a neighbor tries it.
    let err = refused(b, &["invite"]);
    assert!(err.contains("only admins invite"), "{err}");

    // Lifetimes: the hood's default, and its maximum named when exceeded.
    let first_hour = porchlight_node::now() / 3600;
    let id = ok(b, &["post", "--category", "other", "--text", "first"])
        .trim()
        .to_owned();
    let feed = ok(b, &["--json", "feed"]);
    let item: Value = feed
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|i| i["id"] == id.as_str())
        .unwrap();
    assert_eq!(
        item["expires_at"].as_u64().unwrap() - item["created_at"].as_u64().unwrap(),
        24 * 3600
    );
    let err = refused(
        b,
        &[
            "post",
            "--category",
            "other",
            "--text",
            "x",
            "--expires",
            "8d",
        ],
    );
    assert!(
        err.contains("--expires 8 days is longer than this hood's maximum report lifetime, 7 days"),
        "{err}"
    );

    // The rate limit: 30 posts per member per hour (aligned hours); the 31st is refused,
    // naming the limit. A run that straddles the hour's end is tried again.
    let mut tries = 0;
    loop {
        tries += 1;
        let hour = porchlight_node::now() / 3600;
        let mut posted = 1; // "first", above, in this hour unless the hour turned
        let mut refusal = None;
        for n in 0..40 {
            let text = format!("post {tries}-{n}");
            let (code, _, err) = verb(b, &["post", "--category", "other", "--text", &text]);
            if code == 0 {
                posted += 1;
            } else {
                refusal = Some((code, err));
                break;
            }
        }
        if porchlight_node::now() / 3600 != hour {
            assert!(tries < 3, "the hour turned on every try");
            continue;
        }
        let (code, err) = refusal.expect("the limit refuses a post");
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("over this hood's limit of 30 posts per member per hour"),
            "{err}"
        );
        assert!(err.contains("try again after 20"), "a date: {err}");
        if tries == 1 && hour == first_hour {
            assert_eq!(posted, 30, "30 posts in one hour, then the refusal");
        }
        break;
    }
    // Alice is not limited by Bob's posts.
    ok(a, &["post", "--category", "other", "--text", "mine"]);
    bob.stop();
    alice.stop();
}

#[test]
fn a_command_that_fails_or_only_reads_creates_nothing() {
    let root = tempfile::tempdir().unwrap();

    // `run` on a mistyped data dir: an error, and no identity, database or settings.
    let typo = root.path().join("porchlihgt");
    let err = refused(&typo, &["run", "--no-mdns"]);
    assert!(err.contains("no hood in"), "{err}");
    assert!(!typo.exists(), "run created {typo:?}");
    // The same in an existing, empty directory.
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    refused(&empty, &["run", "--no-mdns"]);
    assert!(entries(&empty).is_empty(), "{:?}", entries(&empty));

    // `id` reads: on an empty dir it says there is no identity and creates none.
    let err = refused(&empty, &["id"]);
    assert!(err.contains("porchlight init"), "{err}");
    assert!(entries(&empty).is_empty(), "{:?}", entries(&empty));

    // `up` with a bad flag: nothing is created first.
    let up = root.path().join("up");
    let err = refused(&up, &["up", "--name", "Alice", "--api", "not-an-address"]);
    assert!(err.contains("--api"), "{err}");
    assert!(!up.exists(), "up created {up:?}");
    // `up` whose API port is taken: exit 1, and the identity and hood it would have
    // made are not left behind.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let (code, _, err) = verb(
        &up,
        &[
            "up",
            "--name",
            "Alice",
            "--api",
            &port,
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot listen"), "{err}");
    assert!(!up.exists(), "a failed up left {:?}", entries(&up));

    // A join with an expired invite: the date, not a Unix time, and nothing created.
    let a = root.path().join("alice");
    ok(&a, &["init", "--name", "Alice"]);
    ok(&a, &["hood", "create", "Elm Street"]);
    let alice = Running::run(&a);
    let code = ok(&a, &["invite", "--expires", "1s"]).trim().to_owned();
    std::thread::sleep(Duration::from_millis(2100));
    let joiner = root.path().join("bob");
    let err = refused(&joiner, &["join", &code, "--name", "Bob", "--no-mdns"]);
    assert!(err.contains("the invite expired at 20"), "{err}");
    assert!(err.contains(" UTC"), "{err}");
    assert!(!err.contains("Unix"), "{err}");
    assert!(!joiner.exists(), "a refused join writes nothing");
    alice.stop();
}

#[test]
fn limits_and_errors_speak_the_users_terms() {
    let a = tempfile::tempdir().unwrap();
    let a = a.path();
    ok(a, &["init", "--name", "Alice"]);
    ok(a, &["hood", "create", "Elm Street"]);
    let alice = Running::run(a);

    // The command names its flags, and text limits are bytes.
    let long = "é".repeat(501);
    let err = refused(a, &["post", "--category", "other", "--text", &long]);
    assert!(
        err.contains("--text is 1002 bytes long, over the limit of 1000 bytes"),
        "{err}"
    );
    let err = refused(
        a,
        &[
            "post",
            "--category",
            "other",
            "--text",
            "x",
            "--where",
            &"w".repeat(121),
        ],
    );
    assert!(err.contains("--where is 121 bytes long"), "{err}");
    let err = refused(
        a,
        &[
            "post",
            "--category",
            "other",
            "--text",
            "x",
            "--expires",
            "31d",
        ],
    );
    assert!(err.contains("maximum report lifetime, 30 days"), "{err}");
    // One wording for an invite's lifetime, in the command and the API.
    let rule = "an invite is valid from 1 second to 30 days";
    assert!(refused(a, &["invite", "--expires", "31d"]).contains(rule));
    assert!(refused(a, &["invite", "--expires", "0s"]).contains(rule));

    // The API names the request's fields, never our internal types; any case of the
    // `Bearer` scheme works.
    let token = std::fs::read_to_string(a.join("api.token")).unwrap();
    let base = format!(
        "http://{}",
        std::fs::read_to_string(a.join("api.addr")).unwrap().trim()
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let call = |auth: &str, path: &str, body: Option<&str>| -> (u16, Value) {
        let url = format!("{base}{path}");
        let mut response = match body {
            Some(b) => agent
                .post(&url)
                .header("Authorization", auth)
                .header("Content-Type", "application/json")
                .send(b)
                .unwrap(),
            None => agent
                .get(&url)
                .header("Authorization", auth)
                .call()
                .unwrap(),
        };
        let status = response.status().as_u16();
        (status, response.body_mut().read_json().unwrap())
    };
    let bearer = format!("Bearer {token}");
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let (code, _) = call(&format!("{scheme} {token}"), "/v1/status", None);
        assert_eq!(code, 200, "{scheme}");
    }
    let cases: Vec<(Value, &str)> = vec![
        (json!([]), "must be a JSON object"),
        (
            json!({"category": "other", "text": "x", "clips": [[1, 2]]}),
            "clips[0]",
        ),
        (
            json!({"category": "other", "text": "x", "expires_in_secs": "soon"}),
            "expires_in_secs: invalid type",
        ),
        (
            json!({"category": "other", "text": "x", "expires_in_secs": 0}),
            "expires_in_secs must be at least 1",
        ),
        (
            json!({"category": "other", "text": "x", "expires_in_secs": 31 * 86_400}),
            "expires_in_secs is 2678400 seconds (31 days), longer than this hood's \
             maximum report lifetime of 30 days",
        ),
        (
            json!({"category": "other", "text": "x".repeat(1001)}),
            "text is 1001 bytes long, over the limit of 1000 bytes",
        ),
        (
            json!({"category": "other", "text": "x", "where": "w".repeat(121)}),
            "where is 121 bytes long",
        ),
    ];
    for (body, says) in &cases {
        let (code, answer) = call(&bearer, "/v1/reports", Some(&body.to_string()));
        assert_eq!(code, 400, "{body}: {answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
        for internal in ["struct", "NewReport", "NewClip", "created_at", "expires_at"] {
            assert!(!message.contains(internal), "{body}: {message}");
        }
    }
    let (code, answer) = call(&bearer, "/v1/invites", Some(r#"{"expires_in_secs": 0}"#));
    assert_eq!(code, 400);
    assert!(answer["error"].as_str().unwrap().contains(rule), "{answer}");
    assert_eq!(status(a)["items"], 0, "no refused request posted anything");
    alice.stop();
}

#[test]
fn help_and_usage_are_complete_and_true() {
    let help = |args: &[&str]| {
        let out = common::bin().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Every option of update and resolve is described.
    for (verb_name, says) in [
        ("update", "The news"),
        ("resolve", "What it turned out to be"),
    ] {
        let text = help(&[verb_name, "--help"]);
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("--text"))
            .unwrap();
        assert!(
            line.contains(says),
            "{verb_name} --help leaves --text undescribed:\n{text}"
        );
    }
    // `join` serves no API, so it offers no --api.
    let text = help(&["join", "--help"]);
    assert!(!text.contains("--api"), "{text}");
    assert!(text.contains("--no-mdns"), "{text}");
    // `promote` exists, with an example; `hood create` shows the policy flags.
    assert!(help(&["promote", "--help"]).contains("Example"));
    let text = help(&["hood", "create", "--help"]);
    for flag in ["--invite", "--posts-per-hour", "--expires", "--max-expires"] {
        assert!(text.contains(flag), "{flag}:\n{text}");
    }

    // With PORCHLIGHT_DATA_DIR set, usage does not show --data-dir as if it were given
    // (or required), and the variable still chooses the data dir.
    let dir = tempfile::tempdir().unwrap();
    let out = common::bin()
        .env("PORCHLIGHT_DATA_DIR", dir.path())
        .args(["post"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Usage:"), "{err}");
    assert!(!err.contains("--data-dir <DIR>"), "{err}");
    let out = common::bin()
        .env("PORCHLIGHT_DATA_DIR", dir.path())
        .args(["init", "--name", "Alice"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(dir.path().join("identity.key").is_file());
}

/// The systemd unit in docs/operations.md, as written there.
fn documented_unit() -> (String, String) {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/operations.md"
    ))
    .unwrap();
    let start = doc
        .find("`/etc/systemd/system/porchlight.service`:\n\n```ini\n")
        .expect("operations.md shows the unit");
    let body = &doc[start..];
    let open = body.find("```ini\n").unwrap() + "```ini\n".len();
    let close = open + body[open..].find("```").unwrap();
    (body[open..close].to_owned(), doc)
}

/// `systemd-analyze`, which `.ci/run` installs (package `systemd`) when it is missing.
fn systemd_analyze() -> std::process::Command {
    let found = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .iter()
        .find(|p| Path::new(p).is_file())
        .expect("this test needs systemd-analyze: `apt-get install systemd` (.ci/run does it)");
    std::process::Command::new(found)
}

#[test]
fn the_documented_service_unit_is_hardened_and_valid() {
    let (unit, doc) = documented_unit();
    for setting in [
        "UMask=0077",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "SystemCallFilter=",
        "RestrictAddressFamilies=",
    ] {
        assert!(unit.contains(setting), "the unit lacks {setting}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("porchlight.service");
    std::fs::write(&path, &unit).unwrap();
    let out = systemd_analyze()
        .args(["security", "--offline=yes"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("{text}{}", String::from_utf8_lossy(&out.stderr)));
    let (_, rated) = line.split_once(": ").unwrap();
    let mut words = rated.split_whitespace();
    let score: f64 = words.next().unwrap().parse().unwrap();
    let verdict = words.next().unwrap();
    assert!(score <= 4.0 && verdict == "OK", "{line}");
    // The docs state the score this command gives.
    assert!(
        doc.contains(&format!("rates this unit\n**{score:.1} OK**"))
            || doc.contains(&format!("rates this unit **{score:.1} OK**")),
        "operations.md should state {score:.1} OK"
    );
    // `verify`, with the unit's binary being the one under test.
    let verify = dir.path().join("verify").join("porchlight.service");
    std::fs::create_dir(verify.parent().unwrap()).unwrap();
    std::fs::write(
        &verify,
        unit.replace(
            "/usr/local/bin/porchlight",
            env!("CARGO_BIN_EXE_porchlight"),
        ),
    )
    .unwrap();
    let out = systemd_analyze()
        .arg("verify")
        .arg(&verify)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}
