//! Clip sharing: the owner's policy and pending requests ([`Sharing`], run by the event
//! loop), and the requester's fetch ([`fetch`], run by the API over a [`Node`]).
//!
//! Only clips referenced by this member's own live reports are served; the library may
//! hold others (drafts' clips, clips fetched from neighbors) that never leave home.

use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use porchlight_proto::clip::{self, Download, DownloadError, Step};
use porchlight_proto::item::Body;
use porchlight_proto::{MemberId, codec};
use rand_core::Rng;
use serde::{Deserialize, Serialize};

use crate::clips;
use crate::node::{Node, NodeError};

/// Who may fetch this member's clips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClipPolicy {
    /// Any member, on request.
    Members,
    /// The owner allows each request (`porchlight clip allow ID`).
    #[default]
    Ask,
    /// Nobody.
    Never,
}

impl ClipPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ClipPolicy::Members => "members",
            ClipPolicy::Ask => "ask",
            ClipPolicy::Never => "never",
        }
    }
}

/// Pending requests kept for the owner to decide on; the oldest go first.
pub const MAX_ASKS: usize = 64;
/// Allowed (and, separately, denied) (member, clip) pairs kept; the oldest go first.
pub const MAX_GRANTS: usize = 1024;

/// A member asked for one of our clips and the policy is `ask`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipAsk {
    /// A short random id for `clip allow ID`.
    pub id: String,
    pub requester: MemberId,
    pub sha256: [u8; 32],
    pub asked_at: u64,
}

/// Clips whose sharing the owner chose when approving a draft, kept; the oldest go first.
pub const MAX_SHARES: usize = 1024;
/// The file of those choices in the data dir.
pub const SHARES_FILE: &str = "clip-shares.json";
/// A shares file larger than this is not ours: it is ignored.
const MAX_SHARES_FILE_BYTES: u64 = 256 * 1024;

/// The owner's side: policy, per-clip choices, pending asks, grants. Grants live as long
/// as the process; per-clip choices (`approve --share`) are kept in [`SHARES_FILE`].
#[derive(Debug, Default)]
pub struct Sharing {
    pub policy: ClipPolicy,
    asks: VecDeque<ClipAsk>,
    grants: VecDeque<(MemberId, [u8; 32])>,
    /// Requests the owner denied: answered `Refused` from then on.
    denials: VecDeque<(MemberId, [u8; 32])>,
    /// Clips the owner chose a policy for when approving: over `policy` for that clip.
    shares: VecDeque<([u8; 32], ClipPolicy)>,
    /// Where `shares` is kept (`None`: in memory only).
    shares_file: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SharingError {
    #[error("no pending clip request {0:?} (see `porchlight clip requests`)")]
    UnknownAsk(String),
    #[error("cannot keep the clip's sharing in {path}: {source}")]
    Store {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Serialize, Deserialize)]
struct ShareEntry {
    sha256: String,
    share: ClipPolicy,
}

impl Sharing {
    pub fn new(policy: ClipPolicy) -> Sharing {
        Sharing {
            policy,
            ..Sharing::default()
        }
    }

