//! The draft store: `<data dir>/drafts/<id>.json`, one small JSON file per draft.
//!
//! A draft is written to a temporary file, fsynced and renamed, so a crash leaves the
//! old state or the new one. The store is bounded: at most [`MAX_DRAFTS`] (the oldest
//! go first), each expires [`DRAFT_TTL_SECS`] after it was made.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use porchlight_proto::codec;
use porchlight_proto::report::{Category, MAX_TEXT_BYTES};
use rand_core::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::frigate::Candidate;
use super::{HubError, parse_category};
use crate::clips::Clip;

pub const DIR: &str = "drafts";
/// Most drafts kept; a new one beyond this drops the oldest.
pub const MAX_DRAFTS: usize = 1000;
/// A draft nobody approved within a week is stale: it is deleted.
pub const DRAFT_TTL_SECS: u64 = 7 * 24 * 3600;
/// A draft file larger than this is not ours: it is skipped.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// A draft's id: 8 bytes, shown as 16 hex digits. Derived from the source's own id when
/// there is one (a Frigate review id), so the same review never makes two drafts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DraftId(pub [u8; 8]);

impl DraftId {
    pub fn random() -> DraftId {
        let mut id = [0u8; 8];
        crate::rng().fill_bytes(&mut id);
        DraftId(id)
    }

    pub fn derived(source: Source, source_id: &str) -> DraftId {
        let mut h = Sha256::new();
        h.update(b"porchlight-draft\0");
        h.update(source.as_str().as_bytes());
        h.update([0]);
        h.update(source_id.as_bytes());
        let digest: [u8; 32] = h.finalize().into();
        let mut id = [0u8; 8];
        id.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
        DraftId(id)
    }

    pub fn to_hex(self) -> String {
        codec::hex(&self.0)
    }

    pub fn parse(s: &str) -> Option<DraftId> {
        codec::parse_hex::<8>(s).map(DraftId)
    }
}

impl std::fmt::Display for DraftId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Where a draft came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// A Frigate review item (`frigate/reviews`, severity `alert`).
    FrigateReview,
    /// A Frigate tracked object (`frigate/events`, for Frigate without reviews).
    FrigateEvent,
    /// `POST /v1/hub/events`.
    Webhook,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::FrigateReview => "frigate-review",
            Source::FrigateEvent => "frigate-event",
            Source::Webhook => "webhook",
        }
    }
}

/// The clip a draft refers to, in this node's library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DraftClip {
    pub sha256: [u8; 32],
    pub size: u64,
}

/// An event from a hub, waiting for a person to approve or discard it. It holds what a
/// report may carry and nothing more: no face, no plate, no name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub id: DraftId,
    pub source: Source,
    /// The hub's own id (Frigate review or event id, a webhook's `id`).
    pub source_id: Option<String>,
    pub camera: String,
    /// Object labels (`person`, `car`), never sub-labels.
    pub labels: Vec<String>,
    pub zones: Vec<String>,
    /// When the camera saw it (Unix seconds).
    pub captured_at: u64,
    pub created_at: u64,
    pub expires_at: u64,
    pub clip: Option<DraftClip>,
    /// Why there is no clip (Frigate did not answer, the clip was too large …).
    pub clip_error: Option<String>,
    /// Suggested report text; the approver may replace it.
    pub text: String,
    /// Suggested category; the approver may replace it.
    pub category: Category,
}

/// The file and API shape of a draft.
#[derive(Debug, Serialize, Deserialize)]
struct DraftFile {
    id: String,
    source: Source,
    source_id: Option<String>,
    camera: String,
    labels: Vec<String>,
    zones: Vec<String>,
    captured_at: u64,
    created_at: u64,
    expires_at: u64,
    clip_sha256: Option<String>,
    clip_size: Option<u64>,
    clip_error: Option<String>,
    text: String,
    category: String,
}

