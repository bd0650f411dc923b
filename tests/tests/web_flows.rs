//! Issue #19, the rest of the page's Build list, in a real headless Chromium against real
//! nodes on loopback: the feed's filters and older pages, a report's author updating and
//! retracting it (behind a confirmation), a neighbor's clip under the owner's `ask`
//! policy (waiting, allowed in the hub page, then played; or denied), and a camera draft
//! discarded.
//!
//! Without Chromium each test skips with a message, unless `CI` is set (then it fails).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use porchlight_node::api;
use porchlight_node::hub::Hub;
use porchlight_proto::item::Body;
use porchlight_tests::browser::{Browser, Driver};
use porchlight_tests::{TestNode, eventually};
use serde_json::{Value, json};

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

    /// A request with the bearer token: (status, JSON answer).
    fn bearer(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let url = self.url(path);
        let auth = format!("Bearer {}", self.token);
        let mut response = tokio::task::block_in_place(|| match (method, body) {
            (_, Some(b)) => agent.post(&url).header("Authorization", &auth).send_json(b),
            ("POST", None) => agent.post(&url).header("Authorization", &auth).send_empty(),
            _ => agent.get(&url).header("Authorization", &auth).call(),
        })
        .unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.body_mut().read_json().unwrap_or(Value::Null),
        )
    }

    fn post(&self, report: Value) -> String {
        let (status, v) = self.bearer("POST", "/v1/reports", Some(report));
        assert_eq!(status, 201, "{v}");
        v["id"].as_str().unwrap().to_owned()
    }

    fn sign_in(&self, browser: &Browser) {
        let (status, v) = self.bearer("POST", "/v1/web/link", None);
        assert_eq!(status, 200, "{v}");
        browser.goto(v["url"].as_str().unwrap());
        assert!(browser.wait_text("h1", "Feed"));
        assert!(browser.wait_text("#live", "Live"));
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop();
        }
    }
}

fn fixture_clip() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/clip.webm")
}

fn count(browser: &Browser, css: &str) -> u64 {
    browser
        .run(
            "return [...document.querySelectorAll(arguments[0])].filter(e => !e.hidden).length;",
            json!([css]),
        )
        .as_u64()
        .unwrap()
}

