//! The real `porchlight` binary, run as a neighbor would: separate processes talking over
//! TCP on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(dir: &Path, args: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_porchlight"))
            .arg("--data-dir")
            .arg(dir)
            .args([
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--no-mdns",
                "--api",
                "127.0.0.1:0",
            ])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads stdout until a line starting with `prefix`, within `WAIT`.
    fn until(&mut self, prefix: &str) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => panic!("no line starting {prefix:?}; saw {:?}", self.seen),
            }
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    fn stop(mut self) {
        // The shell's own `kill`: no extra package needed.
        let status = Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", self.child.id())])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit status {status}");
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the node did not stop"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn neighbor_joins_with_the_printed_invite_and_both_restart_as_members() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let mut alice = Running::start(
        a_dir.path(),
        &["up", "--hood", "Elm Street", "--name", "Alice"],
    );
    assert_eq!(alice.until("hood:"), "hood:        Elm Street");
    let code = alice.until("porchlight1");
    alice.until("ready");

    let mut bob = Running::start(b_dir.path(), &["join", &code, "--name", "Bob"]);
    assert_eq!(bob.until("hood:"), "hood:        Elm Street");
    assert_eq!(bob.until("members:"), "members:     2");
    bob.until("ready");
    bob.stop();

    // Bob's node runs again from its data dir, no invite needed.
    let mut bob = Running::start(b_dir.path(), &["run"]);
    assert_eq!(bob.until("members:"), "members:     2");
    bob.until("ready");
    bob.stop();
    alice.stop();
}

#[test]
fn mistyped_invite_fails_with_a_clear_message_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _, err) = verb(
        dir.path(),
        &[
            "--no-mdns",
            "join",
            "porchlight1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq",
        ],
    );
    assert_ne!(status, 0);
    assert!(err.contains("typo"), "{err}");
}

#[test]
fn run_without_a_hood_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _, err) = verb(dir.path(), &["--no-mdns", "run"]);
    assert_ne!(status, 0);
    assert!(err.contains("join with an invite"), "{err}");
}

/// Runs a client verb against the node of `dir`; returns (exit code, stdout, stderr).
fn verb(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_porchlight"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_report_posted_from_the_command_reaches_the_neighbors_feed() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let mut alice = Running::start(
        a_dir.path(),
        &["up", "--hood", "Elm Street", "--name", "Alice"],
    );
    let code = alice.until("porchlight1");
    alice.until("ready");
    let mut bob = Running::start(b_dir.path(), &["join", &code, "--name", "Bob"]);
    bob.until("ready");

    let (status, id, _) = verb(
        a_dir.path(),
        &[
            "post",
            "--category",
            "suspicious-activity",
            "--text",
            "man trying car doors",
            "--behavior",
            "tried the handles of three parked cars",
            "--where",
            "Elm St, 400 block",
        ],
    );
    assert_eq!(status, 0);
    let id = id.trim().to_owned();
    assert_eq!(id.len(), 64);

    let deadline = std::time::Instant::now() + WAIT;
    let item = loop {
        let (status, out, _) = verb(b_dir.path(), &["--json", "feed"]);
        assert_eq!(status, 0);
        if let Some(line) = out.lines().find(|l| l.contains(&id)) {
            break serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "bob never saw the report"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(item["author_name"], "Alice");
    assert_eq!(item["category"], "suspicious-activity");
    assert_eq!(item["behavior"], "tried the handles of three parked cars");
    assert_eq!(item["where"], "Elm St, 400 block");

    // Bad input: exit 2, a message naming the problem, nothing stored.
    for (args, says) in [
        (
            vec!["post", "--category", "nope", "--text", "x"],
            "unknown category",
        ),
        (
            vec!["post", "--category", "suspicious-activity", "--text", "x"],
            "behavior",
        ),
    ] {
        let (status, _, err) = verb(a_dir.path(), &args);
        assert_eq!(status, 2, "{args:?}");
        assert!(err.contains(says), "{err}");
    }
    let long = "x".repeat(1001);
    let (status, _, err) = verb(
        a_dir.path(),
        &["post", "--category", "other", "--text", &long],
    );
    assert_eq!(status, 2);
    assert!(err.contains("text"), "{err}");
    let (_, out, _) = verb(a_dir.path(), &["--json", "feed"]);
    assert_eq!(out.lines().count(), 1, "only the one good report is stored");
    bob.stop();
    alice.stop();
}

#[test]
fn verbs_without_a_running_node_say_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _, err) = verb(dir.path(), &["feed"]);
    assert_eq!(status, 2);
    assert!(err.contains("no node is running"), "{err}");
}
