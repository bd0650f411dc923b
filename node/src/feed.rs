//! Reading the feed off the event loop: a [`Reader`] holds a store handle and the
//! members' names, and pages through the items from the newest back, one page at a time
//! (the store's records are keyed by creation time). The event loop only hands readers
//! out; the reading runs on a blocking thread, so a large store never holds up `status`
//! or gossip.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use porchlight_proto::codec;
use porchlight_proto::item::{Body, Item};
use porchlight_proto::report::Category;
use porchlight_proto::{ItemId, MemberId};

use crate::node::{FeedItem, NodeError};
use crate::seen::SeenBy;
use crate::store::{ItemRecord, Store};

/// Items in a feed page when the request does not say.
pub const DEFAULT_PAGE: usize = 100;
/// Most items in one feed page.
pub const MAX_PAGE: usize = 1000;

/// How long a read waits for the reader thread before it is refused as busy.
pub const READER_WAIT: Duration = Duration::from_secs(5);
/// What a refused read is told to wait (the API's `Retry-After`).
pub const RETRY_AFTER_SECS: u64 = 1;
/// The reader thread's nice value: below the event loop, so that a client paging
/// through 100,000 items does not hold up `status`, gossip or sync on a small machine.
const READER_NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// Where feed reads run: one thread of their own, one read at a time, the others
/// waiting their turn (at most `READER_WAIT`). Cheap to clone; the thread ends when the
/// last handle is dropped.
///
/// Why one thread (docs/performance.md, "Feed and status on a large store"): four
/// clients paging through a large store at once on tokio's blocking threads each read
/// in a thread of its own, so glibc gave each its own malloc arena, and the node's peak
/// resident size went from 77 to 133 MiB while `status` waited for the CPU. Reads on one
/// lower-priority thread reuse one arena and leave the cores to the event loop first.
#[derive(Debug, Clone)]
pub struct Slots {
    turn: Arc<Semaphore>,
    jobs: std::sync::mpsc::SyncSender<Job>,
    wait: Duration,
}

impl Default for Slots {
    fn default() -> Slots {
        Slots::new()
    }
}

impl Slots {
    pub fn new() -> Slots {
        Slots::waiting(READER_WAIT)
    }

    /// Reads wait at most `wait` for their turn.
    fn waiting(wait: Duration) -> Slots {
        // One job at a time: the semaphore's single permit is held until the job ends,
        // so the channel never holds more than one.
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(1);
        let spawned = std::thread::Builder::new()
            .name("feed-reader".into())
            .spawn(move || {
                // Per thread on Linux (`who` 0 is the calling thread); best effort.
                if let Err(e) = rustix::process::setpriority_process(None, READER_NICE) {
                    tracing::debug!(error = %e, "cannot lower the feed reader's priority");
                }
                while let Ok(job) = queue.recv() {
                    job();
                }
            });
        if let Err(e) = spawned {
            // Every read is then refused as the node stopping; nothing else depends on it.
            tracing::error!(error = %e, "cannot start the feed reader thread");
        }
        Slots {
            turn: Arc::new(Semaphore::new(1)),
            jobs,
            wait,
        }
    }

    /// Runs `read` on the reader thread once it is free (waiting at most `READER_WAIT`,
    /// else `NodeError::Busy`) and returns what it returns.
    pub async fn run<T: Send + 'static>(
        &self,
        read: impl FnOnce() -> Result<T, NodeError> + Send + 'static,
    ) -> Result<T, NodeError> {
        let permit = match tokio::time::timeout(self.wait, self.turn.clone().acquire_owned()).await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(NodeError::Stopped),
            Err(_) => return Err(NodeError::Busy),
        };
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _turn: OwnedSemaphorePermit = permit;
            let _ = tx.send(read());
        });
        self.jobs.try_send(job).map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)?
    }
}

/// What a feed page holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// At most this many items (capped at `MAX_PAGE`).
    pub limit: usize,
    /// Only items before this one in feed order (the oldest item of the previous page).
    pub before: Option<ItemId>,
    /// Only items created at or after this Unix time.
    pub since: u64,
    /// Only reports of this category, and updates, all-clears and retractions of them.
    pub category: Option<Category>,
}

/// Reads the store off the event loop.
#[derive(Debug, Clone)]
pub struct Reader {
    store: Store,
    names: Arc<HashMap<MemberId, String>>,
    /// Authors this node mutes (`mute.rs`): their items are not read out.
    muted: Arc<std::collections::HashSet<MemberId>>,
    /// This node's member: who sees "seen by" on their own reports (`seen`).
    me: Option<MemberId>,
}

