//! The scenario harness: real nodes, in one process, on real TCP sockets on 127.0.0.1.
//! [`bench`] holds what the benchmark binaries in `src/bin` share.

pub mod bench;
pub mod binary;
pub mod browser;
pub mod engines;

use std::time::Duration;

use porchlight_node::node::{Config, FeedItem, Node, NodeError, Setup};
use porchlight_proto::item::Body;
use porchlight_proto::report::{Category, Location, Report, Severity};
use porchlight_proto::{ItemId, Policy};
use tempfile::TempDir;
use tokio::task::JoinHandle;

/// Every wait in a test is bounded by this.
pub const WAIT: Duration = Duration::from_secs(60);

/// A node with its own data dir.
#[derive(Debug)]
pub struct TestNode {
    pub node: Node,
    pub task: JoinHandle<Result<(), NodeError>>,
    pub dir: TempDir,
    pub name: String,
}

impl TestNode {
    pub async fn found(name: &str) -> TestNode {
        let dir = tempfile::tempdir().expect("temp dir");
        TestNode::start_in(
            dir,
            name,
            Setup::Found {
                hood_name: "Elm Street".into(),
                policy: Policy::default(),
            },
        )
        .await
    }

    /// Founds a hood whose rate limit allows `per_hour` reports per member.
    pub async fn found_with_rate(name: &str, per_hour: u16) -> TestNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut policy = Policy::default();
        policy.rate_limit.max_items = per_hour;
        TestNode::start_in(
            dir,
            name,
            Setup::Found {
                hood_name: "Elm Street".into(),
                policy,
            },
        )
        .await
    }

    pub async fn join(name: &str, code: &str) -> TestNode {
        let dir = tempfile::tempdir().expect("temp dir");
        TestNode::start_in(
            dir,
            name,
            Setup::Join {
                code: code.to_owned(),
            },
        )
        .await
    }

    pub async fn start_in(dir: TempDir, name: &str, setup: Setup) -> TestNode {
        TestNode::start_with(dir, name, setup, |_| {}).await
    }

    /// `start_in`, with the loopback config changed by `adjust` first.
    pub async fn start_with(
        dir: TempDir,
        name: &str,
        setup: Setup,
        adjust: impl FnOnce(&mut Config),
    ) -> TestNode {
        // `PORCHLIGHT_TEST_LOG=porchlight_node=debug` shows the nodes' logs.
        if let Ok(filter) = std::env::var("PORCHLIGHT_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let mut config = Config::loopback(dir.path(), name);
        adjust(&mut config);
        let (node, task) = Node::start(config, setup).await.expect("node starts");
        TestNode {
            node,
            task,
            dir,
            name: name.to_owned(),
        }
    }

    /// Starts the node in `dir` again, as its owner would after a reboot: no invite, a new
    /// port, only what the data dir remembers. Retries while sled still holds the dir's
    /// lock (it lets go from a background thread a moment after the last handle drops).
    pub async fn restart(dir: TempDir, name: &str) -> TestNode {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match Node::start(Config::loopback(dir.path(), name), Setup::Existing).await {
                Ok((node, task)) => {
                    return TestNode {
                        node,
                        task,
                        dir,
                        name: name.to_owned(),
                    };
                }
                Err(NodeError::Store(_)) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{name} restarts: {e}"),
            }
        }
    }

    /// Invites a neighbor and starts their node.
    pub async fn invite(&self, name: &str) -> TestNode {
        let code = self
            .node
            .invite(Duration::from_secs(600))
            .await
            .expect("invite");
        TestNode::join(name, &code).await
    }

    /// Stops the node and gives back its data dir.
    pub async fn stop(self) -> TempDir {
        self.node.shutdown().await;
        let result = tokio::time::timeout(WAIT, self.task)
            .await
            .expect("node stops in time");
        result.expect("task").expect("node ran cleanly");
        self.dir
    }

    pub async fn feed(&self) -> Vec<FeedItem> {
        self.node.feed().await.expect("feed")
    }

    pub async fn has(&self, id: &ItemId) -> bool {
        self.feed().await.iter().any(|f| f.id == *id)
    }

    pub async fn post(&self, text: &str) -> ItemId {
        self.node.post(report(text)).await.expect("post")
    }
}

/// A package-theft report created now.
pub fn report(text: &str) -> Body {
    report_at(text, porchlight_node::now())
}

/// A package-theft report created at `created_at`, as a node would post it.
pub fn report_at(text: &str, created_at: u64) -> Body {
    report_for(text, created_at, 72 * 3600)
}

/// A package-theft report created at `created_at` that lives `ttl` seconds.
pub fn report_for(text: &str, created_at: u64, ttl: u64) -> Body {
    Body::Report(Report {
        created_at,
        expires_at: created_at + ttl,
        category: Category::PackageTheft,
        severity: Severity::Warning,
        text: text.to_owned(),
        behavior: None,
        location: Location {
            text: "Elm St, 400 block".into(),
            geohash: None,
        },
        clips: vec![],
        ask_seen: None,
    })
}

/// Polls `check` every 100 ms until it holds or `WAIT` passes; returns whether it held.
pub async fn eventually<F, Fut>(check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(WAIT, check).await
}

/// `eventually`, for what takes longer than `WAIT` by design.
pub async fn eventually_within<F, Fut>(wait: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A member's node is stopped and its keys and current epoch key taken for an attacker.
pub async fn hijack(
    member: TestNode,
    hood: &porchlight_proto::HoodId,
    epoch: porchlight_proto::EpochId,
) -> (
    porchlight_proto::MemberKeys,
    porchlight_proto::keys::EpochKey,
) {
    let dir = member.stop().await;
    let (keys, _) =
        porchlight_node::identity::load_or_create(dir.path()).expect("the member's keys");
    // sled lets go of the dir's lock from a background thread a moment after the node.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let store = loop {
        match porchlight_node::store::Store::open(&dir.path().join(porchlight_node::local::DB_DIR))
        {
            Ok(store) => break store,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("open the member's store: {e}"),
        }
    };
    let key = store
        .key_ring(hood)
        .expect("the member's key ring")
        .get(&epoch)
        .expect("the epoch key")
        .clone();
    (keys, key)
}
