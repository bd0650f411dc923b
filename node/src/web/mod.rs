//! The page in the browser (docs/web.md), served by the node on its local API address.
//!
//! The page is a handful of server-rendered HTML shells ([`pages`], maud templates checked
//! at compile time) and one script of our own (`assets/app.js`, embedded in the binary)
//! that reads and writes through the same JSON API the CLI uses, authenticated by a
//! session cookie instead of the bearer token.
//!
//! # Security
//! - Sign-in: `porchlight open` asks the bearer-token API for a one-time code
//!   (`POST /v1/web/link`); `GET /signin?code=…` spends it and sets an HttpOnly,
//!   SameSite=Strict session cookie ([`session`]).
//! - Every request to the page, and every API request made with the cookie, must carry a
//!   `Host` naming this node's loopback address (DNS rebinding), and no `Origin` but this
//!   node's own and no `Sec-Fetch-Site` but `same-origin` or `none` (CSRF).
//! - A strict Content-Security-Policy: scripts, styles, images, media and connections from
//!   this origin only, no inline script or style, no frames. No CORS headers, ever.

pub mod files;
pub mod pages;
pub mod session;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::node::Node;

/// The page's Content-Security-Policy: nothing from anywhere but this origin, no inline
/// script or style, no plugins, frames or form posts elsewhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; media-src 'self'; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";
/// Largest request body the page's own routes read (the clip upload streams to disk).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// How a request to the API was let in (the API's auth puts it in the request's
/// extensions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Bearer,
    Session,
}

/// The page's state: the node, where it listens, the sign-in codes and sessions.
#[derive(Debug, Clone)]
pub struct Web {
    node: Node,
    addr: SocketAddr,
    data_dir: PathBuf,
    secrets: Arc<Mutex<session::Secrets>>,
    uploads: Arc<Semaphore>,
}

/// Why a request was refused before any handler saw it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebError {
    #[error("the Host header must name this node's local address (http://{0})")]
    ForeignHost(String),
    #[error("requests from another origin are refused")]
    ForeignOrigin,
    #[error("not signed in: run `porchlight open` for a sign-in link")]
    NoSession,
}

impl WebError {
    fn status(&self) -> StatusCode {
        match self {
            WebError::ForeignHost(_) | WebError::ForeignOrigin => StatusCode::FORBIDDEN,
            WebError::NoSession => StatusCode::UNAUTHORIZED,
        }
    }

    /// The refusal as the API gives errors: JSON `{"error": …}`.
    pub fn json(&self) -> Response {
        let mut response = (
            self.status(),
            axum::Json(json!({ "error": self.to_string() })),
        )
            .into_response();
        secure_headers(response.headers_mut());
        response
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Web {
    pub fn new(node: Node, addr: SocketAddr, data_dir: &Path) -> Web {
        Web {
            node,
            addr,
            data_dir: data_dir.to_path_buf(),
            secrets: Arc::new(Mutex::new(session::Secrets::default())),
            uploads: Arc::new(Semaphore::new(files::MAX_UPLOADS)),
        }
    }

    /// The session cookie's name: one per port, so that two nodes on one machine (two
    /// data dirs) do not sign each other's page out (cookies ignore ports).
    pub fn cookie_name(&self) -> String {
        format!("porchlight_{}", self.addr.port())
    }

    /// A one-time sign-in link, and how long it works.
    pub fn link(&self) -> (String, Duration) {
        let code = lock(&self.secrets).new_code(Instant::now());
        (
            format!("http://{}/signin?code={code}", self.addr),
            session::CODE_TTL,
        )
    }

    /// The `Host` values that name this node: its address, and `localhost` with its port
    /// when it listens on loopback.
    fn host_ok(&self, host: &str) -> bool {
        let port = self.addr.port();
        host == self.addr.to_string()
            || (self.addr.ip().is_loopback()
                && (host == format!("localhost:{port}")
                    || host == format!("127.0.0.1:{port}")
                    || host == format!("[::1]:{port}")))
    }

    /// Host, Origin and Sec-Fetch-Site: the request is this node's own page talking to
    /// this node (or a person opening a link), not another site.
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), WebError> {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !self.host_ok(host) {
            return Err(WebError::ForeignHost(self.addr.to_string()));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let own = format!("http://{host}");
            if origin.as_bytes() != own.as_bytes() {
                return Err(WebError::ForeignOrigin);
            }
        }
        if let Some(site) = headers.get("sec-fetch-site")
            && !matches!(site.as_bytes(), b"same-origin" | b"none")
        {
            return Err(WebError::ForeignOrigin);
        }
        Ok(())
    }

    /// The session secret the request's cookie carries, if any.
    fn session_of<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        let name = self.cookie_name();
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// Whether a request carries this node's session cookie at all (live or not).
    pub fn has_cookie(&self, headers: &HeaderMap) -> bool {
        self.session_of(headers).is_some()
    }

    /// Whether a request carries a live session cookie (checked after [`check_origin`]).
    pub fn signed_in(&self, headers: &HeaderMap) -> bool {
        self.session_of(headers)
            .is_some_and(|s| lock(&self.secrets).valid(s, Instant::now()))
    }

    /// The API's check for a request without a bearer token: a session cookie, from
    /// this node's own page.
    pub fn admit(&self, headers: &HeaderMap) -> Result<(), WebError> {
        self.check_origin(headers)?;
        if self.signed_in(headers) {
            Ok(())
        } else {
            Err(WebError::NoSession)
        }
    }
}

/// Headers every answer of the page carries.
fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// Every request to the page: Host and Origin first, then the session for all but the
/// sign-in route and the static assets.
async fn guard(State(web): State<Web>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let public = path == "/signin" || path.starts_with("/assets/");
    let checked = web.check_origin(request.headers()).and_then(|()| {
        if public || web.signed_in(request.headers()) {
            Ok(())
        } else {
            Err(WebError::NoSession)
        }
    });
    let mut response = match checked {
        Ok(()) => next.run(request).await,
        Err(e @ WebError::NoSession) if !path.starts_with("/web/") => {
            (e.status(), pages::signed_out(&e.to_string())).into_response()
        }
        Err(e) => return e.json(),
    };
    secure_headers(response.headers_mut());
    response
}

/// The page's routes, each behind [`guard`]; merged beside the API's own.
pub fn routes(web: Web) -> Router {
    let uploads = Router::new()
        .route("/web/clips", post(files::upload))
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .route("/", get(pages::feed))
        .route("/post", get(pages::post))
        .route("/invite", get(pages::invite))
        .route("/members", get(pages::members))
        .route("/hub", get(pages::hub))
        .route("/settings", get(pages::settings))
        .route("/signin", get(signin))
        .route("/signout", post(signout))
        .route("/assets/app.js", get(pages::script))
        .route("/assets/style.css", get(pages::style))
        .route("/web/invite", post(invite))
        .route("/web/clips/{sha256}", get(files::clip))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .merge(uploads)
        // Only on the page's own routes: any other path stays the API's (its auth, its
        // JSON 404).
        .route_layer(middleware::from_fn_with_state(web.clone(), guard))
        .with_state(web)
}

/// The routes that go behind the API's bearer-token auth: `POST /v1/web/link`.
pub fn api_routes<S: Clone + Send + Sync + 'static>(web: Web) -> Router<S> {
    Router::new()
        .route("/v1/web/link", post(link))
        .with_state(web)
}

