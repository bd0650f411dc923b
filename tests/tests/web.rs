//! Issue #19: the page in the browser, in a real headless Chromium (Debian's `chromium`
//! and `chromium-driver`, installed by `.ci/run`) against real nodes on loopback.
//!
//! Without Chromium each test skips with a message, unless `CI` is set (then it fails).
//! `PORCHLIGHT_WEB_SCREENSHOTS=docs/web` makes the screenshot test write its PNGs there
//! (docs/web.md shows them); otherwise they go to a temporary directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use porchlight_node::api;
use porchlight_node::hub::Hub;
use porchlight_proto::item::Body;
use porchlight_tests::browser::{Browser, Driver, porchlight_bin};
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
        let mut response = tokio::task::block_in_place(|| match body {
            Some(b) => agent.post(&url).header("Authorization", &auth).send_json(b),
            None if method == "POST" => {
                agent.post(&url).header("Authorization", &auth).send_empty()
            }
            None => agent.get(&url).header("Authorization", &auth).call(),
        })
        .unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.body_mut().read_json().unwrap_or(Value::Null),
        )
    }

    /// Signs `browser` in with a fresh link (as `porchlight open` gets one).
    fn sign_in(&self, browser: &Browser) {
        let (status, v) = self.bearer("POST", "/v1/web/link", None);
        assert_eq!(status, 200, "{v}");
        browser.goto(v["url"].as_str().unwrap());
        assert!(browser.wait_text("h1", "Feed"), "signed in, on the feed");
        assert!(
            browser.wait_text("#live", "Live"),
            "the feed's event stream is open"
        );
    }

    async fn reports(&self) -> Vec<porchlight_node::node::FeedItem> {
        self.node
            .feed()
            .await
            .into_iter()
            .filter(|i| matches!(i.body, Body::Report(_)))
            .collect()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop();
        }
    }
}

/// One raw HTTP/1.1 request, headers exactly as given: the answer's status.
fn raw(addr: SocketAddr, request: &str) -> u16 {
    tokio::task::block_in_place(|| {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut head = [0u8; 64];
        let n = stream.read(&mut head).unwrap();
        let line = String::from_utf8_lossy(&head[..n]).to_string();
        line.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0)
    })
}

/// The session cookie the browser holds: `name=value`.
fn session_cookie(browser: &Browser) -> String {
    let cookies = browser.cookies();
    let c = cookies
        .iter()
        .find(|c| {
            c["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("porchlight_"))
        })
        .expect("a session cookie");
    format!(
        "{}={}",
        c["name"].as_str().unwrap(),
        c["value"].as_str().unwrap()
    )
}

fn fixture_clip() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/clip.webm")
}

/// Whether the page's video `css` plays: it starts, time moves, the frames are the
/// fixture's 160 × 120.
fn plays(browser: &Browser, css: &str) -> Value {
    browser.run_async(
        "const [css, done] = arguments;
         const v = document.querySelector(css);
         if (!v) { done({error: 'no video'}); return; }
         v.muted = true;
         v.play().then(() => setTimeout(() => done({
             time: v.currentTime, width: v.videoWidth, height: v.videoHeight,
             error: v.error ? String(v.error.code) : null}), 800))
           .catch((e) => done({error: String(e)}));",
        json!([css]),
    )
}