impl Draft {
    /// A draft of `candidate` with its clip, or why it has none: a draft without a clip
    /// always says why.
    pub fn new(id: DraftId, candidate: Candidate, clip: Result<Clip, String>, now: u64) -> Draft {
        let text = candidate
            .text
            .clone()
            .unwrap_or_else(|| suggested_text(&candidate.labels, &candidate.camera));
        let (clip, clip_error) = match clip {
            Ok(c) => (
                Some(DraftClip {
                    sha256: c.sha256,
                    size: c.size,
                }),
                None,
            ),
            Err(why) => (None, Some(why)),
        };
        Draft {
            id,
            source: candidate.source,
            source_id: candidate.source_id,
            camera: candidate.camera,
            labels: candidate.labels,
            zones: candidate.zones,
            captured_at: candidate.captured_at,
            created_at: now,
            expires_at: now.saturating_add(DRAFT_TTL_SECS),
            clip,
            clip_error,
            text,
            category: candidate.category.unwrap_or(Category::Other),
        }
    }

    fn to_file(&self) -> DraftFile {
        DraftFile {
            id: self.id.to_hex(),
            source: self.source,
            source_id: self.source_id.clone(),
            camera: self.camera.clone(),
            labels: self.labels.clone(),
            zones: self.zones.clone(),
            captured_at: self.captured_at,
            created_at: self.created_at,
            expires_at: self.expires_at,
            clip_sha256: self.clip.map(|c| codec::hex(&c.sha256)),
            clip_size: self.clip.map(|c| c.size),
            clip_error: self.clip_error.clone(),
            text: self.text.clone(),
            category: self.category.as_str().to_owned(),
        }
    }

    fn from_file(f: DraftFile) -> Result<Draft, HubError> {
        let bad = |why: &str| HubError::Payload(format!("draft file: {why}"));
        let id = DraftId::parse(&f.id).ok_or_else(|| bad("bad id"))?;
        let clip = match (f.clip_sha256, f.clip_size) {
            (Some(hex), Some(size)) => Some(DraftClip {
                sha256: codec::parse_hex::<32>(&hex).ok_or_else(|| bad("bad clip_sha256"))?,
                size,
            }),
            (None, None) => None,
            _ => return Err(bad("clip_sha256 and clip_size go together")),
        };
        Ok(Draft {
            id,
            source: f.source,
            source_id: f.source_id,
            camera: f.camera,
            labels: f.labels,
            zones: f.zones,
            captured_at: f.captured_at,
            created_at: f.created_at,
            expires_at: f.expires_at,
            clip,
            clip_error: f.clip_error,
            text: f.text,
            category: parse_category(&f.category)?,
        })
    }

    /// The JSON of `GET /v1/drafts` and `porchlight drafts --json`.
    pub fn json(&self) -> Value {
        serde_json::to_value(self.to_file()).unwrap_or_else(|_| json!({"id": self.id.to_hex()}))
    }
}

/// "person and car at the front door camera": labels and camera only, `_` read as a
/// space (Frigate's names use it between words: `dental_drill's_drill`). Within a
/// report's text limit: labels that do not fit are "others".
fn suggested_text(labels: &[String], camera: &str) -> String {
    let camera = camera.replace('_', " ");
    let mut labels: Vec<String> = labels.iter().map(|l| l.replace('_', " ")).collect();
    loop {
        let text = match labels.as_slice() {
            [] => format!("activity at the {camera} camera"),
            [one] => format!("{one} at the {camera} camera"),
            [init @ .., last] => {
                format!("{} and {last} at the {camera} camera", init.join(", "))
            }
        };
        if text.len() <= MAX_TEXT_BYTES || labels.len() <= 1 {
            return text;
        }
        labels.truncate(labels.len() - 2);
        labels.push("others".into());
    }
}

/// The store. Its methods do small blocking file operations.
#[derive(Debug, Clone)]
pub struct Drafts {
    dir: PathBuf,
    max: usize,
}

impl Drafts {
    pub fn open(data_dir: &Path) -> Drafts {
        Drafts::with_max(data_dir, MAX_DRAFTS)
    }

    /// A store that keeps at most `max` drafts (tests use a small one).
    pub fn with_max(data_dir: &Path, max: usize) -> Drafts {
        Drafts {
            dir: data_dir.join(DIR),
            max: max.max(1),
        }
    }

    fn file(&self, id: &DraftId) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn storage(&self, source: std::io::Error) -> HubError {
        HubError::Storage {
            path: self.dir.display().to_string(),
            source,
        }
    }

