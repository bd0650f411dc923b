//! The local HTTP API: bearer token, bad JSON, oversize bodies; nothing changes on error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use porchlight_node::api;
use porchlight_tests::TestNode;
use serde_json::json;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_requires_the_token_and_refuses_bad_input_without_changing_anything() {
    let alice = TestNode::found("alice").await;
    let running = api::serve(
        alice.node.clone(),
        "127.0.0.1:0".parse().unwrap(),
        alice.dir.path(),
    )
    .await
    .unwrap();
    let token = std::fs::read_to_string(alice.dir.path().join(api::TOKEN_FILE)).unwrap();
    let addr = std::fs::read_to_string(alice.dir.path().join(api::ADDR_FILE)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(alice.dir.path().join(api::TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the token file is private");
    }
    let url = format!("http://{addr}/v1/reports");
    let good = json!({"category": "package-theft", "text": "parcel taken from porch"});

    let results = tokio::task::spawn_blocking(move || {
        let a = agent();
        let no_token = a.post(&url).send_json(&good).unwrap().status().as_u16();
        let wrong = a
            .post(&url)
            .header("Authorization", "Bearer 00")
            .send_json(&good)
            .unwrap()
            .status()
            .as_u16();
        let auth = format!("Bearer {token}");
        let malformed = a
            .post(&url)
            .header("Authorization", &auth)
            .send("{not json")
            .unwrap();
        let malformed_status = malformed.status().as_u16();
        let unknown_field = a
            .post(&url)
            .header("Authorization", &auth)
            .send_json(json!({"category": "other", "text": "x", "colour": "red"}))
            .unwrap()
            .status()
            .as_u16();
        let oversize = a
            .post(&url)
            .header("Authorization", &auth)
            .send(vec![b' '; api::MAX_BODY_BYTES + 1])
            .unwrap()
            .status()
            .as_u16();
        let ok = a
            .post(&url)
            .header("Authorization", &auth)
            .send_json(&good)
            .unwrap()
            .status()
            .as_u16();
        (
            no_token,
            wrong,
            malformed_status,
            unknown_field,
            oversize,
            ok,
        )
    })
    .await
    .unwrap();
    assert_eq!(results, (401, 401, 400, 400, 413, 201));
    assert_eq!(
        alice.feed().await.len(),
        1,
        "only the good request changed anything"
    );
    running.stop();
    assert!(
        !alice.dir.path().join(api::TOKEN_FILE).exists(),
        "the token goes with the API"
    );
}