    /// The owner's side with the per-clip choices kept in `data_dir` (an unreadable
    /// file is logged and ignored: the policy applies).
    pub fn open(policy: ClipPolicy, data_dir: &Path) -> Sharing {
        let path = data_dir.join(SHARES_FILE);
        let mut sharing = Sharing {
            policy,
            shares_file: Some(path.clone()),
            ..Sharing::default()
        };
        let read = std::fs::File::open(&path).and_then(|f| {
            let mut text = String::new();
            f.take(MAX_SHARES_FILE_BYTES).read_to_string(&mut text)?;
            Ok(text)
        });
        match read {
            Ok(text) => match serde_json::from_str::<Vec<ShareEntry>>(&text) {
                Ok(entries) => {
                    for e in entries.into_iter().rev().take(MAX_SHARES).rev() {
                        if let Some(sha) = codec::parse_hex::<32>(&e.sha256) {
                            sharing.shares.push_back((sha, e.share));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "ignored an unreadable clip shares file")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read the clip shares file")
            }
        }
        sharing
    }

    /// Who may fetch clip `sha256`: the owner's choice for it, else the policy.
    pub fn policy_for(&self, sha256: &[u8; 32]) -> ClipPolicy {
        self.shares
            .iter()
            .rev()
            .find(|(s, _)| s == sha256)
            .map_or(self.policy, |(_, p)| *p)
    }

    /// The owner chose who may fetch clip `sha256` (approving a draft with `--share`).
    /// Kept across restarts; pending asks for it are settled by the choice.
    pub fn set_share(&mut self, sha256: [u8; 32], share: ClipPolicy) -> Result<(), SharingError> {
        self.shares.retain(|(s, _)| *s != sha256);
        if self.shares.len() >= MAX_SHARES {
            self.shares.pop_front();
        }
        self.shares.push_back((sha256, share));
        if share != ClipPolicy::Ask {
            self.asks.retain(|a| a.sha256 != sha256);
        }
        let Some(path) = &self.shares_file else {
            return Ok(());
        };
        let entries: Vec<ShareEntry> = self
            .shares
            .iter()
            .map(|(sha, share)| ShareEntry {
                sha256: codec::hex(sha),
                share: *share,
            })
            .collect();
        let store = |source| SharingError::Store {
            path: path.display().to_string(),
            source,
        };
        let text = serde_json::to_vec(&entries).map_err(|e| store(std::io::Error::other(e)))?;
        // Beside and renamed: a crash leaves the old choices or the new ones.
        let temp = path.with_extension("json.new");
        (|| {
            let mut f = std::fs::File::create(&temp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&temp, path)
        })()
        .map_err(store)
    }

    pub fn asks(&self) -> Vec<ClipAsk> {
        self.asks.iter().cloned().collect()
    }

    /// Allows (or denies) a pending ask; either way it leaves the list.
    pub fn decide(&mut self, id: &str, allow: bool) -> Result<ClipAsk, SharingError> {
        let at = self
            .asks
            .iter()
            .position(|a| a.id == id)
            .ok_or_else(|| SharingError::UnknownAsk(id.to_owned()))?;
        let ask = self
            .asks
            .remove(at)
            .ok_or_else(|| SharingError::UnknownAsk(id.to_owned()))?;
        let list = if allow {
            &mut self.grants
        } else {
            &mut self.denials
        };
        if list.len() >= MAX_GRANTS {
            list.pop_front();
        }
        list.push_back((ask.requester, ask.sha256));
        Ok(ask)
    }

    /// Answers `request` from `requester`. `own_size` is the size of the clip if one of
    /// our own live reports references it; the bytes come from the library.
    pub fn answer(
        &mut self,
        data_dir: &Path,
        requester: MemberId,
        request: &clip::Request,
        own_size: Option<u64>,
        now: u64,
    ) -> clip::Response {
        let Some(size) = own_size else {
            return clip::Response::NotFound;
        };
        match self.policy_for(&request.sha256) {
            ClipPolicy::Never => return clip::Response::Refused,
            ClipPolicy::Members => {}
            ClipPolicy::Ask => {
                let pair = (requester, request.sha256);
                if self.denials.contains(&pair) {
                    return clip::Response::Refused;
                }
                let granted = self
                    .grants
                    .iter()
                    .any(|(m, s)| *m == requester && *s == request.sha256);
                if !granted {
                    self.remember_ask(requester, request.sha256, now);
                    return clip::Response::Pending;
                }
            }
        }
        if request.offset > size {
            return clip::Response::NotFound;
        }
        match read_window(data_dir, &request.sha256, size, request.offset) {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(clip = %codec::hex(&request.sha256), error = %e, "cannot read a shared clip");
                clip::Response::NotFound
            }
        }
    }

    fn remember_ask(&mut self, requester: MemberId, sha256: [u8; 32], now: u64) {
        if self
            .asks
            .iter()
            .any(|a| a.requester == requester && a.sha256 == sha256)
        {
            return;
        }
        if self.asks.len() >= MAX_ASKS {
            self.asks.pop_front();
        }
        let mut id = [0u8; 4];
        crate::rng().fill_bytes(&mut id);
        tracing::info!(requester = %requester.fingerprint(), clip = %&codec::hex(&sha256)[..12], "a neighbor asks for a clip: `porchlight clip requests`");
        self.asks.push_back(ClipAsk {
            id: codec::hex(&id),
            requester,
            sha256,
            asked_at: now,
        });
    }
}

/// Reads the chunk at `offset` of the library's clip, checking its size first.
fn read_window(
    data_dir: &Path,
    sha256: &[u8; 32],
    size: u64,
    offset: u64,
) -> std::io::Result<clip::Response> {
    let mut file = std::fs::File::open(clips::path(data_dir, sha256))?;
    if file.metadata()?.len() != size {
        return Err(std::io::Error::other("the library copy has the wrong size"));
    }
    file.seek(SeekFrom::Start(offset))?;
    let len = size.saturating_sub(offset).min(clip::CHUNK_BYTES as u64) as usize;
    let mut bytes = vec![0u8; len];
    file.read_exact(&mut bytes)?;
    Ok(clip::Response::Chunk {
        total: size,
        offset,
        bytes,
    })
}

/// The size of clip `sha256` if `body` is a report that references it.
pub fn clip_size(body: &Body, sha256: &[u8; 32]) -> Option<u64> {
    match body {
        Body::Report(r) => r.clips.iter().find(|c| &c.sha256 == sha256).map(|c| c.size),
        _ => None,
    }
}

/// Why a fetch ended without the clip.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no live report in the feed carries clip {0}")]
    NotInFeed(String),
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error("cannot reach the clip's owner: {0}")]
    Node(#[from] NodeError),
    #[error("cannot write the clip: {0}")]
    Io(#[from] std::io::Error),
}

/// How a fetch attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The clip is in the library, verified.
    Done { size: u64 },
    /// The owner must allow it; try again later.
    Waiting { owner: MemberId },
}

/// Fetches the clip `sha256` into this node's library from the member whose report
/// references it, chunk by chunk, verifying every byte against the hash before the clip
/// gets its name. `progress(received, size)` after each chunk.
pub async fn fetch(
    node: &Node,
    data_dir: &Path,
    sha256: [u8; 32],
    mut progress: impl FnMut(u64, u64),
) -> Result<Fetched, FetchError> {
    // The clip's owner from the store's clip index, not a read of the whole feed.
    let (_, owner, size) = node
        .read(move |reader| reader.clip_refs(&sha256))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| FetchError::NotInFeed(codec::hex(&sha256)))?;
    if clips::get(data_dir, &sha256).is_ok_and(|c| c.size == size)
        && clips::hash_file(&clips::path(data_dir, &sha256)).ok() == Some(sha256)
    {
        progress(size, size);
        return Ok(Fetched::Done { size });
    }
    let dir = data_dir.join(clips::DIR);
    std::fs::create_dir_all(&dir)?;
    let mut nonce = [0u8; 8];
    crate::rng().fill_bytes(&mut nonce);
    let temp = dir.join(format!(".fetch-{}", codec::hex(&nonce)));
    let result = download(node, owner, sha256, size, &temp, &mut progress).await;
    match &result {
        Ok(Fetched::Done { .. }) => std::fs::rename(&temp, clips::path(data_dir, &sha256))?,
        _ => {
            let _ = std::fs::remove_file(&temp);
        }
    }
    result
}