// ---------------------------------------------------------------- 1. sign-in

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_link_from_porchlight_open_signs_in_once_and_a_wrong_or_reused_code_is_refused() {
    let Some(driver) = Driver::start_or_skip("web sign-in") else {
        return;
    };
    let alice = Site::serve(TestNode::found("alice").await).await;

    // The real command, as a person runs it; no desktop here, so it only prints.
    let output = tokio::task::block_in_place(|| {
        std::process::Command::new(porchlight_bin())
            .arg("--data-dir")
            .arg(alice.node.dir.path())
            .arg("open")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .output()
            .unwrap()
    });
    assert!(output.status.success(), "{output:?}");
    let link = String::from_utf8(output.stdout.clone())
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        link.starts_with(&format!("http://{}/signin?code=", alice.addr)),
        "{link}"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("works once"),
        "{output:?}"
    );

    let browser = driver.browser(1280, 900);
    // Not signed in: the page says how to sign in, and the API refuses.
    browser.goto(&alice.url("/"));
    assert!(browser.wait_text("#signin-message", "porchlight open"));
    // A wrong code is refused and sets nothing.
    browser.goto(&alice.url("/signin?code=0123456789abcdef"));
    assert!(browser.wait_text("#signin-message", "wrong, used or expired"));
    assert!(browser.cookies().is_empty(), "{:?}", browser.cookies());

    // The link signs in: an HttpOnly, SameSite=Strict session cookie, and the feed.
    browser.goto(&link);
    assert!(browser.wait_text("h1", "Feed"), "{}", browser.url());
    assert_eq!(browser.url(), alice.url("/"));
    let cookies = browser.cookies();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert_eq!(cookies[0]["httpOnly"], json!(true), "{cookies:?}");
    assert_eq!(cookies[0]["sameSite"], json!("Strict"), "{cookies:?}");
    assert_eq!(
        browser.run("return document.cookie;", json!([])),
        json!(""),
        "the page's script cannot read the session"
    );
    assert!(
        browser.wait_text("#hood", "Elm Street"),
        "the API answers the page"
    );

    // The same link in another browser: refused, it was used.
    let other = driver.browser(1280, 900);
    other.goto(&link);
    assert!(other.wait_text("#signin-message", "wrong, used or expired"));
    assert!(other.cookies().is_empty());
    let status = other.run_async(
        "fetch('/v1/status').then(r => arguments[0](r.status));",
        json!([]),
    );
    assert_eq!(status, json!(401), "no session, no API");

    // The bearer-token API keeps working beside the page.
    let (status, v) = alice.bearer("GET", "/v1/status", None);
    assert_eq!(status, 200, "{v}");
    // A session cannot mint more sign-in links.
    let cookie = session_cookie(&browser);
    let code = raw(
        alice.addr,
        &format!(
            "POST /v1/web/link HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            alice.addr
        ),
    );
    assert_eq!(code, 403);
}

