//! The local HTTP API: JSON on 127.0.0.1 with a bearer token, for the CLI and home
//! automations. While the node runs, `api.addr` and `api.token` (0600) in the data dir
//! tell the CLI where it is and how to authenticate.
//!
//! # Layout
//! This file: the bounds, [`serve`] and the router, the connection loop. One file per
//! resource: `status`, `feed` (and the event stream), `reports`, `invites`, `members`,
//! `clips`; `request`: error answers, the token check and parsing that they share. The
//! hub's routes are `crate::hub::api`.

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

use crate::clips::ClipError;
use crate::clips::sharing::{self, ClipAsk, Fetched};
use crate::engine::EngineError;
use crate::node::{Event as NodeEvent, FeedItem, Node, NodeError};

mod clips;
mod feed;
mod invites;
mod members;
mod reports;
mod request;
mod settings;
mod status;

use self::clips::*;
pub use self::feed::REMOVED_NOTICE;
use self::feed::*;
pub use self::invites::invite_lifetime_rule;
use self::invites::*;
use self::members::*;
use self::reports::*;
use self::request::*;
use self::settings::*;
pub use self::status::policy_json;
use self::status::*;

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
    #[error(transparent)]
    Lan(#[from] crate::web::lan::LanError),
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
    /// The page in the browser: its sign-in codes and sessions (docs/web.md).
    web: crate::web::Web,
}

/// A running API: its address, and the files to remove when it stops.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    /// Where the page is served to phones on the home LAN (`web_lan`), if it is.
    pub lan: Option<SocketAddr>,
    files: Vec<PathBuf>,
    task: tokio::task::JoinHandle<()>,
    lan_task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops serving and removes the address and token files.
    pub fn stop(self) {
        self.task.abort();
        if let Some(t) = self.lan_task {
            t.abort();
        }
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
    serve_with_lan(node, addr, data_dir, hub, None).await
}

/// [`serve_with_hub`], and with `lan` the page for phones on the home LAN over TLS
/// (docs/web.md): its own listener, the page and the API behind the session cookie only.
pub async fn serve_with_lan(
    node: Node,
    addr: SocketAddr,
    data_dir: &Path,
    hub: crate::hub::Hub,
    lan: Option<SocketAddr>,
) -> Result<Running, ApiError> {
    let lan = match lan {
        Some(lan_addr) => {
            let (face, tls) = crate::web::lan::prepare(data_dir, lan_addr)?;
            let listener = tokio::net::TcpListener::bind(lan_addr)
                .await
                .map_err(|source| ApiError::Listen {
                    addr: lan_addr,
                    source,
                })?;
            let bound = listener.local_addr().map_err(|source| ApiError::Listen {
                addr: lan_addr,
                source,
            })?;
            Some((Arc::new(face.bound_to(bound)), tls, listener))
        }
        None => None,
    };
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
    let mut web = crate::web::Web::new(node.clone(), bound, data_dir);
    if let Some((face, _, _)) = &lan {
        web = web.with_lan(face.clone());
    }
    let state = Api {
        web: web.clone(),
        policy,
        node,
        token: token.clone(),
        addr: bound,
        data_dir: data_dir.to_path_buf(),
        streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        fetches: Arc::new(Mutex::new(HashMap::new())),
    };
    let app = router(state.clone(), hub.clone());
    let lan_task = match (lan, web.lan_face()) {
        (Some((_, tls, listener)), Some(lan_web)) => {
            let lan_addr = lan_web.addr();
            let lan_app = router(
                Api {
                    web: lan_web,
                    ..state
                },
                hub,
            );
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            tracing::info!(addr = %lan_addr, "the page is served on the home LAN (TLS)");
            Some(tokio::spawn(
                serve_connections(listener, lan_app, Some(acceptor))
                    .instrument(tracing::info_span!("web_lan")),
            ))
        }
        _ => None,
    };
    let token_path = data_dir.join(TOKEN_FILE);
    let addr_path = data_dir.join(ADDR_FILE);
    write_private(&token_path, &token)?;
    write_private(&addr_path, &bound.to_string())?;
    let task = tokio::spawn(
        serve_connections(listener, app, None)
            .instrument(tracing::info_span!("api", addr = %bound)),
    );
    tracing::info!(addr = %bound, "local API listening");
    Ok(Running {
        addr: bound,
        lan: web.lan_face().map(|w| w.addr()),
        files: vec![token_path, addr_path],
        task,
        lan_task,
    })
}

/// The API's routes and the page's, for one face of the page (the computer's, or the
/// phones' on the LAN).
fn router(state: Api, hub: crate::hub::Hub) -> Router {
    let web = state.web.clone();
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/health", get(health))
        .route("/v1/feed", get(feed))
        .route("/v1/events", get(events))
        .route("/v1/reports", post(post_report))
        .route("/v1/reports/{id}/update", post(update))
        .route("/v1/reports/{id}/resolve", post(resolve))
        .route("/v1/reports/{id}/retract", post(retract))
        .route("/v1/reports/{id}/seen", post(seen))
        .route("/v1/invites", post(invite))
        .route("/v1/members", get(members))
        .route("/v1/members/remove", post(remove))
        .route("/v1/members/promote", post(promote))
        .route("/v1/members/mute", post(mute))
        .route("/v1/members/unmute", post(unmute))
        .route("/v1/settings", get(settings).post(change_settings))
        .route("/v1/clips/requests", get(clip_requests))
        .route("/v1/clips/requests/{id}/allow", post(clip_allow))
        .route("/v1/clips/requests/{id}/deny", post(clip_deny))
        .route("/v1/clips/{sha256}", get(clip_state))
        .route("/v1/clips/{sha256}/fetch", post(clip_fetch))
        .merge(crate::hub::api::routes(hub))
        .merge(crate::web::api_routes(web.clone()))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::map_response(json_errors))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state)
        // The page: its own guard (Host, Origin, session) and headers.
        .merge(crate::web::routes(web))
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
/// With `tls` (the page on the LAN), each connection is a TLS handshake first, within
/// the same header-read timeout; a plain-HTTP request there gets no answer.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
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
        let tls = tls.clone();
        let task = connections.spawn(async move {
            let Some(acceptor) = tls else {
                return serve_connection(stream, service).await;
            };
            match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_connection(stream, service).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
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

/// Serves HTTP/1 on one connection (plain TCP, or TLS), with the header-read timeout.
async fn serve_connection<I, S>(io: I, service: S)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = Response,
            Error = Infallible,
        >,
    S::Future: Send + 'static,
{
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(io), service);
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "API connection ended");
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

/// The local API's request bodies that change state, for [`judge_body`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Report,
    Update,
    Resolve,
    Invite,
    RemoveMember,
    Webhook,
    Settings,
}

impl Endpoint {
    pub const ALL: [Endpoint; 7] = [
        Endpoint::Report,
        Endpoint::Update,
        Endpoint::Resolve,
        Endpoint::Invite,
        Endpoint::RemoveMember,
        Endpoint::Webhook,
        Endpoint::Settings,
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
        Endpoint::Settings => settings_request(body).map(drop).map_err(status),
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
