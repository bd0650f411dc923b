//! The local HTTP API: JSON on 127.0.0.1 with a bearer token, for the CLI and home
//! automations. While the node runs, `api.addr` and `api.token` (0600) in the data dir
//! tell the CLI where it is and how to authenticate.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path as AxumPath, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use porchlight_proto::codec;
use porchlight_proto::item::Body;
use porchlight_proto::report::{
    Category, ClipRef, Location, MAX_CLIPS, Report, Resolve, Retract, Severity, Update,
};
use porchlight_proto::{ItemId, Policy, validate::Reason};
use rand_core::Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, broadcast};
use tracing::Instrument;

use crate::clips::{self, ClipError};
use crate::engine::EngineError;
use crate::node::{Event as NodeEvent, FeedItem, Node, NodeError};
use crate::sharing::{self, ClipAsk, Fetched};

pub const ADDR_FILE: &str = "api.addr";
pub const TOKEN_FILE: &str = "api.token";
/// Largest request body the API reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub use crate::feed::feed_json;
pub use crate::node::DEFAULT_TTL_SECS;
/// Lifetime of an invite when the request does not say.
pub const DEFAULT_INVITE_SECS: u64 = 7 * 24 * 3600;
/// The longest an invite may be valid.
pub const MAX_INVITE_SECS: u64 = 30 * 24 * 3600;
/// Open event streams at once (each holds a subscription to the node's events).
pub const MAX_STREAMS: usize = 32;
/// Clip fetches the API tracks at once (finished ones make room for new ones).
pub const MAX_FETCHES: usize = 16;
/// How long a fetch waits for an owner whose policy is `ask`.
pub const FETCH_WAIT: Duration = Duration::from_secs(3600);
/// How often a waiting fetch asks the owner again.
const FETCH_RETRY: Duration = Duration::from_secs(2);
/// Reports an event stream remembers the category of (to filter their updates).
const MAX_TRACKED_REPORTS: usize = 100_000;
/// Most API connections open at once. A new one past this closes the oldest connection
/// that has not sent a request yet (a half-open one), or, if every one has, is closed.
pub const MAX_CONNECTIONS: usize = 512;
/// How long a connection may take to send a request's headers, and so also how long a
/// kept-alive connection may sit idle before its next request.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The soft open-files limit `raise_descriptor_limit` aims for (capped by the hard one).
pub const DESCRIPTOR_LIMIT: u64 = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Clone)]
struct Api {
    node: Node,
    token: String,
    addr: SocketAddr,
    data_dir: PathBuf,
    /// Open event streams; a stream holds a permit.
    streams: Arc<Semaphore>,
    /// Clip fetches, by clip hash (bounded by `MAX_FETCHES`).
    fetches: Arc<Mutex<HashMap<[u8; 32], FetchState>>>,
    /// The hood's policy (fixed in its genesis): report lifetimes, the rate limit.
    policy: Policy,
}

/// A running API: its address, and the files to remove when it stops.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    files: Vec<PathBuf>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops serving and removes the address and token files.
    pub fn stop(self) {
        self.task.abort();
        for f in self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

fn write_private(path: &Path, contents: &str) -> Result<(), ApiError> {
    let io = |source| ApiError::Io {
        path: path.display().to_string(),
        source,
    };
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    Ok(())
}

/// Serves the API for `node` on `addr` and writes `api.addr` and `api.token`. Its hub
/// routes (drafts, webhook) use a hub without auto-post rules.
pub async fn serve(node: Node, addr: SocketAddr, data_dir: &Path) -> Result<Running, ApiError> {
    let hub = crate::hub::Hub::new(node.clone(), data_dir, Vec::new());
    serve_with_hub(node, addr, data_dir, hub).await
}

/// [`serve`], with the hub (drafts, auto-post rules) that the MQTT bridge shares.
pub async fn serve_with_hub(
    node: Node,
    addr: SocketAddr,
    data_dir: &Path,
    hub: crate::hub::Hub,
) -> Result<Running, ApiError> {
    let mut secret = [0u8; 32];
    crate::rng().fill_bytes(&mut secret);
    let token = codec::hex(&secret);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ApiError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ApiError::Listen { addr, source })?;
    // Fixed in the genesis, so read once.
    let policy = node
        .status()
        .await
        .ok()
        .and_then(|s| s.policy)
        .unwrap_or_default();
    let state = Api {
        policy,
        node,
        token: token.clone(),
        addr: bound,
        data_dir: data_dir.to_path_buf(),
        streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        fetches: Arc::new(Mutex::new(HashMap::new())),
    };
    let app = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/health", get(health))
        .route("/v1/feed", get(feed))
        .route("/v1/events", get(events))
        .route("/v1/reports", post(post_report))
        .route("/v1/reports/{id}/update", post(update))
        .route("/v1/reports/{id}/resolve", post(resolve))
        .route("/v1/reports/{id}/retract", post(retract))
        .route("/v1/invites", post(invite))
        .route("/v1/members", get(members))
        .route("/v1/members/remove", post(remove))
        .route("/v1/members/promote", post(promote))
        .route("/v1/clips/requests", get(clip_requests))
        .route("/v1/clips/requests/{id}/allow", post(clip_allow))
        .route("/v1/clips/requests/{id}/deny", post(clip_deny))
        .route("/v1/clips/{sha256}", get(clip_state))
        .route("/v1/clips/{sha256}/fetch", post(clip_fetch))
        .merge(crate::hub::api::routes(hub))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::map_response(json_errors))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state);
    let token_path = data_dir.join(TOKEN_FILE);
    let addr_path = data_dir.join(ADDR_FILE);
    write_private(&token_path, &token)?;
    write_private(&addr_path, &bound.to_string())?;
    let task = tokio::spawn(
        serve_connections(listener, app).instrument(tracing::info_span!("api", addr = %bound)),
    );
    tracing::info!(addr = %bound, "local API listening");
    Ok(Running {
        addr: bound,
        files: vec![token_path, addr_path],
        task,
    })
}