// ---------------------------------------------------------------- 2. live feed

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alices_report_appears_in_bobs_open_page_within_two_seconds() {
    let Some(driver) = Driver::start_or_skip("web live feed") else {
        return;
    };
    let alice_node = TestNode::found("alice").await;
    let bob_node = alice_node.invite("bob").await;
    let alice = Site::serve(alice_node).await;
    let bob = Site::serve(bob_node).await;
    assert!(
        eventually(|| async {
            bob.node
                .node
                .status()
                .await
                .is_ok_and(|s| !s.connected.is_empty())
        })
        .await,
        "Bob is connected to Alice"
    );
    let alice_page = driver.browser(1280, 900);
    let bob_page = driver.browser(1280, 900);
    alice.sign_in(&alice_page);
    bob.sign_in(&bob_page);

    alice_page.goto(&alice.url("/post"));
    assert!(alice_page.wait_text("h1", "Post"));
    alice_page.set("#category", "package-theft");
    alice_page.type_into("#text", "Parcel taken from the porch at noon");
    alice_page.type_into("#where", "Elm St, 400 block");
    let started = Instant::now();
    alice_page.click("#post-form button[type=submit]");
    // Bob's page, open all along, shows it without a reload.
    let deadline = started + Duration::from_secs(2);
    let mut seen = false;
    while Instant::now() < deadline {
        if bob_page.run(
            "return [...document.querySelectorAll('#feed li.card')]
                .some(e => e.innerText.includes('Parcel taken from the porch'));",
            json!([]),
        ) == json!(true)
        {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let elapsed = started.elapsed();
    assert!(seen, "not in Bob's page within 2 s");
    println!("Alice's report in Bob's page after {elapsed:?}");
    let card = bob_page.text("#feed li.card").unwrap();
    assert!(card.contains("Package theft"), "{card}");
    assert!(card.contains("alice"), "{card}");
    assert!(card.contains("Elm St, 400 block"), "{card}");
    let fingerprint = alice.node.node.member().fingerprint();
    assert!(card.contains(&fingerprint), "{card}");
    assert!(alice_page.wait_text("#notice", "Posted"));

    // Alice resolves it from her feed; Bob's card says so, still without a reload.
    alice_page.goto(&alice.url("/"));
    assert!(alice_page.wait_text("#feed li.card", "Parcel taken"));
    alice_page.click("#feed li.card details.actions summary");
    alice_page.type_into("#feed li.card .update-text", "Found behind the bins");
    alice_page.run(
        "[...document.querySelectorAll('#feed li.card button')]
            .find(b => b.innerText.startsWith('All clear')).click();",
        json!([]),
    );
    assert!(bob_page.wait_text("#feed li.card .resolution", "Found behind the bins"));
    assert!(bob_page.wait_text("#feed li.card .meta", "Resolved"));
}

// ---------------------------------------------------------------- 3. rules

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_rule_error_shows_inline_and_nothing_is_posted() {
    let Some(driver) = Driver::start_or_skip("web post rules") else {
        return;
    };
    let alice = Site::serve(TestNode::found("alice").await).await;
    let page = driver.browser(1280, 900);
    alice.sign_in(&page);
    page.goto(&alice.url("/post"));
    assert!(page.wait_text("h1", "Post"));
    // The hood's limits arrived (the hint names the maximum lifetime).
    assert!(page.wait_text("#expires-hint", "30 days"));

    let long_text = "é".repeat(501); // 1002 bytes
    // (category, text, behavior, where, expires in hours, field, message)
    let cases = [
        ("package-theft", "", "", "", "", "text", "Say what happened"),
        (
            "package-theft",
            long_text.as_str(),
            "",
            "",
            "",
            "text",
            "1002 bytes, at most 1000",
        ),
        (
            "suspicious-activity",
            "Someone by the cars",
            "",
            "",
            "",
            "behavior",
            "must say what the person did",
        ),
        (
            "hazard",
            "Wire down",
            "",
            "412 Elm St",
            "",
            "where",
            "house number",
        ),
        (
            "hazard",
            "Wire down",
            "",
            "",
            "1000",
            "expires",
            "at most 30 days",
        ),
        ("hazard", "Wire down", "", "", "0", "expires", "at least 1"),
    ];
    for (category, text, behavior, place, expires, field, message) in cases {
        page.set("#category", category);
        page.set("#text", text);
        page.set("#behavior", behavior);
        page.set("#where", place);
        page.set("#expires", expires);
        page.click("#post-form button[type=submit]");
        assert!(
            page.wait_text(&format!("#{field}-error"), message),
            "{field}: {:?}",
            page.text(&format!("#{field}-error"))
        );
        assert!(page.wait_text("#post-summary", "Nothing was sent"));
        assert_eq!(
            page.run(
                "return document.getElementById(arguments[0]).getAttribute('aria-invalid');",
                json!([field])
            ),
            json!("true"),
            "{field} is marked invalid for screen readers"
        );
    }
    // Nothing reached the node.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(alice.reports().await.is_empty(), "nothing was posted");

    // Fixed, the same form posts, and the errors are gone.
    page.set("#category", "suspicious-activity");
    page.set("#text", "Someone by the cars");
    page.set("#behavior", "tried the handles of three parked cars");
    page.set("#where", "Elm St, 400 block");
    page.set("#expires", "48");
    // With a clip, uploaded with a progress bar.
    page.choose_file("#clip", &fixture_clip());
    page.click("#post-form button[type=submit]");
    assert!(page.wait_text("#notice", "Posted"));
    assert_eq!(page.text("#behavior-error").as_deref(), Some(""));
    assert_eq!(
        page.run(
            "return document.getElementById('clip-progress').value;",
            json!([])
        ),
        json!(100),
        "the upload's progress reached 100 %"
    );
    let reports = alice.reports().await;
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].expires_at - reports[0].created_at, 48 * 3600);
    let Body::Report(report) = &reports[0].body else {
        unreachable!("reports() keeps reports")
    };
    let sha = porchlight_node::clips::hash_file(&fixture_clip()).unwrap();
    assert_eq!(report.clips.len(), 1);
    assert_eq!(report.clips[0].sha256, sha);
    assert!(porchlight_node::clips::path(alice.node.dir.path(), &sha).is_file());
}

