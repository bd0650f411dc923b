//! Real processes of the real `porchlight` binary, for tests of what a person does:
//! a verb, and a node that `porchlight run` keeps running until dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::browser::{PAGE_WAIT, porchlight_bin};

/// `porchlight --data-dir DIR ARGS…`, with no desktop (so `open` only prints).
pub fn verb(dir: &Path, args: &[&str]) -> Output {
    Command::new(porchlight_bin())
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// [`verb`], which must succeed: its standard output.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = verb(dir, args);
    assert!(out.status.success(), "porchlight {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// `porchlight run` on loopback (random ports, no mDNS); stopped (SIGTERM, then waited for) when dropped.
#[derive(Debug)]
pub struct Node {
    child: Child,
    dir: PathBuf,
}

impl Node {
    pub fn run(dir: &Path, extra: &[&str]) -> Node {
        let mut args = vec![
            "run",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
            "--no-mdns",
        ];
        args.extend_from_slice(extra);
        let child = Command::new(porchlight_bin())
            .arg("--data-dir")
            .arg(dir)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut node = Node {
            child,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("the node exited with {status}");
            }
            if verb(dir, &["status"]).status.success() {
                return node;
            }
            assert!(Instant::now() < deadline, "the node never answered");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn api(&self) -> SocketAddr {
        std::fs::read_to_string(self.dir.join("api.addr"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + PAGE_WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}
