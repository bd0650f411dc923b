//! Runs the real `porchlight` binary as separate processes on 127.0.0.1.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_porchlight"));
    command
        .env("RUST_BACKTRACE", "0")
        .env_remove("PORCHLIGHT_DATA_DIR");
    command
}

/// Runs a verb for the node of `dir`; returns (exit code, stdout, stderr).
pub fn verb(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = bin()
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs a verb that must succeed; returns its stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = verb(dir, args);
    assert_eq!(code, 0, "porchlight {args:?} failed: {err}");
    out
}

/// `feed --json` of the node of `dir`, one object per line.
pub fn feed(dir: &Path) -> Vec<Value> {
    ok(dir, &["--json", "feed"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn has(dir: &Path, id: &str) -> bool {
    feed(dir).iter().any(|i| i["id"] == id)
}

/// Polls `check` until it holds, within `WAIT`; false if it never did.
pub fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// A long-running `porchlight` process (`run`, `up`, `feed --follow`).
pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    pub dir: PathBuf,
}

impl Running {
    /// Starts `porchlight --data-dir DIR ARGS…` with stdout piped.
    pub fn spawn(dir: &Path, args: &[&str]) -> Running {
        let mut child = bin()
            .arg("--data-dir")
            .arg(dir)
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
            dir: dir.to_path_buf(),
        }
    }

    /// `porchlight run` on loopback with a random port and API port; returns once the
    /// API answers.
    pub fn run(dir: &Path) -> Running {
        Running::run_with(dir, &[])
    }

    /// [`Running::run`] with extra arguments for `run`.
    pub fn run_with(dir: &Path, extra: &[&str]) -> Running {
        let mut args = vec![
            "run",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
            "--no-mdns",
        ];
        args.extend_from_slice(extra);
        let mut node = Running::spawn(dir, &args);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("the node exited with {status}");
            }
            if verb(dir, &["status"]).0 == 0 {
                return node;
            }
            assert!(Instant::now() < deadline, "the node never answered");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Reads stdout until a line starting with `prefix` (or containing it, with
    /// `contains`), within `WAIT`.
    pub fn until(&mut self, prefix: &str) -> String {
        self.find(|l| l.starts_with(prefix), prefix)
    }

    pub fn until_contains(&mut self, text: &str) -> String {
        self.find(|l| l.contains(text), text)
    }

    fn find(&mut self, mut matches: impl FnMut(&str) -> bool, what: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {what:?}; saw {:?}", self.seen),
            }
        }
    }

    /// Sends SIGTERM and waits for a clean exit (status 0).
    pub fn stop(mut self) {
        // The shell's own `kill`: no extra package needed.
        let status = Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", self.child.id())])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit status {status}");
                return;
            }
            assert!(Instant::now() < deadline, "the node did not stop");
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