/// An open connection: when it was accepted (a counter) and whether it sent a request.
struct Open {
    seq: u64,
    requested: Arc<AtomicBool>,
    task: tokio::task::AbortHandle,
}

/// Accepts connections and serves each with HTTP/1, with the header-read timeout and the
/// connection cap (`axum::serve` has neither: 1,500 half-open connections held as many
/// descriptors and `status` hung). Every connection task lives in one `JoinSet`, so
/// aborting this task (`Running::stop`) closes them all.
async fn serve_connections(listener: tokio::net::TcpListener, app: Router) {
    use hyper::service::Service as _;
    let mut connections: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
    let mut open: HashMap<tokio::task::Id, Open> = HashMap::new();
    let mut seq = 0u64;
    loop {
        let stream = tokio::select! {
            Some(done) = connections.join_next_with_id(), if !connections.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                open.remove(&id);
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, mostly: room comes as connections close.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        if open.len() >= MAX_CONNECTIONS {
            let idle = open
                .iter()
                .filter(|(_, o)| !o.requested.load(Ordering::Relaxed))
                .min_by_key(|(_, o)| o.seq)
                .map(|(id, _)| *id);
            match idle.and_then(|id| open.remove(&id)) {
                Some(oldest) => oldest.task.abort(),
                None => {
                    tracing::debug!("the API is at its connection cap; closing a new connection");
                    drop(stream);
                    continue;
                }
            }
        }
        seq += 1;
        let requested = Arc::new(AtomicBool::new(false));
        let flag = requested.clone();
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let service = hyper::service::service_fn(move |request| {
            flag.store(true, Ordering::Relaxed);
            service.call(request)
        });
        let task = connections.spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "API connection ended");
            }
        });
        open.insert(
            task.id(),
            Open {
                seq,
                requested,
                task,
            },
        );
    }
}

/// Raises this process's soft limit on open files towards `DESCRIPTOR_LIMIT` (never past
/// the hard limit), so that connections (the API's, the swarm's) and sled's files do not
/// meet a 1,024 default. Returns the soft limit now in force, if it could be read.
pub fn raise_descriptor_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current?;
    let want = limit
        .maximum
        .map_or(DESCRIPTOR_LIMIT, |hard| hard.min(DESCRIPTOR_LIMIT));
    if soft >= want {
        return Some(soft);
    }
    let raised = rustix::process::Rlimit {
        current: Some(want),
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => Some(want),
        Err(e) => {
            tracing::warn!(error = %e, soft, "cannot raise the open-files limit");
            Some(soft)
        }
    }
}