    pub fn contains(&self, id: &DraftId) -> bool {
        self.file(id).is_file()
    }

    fn read(&self, path: &Path) -> Result<Draft, HubError> {
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_FILE_BYTES).read_to_string(&mut text))
            .map_err(|e| self.storage(e))?;
        let file: DraftFile = serde_json::from_str(&text)
            .map_err(|e| HubError::Payload(format!("draft file {}: {e}", path.display())))?;
        Draft::from_file(file)
    }

    /// Live drafts, oldest first. Expired ones are left out (`take_expired` deletes them
    /// and tells which, so that their clips go too); unreadable files are skipped with a
    /// log line (they are left for a person to look at).
    pub fn list(&self, now: u64) -> Result<Vec<Draft>, HubError> {
        Ok(self.scan(now, false)?.0)
    }

    /// Deletes the expired drafts' files; returns those drafts.
    pub fn take_expired(&self, now: u64) -> Result<Vec<Draft>, HubError> {
        Ok(self.scan(now, true)?.1)
    }

    /// Deletes the temp files a killed process left (`.<id>.<nonce>.tmp`). Call at start
    /// only, while nothing writes drafts. Returns how many.
    pub fn sweep_temp(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.take(self.max.saturating_mul(4)).flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.')
                && name.ends_with(".tmp")
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
        removed
    }

    /// Live drafts, oldest first, and (with `delete_expired`) the expired ones, deleted.
    fn scan(&self, now: u64, delete_expired: bool) -> Result<(Vec<Draft>, Vec<Draft>), HubError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Vec::new(), Vec::new()));
            }
            Err(e) => return Err(self.storage(e)),
        };
        let mut drafts = Vec::new();
        let mut expired = Vec::new();
        // Bounded: the store holds at most MAX_DRAFTS of ours; others' files are skipped.
        for entry in entries.take(self.max.saturating_mul(4)) {
            let path = entry.map_err(|e| self.storage(e))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !name.ends_with(".json") || name.starts_with('.') {
                continue;
            }
            match self.read(&path) {
                Ok(d) if d.expires_at <= now => {
                    if delete_expired && std::fs::remove_file(&path).is_ok() {
                        expired.push(d);
                    }
                }
                Ok(d) => drafts.push(d),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "skipped an unreadable draft file")
                }
            }
        }
        drafts.sort_by_key(|d| (d.created_at, d.id));
        Ok((drafts, expired))
    }

    /// The live draft `wanted` names: its id, or a unique prefix of at least 4 hex digits.
    pub fn find(&self, wanted: &str, now: u64) -> Result<Draft, HubError> {
        let wanted = wanted.trim().to_ascii_lowercase();
        if wanted.len() < 4 || wanted.len() > 16 || !wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(HubError::BadRequest(format!(
                "{wanted:?} is not a draft id: give at least 4 of its 16 hex digits"
            )));
        }
        let matches: Vec<Draft> = self
            .list(now)?
            .into_iter()
            .filter(|d| d.id.to_hex().starts_with(&wanted))
            .collect();
        match <[Draft; 1]>::try_from(matches) {
            Ok([one]) => Ok(one),
            Err(v) if v.is_empty() => Err(HubError::UnknownDraft(wanted)),
            Err(v) => Err(HubError::BadRequest(format!(
                "{wanted} matches {} drafts: give more of the id",
                v.len()
            ))),
        }
    }

    /// Stores a draft; returns the drafts dropped to stay within the bound.
    pub fn put(&self, draft: &Draft, now: u64) -> Result<Vec<Draft>, HubError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.storage(e))?;
        let existing = self.list(now)?;
        let over = (existing.len() + 1).saturating_sub(self.max);
        let dropped: Vec<Draft> = existing.into_iter().take(over).collect();
        for old in &dropped {
            self.remove(&old.id)?;
        }
        let text = serde_json::to_vec_pretty(&draft.to_file())
            .map_err(|e| self.storage(std::io::Error::other(e)))?;
        let mut nonce = [0u8; 8];
        crate::rng().fill_bytes(&mut nonce);
        let temp = self
            .dir
            .join(format!(".{}.{}.tmp", draft.id, codec::hex(&nonce)));
        let written = (|| {
            let mut f = std::fs::File::create(&temp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&temp, self.file(&draft.id))?;
            // The rename itself is durable once the directory is.
            #[cfg(unix)]
            std::fs::File::open(&self.dir)?.sync_all()?;
            Ok(())
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(self.storage(e));
        }
        Ok(dropped)
    }

    /// Deletes a draft; `Ok(false)` if it was not there.
    pub fn remove(&self, id: &DraftId) -> Result<bool, HubError> {
        match std::fs::remove_file(self.file(id)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.storage(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(source_id: &str) -> Candidate {
        Candidate {
            source: Source::FrigateReview,
            source_id: Some(source_id.into()),
            camera: "front_door".into(),
            labels: vec!["person".into()],
            zones: vec!["porch".into()],
            captured_at: 1_718_987_129,
            clip: None,
            text: None,
            category: None,
        }
    }

    #[test]
    fn drafts_round_trip_and_are_found_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Drafts::open(dir.path());
        let c = candidate("1718987129.308396-fqk5ka");
        let id = c.derived_id().unwrap();
        let clip = Clip {
            sha256: [7; 32],
            size: 1234,
        };
        let draft = Draft::new(id, c, Ok(clip), 1000);
        assert_eq!(draft.text, "person at the front door camera");
        assert_eq!(draft.category, Category::Other);
        assert!(store.put(&draft, 1000).unwrap().is_empty());
        assert!(store.contains(&id));
        assert_eq!(store.list(1001).unwrap(), vec![draft.clone()]);
        assert_eq!(store.find(&id.to_hex()[..6], 1001).unwrap(), draft);
        assert_eq!(draft.json()["clip_sha256"], codec::hex(&[7; 32]));
        assert_eq!(draft.json()["camera"], "front_door");
        assert!(matches!(
            store.find("zzzz", 1001),
            Err(HubError::BadRequest(_))
        ));
        assert!(matches!(
            store.find("0000000000000000", 1001),
            Err(HubError::UnknownDraft(_))
        ));
        // Expired drafts are not listed; `take_expired` deletes them and says which (so
        // that their clips go too).
        assert!(store.list(draft.expires_at).unwrap().is_empty());
        assert!(store.take_expired(draft.expires_at - 1).unwrap().is_empty());
        assert_eq!(
            store.take_expired(draft.expires_at).unwrap(),
            vec![draft.clone()]
        );
        assert!(!store.contains(&id));
        assert!(store.take_expired(draft.expires_at).unwrap().is_empty());
        // No temp files are left behind.
        assert_eq!(std::fs::read_dir(dir.path().join(DIR)).unwrap().count(), 0);
    }

    #[test]
    fn the_store_is_bounded_and_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let max = 10;
        let store = Drafts::with_max(dir.path(), max);
        let mut first = None;
        for i in 0..(max as u64 + 2) {
            let c = candidate(&format!("review-{i}"));
            let d = Draft::new(c.derived_id().unwrap(), c, Err("no clip".into()), 1000 + i);
            let dropped = store.put(&d, 1000 + i).unwrap();
            if i < max as u64 {
                assert!(dropped.is_empty());
            } else {
                assert_eq!(dropped.len(), 1);
            }
            first.get_or_insert(d.id);
        }
        let all = store.list(5000).unwrap();
        assert_eq!(all.len(), max);
        assert!(!all.iter().any(|d| Some(d.id) == first));
    }

    #[test]
    fn suggested_text_names_labels_and_camera_only() {
        assert_eq!(
            suggested_text(&["person".into(), "car".into(), "dog".into()], "drive_way"),
            "person, car and dog at the drive way camera"
        );
        assert_eq!(suggested_text(&[], "door"), "activity at the door camera");
        let long: Vec<String> = (0..16)
            .map(|i| format!("{i:02}{}", "x".repeat(62)))
            .collect();
        let text = suggested_text(&long, &"c".repeat(64));
        assert!(text.len() <= MAX_TEXT_BYTES, "{}", text.len());
        assert!(
            text.starts_with("00x") && text.contains(" and others at the "),
            "{text}"
        );
        assert_eq!(
            suggested_text(&["delivery".into(), "dental_drill's_drill".into()], "porch"),
            "delivery and dental drill's drill at the porch camera"
        );
    }
}
