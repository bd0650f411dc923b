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
            .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
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
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
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
    let output = Command::new(env!("CARGO_BIN_EXE_porchlight"))
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--no-mdns",
            "join",
            "porchlight1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq",
        ])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("typo"), "{stderr}");
}

#[test]
fn run_without_a_hood_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_porchlight"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--no-mdns", "run"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("join with an invite"), "{stderr}");
}
