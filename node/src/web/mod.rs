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
//! - Phones on the home LAN ([`lan`], off by default): the same page over TLS on the LAN
//!   address, with the node's own certificate; a phone gets in with a one-time pairing
//!   link made on the node's computer, and its cookie is `Secure` too. The bearer-token
//!   API is never served there.
//! - A strict Content-Security-Policy: scripts, styles, images, media and connections from
//!   this origin only, no inline script or style, no frames. No CORS headers, ever.

pub mod files;
pub mod lan;
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

/// Where a request came in: the node's own computer (plain HTTP on loopback) or a
/// phone on the home LAN (TLS, paired).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    Local,
    Lan,
}

/// The page's state: the node, where it listens, the sign-in codes and sessions.
#[derive(Debug, Clone)]
pub struct Web {
    node: Node,
    addr: SocketAddr,
    data_dir: PathBuf,
    secrets: Arc<Mutex<session::Secrets>>,
    uploads: Arc<Semaphore>,
    face: Face,
    /// The LAN face, when `web_lan` is set: both faces see it (the computer's page
    /// pairs phones and unpairs them).
    lan: Option<Arc<lan::Lan>>,
}

/// Why a request was refused before any handler saw it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebError {
    #[error("the Host header must name this node's address for the page ({0})")]
    ForeignHost(String),
    #[error("requests from another origin are refused")]
    ForeignOrigin,
    #[error("not signed in: run `porchlight open` for a sign-in link")]
    NoSession,
    #[error(
        "this device is not paired: on the node's computer, open Settings and \"Pair a \
         phone\" (or run `porchlight open --pair`), then open its link here"
    )]
    NotPaired,
    #[error("phones are paired from the node's own computer, not from a paired phone")]
    LocalOnly,
}

impl WebError {
    fn status(&self) -> StatusCode {
        match self {
            WebError::ForeignHost(_) | WebError::ForeignOrigin | WebError::LocalOnly => {
                StatusCode::FORBIDDEN
            }
            WebError::NoSession | WebError::NotPaired => StatusCode::UNAUTHORIZED,
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
            face: Face::Local,
            lan: None,
        }
    }

    /// This page with a LAN face (`web_lan`): the computer's page can pair phones.
    pub fn with_lan(mut self, lan: Arc<lan::Lan>) -> Web {
        self.lan = Some(lan);
        self
    }

    /// The page as phones on the LAN reach it: the LAN's address, its pairing codes and
    /// paired sessions (shared with the computer's face, which makes and ends them).
    pub fn lan_face(&self) -> Option<Web> {
        let lan = self.lan.clone()?;
        Some(Web {
            addr: lan.addr,
            secrets: lan.secrets.clone(),
            face: Face::Lan,
            lan: Some(lan),
            ..self.clone()
        })
    }

    pub fn face(&self) -> Face {
        self.face
    }

    /// The address this face of the page listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The session cookie's name: one per port, so that two nodes on one machine (two
    /// data dirs) do not sign each other's page out (cookies ignore ports). On the LAN
    /// the `__Host-` prefix makes the browser keep it only if it is `Secure`, for this
    /// host alone, on every path.
    pub fn cookie_name(&self) -> String {
        match self.face {
            Face::Local => format!("porchlight_{}", self.addr.port()),
            Face::Lan => format!("__Host-porchlight_{}", self.addr.port()),
        }
    }