/// axum's own refusals (body over the limit, no such route, bad path) come as plain text;
/// every error the API gives is JSON `{"error": …}`.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("the request body is over the {MAX_BODY_BYTES}-byte limit")
        }
        StatusCode::NOT_FOUND => "no such endpoint (see docs/api.md)".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => "this endpoint does not take that method".to_owned(),
        other => {
            let body = axum::body::to_bytes(response.into_body(), 4096)
                .await
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&body);
            let text = if text.trim().is_empty() {
                other.canonical_reason().unwrap_or("error").to_owned()
            } else {
                text.trim().to_owned()
            };
            return error(other, text);
        }
    };
    error(status, message)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization: Bearer …` header. The scheme's name is
/// case-insensitive (RFC 9110, section 11.1): `bearer` and `BEARER` work too.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
}

async fn auth(State(api): State<Api>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    match presented {
        Some(token) if same(token.as_bytes(), api.token.as_bytes()) => next.run(request).await,
        _ => error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"),
    }
}

fn node_error(e: NodeError) -> Response {
    match e {
        NodeError::Engine(EngineError::Refused(Reason::InvalidBody(e))) => error(
            StatusCode::BAD_REQUEST,
            crate::words::field_error(&e, crate::words::api_field),
        ),
        NodeError::Engine(EngineError::Refused(Reason::RateLimited)) => error(
            StatusCode::TOO_MANY_REQUESTS,
            "over the hood's rate limit for posts: try again later",
        ),
        NodeError::Engine(
            e @ (EngineError::Removed
            | EngineError::FetchingHistory(_)
            | EngineError::InviteForbidden
            | EngineError::LastAdmin(_)
            | EngineError::LastAdminLeaving),
        ) => error(StatusCode::FORBIDDEN, e.to_string()),
        NodeError::Engine(e @ EngineError::AlreadyAdmin(_)) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        NodeError::Engine(EngineError::Refused(reason)) => {
            error(StatusCode::BAD_REQUEST, format!("refused: {reason}"))
        }
        NodeError::Engine(EngineError::AlreadyPosted) => {
            error(StatusCode::CONFLICT, "this exact report was already posted")
        }
        NodeError::Engine(EngineError::Membership(m)) => {
            error(StatusCode::BAD_REQUEST, m.to_string())
        }
        NodeError::NoHood => error(StatusCode::CONFLICT, e.to_string()),
        NodeError::Busy => {
            let mut response = error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(crate::feed::RETRY_AFTER_SECS),
            );
            response
        }
        other => error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

/// A request body: a JSON object whose fields `T` names. Errors name the field (with its
/// path, `clips[0].camera`) and never the handler's internal type names.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    let bad = |m: String| Box::new(error(StatusCode::BAD_REQUEST, m));
    let value: Value = serde_json::from_slice(body).map_err(|e| bad(format!("bad JSON: {e}")))?;
    if !value.is_object() {
        return Err(bad(
            "the request body must be a JSON object, {\"field\": value, …} (see docs/api.md)"
                .into(),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let what = without_type_names(&e.into_inner().to_string());
        if path == "." {
            bad(format!("bad request: {what}"))
        } else {
            bad(format!("{path}: {what}"))
        }
    })
}

/// serde's messages name the Rust type a value should have been (`expected struct
/// NewClip with 4 elements`); a client knows JSON objects, not our types.
fn without_type_names(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(at) = rest.find("struct ") {
        out.push_str(&rest[..at]);
        out.push_str("a JSON object");
        let after = &rest[at + "struct ".len()..];
        let name_end = after
            .find(|c: char| !c.is_alphanumeric() && c != '_')
            .unwrap_or(after.len());
        rest = &after[name_end..];
        if let Some(tail) = rest.strip_prefix(" with ")
            && let Some(end) = tail.find(" element")
        {
            let after_word = &tail[end + " element".len()..];
            rest = after_word.strip_prefix('s').unwrap_or(after_word);
        }
    }
    out.push_str(rest);
    out
}

/// An optional JSON body: empty means the defaults.
fn parse_or_default<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, Box<Response>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse(body)
    }
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, Box<Response>> {
    q.map(|Query(q)| q).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("bad query: {}", e.body_text()),
        ))
    })
}

fn parse_category(name: &str) -> Result<Category, Box<Response>> {
    Category::parse(name).ok_or_else(|| {
        let all: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("unknown category {name:?}: one of {}", all.join(", ")),
        ))
    })
}

fn parse_severity(name: Option<&str>) -> Result<Option<Severity>, Box<Response>> {
    match name {
        None => Ok(None),
        Some(s) => Severity::parse(s).map(Some).ok_or_else(|| {
            Box::new(error(
                StatusCode::BAD_REQUEST,
                format!("unknown severity {s:?}: one of info, warning, urgent"),
            ))
        }),
    }
}

/// The hood's policy as `GET /v1/status` shows it.
pub fn policy_json(p: &Policy) -> Value {
    json!({
        "invite": crate::words::permission(p.invite),
        "remove": crate::words::permission(p.remove),
        "posts_per_window": p.rate_limit.max_items,
        "window_secs": p.rate_limit.window_secs,
        "default_report_lifetime_secs": p.default_ttl_secs,
        "max_report_lifetime_secs": p.max_ttl_secs,
    })
}

async fn status(State(api): State<Api>) -> Response {
    let (status, members) = (api.node.status_brief().await, api.node.members().await);
    // Peers connected now: members, and the rest (a neighbor presenting an invite, a
    // removed member being cut off, a stranger's node found on the LAN).
    let connected_members = match &members {
        Ok(members) => members
            .iter()
            .filter(|m| m.connected && m.member.id != api.node.member())
            .count(),
        Err(_) => 0,
    };
    match status {
        Ok(s) => axum::Json(json!({
            "member": s.member.to_hex(),
            "fingerprint": s.member.fingerprint(),
            "peer_id": s.peer_id.to_string(),
            "hood": s.hood.map(|h| h.to_hex()),
            "hood_name": s.hood_name,
            "epoch": s.sealing_epoch.map(|e| e.to_string()),
            "members": s.members,
            "connected": s.connected.len(),
            "connected_members": connected_members,
            "connected_others": s.connected.len().saturating_sub(connected_members),
            "peers": s.connected.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "known_peers": s.known_peers,
            "listen": s.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "api": s_addr(&api),
            "items": s.items,
            "outbox": s.outbox,
            "removed": s.removed,
            "policy": s.policy.as_ref().map(policy_json),
            "history_missing": s.history_missing,
        }))
        .into_response(),
        Err(e) => node_error(e),
    }
}