impl Reader {
    pub(crate) fn new(store: Store, names: HashMap<MemberId, String>) -> Reader {
        Reader {
            store,
            names: Arc::new(names),
            muted: Arc::default(),
            me: None,
        }
    }

    /// This reader, for `me`: their own reports that asked show who has seen them, and
    /// others' show whether `me` said so.
    pub(crate) fn for_member(mut self, me: MemberId) -> Reader {
        self.me = Some(me);
        self
    }

    /// "Seen by" for the report `id` by `author`, as `me` may see it.
    fn seen_of(&self, id: &ItemId, author: &MemberId, body: &Body) -> (Option<SeenBy>, bool) {
        let Body::Report(r) = body else {
            return (None, false);
        };
        if r.ask_seen.is_none() || self.me.is_none() {
            return (None, false);
        }
        if self.me.as_ref() != Some(author) {
            return (None, crate::seen::acked(&self.store, id).unwrap_or(false));
        }
        let count = crate::seen::count(&self.store, id).ok().flatten();
        let seen = count.map_or(SeenBy { of: 0, by: vec![] }, |c| SeenBy {
            of: c.of,
            by: c
                .by
                .iter()
                .map(|m| {
                    self.names
                        .get(m)
                        .cloned()
                        .unwrap_or_else(|| m.fingerprint())
                })
                .collect(),
        });
        (Some(seen), false)
    }

    /// This reader, hiding the items of `muted` authors.
    pub(crate) fn muting(mut self, muted: std::collections::HashSet<MemberId>) -> Reader {
        self.muted = Arc::new(muted);
        self
    }

    fn item(&self, id: ItemId, record: &ItemRecord) -> Option<FeedItem> {
        // Acks are not feed items: their reports' authors see them counted.
        if record.kind == porchlight_proto::Kind::Seen {
            return None;
        }
        let item = Item::decode(&record.item).ok()?;
        if self.muted.contains(&item.author) {
            return None;
        }
        let body = item.body().ok()?;
        let (created_at, expires_at) = body.times();
        let (seen, acknowledged) = self.seen_of(&id, &item.author, &body);
        Some(FeedItem {
            id,
            author: item.author,
            author_name: self.names.get(&item.author).cloned().unwrap_or_default(),
            body,
            created_at,
            expires_at: expires_at?,
            seen,
            acknowledged,
        })
    }

    /// The category of the live report `id`, if it is one: one lookup by id.
    pub fn category_of(&self, id: &ItemId) -> Option<Category> {
        let record = self.store.item(id).ok()??;
        match self.item(*id, &record)?.body {
            Body::Report(r) => Some(r.category),
            _ => None,
        }
    }

    /// Whether `item` passes the query's `since` and `category`.
    pub fn matches(&self, item: &FeedItem, query: &Query) -> bool {
        if item.created_at < query.since {
            return false;
        }
        let Some(wanted) = query.category else {
            return true;
        };
        let category = match &item.body {
            Body::Report(r) => Some(r.category),
            Body::Update(u) => self.category_of(&u.report),
            Body::Resolve(r) => self.category_of(&r.report),
            Body::Retract(r) => self.category_of(&r.report),
            Body::Membership(_) | Body::Seen(_) => None,
        };
        category == Some(wanted)
    }

    /// One page: the newest `limit` items before `before` that match, oldest first (by
    /// creation time, then id: the page's first item is the next page's `before`). Reads from the
    /// newest back and stops at the page's end or at `since`. A `before` that is not a
    /// live item (expired, retracted) is `NodeError::UnknownCursor`.
    pub fn page(&self, query: &Query) -> Result<Vec<FeedItem>, NodeError> {
        let limit = query.limit.clamp(1, MAX_PAGE);
        let Some(items) = self.store.items_before(query.before.as_ref())? else {
            return Err(NodeError::UnknownCursor(
                query.before.map(|b| b.to_hex()).unwrap_or_default(),
            ));
        };
        let mut out = Vec::with_capacity(limit.min(64));
        for entry in items {
            let (id, record) = entry?;
            if record.created_at < query.since {
                break;
            }
            if let Some(item) = self.item(id, &record)
                && self.matches(&item, query)
            {
                out.push(item);
                if out.len() >= limit {
                    break;
                }
            }
        }
        // Oldest first, in the store's order (creation time, then id), so that the first
        // item is exactly where the next page starts.
        out.reverse();
        Ok(out)
    }

    /// The live items whose id starts with the hex digits `prefix`, at most `most`: by
    /// the store's index, not a pass over the feed.
    pub fn by_prefix(&self, prefix: &str, most: usize) -> Result<Vec<FeedItem>, NodeError> {
        Ok(self
            .store
            .items_with_prefix(prefix, most)?
            .iter()
            .filter_map(|(id, record)| self.item(*id, record))
            .collect())
    }