/// Clicks the button under `css` whose text starts with `text`.
fn click_button(browser: &Browser, css: &str, text: &str) {
    let done = browser.run(
        "const b = [...document.querySelectorAll(arguments[0] + ' button')]
            .find(b => b.textContent.trim().startsWith(arguments[1]));
         if (!b) return false; b.click(); return true;",
        json!([css, text]),
    );
    assert_eq!(done, json!(true), "no button {text:?} in {css}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_feed_filters_shows_older_pages_and_its_author_updates_and_retracts() {
    let Some(driver) = Driver::start_or_skip("web feed flows") else {
        return;
    };
    let alice = Site::serve(TestNode::found_with_rate("alice", 100).await).await;
    // 55 reports: 5 urgent lost pets, then 50 others; the page shows 50 at a time.
    for i in 0..5 {
        alice.post(json!({"category": "lost-pet", "severity": "urgent",
            "text": format!("Lost dog number {i}"), "where": "Oak Ave"}));
    }
    let mut last = String::new();
    for i in 0..50 {
        last = alice.post(json!({"category": "other", "severity": "info",
            "text": format!("Streetlight out number {i}"), "where": "Elm St"}));
    }
    let page = driver.browser(390, 844);
    alice.sign_in(&page);
    assert!(page.wait(|b| count(b, "#feed li.card") == 50));
    // Older reports on request.
    page.click("#older");
    assert!(page.wait(|b| count(b, "#feed li.card") == 55));
    assert!(page.wait_text("#feed li.card .text", "Lost dog number 0"));
    assert_eq!(
        page.run("return document.getElementById('older').hidden;", json!([])),
        json!(true),
        "no more pages"
    );

    // By category (asked of the node), then by severity (in the page).
    page.set("#filter-category", "lost-pet");
    assert!(page.wait(|b| count(b, "#feed li.card") == 5));
    assert!(page.wait_text("#feed li.card .meta", "Lost pet"));
    page.set("#filter-category", "");
    assert!(page.wait(|b| count(b, "#feed li.card") == 50));
    page.set("#filter-severity", "urgent");
    // Reports made in the same second are ordered by id: some lost pets may be on the
    // first page already.
    if page.run("return document.getElementById('older').hidden;", json!([])) == json!(false) {
        page.click("#older");
    }
    assert!(
        page.wait(|b| b.run(
            "return document.querySelectorAll('#feed li.card').length;",
            json!([])
        ) == json!(55)),
        "all 55 loaded"
    );
    assert_eq!(count(&page, "#feed li.card"), 5, "the others are hidden");
    // Severity is written out, not only a color.
    assert_eq!(
        page.run(
            "return [...document.querySelectorAll('#feed li.card')].filter(e => !e.hidden)
                .map(e => e.querySelector('.severity').textContent);",
            json!([])
        ),
        json!(["Urgent", "Urgent", "Urgent", "Urgent", "Urgent"])
    );
    page.set("#filter-severity", "");

    // The newest report: an update, then a retraction behind a confirmation.
    let newest = &format!("#feed li.card[data-id='{last}']");
    assert!(page.wait_text(newest, "Streetlight out number 49"));
    page.click(&format!("{newest} details.actions summary"));
    page.type_into(&format!("{newest} .update-text"), "The council says Friday");
    click_button(&page, newest, "Send update");
    assert!(page.wait_text(&format!("{newest} .updates"), "The council says Friday"));
    assert_eq!(
        page.run(
            "return document.querySelector(arguments[0] + ' details.actions').open;",
            json!([newest])
        ),
        json!(true),
        "the form stays open as the update arrives"
    );
    click_button(&page, newest, "Retract");
    assert!(page.wait_text(&format!("{newest} .confirm"), "Take this report back"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let reports = |feed: Vec<porchlight_node::node::FeedItem>| {
        feed.iter()
            .filter(|i| matches!(&i.body, Body::Report(r) if r.text == "Streetlight out number 49"))
            .count()
    };
    assert_eq!(
        reports(alice.node.feed().await),
        1,
        "not before the confirmation"
    );
    click_button(&page, &format!("{newest} .confirm"), "Yes, retract it");
    assert!(page.wait_text("#notice", "Report taken back"));
    assert!(
        page.wait(|b| !b
            .text("#feed")
            .unwrap_or_default()
            .contains("Streetlight out number 49")),
        "the card goes"
    );
    assert!(
        eventually(|| async { reports(alice.node.feed().await) == 0 }).await,
        "retracted in the node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_clip_under_ask_waits_for_the_owner_who_allows_or_denies_it_in_the_hub_page() {
    let Some(driver) = Driver::start_or_skip("web clip asks") else {
        return;
    };
    let alice_node = TestNode::found("alice").await;
    let bob_node = alice_node.invite("bob").await;
    let alice = Site::serve(alice_node).await;
    let bob = Site::serve(bob_node).await;
    // Two clips (the second is the first with bytes after it: another hash).
    let first = alice.node.dir.path().join("porch.webm");
    std::fs::copy(fixture_clip(), &first).unwrap();
    let second = alice.node.dir.path().join("drive.webm");
    let mut bytes = std::fs::read(fixture_clip()).unwrap();
    bytes.extend_from_slice(b"another clip");
    std::fs::write(&second, bytes).unwrap();
    let parcel_id = alice.post(
        json!({"category": "package-theft", "text": "Parcel taken at noon",
        "where": "Elm St, 400 block", "clips": [{"path": first, "camera": "porch"}]}),
    );
    let alarm_id = alice.post(json!({"category": "vehicle", "text": "Car alarm all night",
        "where": "Elm and 3rd", "clips": [{"path": second, "camera": "drive"}]}));
    assert!(
        eventually(|| async {
            bob.node
                .feed()
                .await
                .iter()
                .filter(|i| matches!(i.body, Body::Report(_)))
                .count()
                == 2
        })
        .await
    );
    // A camera draft waits in Alice's hub too.
    let (s, v) = alice.bearer(
        "POST",
        "/v1/hub/events",
        Some(
            json!({"camera": "front_door", "label": "person", "clip_path": first, "id": "ring-1"}),
        ),
    );
    assert_eq!(s, 201, "{v}");

    let bob_page = driver.browser(1280, 900);
    let alice_page = driver.browser(390, 844);
    bob.sign_in(&bob_page);
    alice.sign_in(&alice_page);
    let parcel = &format!("#feed li.card[data-id='{parcel_id}']");
    assert!(bob_page.wait_text(parcel, "Parcel taken at noon"));
    click_button(&bob_page, parcel, "Get the clip");
    assert!(bob_page.wait_text(
        &format!("{parcel} .clip-state"),
        "Waiting for alice to allow it"
    ));

    // Alice allows it in her hub page; Bob's page fetches it and plays it.
    alice_page.goto(&alice.url("/hub"));
    assert!(alice_page.wait_text("#requests li.card", "bob"));
    click_button(&alice_page, "#requests li.card", "Allow");
    assert!(bob_page.wait_text(&format!("{parcel} .clip-state"), "Fetched"));
    let played = bob_page.run_async(
        "const [css, done] = arguments;
         const v = document.querySelector(css + ' video');
         if (!v) { done({error: 'no video'}); return; }
         v.muted = true;
         v.play().then(() => setTimeout(() => done({time: v.currentTime, width: v.videoWidth}), 800))
           .catch((e) => done({error: String(e)}));",
        json!([parcel]),
    );
    assert!(played["time"].as_f64().unwrap_or(0.0) > 0.0, "{played}");
    assert_eq!(played["width"], json!(160), "{played}");
    // An update to the report arrives while Bob watches: his player stays as it is.
    bob_page.run(
        "document.querySelector(arguments[0] + ' video').dataset.watching = 'yes';",
        json!([parcel]),
    );
    let (s, v) = alice.bearer(
        "POST",
        &format!("/v1/reports/{parcel_id}/update"),
        Some(json!({"text": "The courier has the van's number"})),
    );
    assert_eq!(s, 201, "{v}");
    assert!(bob_page.wait_text(&format!("{parcel} .updates"), "the van's number"));
    assert_eq!(
        bob_page.run(
            "const v = document.querySelector(arguments[0] + ' video');
             return v ? v.dataset.watching || 'replaced' : 'gone';",
            json!([parcel])
        ),
        json!("yes")
    );

    // The other clip: Alice denies it; Bob's page says so.
    let alarm = &format!("#feed li.card[data-id='{alarm_id}']");
    assert!(bob_page.wait_text(alarm, "Car alarm all night"));
    click_button(&bob_page, alarm, "Get the clip");
    assert!(bob_page.wait_text(&format!("{alarm} .clip-state"), "Waiting for alice"));
    alice_page.goto(&alice.url("/hub"));
    assert!(alice_page.wait_text("#requests li.card", "bob"));
    click_button(&alice_page, "#requests li.card", "Deny");
    assert!(alice_page.wait_text("#requests", "No requests waiting"));
    assert!(
        bob_page.wait_text(&format!("{alarm} .clip-state"), "Could not fetch the clip"),
        "{:?}",
        bob_page.text(alarm)
    );
    assert_eq!(
        bob_page.run(
            "return !!document.querySelector(arguments[0] + ' video');",
            json!([alarm])
        ),
        json!(false)
    );

    // The draft: discarded, nothing posted.
    assert!(alice_page.wait_text("#drafts li.card", "front_door"));
    click_button(&alice_page, "#drafts li.card", "Discard");
    assert!(alice_page.wait_text("#notice", "Discarded"));
    assert!(alice_page.wait_text("#drafts", "No drafts waiting"));
    let (_, drafts) = alice.bearer("GET", "/v1/drafts", None);
    assert_eq!(drafts, json!([]));
    assert_eq!(
        alice
            .node
            .feed()
            .await
            .iter()
            .filter(|i| matches!(i.body, Body::Report(_)))
            .count(),
        2,
        "nothing posted"
    );
}