/// 200 when the store takes writes, 503 when it does not (the node is then stopping).
async fn health(State(api): State<Api>) -> Response {
    match api.node.health().await {
        Ok(h) => {
            let code = if h.store_writable {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = json!({
                "ok": h.store_writable,
                "store_writable": h.store_writable,
                "store_error": h.store_error,
                "members_connected": h.members_connected,
                "last_item_at": h.last_item_at,
            });
            (code, axum::Json(body)).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

fn s_addr(api: &Api) -> String {
    format!("http://{}", api.addr)
}

/// Filters shared by the feed and the event stream.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Filter {
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
struct FeedParams {
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

struct Matcher {
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
            Body::Membership(_) => None,
        };
        category == Some(wanted)
    }
}

/// A page of the feed, read off the event loop from the newest back: the newest `limit`
/// items (before `before`), oldest first.
async fn feed(State(api): State<Api>, q: Result<Query<FeedParams>, QueryRejection>) -> Response {
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
fn refers_to(body: &Body) -> Option<ItemId> {
    match body {
        Body::Update(u) => Some(u.report),
        Body::Resolve(r) => Some(r.report),
        Body::Retract(r) => Some(r.report),
        Body::Report(_) | Body::Membership(_) => None,
    }
}

/// Server-sent events: one `event: <kind>` (`report`, `update`, `resolve`, `retract`)
/// with the item's JSON as data, for every new item, ours or a neighbor's.
async fn events(State(api): State<Api>, q: Result<Query<Filter>, QueryRejection>) -> Response {
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

/// A clip to attach: a file for the node to import into its library, or the SHA-256 of
/// one already there (`porchlight post --clip` imports first, with progress).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewClip {
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    camera: Option<String>,
    #[serde(default)]
    captured_at: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewReport {
    category: String,
    text: String,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    behavior: Option<String>,
    #[serde(default, rename = "where")]
    place: Option<String>,
    #[serde(default)]
    geohash: Option<String>,
    #[serde(default)]
    expires_in_secs: Option<u64>,
    #[serde(default)]
    clips: Vec<NewClip>,
}

/// Resolves clip requests to library entries, importing files. Returns the references
/// and the clips this call added (to remove again if the post fails).
async fn attach(
    data_dir: &Path,
    wanted: Vec<NewClip>,
    now: u64,
) -> Result<(Vec<ClipRef>, Vec<[u8; 32]>), Box<Response>> {
    let bad = |m: String| Box::new(error(StatusCode::BAD_REQUEST, m));
    if wanted.len() > MAX_CLIPS {
        return Err(bad(format!("at most {MAX_CLIPS} clips per report")));
    }
    let mut refs = Vec::new();
    let mut added = Vec::new();
    for clip in wanted {
        let found = match (clip.path, clip.sha256) {
            (Some(path), None) => {
                if !path.is_absolute() {
                    return Err(bad(format!(
                        "clip path {} must be absolute (the node may run in another directory)",
                        path.display()
                    )));
                }
                if !path.is_file() {
                    return Err(bad(format!("clip file {} not found", path.display())));
                }
                let dir = data_dir.to_path_buf();
                let imported =
                    tokio::task::spawn_blocking(move || clips::import(&dir, &path, |_, _| {}))
                        .await;
                match imported {
                    Ok(Ok(imported)) => {
                        if imported.new {
                            added.push(imported.clip.sha256);
                        }
                        imported.clip
                    }
                    Ok(Err(e @ (ClipError::Read { .. } | ClipError::NotAFile { .. }))) => {
                        return Err(bad(e.to_string()));
                    }
                    Ok(Err(e @ ClipError::TooLarge { .. })) => {
                        return Err(Box::new(error(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            e.to_string(),
                        )));
                    }
                    Ok(Err(e)) => {
                        return Err(Box::new(error(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            e.to_string(),
                        )));
                    }
                    Err(e) => {
                        return Err(Box::new(error(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            e.to_string(),
                        )));
                    }
                }
            }
            (None, Some(hex)) => {
                let Some(sha) = codec::parse_hex::<32>(&hex) else {
                    return Err(bad(format!("clip sha256 {hex:?} is not 64 hex digits")));
                };
                clips::get(data_dir, &sha).map_err(|e| bad(e.to_string()))?
            }
            _ => {
                return Err(bad(
                    "each clip needs exactly one of `path` or `sha256`".into()
                ));
            }
        };
        refs.push(ClipRef {
            sha256: found.sha256,
            size: found.size,
            camera: clip.camera.unwrap_or_default(),
            captured_at: clip.captured_at.unwrap_or(now),
        });
    }
    Ok((refs, added))
}

/// `POST /v1/reports` judged before anything is touched: the report (without its clips,
/// which come from the library) and the clips asked for.
///
/// The report's lifetime is `expires_in_secs`, else the hood's default; the handler
/// checks it against the hood's maximum ([`lifetime`]).
fn report_request(
    body: &[u8],
    now: u64,
) -> Result<(Report, Option<u64>, Vec<NewClip>), Box<Response>> {
    let new: NewReport = parse(body)?;
    if new.expires_in_secs == Some(0) {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "expires_in_secs must be at least 1 (seconds)",
        )));
    }
    let category = parse_category(&new.category)?;
    let severity = parse_severity(new.severity.as_deref())?.unwrap_or(Severity::Warning);
    let report = Report {
        created_at: now,
        expires_at: now.saturating_add(new.expires_in_secs.unwrap_or(DEFAULT_TTL_SECS)),
        category,
        severity,
        text: new.text,
        behavior: new.behavior,
        location: Location {
            text: new.place.unwrap_or_default(),
            geohash: new.geohash,
        },
        clips: vec![],
    };
    report.check().map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            crate::words::field_error(&e, crate::words::api_field),
        ))
    })?;
    Ok((report, new.expires_in_secs, new.clips))
}

