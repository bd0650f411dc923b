//! `GET /v1/feed` pages: the newest `limit` items (default 100, at most 1,000) before a
//! cursor, oldest first; paging back through them yields every live item exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use porchlight_node::api;
use porchlight_tests::{TestNode, report_at};
use serde_json::Value;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// (status, body) of a GET.
fn get(base: &str, token: &str, path: &str) -> (u16, Value) {
    let mut r = agent()
        .get(&format!("{base}{path}"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    (r.status().as_u16(), r.body_mut().read_json().unwrap())
}

fn ids(page: &Value) -> Vec<String> {
    page.as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_pages_back_through_every_item_once_in_order() {
    let alice = TestNode::found_with_rate("Alice", u16::MAX).await;
    let now = porchlight_node::now();
    let mut posted = Vec::new();
    // 250 reports over about a minute, a few per second (ties within a second too).
    for n in 0..250u64 {
        let id = alice
            .node
            .post(report_at(&format!("report {n}"), now - 250 + n / 4 * 4))
            .await
            .unwrap();
        posted.push(id.to_hex());
    }
    let running = api::serve(
        alice.node.clone(),
        "127.0.0.1:0".parse().unwrap(),
        alice.dir.path(),
    )
    .await
    .unwrap();
    let token = std::fs::read_to_string(alice.dir.path().join(api::TOKEN_FILE)).unwrap();
    let base = format!("http://{}", running.addr);

    let result = tokio::task::spawn_blocking(move || {
        // Default page: the newest 100, oldest first.
        let (code, first) = get(&base, &token, "/v1/feed");
        assert_eq!(code, 200, "{first}");
        let first_ids = ids(&first);
        assert_eq!(first_ids.len(), 100);
        let times: Vec<u64> = first
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["created_at"].as_u64().unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
        assert_eq!(
            times.last(),
            Some(&(now - 250 + 249 / 4 * 4)),
            "ends at the newest"
        );

        // Back through the rest, 70 at a time.
        let mut seen = Vec::new();
        let mut before: Option<String> = None;
        for _ in 0..10 {
            let cursor = before.map(|b| format!("&before={b}")).unwrap_or_default();
            let (code, page) = get(&base, &token, &format!("/v1/feed?limit=70{cursor}"));
            assert_eq!(code, 200, "{page}");
            let page = ids(&page);
            before = page.first().cloned();
            let done = page.len() < 70;
            let mut page = page;
            page.extend(seen);
            seen = page;
            if done {
                break;
            }
        }
        let mut sorted_seen = seen.clone();
        sorted_seen.sort();
        sorted_seen.dedup();
        assert_eq!(sorted_seen.len(), 250, "every item once");
        let mut all = posted.clone();
        all.sort();
        assert_eq!(sorted_seen, all);

        // A page, the whole feed's tail: the same items as the default page.
        assert_eq!(seen[150..].to_vec(), first_ids);

        // Bad pages are refused, with a reason.
        for bad in [
            "/v1/feed?limit=0",
            "/v1/feed?limit=1001",
            "/v1/feed?before=xyz",
            "/v1/feed?limit=ten",
        ] {
            let (code, body) = get(&base, &token, bad);
            assert_eq!(code, 400, "{bad}: {body}");
            assert!(body["error"].as_str().is_some(), "{bad}: {body}");
        }
        let unknown = "ab".repeat(32);
        let (code, body) = get(&base, &token, &format!("/v1/feed?before={unknown}"));
        assert_eq!(code, 400, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("not a live item"),
            "{body}"
        );
        // The largest page holds them all.
        let (_, all_page) = get(&base, &token, "/v1/feed?limit=1000");
        assert_eq!(ids(&all_page), seen);
    })
    .await;
    running.stop();
    result.unwrap();
    alice.stop().await;
}
