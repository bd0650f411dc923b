//! API JSON fuzzing against a real node: thousands of mutated request bodies (byte
//! flips, insertions, deletions, truncations, spliced values, wrong types) and mangled
//! paths, sent over HTTP to every endpoint that changes state. No answer may be a 5xx or
//! a dropped connection, and a refused request (4xx) must change nothing: the feed, the
//! roster and the drafts are compared before and after every one.
//!
//! `PORCHLIGHT_API_FUZZ_CASES` sets the count (default 1500); the seed is printed and
//! `PORCHLIGHT_API_FUZZ_SEED` replays it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use porchlight_node::api;
use porchlight_node::hub::Hub;
use porchlight_tests::TestNode;
use serde_json::{Value, json};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values spliced into bodies: wrong types, edge numbers, hostile text.
const SPLICES: &[&str] = &[
    "null",
    "true",
    "-1",
    "0",
    "18446744073709551616",
    "1e400",
    "[]",
    "{}",
    "\"\"",
    "\"\\u0000\"",
    "\"\\u202e\"",
    "\"\\ud800\"",
    "\"suspicious-activity\"",
    "[1,2,3]",
    "{\"a\":{\"b\":{\"c\":[[[[]]]]}}}",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(7) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(b.len() + 1);
                b.insert(i, rng.next() as u8);
            }
            2 if !b.is_empty() => {
                let i = rng.below(b.len());
                let n = 1 + rng.below(8.min(b.len() - i));
                b.drain(i..i + n);
            }
            3 => {
                let n = rng.below(b.len() + 1);
                b.truncate(n);
            }
            4 => {
                // Replace what follows a colon with a spliced value.
                let colons: Vec<usize> = (0..b.len()).filter(|&i| b[i] == b':').collect();
                if let Some(&at) = colons.get(rng.below(colons.len())) {
                    let end = b[at..]
                        .iter()
                        .position(|&c| c == b',' || c == b'}')
                        .map_or(b.len(), |p| at + p);
                    let splice = SPLICES[rng.below(SPLICES.len())].as_bytes();
                    b.splice(at + 1..end, splice.iter().copied());
                }
            }
            5 if !b.is_empty() => {
                let i = rng.below(b.len());
                let n = 1 + rng.below(16.min(b.len() - i));
                let copy = b[i..i + n].to_vec();
                let j = rng.below(b.len() + 1);
                b.splice(j..j, copy);
            }
            _ => {
                let i = rng.below(b.len() + 1);
                b.insert(i, b"{}[]\",:\\"[rng.below(8)]);
            }
        }
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_api_requests_never_fail_the_server_and_refusals_change_nothing() {
    let cases: usize = std::env::var("PORCHLIGHT_API_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let seed: u64 = std::env::var("PORCHLIGHT_API_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("api fuzz seed: {seed} (PORCHLIGHT_API_FUZZ_SEED={seed} replays it)");

    let alice = TestNode::found_with_rate("alice", 200).await;
    let hub = Hub::new(alice.node.clone(), alice.dir.path(), vec![]);
    let running = api::serve_with_hub(
        alice.node.clone(),
        "127.0.0.1:0".parse().unwrap(),
        alice.dir.path(),
        hub,
    )
    .await
    .unwrap();
    let token = std::fs::read_to_string(alice.dir.path().join(api::TOKEN_FILE)).unwrap();
    let base = format!("http://{}", running.addr);

    let summary = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            // A fresh connection per request: after an answer sent before the request
            // body was read (an unknown path), the server closes the connection, as
            // HTTP/1.1 lets it; a reused connection would then fail on the client side.
            .max_idle_connections(0)
            .build()
            .into();
        let auth = format!("Bearer {token}");
        let get = |path: &str| -> Value {
            agent
                .get(&format!("{base}{path}"))
                .header("Authorization", &auth)
                .call()
                .unwrap()
                .body_mut()
                .read_json()
                .unwrap()
        };
        // What a request could change (not `last_seen`, which moves with the clock).
        let snapshot = || {
            let members: Vec<Value> = get("/v1/members")
                .as_array()
                .unwrap()
                .iter()
                .map(|m| json!([m["id"], m["name"], m["role"]]))
                .collect();
            (get("/v1/feed"), members, get("/v1/drafts"))
        };
        let post = |path: &str, body: &[u8]| -> (u16, String) {
            let mut r = agent
                .post(&format!("{base}{path}"))
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(body)
                .unwrap_or_else(|e| panic!("POST {path} failed at the transport: {e}"));
            (
                r.status().as_u16(),
                r.body_mut().read_to_string().unwrap_or_default(),
            )
        };

        // Something to refer to: a report, a draft.
        let (s, report) = post(
            "/v1/reports",
            br#"{"category":"other","text":"bins are out early"}"#,
        );
        assert_eq!(s, 201, "{report}");
        let report: Value = serde_json::from_str(&report).unwrap();
        let report = report["id"].as_str().unwrap().to_owned();
        let (s, draft) = post(
            "/v1/hub/events",
            br#"{"camera":"porch","label":"person","id":"evt-1"}"#,
        );
        assert!(s == 200 || s == 201, "{s} {draft}");
        let draft = get("/v1/drafts")[0]["id"].as_str().unwrap().to_owned();

        let seeds: Vec<(String, Vec<u8>)> = vec![
            (
                "/v1/reports".into(),
                json!({"category": "suspicious-activity", "text": "man trying car doors",
                "behavior": "tried three handles", "where": "Elm St", "geohash": "9q8yyk8",
                "severity": "urgent", "expires_in_secs": 3600})
                .to_string()
                .into_bytes(),
            ),
            (
                format!("/v1/reports/{report}/update"),
                json!({"text": "he left", "severity": "info"})
                    .to_string()
                    .into_bytes(),
            ),
            (
                format!("/v1/reports/{}/resolve", &report[..8]),
                json!({"text": "all clear"}).to_string().into_bytes(),
            ),
            (format!("/v1/reports/{report}/retract"), b"{}".to_vec()),
            (
                "/v1/invites".into(),
                json!({"expires_in_secs": 600}).to_string().into_bytes(),
            ),
            (
                "/v1/members/remove".into(),
                json!({"member": "nobody-here"}).to_string().into_bytes(),
            ),
            (
                "/v1/hub/events".into(),
                json!({"camera": "porch", "label": "person", "zones": ["drive"],
                "text": "someone at the door", "category": "other", "captured_at": 1_700_000_000u64,
                "id": "evt-2"})
                .to_string()
                .into_bytes(),
            ),
            (
                format!("/v1/drafts/{draft}/approve"),
                json!({"text": "a person at the door", "category": "other",
                "where": "Elm St", "severity": "info"})
                .to_string()
                .into_bytes(),
            ),
            (format!("/v1/drafts/{draft}/discard"), b"".to_vec()),
            ("/v1/clips/requests/00000000/allow".into(), b"".to_vec()),
        ];

        let mut rng = Rng(seed);
        let mut before = snapshot();
        let (mut refused, mut accepted) = (0usize, 0usize);
        let deadline = Instant::now() + Duration::from_secs(300);
        for case in 0..cases {
            assert!(Instant::now() < deadline, "{case} cases in 300 s");
            let (path, seed_body) = &seeds[rng.below(seeds.len())];
            let body = mutate(&mut rng, seed_body);
            // Mangle the path now and then (ids, extra segments, encodings).
            let path = match rng.below(6) {
                0 => path.replacen("/v1/", "/v1//", 1),
                1 => format!("{path}%00"),
                2 => path.replace(&report, &"f".repeat(64)),
                _ => path.clone(),
            };
            // The webhook can import a local file or fetch a URL: mutations must not
            // invent either (network tests stay on loopback, files stay put).
            let text = String::from_utf8_lossy(&body);
            if text.contains("clip_") || text.contains("http") {
                continue;
            }
            let (status, answer) = post(&path, &body);
            assert!(
                status < 500,
                "case {case}: POST {path} {text:?} → {status} {answer}"
            );
            let after = snapshot();
            if status >= 400 {
                refused += 1;
                assert_eq!(
                    after, before,
                    "case {case}: refused POST {path} {text:?} ({status} {answer}) changed state"
                );
                if status != 404 && status != 405 {
                    let v: Value = serde_json::from_str(&answer).unwrap_or_else(|_| {
                        panic!("case {case}: error body is not JSON: {answer}")
                    });
                    assert!(
                        v["error"].as_str().is_some_and(|e| !e.is_empty()),
                        "{answer}"
                    );
                }
            } else {
                accepted += 1;
            }
            before = after;
        }
        (refused, accepted)
    })
    .await
    .unwrap();
    eprintln!(
        "{cases} mutated requests: {} refused (state unchanged each time), {} accepted, 0 server errors",
        summary.0, summary.1
    );
    assert!(
        summary.0 > cases / 2,
        "most mutations are refused: {summary:?}"
    );
    running.stop();
}