/// A report's lifetime in seconds: the one asked for, else the hood's default, at most
/// the hood's maximum.
fn lifetime(policy: &Policy, asked: Option<u64>) -> Result<u64, Box<Response>> {
    let max = u64::from(policy.max_ttl_secs);
    let secs = asked.unwrap_or(u64::from(policy.default_ttl_secs));
    if secs > max {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!(
                "expires_in_secs is {secs} seconds ({}), longer than this hood's maximum \
                 report lifetime of {} ({max} seconds)",
                crate::words::span(secs),
                crate::words::span(max)
            ),
        )));
    }
    Ok(secs)
}

/// An error from posting, with the hood's rate limit spelled out when it was that.
fn post_error(api: &Api, e: NodeError) -> Response {
    match e {
        NodeError::Engine(EngineError::Refused(Reason::RateLimited)) => {
            let window = u64::from(api.policy.rate_limit.window_secs.max(1));
            let next = (crate::now() / window + 1) * window;
            error(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "over this hood's limit of {} (reports, updates and all-clears count): \
                     try again after {}",
                    crate::words::rate_limit(&api.policy),
                    crate::words::utc(next)
                ),
            )
        }
        other => node_error(other),
    }
}

async fn post_report(State(api): State<Api>, body: Bytes) -> Response {
    let now = crate::now();
    // Everything that can be judged before touching the clip library is judged first.
    let (mut report, asked, wanted) = match report_request(&body, now) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match lifetime(&api.policy, asked) {
        Ok(secs) => report.expires_at = now.saturating_add(secs),
        Err(r) => return *r,
    }
    let (refs, added) = match attach(&api.data_dir, wanted, now).await {
        Ok(r) => r,
        Err(r) => return *r,
    };
    report.clips = refs;
    match api.node.post(Body::Report(report)).await {
        Ok(id) => (
            StatusCode::CREATED,
            axum::Json(json!({ "id": id.to_hex() })),
        )
            .into_response(),
        // Sent, only not durable here: neighbors may ask for the clips.
        Err(e @ NodeError::NotDurable { .. }) => node_error(e),
        Err(e) => {
            for sha in added {
                let _ = std::fs::remove_file(clips::path(&api.data_dir, &sha));
            }
            post_error(&api, e)
        }
    }
}

/// Finds the report `wanted` names (a full id or a unique prefix of at least 4 hex
/// digits) among the live items, and checks that this node's member wrote it or is an
/// admin (the protocol lets admins update, resolve and retract any report).
async fn own_report(api: &Api, wanted: &str) -> Result<(ItemId, u64), Box<Response>> {
    let wanted = wanted.to_ascii_lowercase();
    if wanted.len() < 4 || !wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("{wanted:?} is not a report id: give at least 4 hex digits of one"),
        )));
    }
    // By the store's index of ids, not a read of the whole feed. Enough to tell one
    // match from several.
    const MOST: usize = 64;
    let prefix = wanted.clone();
    let items = api
        .node
        .read(move |reader| reader.by_prefix(&prefix, MOST))
        .await
        .map_err(|e| Box::new(node_error(e)))?;
    let matches: Vec<&FeedItem> = items
        .iter()
        .filter(|i| matches!(i.body, Body::Report(_)))
        .collect();
    if items.len() >= MOST && matches.len() < 2 {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("{wanted} matches {MOST} or more items: give more of the id"),
        )));
    }
    let report = match matches.as_slice() {
        [one] => *one,
        [] => {
            return Err(Box::new(error(
                StatusCode::NOT_FOUND,
                format!("no live report with id {wanted}"),
            )));
        }
        more => {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                format!(
                    "{wanted} matches {} reports: give more of the id",
                    more.len()
                ),
            )));
        }
    };
    let me_admin = || async {
        api.node.members().await.is_ok_and(|m| {
            m.iter()
                .any(|m| m.member.id == api.node.member() && m.member.admin)
        })
    };
    if report.author != api.node.member() && !me_admin().await {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            format!(
                "report {} is {}'s: only its author or an admin can change it",
                &report.id.to_hex()[..8],
                report.author_name
            ),
        )));
    }
    Ok((report.id, report.expires_at))
}

