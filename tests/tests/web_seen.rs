//! "Seen by" (issue #22) in the page, in a real headless Chromium against real nodes on
//! loopback (as `web.rs`; without Chromium the test skips unless `CI` is set): Alice asks
//! from the post form; Bob's open page shows the alert and so tells her he has seen it;
//! Carol, who has no page open and reads nothing, sends nothing; Alice's page says "Seen
//! by 1 of 2: bob".

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use porchlight_node::api;
use porchlight_node::hub::Hub;
use porchlight_node::seen::SeenBy;
use porchlight_proto::item::Body;
use porchlight_tests::browser::{Browser, Driver};
use porchlight_tests::{TestNode, eventually};
use serde_json::Value;

/// A node with its API and page served.
struct Site {
    node: TestNode,
    running: Option<api::Running>,
    addr: SocketAddr,
    token: String,
}

impl Site {
    async fn serve(node: TestNode) -> Site {
        let hub = Hub::new(node.node.clone(), node.dir.path(), Vec::new());
        let running = api::serve_with_hub(
            node.node.clone(),
            "127.0.0.1:0".parse().unwrap(),
            node.dir.path(),
            hub,
        )
        .await
        .unwrap();
        let token = std::fs::read_to_string(node.dir.path().join(api::TOKEN_FILE)).unwrap();
        Site {
            addr: running.addr,
            running: Some(running),
            node,
            token,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Signs `browser` in with a fresh link (as `porchlight open` gets one).
    fn sign_in(&self, browser: &Browser) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let auth = format!("Bearer {}", self.token);
        let url = self.url("/v1/web/link");
        let v: Value = tokio::task::block_in_place(|| {
            agent
                .post(&url)
                .header("Authorization", &auth)
                .send_empty()
                .unwrap()
                .body_mut()
                .read_json()
                .unwrap()
        });
        browser.goto(v["url"].as_str().unwrap());
        assert!(browser.wait_text("h1", "Feed"), "signed in, on the feed");
        assert!(
            browser.wait_text("#live", "Live"),
            "the feed's event stream is open"
        );
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop();
        }
    }
}

async fn report_seen(n: &TestNode) -> Option<SeenBy> {
    n.feed()
        .await
        .into_iter()
        .find(|i| matches!(i.body, Body::Report(_)))
        .and_then(|i| i.seen)
}

async fn items(n: &TestNode) -> usize {
    n.node.status_brief().await.unwrap().items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bobs_page_showing_an_asking_alert_tells_alice_and_carol_sends_nothing() {
    let Some(driver) = Driver::start_or_skip("web seen by") else {
        return;
    };
    let alice_node = TestNode::found("alice").await;
    let bob_node = alice_node.invite("bob").await;
    let carol = alice_node.invite("carol").await;
    for n in [&alice_node, &bob_node, &carol] {
        assert!(
            eventually(|| async { n.node.members().await.unwrap().len() == 3 }).await,
            "{} sees three members",
            n.name
        );
    }
    let alice = Site::serve(alice_node).await;
    let bob = Site::serve(bob_node).await;
    let alice_page = driver.browser(1280, 900);
    let bob_page = driver.browser(1280, 900);
    alice.sign_in(&alice_page);
    bob.sign_in(&bob_page);

    alice_page.goto(&alice.url("/post"));
    assert!(alice_page.wait_text("h1", "Post"));
    alice_page.set("#category", "fire");
    alice_page.type_into("#text", "Smoke coming from the garage");
    alice_page.type_into("#where", "Elm St, 400 block");
    alice_page.click("#ask_seen");
    // Not urgent: refused beside the field, nothing sent.
    alice_page.set("#severity", "warning");
    alice_page.click("#post-form button[type=submit]");
    assert!(alice_page.wait_text("#ask_seen-error", "Only an urgent report"));
    assert_eq!(items(&alice.node).await, 0);
    alice_page.set("#severity", "urgent");
    alice_page.click("#post-form button[type=submit]");
    assert!(alice_page.wait_text("#notice", "Posted"));

    // Bob's page, open on the feed all along, shows it: that tells Alice.
    assert!(bob_page.wait_text("#feed li.card", "Smoke coming from the garage"));
    assert!(
        eventually(|| async {
            report_seen(&alice.node).await
                == Some(SeenBy {
                    of: 2,
                    by: vec!["bob".into()],
                })
        })
        .await,
        "Alice's node counts Bob: {:?}",
        report_seen(&alice.node).await
    );
    alice_page.goto(&alice.url("/"));
    assert!(alice_page.wait_text("#feed li.card .seen", "Seen by 1 of 2: bob"));
    // Carol received it and read nothing: every node holds the report and one ack.
    for n in [&alice.node, &bob.node, &carol] {
        assert!(
            eventually(|| async { items(n).await == 2 }).await,
            "{} holds the report and Bob's ack",
            n.name
        );
    }
    // Bob's page reloaded shows it again, and sends nothing more.
    bob_page.goto(&bob.url("/"));
    assert!(bob_page.wait_text("#feed li.card", "Smoke coming from the garage"));
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(items(&alice.node).await, 2);
    assert_eq!(items(&carol).await, 2);
}
