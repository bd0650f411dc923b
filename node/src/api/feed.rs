//! `GET /v1/feed` (pages, filters) and `GET /v1/events` (the server-sent stream of new
//! items).

use super::*;

/// Filters shared by the feed and the event stream.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Filter {
    /// Only items created at or after this Unix time.
    #[serde(default)]
    since: Option<u64>,
    /// Only this category (reports) and what refers to reports of it.
    #[serde(default)]
    category: Option<String>,
}

/// `GET /v1/feed`'s query: the filters, and the page.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FeedParams {
    #[serde(default)]
    since: Option<u64>,
    #[serde(default)]
    category: Option<String>,
    /// At most this many items (default `feed::DEFAULT_PAGE`, at most `feed::MAX_PAGE`).
    #[serde(default)]
    limit: Option<usize>,
    /// Only items before this one (the first item of the page before).
    #[serde(default)]
    before: Option<String>,
}

pub(super) struct Matcher {
    since: u64,
    category: Option<Category>,
}

impl Matcher {
    fn new(filter: Filter) -> Result<Matcher, Box<Response>> {
        Ok(Matcher {
            since: filter.since.unwrap_or(0),
            category: filter.category.as_deref().map(parse_category).transpose()?,
        })
    }

    /// Updates, all-clears and retractions carry no category: with a category filter
    /// they match when the report they refer to does (`reports` maps id → category).
    fn matches(&self, item: &FeedItem, reports: &HashMap<ItemId, Category>) -> bool {
        if item.created_at < self.since {
            return false;
        }
        let Some(wanted) = self.category else {
            return true;
        };
        let category = match &item.body {
            Body::Report(r) => Some(r.category),
            Body::Update(u) => reports.get(&u.report).copied(),
            Body::Resolve(r) => reports.get(&r.report).copied(),
            Body::Retract(r) => reports.get(&r.report).copied(),
            Body::Membership(_) | Body::Seen(_) => None,
        };
        category == Some(wanted)
    }
}

/// A page of the feed, read off the event loop from the newest back: the newest `limit`
/// items (before `before`), oldest first.
pub(super) async fn feed(
    State(api): State<Api>,
    q: Result<Query<FeedParams>, QueryRejection>,
) -> Response {
    let params = match query(q) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let limit = params.limit.unwrap_or(crate::feed::DEFAULT_PAGE);
    if !(1..=crate::feed::MAX_PAGE).contains(&limit) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("limit must be 1 to {}", crate::feed::MAX_PAGE),
        );
    }
    let before = match params.before.as_deref().map(ItemId::from_hex) {
        None => None,
        Some(Some(id)) => Some(id),
        Some(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "before must be an item id (64 hex digits)",
            );
        }
    };
    let category = match params.category.as_deref().map(parse_category).transpose() {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let page = crate::feed::Query {
        limit,
        before,
        since: params.since.unwrap_or(0),
        category,
    };
    // The page's JSON is written on the reader thread too: its allocations stay in that
    // thread's malloc arena (see `feed::Slots`).
    let json = api.node.read(move |reader| {
        let items = reader.page(&page)?;
        Ok(
            serde_json::to_vec(&items.iter().map(feed_json).collect::<Vec<_>>())
                .expect("JSON values with string keys always serialize"),
        )
    });
    match json.await {
        Ok(body) => (
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e @ NodeError::UnknownCursor(_)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => node_error(e),
    }
}

/// What the event stream (and `feed --follow`) says when this node is removed.
pub const REMOVED_NOTICE: &str =
    "this node was removed from the hood: nothing posted from now on reaches it";

/// The report an update, all-clear or retraction refers to.
pub(super) fn refers_to(body: &Body) -> Option<ItemId> {
    match body {
        Body::Update(u) => Some(u.report),
        Body::Resolve(r) => Some(r.report),
        Body::Retract(r) => Some(r.report),
        Body::Report(_) | Body::Membership(_) | Body::Seen(_) => None,
    }
}

/// Server-sent events: one `event: <kind>` (`report`, `update`, `resolve`, `retract`)
/// with the item's JSON as data, for every new item, ours or a neighbor's.
pub(super) async fn events(
    State(api): State<Api>,
    q: Result<Query<Filter>, QueryRejection>,
) -> Response {
    let matcher = match query(q).and_then(Matcher::new) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let Ok(permit) = api.streams.clone().try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("too many open event streams (at most {MAX_STREAMS})"),
        );
    };
    // Categories of reports seen on this stream, to place updates; an update of an older
    // report looks its report up by id (one read, off the event loop), never the feed.
    let reports: HashMap<ItemId, Category> = HashMap::new();
    let receiver = api.node.events();
    let state = (receiver, reports, matcher, permit, api.node.clone(), false);
    let stream = futures::stream::unfold(state, |mut state| async move {
        let (receiver, reports, matcher, _, node, told) = &mut state;
        loop {
            match receiver.recv().await {
                Ok(NodeEvent::Item(item)) => {
                    if let Body::Report(r) = &item.body
                        && reports.len() < MAX_TRACKED_REPORTS
                    {
                        reports.insert(item.id, r.category);
                    }
                    if matcher.category.is_some()
                        && let Some(report) = refers_to(&item.body)
                        && !reports.contains_key(&report)
                        && let Ok(reader) = node.reader().await
                        && let Ok(Some(category)) =
                            tokio::task::spawn_blocking(move || reader.category_of(&report)).await
                        && reports.len() < MAX_TRACKED_REPORTS
                    {
                        reports.insert(report, category);
                    }
                    if !matcher.matches(&item, reports) {
                        continue;
                    }
                    let value = feed_json(&item);
                    let kind = value["kind"].as_str().unwrap_or("item").to_owned();
                    let event = SseEvent::default().event(kind).data(value.to_string());
                    return Some((Ok::<_, Infallible>(event), state));
                }
                Ok(NodeEvent::Membership) => {
                    // The one membership change a reader of the feed must hear of: this
                    // node's own removal (nothing posted from now on reaches it).
                    if !*told && node.status().await.is_ok_and(|s| s.removed) {
                        *told = true;
                        let data = json!({ "kind": "removed", "message": REMOVED_NOTICE });
                        let event = SseEvent::default().event("removed").data(data.to_string());
                        return Some((Ok(event), state));
                    }
                    continue;
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let event = SseEvent::default().event("lagged").data(n.to_string());
                    return Some((Ok(event), state));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
