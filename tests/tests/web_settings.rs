//! Issue #19, Settings: the clip policy changed from the page, in a real headless
//! Chromium against a real `porchlight run`: saved to porchlight.toml, in force at once,
//! still there after a restart; a bad value is an error beside the field and changes
//! nothing. The display name changed from the page is a signed rename the node applies
//! (`members` shows it); a blank one is an error beside the name field.
//!
//! Without Chromium the test skips with a message, unless `CI` is set (then it fails).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use porchlight_tests::binary::{Node, ok};
use porchlight_tests::browser::{Browser, Driver};
use serde_json::{Value, json};

fn sign_in(browser: &Browser, dir: &std::path::Path, node: &Node, name: &str) {
    browser.goto(ok(dir, &["open", "--print"]).trim());
    assert!(browser.wait_text("h1", "Feed"));
    browser.goto(&format!("http://{}/settings", node.api()));
    assert!(browser.wait(
        |b| b.run("return document.querySelector('#name').value;", json!([])) == json!(name)
    ));
}

/// `clip_policy` as porchlight.toml says it (one `key = "value"` line).
fn policy_in_file(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(dir.join("porchlight.toml")).unwrap();
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "clip_policy").then(|| v.trim().trim_matches('"').to_owned())
        })
        .unwrap_or_default()
}

fn settings(browser: &Browser) -> Value {
    browser.run_async(
        "fetch('/v1/settings').then(r => r.json()).then(arguments[0]);",
        json!([]),
    )
}

#[test]
fn the_clip_policy_is_changed_in_the_page_and_a_bad_one_is_refused_beside_its_field() {
    let Some(driver) = Driver::start_or_skip("web settings") else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    ok(dir, &["init", "--name", "Alice"]);
    ok(dir, &["hood", "create", "Elm Street"]);
    let node = Node::run(dir, &[]);
    let page = driver.browser(390, 844);
    sign_in(&page, dir, &node, "Alice");
    assert_eq!(policy_in_file(dir), "ask", "the default");
    assert_eq!(
        page.run(
            "return document.querySelector('#clip-policy').value;",
            json!([])
        ),
        json!("ask")
    );
    assert_eq!(
        page.run(
            "return document.querySelector('#name').readOnly;",
            json!([])
        ),
        json!(false),
        "the name is editable"
    );

    // Any member who asks: saved, and in force in the running node.
    page.set("#clip-policy", "members");
    page.click("#settings-form button[type=submit]");
    assert!(page.wait_text("#notice", "Saved"));
    assert_eq!(policy_in_file(dir), "members");
    assert_eq!(settings(&page)["clip_policy"], json!("members"));

    // A value the node does not know (a tampered form): the node's error beside the
    // field, the field marked invalid, nothing changed.
    page.run(
        "const s = document.querySelector('#clip-policy');
         s.append(new Option('Everyone on the internet', 'everyone'));
         s.value = 'everyone';",
        json!([]),
    );
    page.click("#settings-form button[type=submit]");
    assert!(page.wait_text("#clip-policy-error", "one of \"members\""));
    assert_eq!(
        page.run(
            "return document.querySelector('#clip-policy').getAttribute('aria-invalid');",
            json!([])
        ),
        json!("true")
    );
    assert_eq!(policy_in_file(dir), "members", "nothing changed");
    assert_eq!(settings(&page)["clip_policy"], json!("members"));
    // A request with a bad name and a good policy changes neither.
    let renamed = page.run_async(
        "fetch('/v1/settings', {method: 'POST', headers: {'Content-Type': 'application/json'},
           body: JSON.stringify({name: 'Mal\\u0007', clip_policy: 'never'})})
           .then(r => r.json().then(v => arguments[0]([r.status, v.error])));",
        json!([]),
    );
    assert_eq!(renamed[0], json!(400), "{renamed}");
    assert_eq!(settings(&page)["name"], json!("Alice"));
    assert_eq!(policy_in_file(dir), "members", "nothing changed");

    // A blank name: the error beside the name field, nothing renamed.
    page.set("#name", "   ");
    page.click("#settings-form button[type=submit]");
    assert!(page.wait_text("#name-error", "name must not be empty"));
    assert_eq!(settings(&page)["name"], json!("Alice"));
    // A new name (with the policy back to a good one): a signed rename the node
    // applies; `members` shows it.
    page.set("#clip-policy", "members");
    page.set("#name", "Alice B.");
    page.click("#settings-form button[type=submit]");
    assert!(
        page.wait_text("#notice", "Saved: Alice B."),
        "notice {:?}, name error {:?}, policy error {:?}",
        page.text("#notice"),
        page.text("#name-error"),
        page.text("#clip-policy-error")
    );
    assert!(page.wait(|b| b.text("#name-error").is_some_and(|t| t.is_empty())));
    assert_eq!(settings(&page)["name"], json!("Alice B."));
    let members = ok(dir, &["members"]);
    assert!(members.contains("Alice B."), "{members}");

    // A good value again clears the error.
    page.set("#clip-policy", "never");
    page.click("#settings-form button[type=submit]");
    assert!(page.wait(|b| b.text("#clip-policy-error").is_some_and(|t| t.is_empty())));
    assert!(page.wait(|_| policy_in_file(dir) == "never"));

    // A restart reads it back.
    drop(node);
    let node = Node::run(dir, &[]);
    let page = driver.browser(1280, 900);
    sign_in(&page, dir, &node, "Alice B.");
    assert!(page.wait(|b| b.run(
        "return document.querySelector('#clip-policy').value;",
        json!([])
    ) == json!("never")));
    // The rename is in the hood's log: still there after the restart.
    assert_eq!(settings(&page)["name"], json!("Alice B."));
}
