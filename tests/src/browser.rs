//! A real headless Chromium, driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`; `.ci/run` installs them). The WebDriver protocol is JSON over HTTP:
//! this is a small client of it on `ureq`, with only the commands the page's tests use.
//!
//! Without Chromium a test skips with a message, unless `CI` is set: then it fails.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a wait for the page may take.
pub const PAGE_WAIT: Duration = Duration::from_secs(30);

/// Runs blocking WebDriver calls without starving the test's tokio runtime (the nodes run
/// on it): `block_in_place` on a multi-thread runtime, a plain call elsewhere.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// One chromedriver process; sessions are browsers with their own fresh profile.
#[derive(Debug)]
pub struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    /// Starts chromedriver, or `None` (with a message) when Chromium is not installed and
    /// `CI` is not set. Under CI a missing Chromium fails the test.
    pub fn start_or_skip(test: &str) -> Option<Driver> {
        let present = Path::new(CHROMIUM).is_file() && Path::new(CHROMEDRIVER).is_file();
        if !present {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "{test}: Chromium is missing ({CHROMIUM}, {CHROMEDRIVER}) and CI is set: \
                     `apt-get install chromium chromium-driver` (.ci/run does)"
                );
            }
            eprintln!(
                "SKIPPED {test}: Chromium is not installed ({CHROMIUM}, {CHROMEDRIVER}); \
                 `apt-get install chromium chromium-driver` to run the page's tests"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let ready = http(&driver.base, "GET", "/status", None)
                .ok()
                .is_some_and(|v| v["value"]["ready"] == json!(true));
            if ready {
                return Some(driver);
            }
            assert!(Instant::now() < deadline, "chromedriver never became ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A new browser, `width` × `height` CSS pixels, with an empty profile. Host names
    /// ending in `.test` resolve to 127.0.0.1 in it, and those ending in `.lan` to
    /// 127.0.0.2 (a DNS-rebinding attacker's names).
    pub fn browser(&self, width: u32, height: u32) -> Browser {
        self.browser_with(width, height, &[])
    }

    /// [`Driver::browser`] with more Chromium switches (a certificate pin, say).
    pub fn browser_with(&self, width: u32, height: u32, extra: &[String]) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--autoplay-policy=no-user-gesture-required".to_owned(),
            "--host-resolver-rules=MAP *.test 127.0.0.1, MAP *.lan 127.0.0.2".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        args.extend_from_slice(extra);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let v = blocking(|| http(&self.base, "POST", "/session", Some(caps)))
            .expect("a Chromium session starts");
        let id = v["value"]["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        let browser = Browser {
            base: format!("{}/session/{id}", self.base),
            _profile: profile,
        };
        browser.resize(width, height);
        browser
    }
}

fn http(base: &str, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let url = format!("{base}{path}");
    let response = match (method, body) {
        ("GET", _) => agent.get(&url).call(),
        ("DELETE", _) => agent.delete(&url).call(),
        (_, Some(b)) => agent.post(&url).send_json(b),
        (_, None) => agent.post(&url).send_json(json!({})),
    };
    let mut response = response.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let value: Value = response
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_json()
        .map_err(|e| e.to_string())?;
    if status >= 400 {
        return Err(format!("WebDriver {method} {path}: {status} {value}"));
    }
    Ok(value)
}

/// One browser window.
#[derive(Debug)]
pub struct Browser {
    base: String,
    _profile: TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = blocking(|| http(&self.base, "DELETE", "", None));
    }
}

impl Browser {
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        blocking(|| http(&self.base, method, path, body)).unwrap_or_else(|e| panic!("{e}"))["value"]
            .take()
    }

    pub fn resize(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub fn run(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Runs `script` whose last argument is a callback, and returns what it was called
    /// with (scripts time out after 30 s).
    pub fn run_async(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/timeouts",
            Some(json!({"script": PAGE_WAIT.as_millis() as u64})),
        );
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// The text of the first element matching `css`, or `None`.
    pub fn text(&self, css: &str) -> Option<String> {
        self.run(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
            json!([css]),
        )
        .as_str()
        .map(str::to_owned)
    }

    /// Polls until `check` holds, at most [`PAGE_WAIT`]; returns whether it did.
    pub fn wait(&self, mut check: impl FnMut(&Browser) -> bool) -> bool {
        let deadline = Instant::now() + PAGE_WAIT;
        while Instant::now() < deadline {
            if check(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Waits for an element matching `css` whose text contains `text`.
    pub fn wait_text(&self, css: &str, text: &str) -> bool {
        self.wait(|b| {
            b.run(
                "return [...document.querySelectorAll(arguments[0])]
                    .some(e => e.innerText.includes(arguments[1]));",
                json!([css, text]),
            ) == json!(true)
        })
    }

    fn element(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_owned()
    }

    /// Clicks the element `css` as a person would (WebDriver's element click).
    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// Types `text` into the element `css` (key events, as a person would).
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.cmd("POST", &format!("/element/{id}/clear"), Some(json!({})));
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Sets a form control's value directly (a select's option, a long text).
    pub fn set(&self, css: &str, value: &str) {
        let done = self.run(
            "const e = document.querySelector(arguments[0]); if (!e) return false;
             e.value = arguments[1]; e.dispatchEvent(new Event('change', {bubbles: true}));
             return true;",
            json!([css, value]),
        );
        assert_eq!(done, json!(true), "no element {css}");
    }

    /// Presses keys on whatever has the focus, as a person at a keyboard
    /// (WebDriver's key actions; `"\u{E004}"` is Tab, `"\u{E007}"` Enter).
    pub fn press(&self, keys: &[&str]) {
        let actions: Vec<Value> = keys
            .iter()
            .flat_map(|k| {
                [
                    json!({"type": "keyDown", "value": k}),
                    json!({"type": "keyUp", "value": k}),
                ]
            })
            .collect();
        self.cmd(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        );
    }

    /// Chooses a file for the file input `css`.
    pub fn choose_file(&self, css: &str, file: &Path) {
        let id = self.element(css);
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": file.display().to_string() })),
        );
    }

    /// The cookies the browser holds for the current page (HttpOnly ones too).
    pub fn cookies(&self) -> Vec<Value> {
        self.cmd("GET", "/cookie", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        let b64 = self.cmd("GET", "/screenshot", None);
        base64(b64.as_str().expect("a base64 screenshot"))
    }
}

/// Standard base64, as WebDriver sends screenshots.
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// The `porchlight` binary beside this test's (cargo builds it for the workspace's tests).
pub fn porchlight_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = dir.join("porchlight");
    assert!(
        bin.is_file(),
        "{} is missing: `cargo build -p porchlight` first (`cargo test --workspace` does)",
        bin.display()
    );
    bin
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes() {
        assert_eq!(super::base64("aGVsbG8="), b"hello");
        assert_eq!(super::base64("aGk="), b"hi");
        assert_eq!(super::base64("YWJj"), b"abc");
    }
}