fn posted(api: &Api, result: Result<ItemId, NodeError>) -> Response {
    match result {
        Ok(id) => (
            StatusCode::CREATED,
            axum::Json(json!({ "id": id.to_hex() })),
        )
            .into_response(),
        Err(e) => post_error(api, e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUpdate {
    text: String,
    #[serde(default)]
    severity: Option<String>,
}

/// New information on one of our reports. It lives as long as the report.
/// `POST /v1/reports/{id}/update` judged: an `Update` whose report and times the
/// handler fills in.
fn update_request(body: &[u8]) -> Result<Update, Box<Response>> {
    let new: NewUpdate = parse(body)?;
    let update = Update {
        created_at: 0,
        expires_at: 0,
        report: ItemId([0; 32]),
        severity: parse_severity(new.severity.as_deref())?,
        text: new.text,
    };
    update.check().map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            crate::words::field_error(&e, crate::words::api_field),
        ))
    })?;
    Ok(update)
}

async fn update(State(api): State<Api>, AxumPath(id): AxumPath<String>, body: Bytes) -> Response {
    let mut update = match update_request(&body) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    (update.report, update.expires_at) = match own_report(&api, &id).await {
        Ok(r) => r,
        Err(r) => return *r,
    };
    update.created_at = crate::now();
    let result = api.node.post(Body::Update(update)).await;
    posted(&api, result)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewResolve {
    #[serde(default)]
    text: String,
}

/// "All clear" on one of our reports.
/// `POST /v1/reports/{id}/resolve` judged, like [`update_request`].
fn resolve_request(body: &[u8]) -> Result<Resolve, Box<Response>> {
    let new: NewResolve = parse_or_default(body)?;
    let resolve = Resolve {
        created_at: 0,
        expires_at: 0,
        report: ItemId([0; 32]),
        text: new.text,
    };
    resolve.check().map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            crate::words::field_error(&e, crate::words::api_field),
        ))
    })?;
    Ok(resolve)
}

async fn resolve(State(api): State<Api>, AxumPath(id): AxumPath<String>, body: Bytes) -> Response {
    let mut resolve = match resolve_request(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    (resolve.report, resolve.expires_at) = match own_report(&api, &id).await {
        Ok(r) => r,
        Err(r) => return *r,
    };
    resolve.created_at = crate::now();
    let result = api.node.post(Body::Resolve(resolve)).await;
    posted(&api, result)
}

/// Takes one of our reports back: every member's node deletes its body.
async fn retract(State(api): State<Api>, AxumPath(id): AxumPath<String>, body: Bytes) -> Response {
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoFields {}
    if let Err(r) = parse_or_default::<NoFields>(&body) {
        return *r;
    }
    let (report, expires_at) = match own_report(&api, &id).await {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let result = api
        .node
        .post(Body::Retract(Retract {
            created_at: crate::now(),
            expires_at,
            report,
        }))
        .await;
    posted(&api, result)
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewInvite {
    #[serde(default)]
    expires_in_secs: Option<u64>,
}

/// How long an invite may be valid, in the one wording the API and the command share.
pub fn invite_lifetime_rule() -> String {
    format!(
        "an invite is valid from 1 second to {} ({MAX_INVITE_SECS} seconds)",
        crate::words::span(MAX_INVITE_SECS)
    )
}

/// `POST /v1/invites` judged: the validity in seconds.
fn invite_request(body: &[u8]) -> Result<u64, Box<Response>> {
    let new: NewInvite = parse_or_default(body)?;
    let secs = new.expires_in_secs.unwrap_or(DEFAULT_INVITE_SECS);
    if secs == 0 || secs > MAX_INVITE_SECS {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("expires_in_secs: {}", invite_lifetime_rule()),
        )));
    }
    Ok(secs)
}

