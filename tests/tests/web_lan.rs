//! Issue #19, Households: the page for phones on the home LAN, over TLS with the node's
//! own certificate and a one-time pairing link, in a real headless Chromium against real
//! processes of the real `porchlight` binary.
//!
//! The "LAN" is 127.0.0.2 (loopback: nothing here listens on another address). The
//! "phone" is a Chromium given `--ignore-certificate-errors-spki-list=<fingerprint>`:
//! the pin a phone's owner makes by checking the fingerprint the pairing shows.
//!
//! Without Chromium the test skips with a message, unless `CI` is set (then it fails).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use porchlight_tests::binary::{Node, ok, verb};
use porchlight_tests::browser::{Browser, Driver};
use serde_json::{Value, json};

const LAN_IP: &str = "127.0.0.2";

/// A port free on the "LAN" address now.
fn free_lan_port() -> u16 {
    std::net::TcpListener::bind((LAN_IP, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether anything accepts a TCP connection at `addr`.
fn listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// A plain-HTTP request to `addr`: the first bytes of whatever comes back.
fn plain_http(addr: SocketAddr) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream
        .write_all(
            format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

/// A status from the page's own origin, by `fetch` (with the page's cookie).
fn fetch_status(browser: &Browser, method: &str, path: &str, headers: Value) -> Value {
    browser.run_async(
        "const [method, path, headers, done] = arguments;
         fetch(path, {method, headers, credentials: 'same-origin'})
           .then(r => r.json().then(v => done([r.status, v])))
           .catch(e => done([0, String(e)]));",
        json!([method, path, headers]),
    )
}

/// A browser that pins the page's certificate by its fingerprint, as the phone's owner
/// does by checking the fingerprint the pairing shows.
fn phone(driver: &Driver, fingerprint: &str) -> Browser {
    driver.browser_with(
        390,
        844,
        &[format!(
            "--ignore-certificate-errors-spki-list={fingerprint}"
        )],
    )
}

#[test]
fn a_phone_on_the_lan_pairs_once_over_tls_sees_the_feed_and_is_unpaired() {
    let Some(driver) = Driver::start_or_skip("web on the LAN") else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    ok(dir, &["init", "--name", "Alice"]);
    ok(dir, &["hood", "create", "Elm Street"]);
    let port = free_lan_port();
    let lan: SocketAddr = format!("{LAN_IP}:{port}").parse().unwrap();

    // Without the opt-in nothing listens on the LAN address, and there is nothing to
    // pair with.
    {
        let node = Node::run(dir, &[]);
        assert!(!listening(lan), "nothing on {lan} without web_lan");
        let api_on_lan: SocketAddr = format!("{LAN_IP}:{}", node.api().port()).parse().unwrap();
        assert!(!listening(api_on_lan), "the API and page stay on 127.0.0.1");
        let out = verb(dir, &["open", "--pair"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("web_lan"), "{err}");
        assert!(!dir.join("web-lan.key").exists(), "no key made");
    }

    // With it: the page over TLS on the LAN address.
    let node = Node::run(dir, &["--web-lan", &lan.to_string()]);
    ok(
        dir,
        &[
            "post",
            "--category",
            "package-theft",
            "--text",
            "Parcel taken from the porch at noon",
            "--where",
            "Elm St, 400 block",
        ],
    );
    let pairing: Value = serde_json::from_str(&ok(dir, &["--json", "open", "--pair"])).unwrap();
    let link = pairing["url"].as_str().unwrap().to_owned();
    let fingerprint = pairing["fingerprint"].as_str().unwrap().to_owned();
    assert!(
        link.starts_with(&format!("https://{lan}/pair?code=")),
        "{link}"
    );
    assert!(
        link.ends_with(&format!("#spki={fingerprint}")),
        "the link carries the pin: {link}"
    );
    assert_eq!(fingerprint.len(), 44, "base64 of a SHA-256: {fingerprint}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let answer = plain_http(lan);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    // A wrong code is refused and sets nothing (the page itself loads over TLS).
    let phone_a = phone(&driver, &fingerprint);
    phone_a.goto(&format!("https://{lan}/pair?code=0123456789abcdef"));
    assert!(phone_a.wait_text("#signin-message", "wrong, used or expired"));
    assert!(phone_a.cookies().is_empty());
    phone_a.goto(&format!("https://{lan}/"));
    assert!(phone_a.wait_text("#signin-message", "not paired"));

    // The link pairs: the feed, live, with the report.
    phone_a.goto(&link);
    assert!(phone_a.wait_text("h1", "Feed"), "{}", phone_a.url());
    assert!(phone_a.wait_text("#live", "Live"));
    assert!(phone_a.wait_text("#feed li.card", "Parcel taken from the porch"));
    let cookies = phone_a.cookies();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let cookie = &cookies[0];
    assert_eq!(cookie["secure"], json!(true), "{cookie}");
    assert_eq!(cookie["httpOnly"], json!(true), "{cookie}");
    assert_eq!(cookie["sameSite"], json!("Strict"), "{cookie}");
    assert!(
        cookie["name"].as_str().unwrap().starts_with("__Host-"),
        "{cookie}"
    );

    // The same link again, in another phone: refused, it was used.
    let phone_b = phone(&driver, &fingerprint);
    phone_b.goto(&link);
    assert!(phone_b.wait_text("#signin-message", "wrong, used or expired"));
    assert!(phone_b.cookies().is_empty());

    // The paired phone may not pair more, and the bearer-token API is not served on the
    // LAN even with the right token.
    let answer = fetch_status(&phone_a, "POST", "/web/pair", json!({}));
    assert_eq!(answer[0], json!(403), "{answer}");
    let token = std::fs::read_to_string(dir.join("api.token")).unwrap();
    let answer = fetch_status(
        &phone_a,
        "GET",
        "/v1/status",
        json!({ "Authorization": format!("Bearer {token}") }),
    );
    assert_eq!(answer[0], json!(403), "{answer}");
    assert_eq!(
        fetch_status(&phone_a, "GET", "/v1/status", json!({}))[0],
        json!(200)
    );
    phone_a.goto(&format!("https://{lan}/settings"));
    assert!(phone_a.wait_text("#lan-state", "This phone is paired"));
    assert_eq!(
        phone_a.run(
            "return document.querySelector('#lan-actions').hidden;",
            json!([])
        ),
        json!(true),
        "no pairing buttons on a phone"
    );

    // A name that rebinds to the LAN address gets no page (Host check), even with the
    // pin that makes the browser accept the certificate for it.
    phone_b.goto(&format!("https://rebind.lan:{port}/"));
    assert!(
        phone_b.wait(|b| b
            .text("body")
            .is_some_and(|t| t.contains("Host header must name"))),
        "{:?}",
        phone_b.text("body")
    );

    // The computer's page pairs too: its QR code and link, with the same fingerprint.
    let desk = driver.browser(1280, 900);
    let signin = ok(dir, &["open", "--print"]);
    desk.goto(signin.trim());
    assert!(desk.wait_text("h1", "Feed"));
    desk.goto(&format!("http://{}/settings", node.api()));
    assert!(desk.wait_text("#lan-state", "1 of 8 phones paired"));
    assert!(desk.wait_text(
        "#lan-state",
        &pairing["fingerprint_hex"].as_str().unwrap()[..20]
    ));
    desk.click("#pair");
    assert!(desk.wait_text("#pair-url", &format!("https://{lan}/pair?code=")));
    let svg = desk.run(
        "const s = document.querySelector('#pair-qr svg');
         return s ? s.getAttribute('aria-label') : null;",
        json!([]),
    );
    assert_eq!(svg, json!("QR code of the pairing link"));
    let from_page = desk.text("#pair-url").unwrap();
    assert!(
        from_page.ends_with(&format!("#spki={fingerprint}")),
        "{from_page}"
    );
    phone_b.goto(&from_page);
    assert!(phone_b.wait_text("#feed li.card", "Parcel taken from the porch"));

    // Unpairing every phone, from the computer's page, behind a confirmation.
    desk.click("#unpair");
    assert_eq!(
        fetch_status(&phone_b, "GET", "/v1/status", json!({}))[0],
        json!(200),
        "asking is not unpairing"
    );
    desk.click("#unpair-yes");
    assert!(desk.wait_text("#notice", "Unpaired 2 phone(s)"));
    for p in [&phone_a, &phone_b] {
        assert_eq!(
            fetch_status(p, "GET", "/v1/status", json!({}))[0],
            json!(401),
            "unpaired"
        );
    }

    // And from the terminal: `porchlight open --unpair`.
    let again: Value = serde_json::from_str(&ok(dir, &["--json", "open", "--pair"])).unwrap();
    phone_a.goto(again["url"].as_str().unwrap());
    assert!(phone_a.wait_text("#feed li.card", "Parcel taken from the porch"));
    let unpaired: Value = serde_json::from_str(&ok(dir, &["--json", "open", "--unpair"])).unwrap();
    assert_eq!(unpaired["unpaired"], json!(1), "{unpaired}");
    assert_eq!(
        fetch_status(&phone_a, "GET", "/v1/status", json!({}))[0],
        json!(401)
    );
    drop(node);
}
