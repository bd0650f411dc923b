//! Reading the feed off the event loop: a [`Reader`] holds a store handle and the
//! members' names, and pages through the items from the newest back, one page at a time
//! (the store's records are keyed by creation time). The event loop only hands readers
//! out; the reading runs on a blocking thread, so a large store never holds up `status`
//! or gossip.

use std::collections::HashMap;
use std::sync::Arc;

use porchlight_proto::item::{Body, Item};
use porchlight_proto::report::Category;
use porchlight_proto::{ItemId, MemberId};

use crate::node::{FeedItem, NodeError};
use crate::store::{ItemRecord, Store};

/// Items in a feed page when the request does not say.
pub const DEFAULT_PAGE: usize = 100;
/// Most items in one feed page.
pub const MAX_PAGE: usize = 1000;

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
}

impl Reader {
    pub(crate) fn new(store: Store, names: HashMap<MemberId, String>) -> Reader {
        Reader {
            store,
            names: Arc::new(names),
        }
    }

    fn item(&self, id: ItemId, record: &ItemRecord) -> Option<FeedItem> {
        let item = Item::decode(&record.item).ok()?;
        let body = item.body().ok()?;
        let (created_at, expires_at) = body.times();
        Some(FeedItem {
            id,
            author: item.author,
            author_name: self.names.get(&item.author).cloned().unwrap_or_default(),
            body,
            created_at,
            expires_at: expires_at?,
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
            Body::Membership(_) => None,
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
