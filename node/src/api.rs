//! The local HTTP API: JSON on 127.0.0.1 with a bearer token, for the CLI and home
//! automations. While the node runs, `api.addr` and `api.token` (0600) in the data dir
//! tell the CLI where it is and how to authenticate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use porchlight_proto::codec;
use porchlight_proto::item::Body;
use porchlight_proto::report::{Category, Location, Report, Severity};
use porchlight_proto::{MemberId, validate::Reason};
use rand_core::Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::Instrument;

use crate::engine::EngineError;
use crate::node::{FeedItem, Node, NodeError};

pub const ADDR_FILE: &str = "api.addr";
pub const TOKEN_FILE: &str = "api.token";
/// Largest request body the API reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Lifetime of a report when the request does not say: the design's default.
pub const DEFAULT_TTL_SECS: u64 = 72 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Clone)]
struct Api {
    node: Node,
    token: String,
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

/// Serves the API for `node` on `addr` and writes `api.addr` and `api.token`.
pub async fn serve(node: Node, addr: SocketAddr, data_dir: &Path) -> Result<Running, ApiError> {
    let mut secret = [0u8; 32];
    crate::rng().fill_bytes(&mut secret);
    let token = codec::hex(&secret);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ApiError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ApiError::Listen { addr, source })?;
    let state = Api {
        node,
        token: token.clone(),
    };
    let app = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/feed", get(feed))
        .route("/v1/reports", post(post_report))
        .route("/v1/invites", post(invite))
        .route("/v1/members", get(members))
        .route("/v1/members/remove", post(remove))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state);
    let token_path = data_dir.join(TOKEN_FILE);
    let addr_path = data_dir.join(ADDR_FILE);
    write_private(&token_path, &token)?;
    write_private(&addr_path, &bound.to_string())?;
    let task = tokio::spawn(
        async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "the API stopped");
            }
        }
        .instrument(tracing::info_span!("api", addr = %bound)),
    );
    tracing::info!(addr = %bound, "local API listening");
    Ok(Running {
        addr: bound,
        files: vec![token_path, addr_path],
        task,
    })
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(api): State<Api>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token) if same(token.as_bytes(), api.token.as_bytes()) => next.run(request).await,
        _ => error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"),
    }
}

fn node_error(e: NodeError) -> Response {
    match e {
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
        other => error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Box<Response>> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, format!("bad JSON: {e}"))))
}

pub fn feed_json(item: &FeedItem) -> Value {
    let mut v = json!({
        "id": item.id.to_hex(),
        "author": item.author.to_hex(),
        "author_fingerprint": item.author.fingerprint(),
        "author_name": item.author_name,
        "created_at": item.created_at,
        "expires_at": item.expires_at,
    });
    let fields = match &item.body {
        Body::Report(r) => json!({
            "kind": "report",
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
    };
    if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), fields) {
        v.extend(extra);
    }
    v
}

async fn status(State(api): State<Api>) -> Response {
    match api.node.status().await {
        Ok(s) => axum::Json(json!({
            "member": s.member.to_hex(),
            "fingerprint": s.member.fingerprint(),
            "peer_id": s.peer_id.to_string(),
            "hood": s.hood.map(|h| h.to_hex()),
            "hood_name": s.hood_name,
            "members": s.members,
            "connected": s.connected.len(),
            "listen": s.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "items": s.items,
            "outbox": s.outbox,
            "epoch": s.sealing_epoch.map(|e| e.to_string()),
        }))
        .into_response(),
        Err(e) => node_error(e),
    }
}

async fn feed(State(api): State<Api>) -> Response {
    match api.node.feed().await {
        Ok(items) => axum::Json(items.iter().map(feed_json).collect::<Vec<_>>()).into_response(),
        Err(e) => node_error(e),
    }
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
}

async fn post_report(State(api): State<Api>, body: Bytes) -> Response {
    let new: NewReport = match parse(&body) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let Some(category) = Category::parse(&new.category) else {
        let all: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown category {:?}: one of {}",
                new.category,
                all.join(", ")
            ),
        );
    };
    let severity = match new.severity.as_deref().map(Severity::parse) {
        None => Severity::Warning,
        Some(Some(s)) => s,
        Some(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "severity must be info, warning or urgent",
            );
        }
    };
    let now = crate::now();
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
    if let Err(e) = report.check() {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    match api.node.post(Body::Report(report)).await {
        Ok(id) => (
            StatusCode::CREATED,
            axum::Json(json!({ "id": id.to_hex() })),
        )
            .into_response(),
        Err(NodeError::Engine(EngineError::Refused(Reason::InvalidBody(e)))) => {
            error(StatusCode::BAD_REQUEST, e.to_string())
        }
        Err(e) => node_error(e),
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewInvite {
    #[serde(default)]
    expires_in_secs: Option<u64>,
}

async fn invite(State(api): State<Api>, body: Bytes) -> Response {
    let new: NewInvite = if body.is_empty() {
        NewInvite::default()
    } else {
        match parse(&body) {
            Ok(n) => n,
            Err(r) => return *r,
        }
    };
    let valid = std::time::Duration::from_secs(new.expires_in_secs.unwrap_or(7 * 24 * 3600));
    match api.node.invite(valid).await {
        Ok(code) => (StatusCode::CREATED, axum::Json(json!({ "code": code }))).into_response(),
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
                        "id": m.id.to_hex(),
                        "fingerprint": m.id.fingerprint(),
                        "name": m.name,
                        "admin": m.admin,
                        "joined_at": m.joined_at,
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

async fn remove(State(api): State<Api>, body: Bytes) -> Response {
    let req: RemoveMember = match parse(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let members = match api.node.members().await {
        Ok(m) => m,
        Err(e) => return node_error(e),
    };
    let wanted = req.member.to_lowercase();
    let matches: Vec<MemberId> = members
        .iter()
        .filter(|m| m.id.to_hex().starts_with(&wanted) || m.name.to_lowercase() == wanted)
        .map(|m| m.id)
        .collect();
    let target = match matches.as_slice() {
        [one] => *one,
        [] => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no member matches {:?}", req.member),
            );
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "{:?} matches {} members: give more of the id",
                    req.member,
                    matches.len()
                ),
            );
        }
    };
    match api.node.remove(target).await {
        Ok(()) => axum::Json(json!({ "removed": target.to_hex() })).into_response(),
        Err(e) => node_error(e),
    }
}
