//! Setting up a data dir: the hood's policy flags, and undoing what a failed command
//! created (a command that fails, or only reads, leaves the data dir as it found it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use porchlight_node::words;
use porchlight_proto::limits::MAX_TTL_SECS;
use porchlight_proto::{Permission, Policy};

use crate::{bad, format};

/// Who may invite, in a hood's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WhoInvites {
    /// Any member.
    Members,
    /// Admins only.
    Admins,
}

/// The hood's rules, fixed when it is founded (`hood create`, `up` on first run).
#[derive(Debug, Args, Clone, Default)]
pub struct PolicyArgs {
    /// Who may invite neighbors [default: members].
    #[arg(long, value_enum, value_name = "WHO")]
    pub invite: Option<WhoInvites>,
    /// Who may remove members: `admins`, `members`, or `quorum:K` (K distinct members
    /// must vote, 2 to 64; nobody removes anyone alone) [default: admins].
    #[arg(long, value_name = "WHO", value_parser = parse_remove)]
    pub remove: Option<Permission>,
    /// Most posts (reports, updates, all-clears) one member may make per hour
    /// [default: 30].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub posts_per_hour: Option<u16>,
    /// How long a report lives unless its author says otherwise: 30m, 24h, 3d
    /// [default: 72h, or --max-expires if shorter].
    #[arg(long, value_name = "DUR", value_parser = format::parse_duration)]
    pub expires: Option<Duration>,
    /// The longest a report may live in this hood: 24h, 7d, at most 30d [default: 30d].
    #[arg(long, value_name = "DUR", value_parser = format::parse_duration)]
    pub max_expires: Option<Duration>,
}

impl PolicyArgs {
    /// The policy the flags describe, over the default; a contradiction is bad input.
    pub fn policy(&self) -> anyhow::Result<Policy> {
        let mut policy = Policy::default();
        if let Some(who) = self.invite {
            policy.invite = match who {
                WhoInvites::Members => Permission::AnyMember,
                WhoInvites::Admins => Permission::AdminsOnly,
            };
        }
        if let Some(who) = self.remove {
            policy.remove = who;
        }
        if let Some(n) = self.posts_per_hour {
            policy.rate_limit.max_items = n;
            policy.rate_limit.window_secs = 3600;
        }
        let longest = u64::from(MAX_TTL_SECS);
        if let Some(max) = self.max_expires {
            if max.as_secs() > longest {
                return Err(bad(format!(
                    "--max-expires {} is longer than {}, the longest a report may live",
                    words::span(max.as_secs()),
                    words::span(longest)
                )));
            }
            policy.max_ttl_secs = secs32(max);
            policy.default_ttl_secs = policy.default_ttl_secs.min(policy.max_ttl_secs);
        }
        if let Some(default) = self.expires {
            if default.as_secs() > u64::from(policy.max_ttl_secs) {
                return Err(bad(format!(
                    "--expires {} is longer than the hood's maximum report lifetime, {} \
                     (--max-expires)",
                    words::span(default.as_secs()),
                    words::span(u64::from(policy.max_ttl_secs))
                )));
            }
            policy.default_ttl_secs = secs32(default);
        }
        policy
            .check()
            .map_err(|e| bad(format!("the hood's policy: {e}")))?;
        Ok(policy)
    }
}

/// `admins`, `members` or `quorum:K`.
fn parse_remove(s: &str) -> Result<Permission, String> {
    use porchlight_proto::quorum::{MAX_QUORUM, MIN_QUORUM};
    match s.trim().to_lowercase().as_str() {
        "admins" => Ok(Permission::AdminsOnly),
        "members" => Ok(Permission::AnyMember),
        other => {
            let k = other
                .strip_prefix("quorum:")
                .and_then(|k| k.parse::<u16>().ok())
                .ok_or_else(|| format!("{s:?}: say admins, members or quorum:K"))?;
            if !(MIN_QUORUM..=MAX_QUORUM).contains(&k) {
                return Err(format!(
                    "quorum:{k}: a removal quorum is {MIN_QUORUM} to {MAX_QUORUM} members"
                ));
            }
            Ok(Permission::Quorum(k))
        }
    }
}

fn secs32(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// What a data dir held before a command that may create things in it, so that a
/// failure can take back what the command made.
#[derive(Debug)]
pub struct Before {
    dir: PathBuf,
    dir_existed: bool,
    absent: Vec<PathBuf>,
}

/// The entries a command may create in a data dir.
const CREATED: [&str; 3] = [
    porchlight_node::identity::FILE,
    porchlight_node::config::FILE,
    porchlight_node::local::DB_DIR,
];

impl Before {
    pub fn look(data_dir: &Path) -> Before {
        Before {
            dir: data_dir.to_path_buf(),
            dir_existed: data_dir.exists(),
            absent: CREATED
                .iter()
                .map(|name| data_dir.join(name))
                .filter(|p| !p.exists())
                .collect(),
        }
    }

    /// Removes what was created since [`Before::look`]: a failed command leaves nothing.
    pub fn undo(&self) {
        for path in &self.absent {
            if path.is_dir() {
                let _ = std::fs::remove_dir_all(path);
            } else {
                let _ = std::fs::remove_file(path);
            }
        }
        let _ = std::fs::remove_file(
            self.dir
                .join(format!("{}.new", porchlight_node::config::FILE)),
        );
        if !self.dir_existed {
            // Only if empty: never anything the command did not make.
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// Runs `f`, and on failure removes what it created in `data_dir`.
pub async fn or_undo<T>(
    data_dir: &Path,
    f: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let before = Before::look(data_dir);
    let result = f.await;
    if result.is_err() {
        before.undo();
    }
    result
}

/// Whether `data_dir` holds a hood, judged without creating anything in it.
pub fn has_hood_files(data_dir: &Path) -> bool {
    data_dir.join(porchlight_node::identity::FILE).is_file()
        && data_dir.join(porchlight_node::local::DB_DIR).is_dir()
}