// ---------------------------------------------------------------- 4. hub

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_draft_approved_in_the_page_reaches_bob_who_fetches_and_plays_its_clip() {
    let Some(driver) = Driver::start_or_skip("web hub") else {
        return;
    };
    let alice_node = TestNode::found("alice").await;
    let bob_node = alice_node.invite("bob").await;
    let alice = Site::serve(alice_node).await;
    let bob = Site::serve(bob_node).await;
    let clip_file = alice.node.dir.path().join("ring.webm");
    std::fs::copy(fixture_clip(), &clip_file).unwrap();
    let (status, draft) = alice.bearer(
        "POST",
        "/v1/hub/events",
        Some(json!({"camera": "doorbell", "label": "person", "clip_path": clip_file, "id": "ring-1"})),
    );
    assert_eq!(status, 201, "{draft}");
    let sha = draft["clip_sha256"].as_str().unwrap().to_owned();

    let alice_page = driver.browser(1280, 900);
    alice.sign_in(&alice_page);
    alice_page.goto(&alice.url("/hub"));
    assert!(alice_page.wait_text("#drafts li.draft", "doorbell"));
    // The draft's clip plays in the page before anything is sent.
    let played = plays(&alice_page, "#drafts li.draft video");
    assert_eq!(played["width"], json!(160), "{played}");
    assert!(played["time"].as_f64().unwrap_or(0.0) > 0.0, "{played}");

    let id = draft["id"].as_str().unwrap();
    alice_page.type_into(&format!("#draft-text-{id}"), "Someone tried the front door");
    alice_page.set(&format!("#draft-category-{id}"), "break-in");
    alice_page.set(&format!("#draft-share-{id}"), "members");
    alice_page.click("#drafts li.draft button.approve");
    assert!(alice_page.wait_text("#notice", "Approved"));
    assert!(alice_page.wait_text("#drafts", "No drafts waiting"));

    // It reaches Bob: his page shows it, and he fetches the clip with progress, then plays it.
    assert!(
        eventually(|| async {
            bob.reports().await.iter().any(|r| match &r.body {
                Body::Report(r) => r.text == "Someone tried the front door",
                _ => false,
            })
        })
        .await,
        "the approved draft reached Bob"
    );
    let bob_page = driver.browser(1280, 900);
    bob.sign_in(&bob_page);
    assert!(bob_page.wait_text("#feed li.card", "Someone tried the front door"));
    assert!(bob_page.wait_text("#feed li.card .category", "Break in"));
    bob_page.click("#feed li.card button.fetch-clip");
    assert!(bob_page.wait(|b| b.run(
        "return !!document.querySelector('#feed li.card video');",
        json!([])
    ) == json!(true)));
    assert!(bob_page.wait_text("#feed li.card .clip-state", "Fetched"));
    assert_eq!(
        bob_page.run(
            "return document.querySelector('#feed li.card progress').value;",
            json!([])
        ),
        json!(100)
    );
    let played = plays(&bob_page, "#feed li.card video");
    assert_eq!(played["width"], json!(160), "{played}");
    assert_eq!(played["height"], json!(120), "{played}");
    assert!(played["time"].as_f64().unwrap_or(0.0) > 0.0, "{played}");
    assert!(
        porchlight_node::clips::path(
            bob.node.dir.path(),
            &porchlight_proto::codec::parse_hex::<32>(&sha).unwrap()
        )
        .is_file(),
        "the clip is in Bob's library"
    );
}