async fn download(
    node: &Node,
    owner: MemberId,
    sha256: [u8; 32],
    size: u64,
    temp: &Path,
    progress: &mut impl FnMut(u64, u64),
) -> Result<Fetched, FetchError> {
    let mut file = std::fs::File::create(temp)?;
    let mut d = Download::new(sha256, size);
    // Bounded: one request per chunk, and a few more for the last (possibly empty) one.
    let most = size / clip::CHUNK_BYTES as u64 + 3;
    for _ in 0..most {
        let response = node.clip_request(owner, d.request()).await?;
        match d.accept(response)? {
            Step::Write { bytes, .. } => {
                file.write_all(&bytes)?;
                progress(d.received(), size);
                if d.is_done() {
                    file.sync_all()?;
                    return Ok(Fetched::Done { size });
                }
            }
            Step::Done => {
                file.sync_all()?;
                progress(size, size);
                return Ok(Fetched::Done { size });
            }
            Step::Wait { .. } => return Ok(Fetched::Waiting { owner }),
        }
    }
    Err(FetchError::Download(DownloadError::WrongSize {
        expected: size,
        got: d.received(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use porchlight_proto::MemberKeys;
    use porchlight_proto::testkit::SeededRng;

    fn member(seed: u64) -> MemberId {
        MemberKeys::generate(&mut SeededRng::new(seed)).id()
    }

    /// A data dir with one 14-byte clip in its library, and a request for its start.
    fn doorbell_clip() -> (tempfile::TempDir, clips::Clip, clip::Request) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("clip.mp4");
        std::fs::write(&src, b"doorbell bytes").unwrap();
        let clip = clips::import(dir.path(), &src, |_, _| {}).unwrap().clip;
        let request = clip::Request {
            sha256: clip.sha256,
            offset: 0,
        };
        (dir, clip, request)
    }

    #[test]
    fn the_policy_decides_and_only_own_reported_clips_are_served() {
        let (dir, clip, request) = doorbell_clip();
        let bob = member(2);

        let mut never = Sharing::new(ClipPolicy::Never);
        assert_eq!(
            never.answer(dir.path(), bob, &request, Some(clip.size), 1),
            clip::Response::Refused
        );

        let mut members = Sharing::new(ClipPolicy::Members);
        assert_eq!(
            members.answer(dir.path(), bob, &request, None, 1),
            clip::Response::NotFound,
            "a clip no own report references is not served, whatever the policy"
        );
        assert!(matches!(
            members.answer(dir.path(), bob, &request, Some(clip.size), 1),
            clip::Response::Chunk { total: 14, offset: 0, ref bytes } if bytes == b"doorbell bytes"
        ));

        let mut ask = Sharing::new(ClipPolicy::Ask);
        assert_eq!(
            ask.answer(dir.path(), bob, &request, Some(clip.size), 1),
            clip::Response::Pending
        );
        // Asking again does not add a second entry.
        ask.answer(dir.path(), bob, &request, Some(clip.size), 2);
        let asks = ask.asks();
        assert_eq!(asks.len(), 1);
        assert_eq!(asks[0].requester, bob);
        assert!(ask.decide("nope", true).is_err());
        ask.decide(&asks[0].id, true).unwrap();
        assert!(ask.asks().is_empty());
        assert!(matches!(
            ask.answer(dir.path(), bob, &request, Some(clip.size), 3),
            clip::Response::Chunk { .. }
        ));
        // The grant is for that member only.
        assert_eq!(
            ask.answer(dir.path(), member(3), &request, Some(clip.size), 3),
            clip::Response::Pending
        );
        // A denial is final: the requester is refused, not asked again.
        let id = ask.asks()[0].id.clone();
        ask.decide(&id, false).unwrap();
        assert_eq!(
            ask.answer(dir.path(), member(3), &request, Some(clip.size), 4),
            clip::Response::Refused
        );
        assert!(ask.asks().is_empty());
    }

    #[test]
    fn a_clip_shared_on_approval_is_served_over_the_policy_and_the_choice_is_kept() {
        let (dir, clip, request) = doorbell_clip();
        let bob = member(2);
        let mut ask = Sharing::open(ClipPolicy::Ask, dir.path());
        assert_eq!(
            ask.answer(dir.path(), bob, &request, Some(clip.size), 1),
            clip::Response::Pending
        );
        ask.set_share(clip.sha256, ClipPolicy::Members).unwrap();
        assert!(ask.asks().is_empty(), "the choice settles the pending ask");
        assert!(matches!(
            ask.answer(dir.path(), member(3), &request, Some(clip.size), 2),
            clip::Response::Chunk { .. }
        ));
        assert_eq!(
            ask.policy_for(&[9; 32]),
            ClipPolicy::Ask,
            "other clips: the policy"
        );
        // After a restart, the choice holds.
        let mut again = Sharing::open(ClipPolicy::Ask, dir.path());
        assert_eq!(again.policy_for(&clip.sha256), ClipPolicy::Members);
        assert!(matches!(
            again.answer(dir.path(), bob, &request, Some(clip.size), 3),
            clip::Response::Chunk { .. }
        ));
        // `ask` for one clip holds over a `members` policy.
        let mut members = Sharing::open(ClipPolicy::Members, dir.path());
        members.set_share(clip.sha256, ClipPolicy::Ask).unwrap();
        assert_eq!(
            members.answer(dir.path(), bob, &request, Some(clip.size), 4),
            clip::Response::Pending
        );
        // A garbled file is ignored: the policy applies.
        std::fs::write(dir.path().join(SHARES_FILE), b"{not json").unwrap();
        assert_eq!(
            Sharing::open(ClipPolicy::Never, dir.path()).policy_for(&clip.sha256),
            ClipPolicy::Never
        );
    }

    #[test]
    fn asks_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut ask = Sharing::new(ClipPolicy::Ask);
        for i in 0..(MAX_ASKS as u64 + 10) {
            let request = clip::Request {
                sha256: [1; 32],
                offset: 0,
            };
            ask.answer(dir.path(), member(i), &request, Some(1), i);
        }
        assert_eq!(ask.asks().len(), MAX_ASKS);
    }
}
