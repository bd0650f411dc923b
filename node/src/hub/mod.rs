//! Home hubs: doorbell and NVR events become *drafts* that a person approves.
//!
//! Nothing a camera sees leaves the home on its own. A Frigate review (over MQTT) or a
//! webhook call (`POST /v1/hub/events`) becomes a [`Draft`] in `<data dir>/drafts/`: the
//! camera, the object labels, and the SHA-256 of the clip, which is fetched and kept in
//! the clip library. Only `approve` (or an auto-post rule the owner wrote) turns a draft
//! into a report. Frigate's face and plate fields (`sub_label(s)`,
//! `recognized_license_plate`, attributes) are never parsed, so they cannot be copied.
//!
//! # Layout
//! - [`frigate`]: pure parsing of Frigate's `frigate/reviews` and `frigate/events`
//!   payloads into a [`Candidate`] (no I/O; never panics), and the clip fetch.
//! - [`drafts`]: the draft store, one JSON file per draft, written atomically.
//! - [`settings`]: broker and Frigate URLs, auto-post rules (`porchlight.toml`).
//! - [`mqtt`]: the bridge: Frigate in, alerts and Home Assistant discovery out.
//! - [`api`]: the local API's draft and webhook routes.

pub mod api;
pub mod drafts;
pub mod frigate;
pub mod mqtt;
pub mod settings;

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use porchlight_proto::ItemId;
use porchlight_proto::codec::{self, FieldError};
use porchlight_proto::item::Body;
use porchlight_proto::report::{Category, ClipRef, Location, Report, Severity};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::clips::sharing::ClipPolicy;
use crate::clips::{self, ClipError};
use crate::node::{Node, NodeError};

pub use drafts::{Draft, DraftId, Drafts, Source};
pub use frigate::Candidate;
pub use settings::{AutoPost, Broker, FrigateApi, Settings};

/// Sources (review ids, webhook ids) remembered as handled, so that a repeated message
/// does not make a second draft after the first was approved or discarded.
pub const MAX_RECENT_SOURCES: usize = 1024;
/// Bytes of clips no live report references that the library keeps (the setting
/// `unposted_clip_quota` changes it); past it the oldest are deleted.
pub const DEFAULT_UNPOSTED_CLIP_QUOTA: u64 = 2 * 1024 * 1024 * 1024;
/// How often a running hub deletes expired drafts (with their clips) and holds the
/// library to its quota.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// What one [`Hub::sweep`] deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub expired_drafts: usize,
    pub clips: usize,
    pub bytes: u64,
}