async fn invite(State(api): State<Api>, body: Bytes) -> Response {
    let secs = match invite_request(&body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match api.node.invite(Duration::from_secs(secs)).await {
        Ok(code) => (
            StatusCode::CREATED,
            axum::Json(json!({ "code": code, "expires_at": crate::now().saturating_add(secs) })),
        )
            .into_response(),
        Err(e) => node_error(e),
    }
}

async fn members(State(api): State<Api>) -> Response {
    match api.node.members().await {
        Ok(members) => axum::Json(
            members
                .iter()
                .map(|m| {
                    json!({
                        "id": m.member.id.to_hex(),
                        "fingerprint": m.member.id.fingerprint(),
                        "name": m.member.name,
                        "role": if m.member.admin { "admin" } else { "member" },
                        "admin": m.member.admin,
                        "joined_at": m.member.joined_at,
                        "connected": m.connected,
                        "last_seen": m.last_seen,
                        "me": m.member.id == api.node.member(),
                    })
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => node_error(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveMember {
    /// A member id (hex), or a unique prefix of one, or a unique name.
    member: String,
}

/// `POST /v1/members/remove` (and `…/promote`) judged: who, lower-cased.
fn remove_request(body: &[u8]) -> Result<(String, String), Box<Response>> {
    let req: RemoveMember = parse(body)?;
    let wanted = req.member.trim().to_lowercase();
    if wanted.is_empty() {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "member: name a member (a name, or the start of a member id)",
        )));
    }
    Ok((wanted, req.member))
}

/// The one current member a request names (a name, or a unique prefix of an id).
async fn named_member(
    api: &Api,
    body: &[u8],
) -> Result<porchlight_proto::membership::Member, Box<Response>> {
    let (wanted, asked) = remove_request(body)?;
    let members = api
        .node
        .members()
        .await
        .map_err(|e| Box::new(node_error(e)))?;
    let matches: Vec<&porchlight_proto::membership::Member> = members
        .iter()
        .map(|m| &m.member)
        .filter(|m| m.id.to_hex().starts_with(&wanted) || m.name.to_lowercase() == wanted)
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Box::new(error(
            StatusCode::NOT_FOUND,
            format!("no member matches {asked:?}"),
        ))),
        _ => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!(
                "{asked:?} matches {} members: give more of the id",
                matches.len()
            ),
        ))),
    }
}

fn member_answer(key: &str, member: &porchlight_proto::membership::Member) -> Value {
    json!({
        key: member.id.to_hex(),
        "name": member.name,
        "fingerprint": member.id.fingerprint(),
    })
}

async fn remove(State(api): State<Api>, body: Bytes) -> Response {
    let target = match named_member(&api, &body).await {
        Ok(m) => m,
        Err(r) => return *r,
    };
    match api.node.remove(target.id).await {
        Ok(()) => axum::Json(member_answer("removed", &target)).into_response(),
        Err(e) => node_error(e),
    }
}

/// Makes a member an admin (admins only): so that a hood keeps one when its admin leaves.
async fn promote(State(api): State<Api>, body: Bytes) -> Response {
    let target = match named_member(&api, &body).await {
        Ok(m) => m,
        Err(r) => return *r,
    };
    match api.node.promote(target.id).await {
        Ok(()) => axum::Json(member_answer("promoted", &target)).into_response(),
        Err(e) => node_error(e),
    }
}

/// Where one clip fetch stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
struct FetchState {
    /// `fetching`, `waiting` (for the owner to allow), `done` or `failed`.
    state: &'static str,
    received: u64,
    size: u64,
    owner: Option<String>,
    error: Option<String>,
    /// Where the verified clip is, once `done`.
    path: Option<String>,
}

fn parse_sha(hex: &str) -> Result<[u8; 32], Box<Response>> {
    codec::parse_hex::<32>(hex).ok_or_else(|| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("{hex:?} is not a clip SHA-256 (64 hex digits)"),
        ))
    })
}

fn lock(
    fetches: &Mutex<HashMap<[u8; 32], FetchState>>,
) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], FetchState>> {
    // A poisoned map only means a fetch task panicked mid-update; its entries are still
    // plain data.
    fetches
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn set(
    fetches: &Mutex<HashMap<[u8; 32], FetchState>>,
    sha: [u8; 32],
    update: impl FnOnce(&mut FetchState),
) {
    if let Some(state) = lock(fetches).get_mut(&sha) {
        update(state);
    }
}

/// Starts fetching a clip a neighbor's report references into this node's library
/// (or says where a fetch stands). The answer is the fetch's state; poll
/// `GET /v1/clips/{sha256}` until `done` or `failed`.
async fn clip_fetch(State(api): State<Api>, AxumPath(hex): AxumPath<String>) -> Response {
    let sha = match parse_sha(&hex) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    {
        let mut fetches = lock(&api.fetches);
        if let Some(state) = fetches.get(&sha)
            && matches!(state.state, "fetching" | "waiting")
        {
            return (StatusCode::ACCEPTED, axum::Json(state.clone())).into_response();
        }
        if fetches.len() >= MAX_FETCHES {
            fetches.retain(|_, s| matches!(s.state, "fetching" | "waiting"));
        }
        if fetches.len() >= MAX_FETCHES {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{MAX_FETCHES} clip fetches are running; try again later"),
            );
        }
        fetches.insert(
            sha,
            FetchState {
                state: "fetching",
                received: 0,
                size: 0,
                owner: None,
                error: None,
                path: None,
            },
        );
    }
    let (node, dir, fetches) = (api.node.clone(), api.data_dir.clone(), api.fetches.clone());
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + FETCH_WAIT;
        loop {
            let progress = |received, size| {
                set(&fetches, sha, |s| {
                    s.state = "fetching";
                    s.received = received;
                    s.size = size;
                })
            };
            match sharing::fetch(&node, &dir, sha, progress).await {
                Ok(Fetched::Done { size }) => {
                    let path = clips::path(&dir, &sha).display().to_string();
                    set(&fetches, sha, |s| {
                        s.state = "done";
                        s.received = size;
                        s.size = size;
                        s.path = Some(path);
                    });
                    return;
                }
                Ok(Fetched::Waiting { owner }) => {
                    let name = match node.members().await {
                        Ok(members) => members
                            .iter()
                            .find(|m| m.member.id == owner)
                            .map_or_else(|| owner.fingerprint(), |m| m.member.name.clone()),
                        Err(_) => owner.fingerprint(),
                    };
                    set(&fetches, sha, |s| {
                        s.state = "waiting";
                        s.owner = Some(name);
                    });
                    if tokio::time::Instant::now() >= deadline {
                        set(&fetches, sha, |s| {
                            s.state = "failed";
                            s.error =
                                Some("the owner did not allow the request within an hour".into());
                        });
                        return;
                    }
                    tokio::time::sleep(FETCH_RETRY).await;
                }
                Err(e) => {
                    tracing::info!(clip = %&codec::hex(&sha)[..12], error = %e, "clip fetch failed");
                    set(&fetches, sha, |s| {
                        s.state = "failed";
                        s.error = Some(e.to_string());
                    });
                    return;
                }
            }
        }
    });
    let state = lock(&api.fetches).get(&sha).cloned();
    (StatusCode::ACCEPTED, axum::Json(state)).into_response()
}