    fn scheme(&self) -> &'static str {
        match self.face {
            Face::Local => "http",
            Face::Lan => "https",
        }
    }

    /// The refusal of a request without a live session.
    pub fn no_session(&self) -> WebError {
        match self.face {
            Face::Local => WebError::NoSession,
            Face::Lan => WebError::NotPaired,
        }
    }

    /// A one-time pairing link for a phone on the LAN, with the certificate's
    /// fingerprint; `None` when the page is not served on the LAN.
    pub fn pairing(&self) -> Option<Pairing> {
        let lan = self.lan.as_ref()?;
        let code = lock(&lan.secrets).new_code(Instant::now());
        let fingerprint = lan.fingerprint();
        Some(Pairing {
            // The fragment never reaches a server: it carries the pin for whoever reads
            // the QR code (the page shows it beside the code, to compare).
            url: format!("https://{}/pair?code={code}#spki={fingerprint}", lan.addr),
            fingerprint,
            fingerprint_hex: lan.fingerprint_hex(),
            expires_in: session::PAIR_CODE_TTL,
        })
    }

    /// Unpairs every phone (and voids waiting pairing links): how many were paired.
    pub fn unpair_all(&self) -> Option<usize> {
        let lan = self.lan.as_ref()?;
        Some(lock(&lan.secrets).end_all(Instant::now()))
    }

    /// The LAN face as the settings page shows it.
    pub fn lan_json(&self) -> serde_json::Value {
        match &self.lan {
            None => json!({ "enabled": false, "here": self.face_name() }),
            Some(lan) => json!({
                "enabled": true,
                "here": self.face_name(),
                "url": format!("https://{}/", lan.addr),
                "fingerprint": lan.fingerprint(),
                "fingerprint_hex": lan.fingerprint_hex(),
                "paired": lock(&lan.secrets).live(Instant::now()),
                "max_paired": session::MAX_PAIRED,
                "paired_days": session::PAIRED_TTL.as_secs() / 86_400,
            }),
        }
    }

    fn face_name(&self) -> &'static str {
        match self.face {
            Face::Local => "local",
            Face::Lan => "lan",
        }
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
            || (self.face == Face::Local
                && self.addr.ip().is_loopback()
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
            return Err(WebError::ForeignHost(format!(
                "{}://{}",
                self.scheme(),
                self.addr
            )));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let own = format!("{}://{host}", self.scheme());
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
            Err(self.no_session())
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
    let public = path == "/signin" || path == "/pair" || path.starts_with("/assets/");
    let checked = web.check_origin(request.headers()).and_then(|()| {
        if public || web.signed_in(request.headers()) {
            Ok(())
        } else {
            Err(web.no_session())
        }
    });
    let mut response = match checked {
        Ok(()) => next.run(request).await,
        Err(e @ (WebError::NoSession | WebError::NotPaired)) if !path.starts_with("/web/") => {
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
    // The computer signs in with `porchlight open`'s link, a phone with a pairing link.
    let entry = match web.face {
        Face::Local => "/signin",
        Face::Lan => "/pair",
    };
    Router::new()
        .route("/", get(pages::feed))
        .route("/post", get(pages::post))
        .route("/invite", get(pages::invite))
        .route("/members", get(pages::members))
        .route("/hub", get(pages::hub))
        .route("/settings", get(pages::settings))
        .route(entry, get(signin))
        .route("/signout", post(signout))
        .route("/assets/app.js", get(pages::script))
        .route("/assets/style.css", get(pages::style))
        .route("/web/invite", post(invite))
        .route("/web/pair", get(pair_state).post(pair))
        .route("/web/pair/end", post(unpair))
        .route("/web/clips/{sha256}", get(files::clip))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .merge(uploads)
        // Only on the page's own routes: any other path stays the API's (its auth, its
        // JSON 404).
        .route_layer(middleware::from_fn_with_state(web.clone(), guard))
        .with_state(web)
}

/// The routes that go behind the API's bearer-token auth: `POST /v1/web/link`,
/// `/v1/web/pair` and `/v1/web/unpair` (for `porchlight open`).
pub fn api_routes<S: Clone + Send + Sync + 'static>(web: Web) -> Router<S> {
    Router::new()
        .route("/v1/web/link", post(link))
        .route("/v1/web/pair", post(bearer_pair))
        .route("/v1/web/unpair", post(bearer_unpair))
        .with_state(web)
}

/// What a pairing link is.
#[derive(Debug, Clone)]
pub struct Pairing {
    pub url: String,
    pub fingerprint: String,
    pub fingerprint_hex: String,
    pub expires_in: Duration,
}

fn lan_off() -> Response {
    (
        StatusCode::CONFLICT,
        axum::Json(json!({
            "error": "the page is not served on the home LAN: set web_lan in porchlight.toml \
                      (or start with --web-lan ADDR) and restart the node (docs/web.md)"
        })),
    )
        .into_response()
}

fn bearer_only(request: &Request) -> Option<Response> {
    (request.extensions().get::<Via>() != Some(&Via::Bearer)).then(|| {
        (
            StatusCode::FORBIDDEN,
            axum::Json(json!({ "error": "this needs the bearer token (`porchlight open`)" })),
        )
            .into_response()
    })
}

/// The pairing link, its QR code (SVG) and the fingerprint it pins.
fn pairing_json(p: &Pairing) -> serde_json::Value {
    let svg = qr_svg(&p.url);
    json!({
        "url": p.url,
        "fingerprint": p.fingerprint,
        "fingerprint_hex": p.fingerprint_hex,
        "expires_in_secs": p.expires_in.as_secs(),
        "expires_at": crate::now().saturating_add(p.expires_in.as_secs()),
        "svg": svg,
    })
}

/// `porchlight open --pair`: a pairing link (bearer token only).
async fn bearer_pair(State(web): State<Web>, request: Request) -> Response {
    if let Some(refused) = bearer_only(&request) {
        return refused;
    }
    match web.pairing() {
        Some(p) => axum::Json(pairing_json(&p)).into_response(),
        None => lan_off(),
    }
}

/// `porchlight open --unpair`: unpairs every phone (bearer token only).
async fn bearer_unpair(State(web): State<Web>, request: Request) -> Response {
    if let Some(refused) = bearer_only(&request) {
        return refused;
    }
    match web.unpair_all() {
        Some(n) => axum::Json(json!({ "unpaired": n })).into_response(),
        None => lan_off(),
    }
}

/// The settings page's "Phones on your home LAN".
async fn pair_state(State(web): State<Web>) -> Response {
    axum::Json(web.lan_json()).into_response()
}

/// The settings page's "Pair a phone": only on the node's own computer, so that a
/// paired (or stolen) phone cannot pair more.
async fn pair(State(web): State<Web>) -> Response {
    if web.face != Face::Local {
        return WebError::LocalOnly.json();
    }
    match web.pairing() {
        Some(p) => axum::Json(pairing_json(&p)).into_response(),
        None => lan_off(),
    }
}

/// The settings page's "Unpair every phone": only on the node's own computer.
async fn unpair(State(web): State<Web>) -> Response {
    if web.face != Face::Local {
        return WebError::LocalOnly.json();
    }
    match web.unpair_all() {
        Some(n) => axum::Json(json!({ "unpaired": n })).into_response(),
        None => lan_off(),
    }
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
    let (session, limits) = {
        let mut secrets = lock(&web.secrets);
        (secrets.redeem(&code, Instant::now()), secrets.limits())
    };
    let Some(session) = session else {
        let message = match web.face {
            Face::Local => {
                "This sign-in link is wrong, used or expired: each link works once, for 10 \
                 minutes. Run `porchlight open` for a new one."
            }
            Face::Lan => {
                "This pairing link is wrong, used or expired: each link works once, for 10 \
                 minutes. On the node's computer, pair this phone again (Settings, or \
                 `porchlight open --pair`)."
            }
        };
        return (StatusCode::UNAUTHORIZED, pages::signed_out(message)).into_response();
    };
    let cookie = format!(
        "{}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        web.cookie_name(),
        limits.session_ttl.as_secs(),
        if web.face == Face::Lan {
            "; Secure"
        } else {
            ""
        }
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
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        web.cookie_name(),
        if web.face == Face::Lan {
            "; Secure"
        } else {
            ""
        }
    );
    let message = match web.face {
        Face::Local => "Signed out. Run `porchlight open` to sign in again.",
        Face::Lan => "Signed out. To use this phone again, pair it from the node's computer.",
    };
    let mut response = (StatusCode::OK, pages::signed_out(message)).into_response();
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
    let svg = qr_svg(&code.to_uppercase());
    axum::Json(json!({
        "code": code,
        "expires_at": crate::now().saturating_add(asked.expires_in_secs),
        "svg": svg,
    }))
    .into_response()
}

/// A QR code of `text` as SVG (empty if the text does not fit one).
fn qr_svg(text: &str) -> String {
    match qrcode::QrCode::new(text) {
        Ok(q) => q
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(240, 240)
            .quiet_zone(true)
            .build(),
        Err(_) => String::new(),
    }
}