/// A one-time sign-in link for `porchlight open`. Bearer token only: a page signed in
/// by cookie cannot mint more sign-ins.
async fn link(State(web): State<Web>, request: Request) -> Response {
    if request.extensions().get::<Via>() != Some(&Via::Bearer) {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({ "error": "sign-in links need the bearer token" })),
        )
            .into_response();
    }
    let (url, ttl) = web.link();
    axum::Json(json!({ "url": url, "expires_in_secs": ttl.as_secs() })).into_response()
}

#[derive(Debug, Deserialize)]
struct SigninQuery {
    #[serde(default)]
    code: String,
}

/// Spends a sign-in code: a good one sets the session cookie and goes to the feed.
async fn signin(
    State(web): State<Web>,
    query: Result<Query<SigninQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let code = query.map(|Query(q)| q.code).unwrap_or_default();
    let session = lock(&web.secrets).redeem(&code, Instant::now());
    let Some(session) = session else {
        return (
            StatusCode::UNAUTHORIZED,
            pages::signed_out(
                "This sign-in link is wrong, used or expired: each link works once, for 10 \
                 minutes. Run `porchlight open` for a new one.",
            ),
        )
            .into_response();
    };
    let cookie = format!(
        "{}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        web.cookie_name(),
        session::SESSION_TTL.as_secs()
    );
    let mut response = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, HeaderValue::from_static("/"))],
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Ends this browser's session.
async fn signout(State(web): State<Web>, headers: HeaderMap) -> Response {
    if let Some(s) = web.session_of(&headers) {
        lock(&web.secrets).end(s);
    }
    let cookie = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        web.cookie_name()
    );
    let mut response = (
        StatusCode::OK,
        pages::signed_out("Signed out. Run `porchlight open` to sign in again."),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewInvite {
    expires_in_secs: u64,
}

/// A one-time invite with its QR code as SVG: `{code, expires_at, svg}`.
async fn invite(State(web): State<Web>, body: Bytes) -> Response {
    let bad =
        |m: String| (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": m }))).into_response();
    let asked: NewInvite = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return bad(format!("bad request: {e}")),
    };
    if !(1..=crate::api::MAX_INVITE_SECS).contains(&asked.expires_in_secs) {
        return bad(crate::api::invite_lifetime_rule());
    }
    let code = match web
        .node
        .invite(Duration::from_secs(asked.expires_in_secs))
        .await
    {
        Ok(c) => c,
        Err(e) => {
            return (
                StatusCode::FORBIDDEN,
                axum::Json(json!({ "error": e.to_string() })),
            )
                .into_response();
        }
    };
    // Upper case: the QR alphanumeric mode, a smaller code; bech32 reads either case.
    let svg = match qrcode::QrCode::new(code.to_uppercase()) {
        Ok(q) => q
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(240, 240)
            .quiet_zone(true)
            .build(),
        Err(_) => String::new(),
    };
    axum::Json(json!({
        "code": code,
        "expires_at": crate::now().saturating_add(asked.expires_in_secs),
        "svg": svg,
    }))
    .into_response()
}