    /// The live reports that reference the clip `sha256`: `(report, author, size)`, by
    /// the store's clip index (`store::MAX_CLIP_REFS` at most).
    pub fn clip_refs(&self, sha256: &[u8; 32]) -> Result<Vec<(ItemId, MemberId, u64)>, NodeError> {
        Ok(self.store.clip_refs(sha256)?)
    }

    /// Every live item, oldest first: for callers that need the whole feed (a clip's
    /// owner, a report by id prefix), off the event loop.
    pub fn all(&self) -> Result<Vec<FeedItem>, NodeError> {
        let mut out = Vec::new();
        for entry in self.store.each_item() {
            let (id, record) = entry?;
            if let Some(item) = self.item(id, &record) {
                out.push(item);
            }
        }
        out.sort_by_key(|f| (f.created_at, u8::from(f.body.kind()), f.id.0));
        Ok(out)
    }
}

/// The JSON of a feed item: the shape of `GET /v1/feed`, the event stream and MQTT.
pub fn feed_json(item: &FeedItem) -> Value {
    let mut v = json!({
        "id": item.id.to_hex(),
        "author": item.author.to_hex(),
        "author_fingerprint": item.author.fingerprint(),
        "author_name": item.author_name,
        "created_at": item.created_at,
        "expires_at": item.expires_at,
    });
    let mut fields = match &item.body {
        Body::Report(r) => json!({
            "kind": "report",
            "ask_seen": r.ask_seen.is_some(),
            "category": r.category.as_str(),
            "severity": r.severity.as_str(),
            "text": r.text,
            "behavior": r.behavior,
            "where": r.location.text,
            "geohash": r.location.geohash,
            "clips": r.clips.iter().map(|c| json!({
                "sha256": codec::hex(&c.sha256),
                "size": c.size,
                "camera": c.camera,
                "captured_at": c.captured_at,
            })).collect::<Vec<_>>(),
        }),
        Body::Update(u) => json!({"kind": "update", "report": u.report.to_hex(), "text": u.text,
            "severity": u.severity.map(|s| s.as_str())}),
        Body::Resolve(r) => json!({"kind": "resolve", "report": r.report.to_hex(), "text": r.text}),
        Body::Retract(r) => json!({"kind": "retract", "report": r.report.to_hex()}),
        Body::Membership(_) => json!({"kind": "membership"}),
        Body::Seen(s) => json!({"kind": "seen", "report": s.report.to_hex()}),
    };
    // "Seen by": who, only on the author's own node; whether this member said so, on
    // the others'.
    if let (Body::Report(r), Value::Object(extra)) = (&item.body, &mut fields)
        && r.ask_seen.is_some()
    {
        match &item.seen {
            Some(seen) => {
                extra.insert(
                    "seen".into(),
                    json!({"n": seen.by.len(), "of": seen.of, "by": seen.by}),
                );
            }
            None => {
                extra.insert("acknowledged".into(), json!(item.acknowledged));
            }
        }
    }
    if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), fields) {
        v.extend(extra);
    }
    v
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A read that finds the reader busy for longer than its wait is refused as busy
    /// (the API's 503), and once the reader is free the next read runs.
    #[tokio::test]
    async fn a_read_waiting_too_long_is_busy_and_the_next_runs_once_free() {
        let slots = Slots::waiting(Duration::from_millis(200));
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = oneshot::channel();
        let first = tokio::spawn({
            let slots = slots.clone();
            async move {
                slots
                    .run(move || {
                        let _ = started_tx.send(());
                        held.recv_timeout(Duration::from_secs(10)).unwrap();
                        Ok(1)
                    })
                    .await
            }
        });
        started.await.unwrap();
        let refused = slots.run(|| Ok(2)).await;
        assert!(matches!(refused, Err(NodeError::Busy)), "{refused:?}");
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        assert_eq!(slots.run(|| Ok(3)).await.unwrap(), 3);
    }

    /// Reads from many tasks at once run one at a time, on one thread.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_run_one_at_a_time_on_one_thread() {
        let slots = Slots::new();
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (slots, running, most, threads) = (
                slots.clone(),
                running.clone(),
                most.clone(),
                threads.clone(),
            );
            tasks.push(tokio::spawn(async move {
                slots
                    .run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        threads.lock().unwrap().insert(std::thread::current().id());
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok(())
                    })
                    .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "never two reads at once");
        assert_eq!(threads.lock().unwrap().len(), 1, "one reader thread");
    }
}
