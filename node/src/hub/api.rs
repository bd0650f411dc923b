//! The hub's routes on the local API (behind its bearer token and body limit):
//! `GET /v1/drafts`, `POST /v1/drafts/{id}/approve`, `POST /v1/drafts/{id}/discard`,
//! and the webhook `POST /v1/hub/events` for doorbells without Frigate.

use std::path::PathBuf;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as AxumPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use porchlight_proto::report::{Category, Location, Report, Severity};
use serde::Deserialize;
use serde_json::json;

use super::drafts::Source;
use super::frigate::{self, Candidate};
use super::{Approval, Hub, HubError, Intake, parse_category};
use crate::clips::{self, ClipError};
use crate::engine::EngineError;
use crate::node::NodeError;

/// The routes, with their own state; the caller adds them to its router (whatever its
/// state) before its auth and body-limit layers.
pub fn routes<S: Clone + Send + Sync + 'static>(hub: Hub) -> Router<S> {
    Router::new()
        .route("/v1/drafts", get(list))
        .route("/v1/drafts/{id}/approve", post(approve))
        .route("/v1/drafts/{id}/discard", post(discard))
        .route("/v1/hub/events", post(webhook))
        .with_state(hub)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// The HTTP face of a hub error: whose fault, as a status.
pub fn error_response(e: HubError) -> Response {
    let status = match &e {
        HubError::UnknownDraft(_) => StatusCode::NOT_FOUND,
        HubError::Payload(_)
        | HubError::Url { .. }
        | HubError::Rule { .. }
        | HubError::BadRequest(_)
        | HubError::Invalid(_) => StatusCode::BAD_REQUEST,
        HubError::ClipGone(_) => StatusCode::CONFLICT,
        HubError::Clip(ClipError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
        HubError::Clip(ClipError::Read { .. } | ClipError::NotAFile { .. }) => {
            StatusCode::BAD_REQUEST
        }
        HubError::Fetch { .. } => StatusCode::BAD_GATEWAY,
        HubError::Node(NodeError::Engine(EngineError::Refused(_))) => StatusCode::BAD_REQUEST,
        HubError::Node(NodeError::Engine(EngineError::AlreadyPosted) | NodeError::NoHood) => {
            StatusCode::CONFLICT
        }
        HubError::Clip(_) | HubError::Storage { .. } | HubError::Node(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    error(status, e.to_string())
}

/// A JSON body, or the defaults when it is empty.
fn body_or_default<T: serde::de::DeserializeOwned + Default>(
    body: &Bytes,
) -> Result<T, Box<Response>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, format!("bad JSON: {e}"))))
}

async fn list(State(hub): State<Hub>) -> Response {
    match hub.drafts_json().await {
        Ok(drafts) => axum::Json(drafts).into_response(),
        Err(e) => error_response(e),
    }
}

async fn approve(State(hub): State<Hub>, AxumPath(id): AxumPath<String>, body: Bytes) -> Response {
    let approval: Approval = match body_or_default(&body) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    match hub.approve(&id, &approval).await {
        Ok(approved) => (
            StatusCode::CREATED,
            axum::Json(json!({
                "id": approved.report.to_hex(),
                "draft": approved.draft.id.to_hex(),
                "share": approved.share.map(|s| s.as_str()),
            })),
        )
            .into_response(),
        Err(e) => error_response(e),
    }
}

async fn discard(State(hub): State<Hub>, AxumPath(id): AxumPath<String>, body: Bytes) -> Response {
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoFields {}
    if let Err(r) = body_or_default::<NoFields>(&body) {
        return *r;
    }
    match hub.discard(&id).await {
        Ok(draft) => axum::Json(json!({ "discarded": draft.id.to_hex() })).into_response(),
        Err(e) => error_response(e),
    }
}

/// The webhook's body: what a doorbell (or a Home Assistant automation) knows.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubEvent {
    /// The camera's name (letters, digits, `_`, `-`, `.`, space; at most 64).
    pub camera: String,
    /// What it saw: `person`, `package` …
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub zones: Vec<String>,
    /// Suggested report text (else "person at the doorbell camera").
    #[serde(default)]
    pub text: Option<String>,
    /// Suggested category (else `other`).
    #[serde(default)]
    pub category: Option<String>,
    /// A clip file on this machine, imported into the clip library.
    #[serde(default)]
    pub clip_path: Option<PathBuf>,
    /// A clip to download (`http://` on the home network), into the clip library.
    #[serde(default)]
    pub clip_url: Option<String>,
    /// When the camera saw it (Unix seconds; default: now).
    #[serde(default)]
    pub captured_at: Option<u64>,
    /// The doorbell's own event id: the same id never makes two drafts.
    #[serde(default)]
    pub id: Option<String>,
}