// ---------------------------------------------------------------- 5. origin

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_foreign_origin_or_host_is_refused_and_the_page_loads_nothing_remote() {
    let Some(driver) = Driver::start_or_skip("web origin") else {
        return;
    };
    let alice = Site::serve(TestNode::found("alice").await).await;
    let page = driver.browser(1280, 900);
    alice.sign_in(&page);
    let cookie = session_cookie(&page);
    let host = alice.addr.to_string();
    let post = |host: &str, origin: Option<&str>| {
        let body = r#"{"category":"hazard","text":"wire down"}"#;
        let origin = origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default();
        raw(
            alice.addr,
            &format!(
                "POST /v1/reports HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n{origin}\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    let get = |path: &str, host: &str, extra: &str| {
        raw(
            alice.addr,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n{extra}Connection: close\r\n\r\n"
            ),
        )
    };
    // With the session cookie: a foreign Origin, a foreign Host, a cross-site fetch.
    assert_eq!(post(&host, Some("http://evil.test")), 403);
    assert_eq!(
        post(
            &host,
            Some(&format!("http://localhost:{}", alice.addr.port()))
        ),
        403
    );
    assert_eq!(post("evil.test", Some("http://evil.test")), 403);
    assert_eq!(get("/v1/status", "evil.test", ""), 403);
    assert_eq!(
        get("/", &format!("evil.test:{}", alice.addr.port()), ""),
        403
    );
    assert_eq!(
        get("/v1/status", &host, "Sec-Fetch-Site: cross-site\r\n"),
        403
    );
    assert_eq!(
        get("/v1/status", &host, "Sec-Fetch-Site: same-site\r\n"),
        403
    );
    // The same requests from the page's own origin are let in.
    assert_eq!(get("/v1/status", &host, ""), 200);
    assert_eq!(get("/", &host, "Sec-Fetch-Site: same-origin\r\n"), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(alice.reports().await.is_empty(), "nothing was posted");
    // No CORS: no Access-Control header on any answer.
    let headers = tokio::task::block_in_place(|| {
        let mut s = std::net::TcpStream::connect(alice.addr).unwrap();
        s.write_all(
            format!(
                "OPTIONS /v1/reports HTTP/1.1\r\nHost: {host}\r\nOrigin: http://evil.test\r\n\
                 Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.to_ascii_lowercase()
    });
    assert!(!headers.contains("access-control-"), "{headers}");

    // DNS rebinding in the browser: a name that resolves to 127.0.0.1 gets no page.
    page.goto(&format!("http://rebind.test:{}/", alice.addr.port()));
    assert!(page.wait_text("body", "Host header must name this node"));
    // Another site on this machine (same-site, so the Strict cookie goes along) cannot
    // post with the session: its Origin is refused, and it cannot read answers (no CORS).
    let evil = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let evil_addr = evil.local_addr().unwrap();
    evil.set_nonblocking(true).unwrap();
    // Serves a plain page (no CSP of ours) for 30 s at most.
    let server = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let Ok((mut s, _)) = evil.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = "<!doctype html><title>elsewhere</title><p>hi</p>";
            let _ = s.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    page.goto(&format!("http://{evil_addr}/"));
    assert!(page.wait_text("body", "hi"));
    let tried = page.run_async(
        "const [target, done] = arguments;
         const out = {};
         fetch(target + '/v1/reports', {method: 'POST', mode: 'no-cors', credentials: 'include',
             headers: {'Content-Type': 'text/plain'}, body: '{\"category\":\"hazard\",\"text\":\"csrf\"}'})
           .then(() => { out.post = 'sent'; }, (e) => { out.post = String(e); })
           .then(() => fetch(target + '/v1/members', {credentials: 'include'}))
           .then(r => r.text().then(t => { out.read = t; }), (e) => { out.read = 'blocked: ' + e; })
           .then(() => done(out));",
        json!([format!("http://{}", alice.addr)]),
    );
    assert!(
        tried["read"]
            .as_str()
            .unwrap_or_default()
            .starts_with("blocked"),
        "{tried}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        alice.reports().await.is_empty(),
        "the cross-site post was refused: {tried}"
    );
    let _ = server;

    // Every page: the strict CSP, and every resource it loaded is its own.
    let origin = format!("http://{}", alice.addr);
    for path in ["/", "/post", "/invite", "/members", "/hub", "/settings"] {
        page.goto(&alice.url(path));
        assert!(
            page.wait(|b| b.run("return document.readyState;", json!([])) == json!("complete"))
        );
        let loaded = page.run(
            "return performance.getEntriesByType('resource').map(e => e.name);",
            json!([]),
        );
        let loaded: Vec<String> = serde_json::from_value(loaded).unwrap();
        assert!(!loaded.is_empty(), "{path} loads its script and style");
        for url in &loaded {
            assert!(url.starts_with(&origin), "{path} loaded {url}");
        }
        let (csp, html) = tokio::task::block_in_place(|| {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let mut r = agent
                .get(&alice.url(path))
                .header("Cookie", &cookie)
                .call()
                .unwrap();
            let csp = r
                .headers()
                .get("content-security-policy")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            (csp, r.body_mut().read_to_string().unwrap())
        });
        assert_eq!(csp, porchlight_node::web::CSP, "{path}");
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
        assert!(
            !html.contains("<script>") && !html.contains(" style="),
            "{path}: inline"
        );
        assert!(
            !html.contains("https://") && !html.contains("http://"),
            "{path}: a remote URL"
        );
    }
}

// ---------------------------------------------------------------- 6. screenshots

/// Where the screenshots go: `PORCHLIGHT_WEB_SCREENSHOTS` (docs/web.md's are made with
/// `docs/web`, relative to the workspace), else a temporary directory.
fn screenshot_dir() -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("PORCHLIGHT_WEB_SCREENSHOTS") {
        Some(dir) => {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
            std::fs::create_dir_all(&dir).unwrap();
            (dir, None)
        }
        None => {
            let temp = tempfile::tempdir().unwrap();
            (temp.path().to_path_buf(), Some(temp))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_page_is_captured_at_phone_and_desktop_width() {
    let Some(driver) = Driver::start_or_skip("web screenshots") else {
        return;
    };
    let alice_node = TestNode::found("Alice").await;
    let bob_node = alice_node.invite("Bob").await;
    let alice = Site::serve(alice_node).await;
    let bob = Site::serve(bob_node).await;
    // A street's afternoon: Bob's reports, one resolved; Alice's with a clip; a draft
    // from Alice's doorbell; Bob asking for Alice's clip.
    let clip_file = alice.node.dir.path().join("porch.webm");
    std::fs::copy(fixture_clip(), &clip_file).unwrap();
    let (s, lost) = bob.bearer(
        "POST",
        "/v1/reports",
        Some(json!({"category": "lost-pet", "severity": "info",
            "text": "Grey tabby called Miso, green collar. Answers to a shaken treat bag.",
            "where": "Maple Ave, 200 block"})),
    );
    assert_eq!(s, 201, "{lost}");
    let (s, v) = bob.bearer(
        "POST",
        &format!("/v1/reports/{}/resolve", lost["id"].as_str().unwrap()),
        Some(json!({"text": "Miso is home, thank you all!"})),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = bob.bearer(
        "POST",
        "/v1/reports",
        Some(
            json!({"category": "suspicious-activity", "severity": "urgent",
            "text": "Someone going car to car on Elm, trying door handles.",
            "behavior": "Tried the handles of three parked cars, then walked towards 5th.",
            "where": "Elm St and 4th"}),
        ),
    );
    assert_eq!(s, 201, "{v}");
    let (s, mine) = alice.bearer(
        "POST",
        "/v1/reports",
        Some(json!({"category": "package-theft", "severity": "warning",
            "text": "A parcel was taken from my porch around noon; the doorbell caught it.",
            "where": "Elm St, 400 block", "clips": [{"path": clip_file, "camera": "porch"}]})),
    );
    assert_eq!(s, 201, "{mine}");
    let (s, v) = alice.bearer(
        "POST",
        "/v1/hub/events",
        Some(json!({"camera": "front_door", "label": "person", "clip_path": clip_file, "id": "ring-9"})),
    );
    assert_eq!(s, 201, "{v}");
    assert!(
        eventually(|| async { bob.reports().await.len() == 3 }).await,
        "Alice's report reached Bob"
    );
    let sha = porchlight_proto::codec::hex(&porchlight_node::clips::hash_file(&clip_file).unwrap());
    let (s, v) = bob.bearer("POST", &format!("/v1/clips/{sha}/fetch"), None);
    assert_eq!(s, 202, "{v}");
    assert!(
        eventually(|| async {
            alice
                .bearer("GET", "/v1/clips/requests", None)
                .1
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
        .await,
        "Bob's request reached Alice"
    );
    assert!(
        eventually(|| async {
            let feed = alice.node.feed().await;
            feed.iter().any(|i| matches!(i.body, Body::Resolve(_)))
                && feed
                    .iter()
                    .filter(|i| matches!(i.body, Body::Report(_)))
                    .count()
                    == 3
        })
        .await,
        "Bob's reports and all-clear reached Alice"
    );

    let (dir, _temp) = screenshot_dir();
    for (width, height, name) in [(390, 844, "phone"), (1280, 900, "desktop")] {
        let page = driver.browser(width, height);
        alice.sign_in(&page);
        for (path, page_name, ready) in [
            ("/", "feed", "#feed li.card"),
            ("/post", "post", "#expires-hint"),
            ("/invite", "invite", "#invite-result:not([hidden])"),
            ("/members", "members", "#members li.card"),
            ("/hub", "hub", "#requests li.card"),
            ("/settings", "settings", "#settings dd"),
        ] {
            page.goto(&alice.url(path));
            if page_name == "invite" {
                assert!(page.wait_text("h1", "Invite"));
                page.click("#invite-form button[type=submit]");
            }
            if page_name == "post" {
                // Show what a rule error looks like.
                assert!(page.wait_text("#expires-hint", "30 days"));
                page.set("#category", "suspicious-activity");
                page.set("#text", "Someone looking into cars");
                page.set("#where", "12 Elm St");
                page.click("#post-form button[type=submit]");
                assert!(page.wait_text("#where-error", "house number"));
            }
            assert!(
                page.wait(|b| b.run(
                    "return !!document.querySelector(arguments[0]);",
                    json!([ready])
                ) == json!(true)),
                "{page_name} at {width}px: {ready}"
            );
            if page_name == "feed" {
                assert!(
                    page.wait_text("#feed", "Miso is home"),
                    "{:?} {}",
                    page.text("#feed"),
                    page.run_async(
                        "fetch('/v1/feed').then(r => r.text()).then(arguments[0]);",
                        json!([])
                    )
                );
            }
            usable_by_anyone(&page, page_name, width);
            if page_name == "post" {
                page.run(
                    "document.getElementById('behavior').scrollIntoView({block: 'start'});",
                    json!([]),
                );
            }
            if page_name == "settings" && width < 500 {
                // What a phone can change, rather than the facts above it.
                page.run(
                    "document.getElementById('settings-form').scrollIntoView({block: 'start'});",
                    json!([]),
                );
            }
            // The clock and the cursor settle.
            std::thread::sleep(Duration::from_millis(300));
            let png = page.screenshot();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{page_name}");
            let file = dir.join(format!("{page_name}-{name}.png"));
            std::fs::write(&file, &png).unwrap();
            assert!(
                png.len() < 150 * 1024,
                "{} is {} bytes",
                file.display(),
                png.len()
            );
        }
    }
}

// ---------------------------------------------------------------- members, invite

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_a_member_waits_for_a_confirmation_and_an_invite_carries_its_qr_code() {
    let Some(driver) = Driver::start_or_skip("web members and invite") else {
        return;
    };
    let alice_node = TestNode::found("alice").await;
    let bob_node = alice_node.invite("bob").await;
    let alice = Site::serve(alice_node).await;
    let page = driver.browser(1280, 900);
    alice.sign_in(&page);

    page.goto(&alice.url("/members"));
    assert!(page.wait_text("#members", "bob"));
    let bob_card = format!("#members li[data-id='{}']", bob_node.node.member().to_hex());
    page.click(&format!("{bob_card} button.danger"));
    assert!(page.wait_text(&format!("{bob_card} .confirm"), "for good"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        alice.node.node.members().await.unwrap().len(),
        2,
        "nothing happens before the confirmation"
    );
    page.click(&format!("{bob_card} .confirm button.danger"));
    assert!(
        eventually(|| async { alice.node.node.members().await.is_ok_and(|m| m.len() == 1) }).await,
        "confirmed, Bob is removed"
    );
    assert!(page.wait_text("#notice", "bob was removed"));

    page.goto(&alice.url("/invite"));
    assert!(page.wait_text("h1", "Invite"));
    page.set("#invite-expires", "3600");
    page.click("#invite-form button[type=submit]");
    assert!(page.wait_text("#invite-code", "porchlight1"));
    let code = page.text("#invite-code").unwrap();
    let qr = page.run(
        "const s = document.querySelector('#invite-qr svg');
         return s ? [s.getAttribute('role'), s.getAttribute('aria-label'), s.querySelectorAll('path, rect').length] : null;",
        json!([]),
    );
    assert_eq!(qr[0], json!("img"), "{qr}");
    assert!(qr[2].as_u64().unwrap_or(0) > 0, "{qr}");
    // The code works: a neighbor joins with it.
    let carol = TestNode::join("carol", code.trim()).await;
    assert!(
        eventually(|| async { alice.node.node.members().await.is_ok_and(|m| m.len() == 2) }).await,
        "Carol joined with the page's invite"
    );
    drop(carol);
}

/// The issue's "usable by anyone on the street", checked on a filled page: every control
/// has a name a screen reader reads and is reachable by Tab; the page fits the window's
/// width (no sideways scrolling on a phone); the first Tab reaches "Skip to content",
/// and Enter on it moves the focus to the page's content. Scrolls back to the top after.
fn usable_by_anyone(page: &Browser, name: &str, width: u32) {
    let unnamed = page.run(
        "const nameOf = (e) => {
           const by = (e.getAttribute('aria-labelledby') || '').split(' ').filter(Boolean)
             .map(id => (document.getElementById(id) || {}).textContent || '').join(' ');
           return [e.getAttribute('aria-label'), by,
                   e.labels ? [...e.labels].map(l => l.textContent).join(' ') : '',
                   ['BUTTON', 'A', 'SUMMARY'].includes(e.tagName) ? e.textContent : '',
                   e.getAttribute('title')].map(s => (s || '').trim()).find(Boolean);
         };
         const bad = [];
         for (const e of document.querySelectorAll(
             'input, select, textarea, button, a[href], summary, video, progress, [role=img]')) {
           if (e.type === 'hidden' || e.closest('template')) continue;
           if (!nameOf(e)) bad.push(e.outerHTML.slice(0, 160));
           const control = !['VIDEO', 'PROGRESS'].includes(e.tagName) && e.getAttribute('role') !== 'img';
           if (control && !e.disabled && e.tabIndex < 0) bad.push('not by Tab: ' + e.outerHTML.slice(0, 160));
         }
         return bad;",
        json!([]),
    );
    assert_eq!(
        unnamed,
        json!([]),
        "{name} at {width}px: controls without a name"
    );
    let widths = page.run(
        "return [document.documentElement.scrollWidth, window.innerWidth];",
        json!([]),
    );
    assert!(
        widths[0].as_u64() <= widths[1].as_u64(),
        "{name} at {width}px is wider than the window: {widths}"
    );
    page.run(
        "document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);",
        json!([]),
    );
    // Start from the top of the page (the body, made focusable for this), wherever an
    // earlier step left the focus.
    page.run(
        "document.body.tabIndex = -1; document.body.focus();",
        json!([]),
    );
    page.press(&["\u{E004}"]);
    assert_eq!(
        page.run("return document.activeElement.textContent;", json!([])),
        json!("Skip to content"),
        "{name} at {width}px: the first Tab"
    );
    page.press(&["\u{E007}"]);
    assert!(
        page.wait(|b| b.run("return document.activeElement.id;", json!([])) == json!("main")),
        "{name} at {width}px: Enter on the skip link moves the focus to the content"
    );
    page.run(
        "window.scrollTo(0, 0); document.activeElement.blur();",
        json!([]),
    );
}