async fn clip_state(State(api): State<Api>, AxumPath(hex): AxumPath<String>) -> Response {
    let sha = match parse_sha(&hex) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match lock(&api.fetches).get(&sha) {
        Some(state) => axum::Json(state.clone()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "no fetch of this clip: start one with POST /v1/clips/{sha256}/fetch",
        ),
    }
}

fn ask_json(ask: &ClipAsk, members: &[crate::node::MemberInfo]) -> Value {
    let name = members
        .iter()
        .find(|m| m.member.id == ask.requester)
        .map(|m| m.member.name.clone())
        .unwrap_or_default();
    json!({
        "id": ask.id,
        "requester": ask.requester.to_hex(),
        "requester_fingerprint": ask.requester.fingerprint(),
        "requester_name": name,
        "sha256": codec::hex(&ask.sha256),
        "asked_at": ask.asked_at,
    })
}

/// Clip requests waiting for this member's decision (policy `ask`).
async fn clip_requests(State(api): State<Api>) -> Response {
    let (asks, members) = match (api.node.clip_asks().await, api.node.members().await) {
        (Ok(a), Ok(m)) => (a, m),
        (Err(e), _) | (_, Err(e)) => return node_error(e),
    };
    axum::Json(
        asks.iter()
            .map(|a| ask_json(a, &members))
            .collect::<Vec<_>>(),
    )
    .into_response()
}

async fn clip_decide(api: Api, id: String, allow: bool) -> Response {
    match api.node.clip_decide(id.trim(), allow).await {
        Ok(ask) => {
            let members = api.node.members().await.unwrap_or_default();
            let mut v = ask_json(&ask, &members);
            v["allowed"] = json!(allow);
            axum::Json(v).into_response()
        }
        Err(NodeError::Sharing(e)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e) => node_error(e),
    }
}

async fn clip_allow(State(api): State<Api>, AxumPath(id): AxumPath<String>) -> Response {
    clip_decide(api, id, true).await
}

async fn clip_deny(State(api): State<Api>, AxumPath(id): AxumPath<String>) -> Response {
    clip_decide(api, id, false).await
}

/// The local API's request bodies that change state, for [`judge_body`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Report,
    Update,
    Resolve,
    Invite,
    RemoveMember,
    Webhook,
}

impl Endpoint {
    pub const ALL: [Endpoint; 6] = [
        Endpoint::Report,
        Endpoint::Update,
        Endpoint::Resolve,
        Endpoint::Invite,
        Endpoint::RemoveMember,
        Endpoint::Webhook,
    ];
}

/// Judges a request body with the functions its handler uses before it touches any
/// state (parse, field checks); the error is the status the handler would answer.
/// For fuzzing (`node/fuzz`): any bytes, never a panic.
pub fn judge_body(endpoint: Endpoint, body: &[u8], now: u64) -> Result<(), StatusCode> {
    let status = |r: Box<Response>| r.status();
    match endpoint {
        Endpoint::Report => report_request(body, now).map(drop).map_err(status),
        Endpoint::Update => update_request(body).map(drop).map_err(status),
        Endpoint::Resolve => resolve_request(body).map(drop).map_err(status),
        Endpoint::Invite => invite_request(body).map(drop).map_err(status),
        Endpoint::RemoveMember => remove_request(body).map(drop).map_err(status),
        Endpoint::Webhook => crate::hub::api::webhook_candidate(body, now)
            .map(drop)
            .map_err(|r| r.status()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A feed read refused as busy is a 503 that says when to ask again.
    #[test]
    fn a_busy_reader_is_503_with_retry_after() {
        let response = node_error(NodeError::Busy);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(axum::http::header::RETRY_AFTER),
            Some(&axum::http::HeaderValue::from(
                crate::feed::RETRY_AFTER_SECS
            ))
        );
    }
}