/// Everything that can go wrong in the hub, by whose fault it is.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// A payload from the hub (Frigate, a webhook caller) that we cannot use.
    #[error("malformed payload: {0}")]
    Payload(String),
    /// A URL in the settings or on the command line.
    #[error("{what} {url:?}: {why}")]
    Url {
        what: &'static str,
        url: String,
        why: String,
    },
    /// An auto-post rule that could never post.
    #[error("auto_post rule {index}: {why}")]
    Rule { index: usize, why: String },
    #[error("no draft with id {0}")]
    UnknownDraft(String),
    #[error("{0}")]
    BadRequest(String),
    /// What the approver asked for is not a valid report.
    #[error("{0}")]
    Invalid(#[from] FieldError),
    #[error("the draft's clip {0} is no longer in the clip library")]
    ClipGone(String),
    #[error(transparent)]
    Clip(#[from] ClipError),
    /// Frigate (or a webhook's clip URL) did not give us the clip.
    #[error("cannot fetch {url}: {why}")]
    Fetch {
        url: String,
        /// The HTTP status, if there was an answer.
        status: Option<u16>,
        why: String,
    },
    /// Our own storage.
    #[error("draft store {path}: {source}")]
    Storage {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// What [`Hub::intake`] did with a candidate.
#[derive(Debug, Clone)]
pub enum Intake {
    /// A new draft waits for a person.
    Drafted(Draft),
    /// An auto-post rule matched: the report is posted.
    Posted { draft: Draft, report: ItemId },
    /// This source was already drafted (or handled): nothing changed.
    Duplicate(DraftId),
}

/// What [`Hub::approve`] did.
#[derive(Debug, Clone)]
pub struct Approved {
    pub draft: Draft,
    pub report: ItemId,
    /// Who may fetch the clip now; `None` if the draft had no clip.
    pub share: Option<ClipPolicy>,
}

/// What an approver may set; everything else comes from the draft. The JSON body of
/// `POST /v1/drafts/{id}/approve` and the fields of an auto-post rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<String>,
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geohash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u64>,
    /// Who may fetch the draft's clip once it is posted: `members`, `ask` or `never`;
    /// absent: the owner's `clip_policy`. Approving is the owner's explicit act, so
    /// this holds for this clip over the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<String>,
}

impl Approval {
    /// The report this approval makes of `draft`. The category is the approver's, else
    /// `suspicious-activity` when they say what the person did (`behavior`), else the
    /// draft's suggestion (`other` for a camera): a camera sees objects, not intent.
    /// Without `expires_in_secs` the report lives `default_ttl` (the hood's default).
    pub fn report(&self, draft: &Draft, now: u64, default_ttl: u64) -> Result<Report, HubError> {
        let category = match (&self.category, &self.behavior) {
            (Some(name), _) => parse_category(name)?,
            (None, Some(_)) => Category::SuspiciousActivity,
            (None, None) => draft.category,
        };
        let severity = match &self.severity {
            Some(s) => Severity::parse(s).ok_or_else(|| {
                HubError::BadRequest(format!(
                    "unknown severity {s:?}: one of info, warning, urgent"
                ))
            })?,
            None => Severity::Warning,
        };
        let ttl = self.expires_in_secs.unwrap_or(default_ttl);
        let report = Report {
            created_at: now,
            expires_at: now.saturating_add(ttl),
            category,
            severity,
            text: self.text.clone().unwrap_or_else(|| draft.text.clone()),
            behavior: self.behavior.clone(),
            location: Location {
                text: self.place.clone().unwrap_or_default(),
                geohash: self.geohash.clone(),
            },
            clips: draft
                .clip
                .map(|c| ClipRef {
                    sha256: c.sha256,
                    size: c.size,
                    camera: draft.camera.clone(),
                    captured_at: draft.captured_at,
                })
                .into_iter()
                .collect(),
            ask_seen: None,
        };
        report.check()?;
        Ok(report)
    }
}

/// An approval's `share`: `members`, `ask` or `never`.
pub(crate) fn parse_share(name: &str) -> Result<ClipPolicy, HubError> {
    match name {
        "members" => Ok(ClipPolicy::Members),
        "ask" => Ok(ClipPolicy::Ask),
        "never" => Ok(ClipPolicy::Never),
        _ => Err(HubError::BadRequest(format!(
            "unknown share {name:?}: one of members, ask, never"
        ))),
    }
}

pub(crate) fn parse_category(name: &str) -> Result<Category, HubError> {
    Category::parse(name).ok_or_else(|| {
        let all: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
        HubError::BadRequest(format!(
            "unknown category {name:?}: one of {}",
            all.join(", ")
        ))
    })
}

/// The hub: the node, its draft store and the owner's auto-post rules. Cheap to clone;
/// the API and the MQTT bridge share one.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    node: Node,
    data_dir: PathBuf,
    drafts: Drafts,
    rules: Vec<AutoPost>,
    /// Bytes of clips nobody posted that the library keeps.
    clip_quota: u64,
    /// Serializes changes to the store, and remembers recently handled sources.
    recent: Mutex<Recent>,
}

#[derive(Debug, Default)]
struct Recent {
    order: VecDeque<DraftId>,
    set: HashSet<DraftId>,
}

impl Recent {
    fn insert(&mut self, id: DraftId) {
        if self.set.insert(id) {
            self.order.push_back(id);
            while self.order.len() > MAX_RECENT_SOURCES {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

impl Hub {
    pub fn new(node: Node, data_dir: &Path, rules: Vec<AutoPost>) -> Hub {
        Hub::with_clip_quota(node, data_dir, rules, DEFAULT_UNPOSTED_CLIP_QUOTA)
    }

    /// [`Hub::new`] with another quota for clips nobody posted.
    pub fn with_clip_quota(
        node: Node,
        data_dir: &Path,
        rules: Vec<AutoPost>,
        clip_quota: u64,
    ) -> Hub {
        Hub {
            inner: Arc::new(Inner {
                node,
                data_dir: data_dir.to_path_buf(),
                drafts: Drafts::open(data_dir),
                rules,
                clip_quota,
                recent: Mutex::new(Recent::default()),
            }),
        }
    }

    /// Deletes expired drafts with their clips (unless a live report or another draft
    /// uses the clip), then, if the clips no live report references hold more than the
    /// quota, deletes the oldest of them until they fit.
    pub async fn sweep(&self) -> Result<Swept, HubError> {
        let mut swept = Swept::default();
        let expired = {
            let _guard = self.inner.recent.lock().await;
            self.inner.drafts.take_expired(crate::now())?
        };
        swept.expired_drafts = expired.len();
        for draft in &expired {
            if let Some(bytes) = self.forget_clip(draft).await {
                swept.clips += 1;
                swept.bytes += bytes;
            }
        }
        let data_dir = self.inner.data_dir.clone();
        let library = tokio::task::spawn_blocking(move || clips::list(&data_dir))
            .await
            .map_err(|e| {
                HubError::Clip(ClipError::Library {
                    path: self.inner.data_dir.display().to_string(),
                    source: std::io::Error::other(e),
                })
            })??;
        // Within the quota even if nothing were posted: no need to read the feed.
        let total: u64 = library.iter().map(|c| c.clip.size).sum();
        if total <= self.inner.clip_quota {
            return Ok(swept);
        }
        // Which of them live reports reference, by the store's clip index.
        let held: Vec<[u8; 32]> = library.iter().map(|c| c.clip.sha256).collect();
        let posted = self
            .inner
            .node
            .read(move |reader| {
                let mut posted = HashSet::new();
                for sha in held {
                    if !reader.clip_refs(&sha)?.is_empty() {
                        posted.insert(sha);
                    }
                }
                Ok(posted)
            })
            .await;
        let Ok(posted) = posted else {
            return Ok(swept);
        };
        let mut unposted: Vec<clips::Listed> = library
            .into_iter()
            .filter(|c| !posted.contains(&c.clip.sha256))
            .collect();
        let mut over: u64 = unposted.iter().map(|c| c.clip.size).sum();
        unposted.sort_by_key(|c| c.modified);
        for listed in unposted {
            if over <= self.inner.clip_quota {
                break;
            }
            if std::fs::remove_file(clips::path(&self.inner.data_dir, &listed.clip.sha256)).is_ok()
            {
                over -= listed.clip.size;
                swept.clips += 1;
                swept.bytes += listed.clip.size;
            }
        }
        if swept.clips > 0 {
            tracing::info!(
                expired_drafts = swept.expired_drafts,
                clips = swept.clips,
                bytes = swept.bytes,
                "deleted clips nobody posted"
            );
        }
        Ok(swept)
    }

    /// Sweeps now and every `SWEEP_EVERY` until the node stops.
    pub fn spawn_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let hub = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            loop {
                every.tick().await;
                match hub.sweep().await {
                    Ok(_) => {}
                    Err(HubError::Node(NodeError::Stopped)) => return,
                    Err(e) => tracing::warn!(error = %e, "the draft and clip sweep failed"),
                }
            }
        })
    }

    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Pending drafts, oldest first (expired ones are removed on the way).
    pub async fn drafts(&self) -> Result<Vec<Draft>, HubError> {
        let _guard = self.inner.recent.lock().await;
        self.inner.drafts.list(crate::now())
    }

    /// True if a candidate from this source would be a duplicate: skip fetching its clip.
    pub async fn already_has(&self, candidate: &Candidate) -> bool {
        let Some(id) = candidate.derived_id() else {
            return false;
        };
        let recent = self.inner.recent.lock().await;
        recent.set.contains(&id) || self.inner.drafts.contains(&id)
    }

    /// Pending drafts as `GET /v1/drafts` shows them: each with `share`, who may fetch
    /// its clip once approved without a `share` (the owner's `clip_policy`).
    pub async fn drafts_json(&self) -> Result<Vec<serde_json::Value>, HubError> {
        let policy = self.inner.node.clip_policy().await?;
        Ok(self
            .drafts()
            .await?
            .iter()
            .map(|d| {
                let mut v = d.json();
                if let Some(map) = v.as_object_mut() {
                    map.insert("share".into(), policy.as_str().into());
                }
                v
            })
            .collect())
    }

    /// Turns a candidate and its clip into a draft, or posts it if an auto-post rule
    /// matches. `clip` is the imported clip, or why there is none.
    pub async fn intake(
        &self,
        candidate: Candidate,
        clip: Result<clips::Clip, String>,
    ) -> Result<Intake, HubError> {
        let now = crate::now();
        let draft = {
            let mut recent = self.inner.recent.lock().await;
            let id = candidate.derived_id().unwrap_or_else(DraftId::random);
            if recent.set.contains(&id) || self.inner.drafts.contains(&id) {
                return Ok(Intake::Duplicate(id));
            }
            let draft = Draft::new(id, candidate, clip, now);
            if let Some(rule) = self.inner.rules.iter().find(|r| r.matches(&draft)) {
                // A rule whose report is refused (invalid, over the rate limit) leaves a
                // draft for a person instead: the event is not lost.
                let posted = match rule.approval.report(&draft, now, self.default_ttl().await) {
                    Ok(report) => self
                        .inner
                        .node
                        .post(Body::Report(report))
                        .await
                        .map_err(HubError::from),
                    Err(e) => Err(e),
                };
                match posted {
                    Ok(posted) => {
                        recent.insert(draft.id);
                        tracing::info!(draft = %draft.id, report = %&posted.to_hex()[..8], camera = %draft.camera, "auto-posted by rule");
                        return Ok(Intake::Posted {
                            draft,
                            report: posted,
                        });
                    }
                    Err(e) => {
                        tracing::warn!(draft = %draft.id, error = %e, "an auto-post rule matched but could not post; kept as a draft");
                    }
                }
            }
            for old in self.inner.drafts.put(&draft, now)? {
                tracing::warn!(draft = %old.id, "the draft store is full: dropped the oldest draft");
                self.forget_clip(&old).await;
            }
            draft
        };
        tracing::info!(draft = %draft.id, camera = %draft.camera, clip = draft.clip.is_some(), "new draft: approve or discard it");
        Ok(Intake::Drafted(draft))
    }

    /// The hood's default report lifetime (the design's 72 h if the node cannot say).
    async fn default_ttl(&self) -> u64 {
        match self.inner.node.status().await {
            Ok(status) => status.policy.map_or(crate::node::DEFAULT_TTL_SECS, |p| {
                u64::from(p.default_ttl_secs)
            }),
            Err(_) => crate::node::DEFAULT_TTL_SECS,
        }
    }

    /// Posts the draft that `wanted` names (an id or a unique prefix) as a report. With
    /// a `share`, the clip is shared so with members (over the owner's policy). Returns
    /// the draft, the report and who may fetch its clip (`None`: it has none).
    pub async fn approve(&self, wanted: &str, approval: &Approval) -> Result<Approved, HubError> {
        let mut recent = self.inner.recent.lock().await;
        let now = crate::now();
        let draft = self.inner.drafts.find(wanted, now)?;
        if let Some(clip) = &draft.clip
            && clips::get(&self.inner.data_dir, &clip.sha256).is_err()
        {
            return Err(HubError::ClipGone(codec::hex(&clip.sha256)));
        }
        let share = approval.share.as_deref().map(parse_share).transpose()?;
        let report = approval.report(&draft, now, self.default_ttl().await)?;
        let id = self.inner.node.post(Body::Report(report)).await?;
        recent.insert(draft.id);
        let share = match (&draft.clip, share) {
            (None, _) => None,
            // The report is out; a choice that could not be kept leaves the policy in
            // force (a neighbor waits for the owner), which the log says.
            (Some(clip), Some(share)) => match self.inner.node.share_clip(clip.sha256, share).await
            {
                Ok(()) => Some(share),
                Err(e) => {
                    tracing::warn!(draft = %draft.id, error = %e, "posted, but the clip's sharing stays the policy");
                    self.inner.node.clip_policy().await.ok()
                }
            },
            (Some(_), None) => self.inner.node.clip_policy().await.ok(),
        };
        // The report is durable; a draft file left behind by a failed delete would only
        // offer the same post again, so it is logged, not returned as a failure.
        if let Err(e) = self.inner.drafts.remove(&draft.id) {
            tracing::warn!(draft = %draft.id, error = %e, "posted, but the draft file stays");
        }
        Ok(Approved {
            draft,
            report: id,
            share,
        })
    }

    /// Deletes a draft, and its clip unless something else refers to it.
    pub async fn discard(&self, wanted: &str) -> Result<Draft, HubError> {
        let draft = {
            let mut recent = self.inner.recent.lock().await;
            let draft = self.inner.drafts.find(wanted, crate::now())?;
            self.inner.drafts.remove(&draft.id)?;
            recent.insert(draft.id);
            draft
        };
        self.forget_clip(&draft).await;
        Ok(draft)
    }

    /// Removes a dropped draft's clip from the library if no other draft and no live
    /// report refers to it: footage nobody chose to share does not linger here.
    /// Returns the bytes deleted, if it was deleted.
    async fn forget_clip(&self, draft: &Draft) -> Option<u64> {
        let clip = draft.clip?;
        let in_drafts = self
            .inner
            .drafts
            .list(crate::now())
            .map(|all| {
                all.iter()
                    .any(|d| d.id != draft.id && d.clip.map(|c| c.sha256) == Some(clip.sha256))
            })
            .unwrap_or(true);
        let sha = clip.sha256;
        let in_reports = self
            .inner
            .node
            .read(move |reader| reader.clip_refs(&sha))
            .await
            .map_or(true, |refs| !refs.is_empty());
        if in_drafts || in_reports {
            return None;
        }
        std::fs::remove_file(clips::path(&self.inner.data_dir, &clip.sha256))
            .ok()
            .map(|()| clip.size)
    }
}