impl HubEvent {
    /// Checks every field, before any clip is touched.
    fn candidate(&self, now: u64) -> Result<Candidate, HubError> {
        let category = self.category.as_deref().map(parse_category).transpose()?;
        if let Some(text) = &self.text {
            Report {
                created_at: 0,
                expires_at: 1,
                category: Category::Other,
                severity: Severity::Warning,
                text: text.clone(),
                behavior: None,
                location: Location::default(),
                clips: vec![],
                ask_seen: None,
            }
            .check()?;
        }
        if self.clip_path.is_some() && self.clip_url.is_some() {
            return Err(HubError::BadRequest(
                "give at most one of clip_path and clip_url".into(),
            ));
        }
        if let Some(url) = &self.clip_url
            && !url.starts_with("http://")
        {
            return Err(HubError::BadRequest(format!(
                "clip_url {url:?}: only http:// URLs on the home network are fetched"
            )));
        }
        Ok(Candidate {
            source: Source::Webhook,
            source_id: self
                .id
                .as_deref()
                .map(|i| frigate::name("id", i))
                .transpose()?,
            camera: frigate::name("camera", &self.camera)?,
            labels: frigate::labels(self.label.iter()),
            zones: frigate::zones(&self.zones),
            captured_at: self.captured_at.unwrap_or(now),
            clip: None,
            text: self.text.clone(),
            category,
        })
    }
}

/// Imports the webhook's clip, if it names one.
async fn webhook_clip(hub: &Hub, event: &HubEvent) -> Result<Option<clips::Imported>, HubError> {
    let dir = hub.data_dir().to_path_buf();
    let job: Box<dyn FnOnce() -> Result<clips::Imported, HubError> + Send> =
        match (&event.clip_path, &event.clip_url) {
            (Some(path), None) => {
                let path = path.clone();
                Box::new(move || Ok(clips::import(&dir, &path, |_, _| {})?))
            }
            (None, Some(url)) => {
                let url = url.clone();
                Box::new(move || frigate::fetch_clip(&dir, &url, frigate::Expect::Any))
            }
            _ => return Ok(None),
        };
    match tokio::task::spawn_blocking(job).await {
        Ok(result) => result.map(Some),
        Err(e) => Err(HubError::Storage {
            path: hub.data_dir().display().to_string(),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

/// The webhook's body judged as `POST /v1/hub/events` judges it before touching
/// anything (also for fuzzing).
pub fn webhook_candidate(body: &[u8], now: u64) -> Result<(HubEvent, Candidate), Box<Response>> {
    let event: HubEvent = serde_json::from_slice(body)
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, format!("bad JSON: {e}"))))?;
    let candidate = event
        .candidate(now)
        .map_err(|e| Box::new(error_response(e)))?;
    Ok((event, candidate))
}

async fn webhook(State(hub): State<Hub>, body: Bytes) -> Response {
    let (event, candidate) = match webhook_candidate(&body, crate::now()) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if hub.already_has(&candidate).await
        && let Some(id) = candidate.derived_id()
    {
        return axum::Json(json!({ "duplicate": id.to_hex() })).into_response();
    }
    let imported = match webhook_clip(&hub, &event).await {
        Ok(i) => i,
        Err(e) => return error_response(e),
    };
    let forget = |imported: &Option<clips::Imported>| {
        if let Some(i) = imported
            && i.new
        {
            let _ = std::fs::remove_file(clips::path(hub.data_dir(), &i.clip.sha256));
        }
    };
    let clip = imported
        .as_ref()
        .map(|i| i.clip)
        .ok_or_else(|| "the webhook named no clip (clip_path or clip_url)".to_owned());
    match hub.intake(candidate, clip).await {
        Ok(Intake::Drafted(draft)) => {
            (StatusCode::CREATED, axum::Json(draft.json())).into_response()
        }
        Ok(Intake::Posted { draft, report }) => (
            StatusCode::CREATED,
            axum::Json(json!({ "draft": draft.json(), "posted": report.to_hex() })),
        )
            .into_response(),
        Ok(Intake::Duplicate(id)) => {
            forget(&imported);
            axum::Json(json!({ "duplicate": id.to_hex() })).into_response()
        }
        Err(e) => {
            forget(&imported);
            error_response(e)
        }
    }
}
