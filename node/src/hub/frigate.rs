//! Frigate's MQTT payloads, parsed once at the edge into a [`Candidate`], and the clip
//! fetch from Frigate's HTTP API.
//!
//! The parsers are pure and never panic on any input: bytes in, `Ok(Some(candidate))`
//! for a message that should become a draft, `Ok(None)` for one that should not (a
//! `new` or `update` message, a `detection` review), an error for a malformed one. Only
//! the fields a report may carry are read: Frigate's `sub_labels`, `sub_label`,
//! `recognized_license_plate`, `attributes` and the like are never deserialized, and
//! labels derived from recognition (`face`, `license_plate`, `…-verified`) are dropped.
//!
//! Zone, label and audio names are Frigate's own free text (zones are YAML keys, audio
//! labels come from a model's label map, e.g. `dental_drill's_drill`): they are kept as
//! data, escaped and bounded, never a reason to drop a review.
//!
//! Shapes checked against Frigate's source, tags v0.14.1 to v0.18.0-beta1:
//! `frigate/review/maintainer.py` (`PendingReviewSegment.get_data`),
//! `frigate/object_processing.py` / `frigate/track/object_processing.py` (events),
//! `frigate/api/media.py` (clips) and `frigate/api/app.py` (`/api/version`).

use std::io::Read;
use std::time::Duration;

use porchlight_proto::report::{Category, MAX_CAMERA_BYTES};
use serde::Deserialize;

use super::drafts::{DraftId, Source};
use super::{FrigateApi, HubError};
use crate::clips::{self, ClipError, Imported};

/// Largest payload parsed; Frigate's are a few kilobytes.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Labels and zones kept per draft.
pub const MAX_LABELS: usize = 16;
/// Longest camera, label, zone or id name taken from a hub.
pub const MAX_NAME_BYTES: usize = 64;
/// Seconds of recording kept before a review's start and after its end in its clip
/// (Frigate's own default pre- and post-capture for alerts).
pub const CLIP_MARGIN_SECS: u64 = 5;
/// A clip download that takes longer than this is abandoned.
pub const CLIP_TIMEOUT: Duration = Duration::from_secs(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// `/api/version` answers at once; a Frigate that does not is asked again later.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an error answer is read to say why.
const MAX_ERROR_BODY: u64 = 1024;

/// Labels that come from recognizing a face or a plate: never copied into a draft.
const RECOGNITION_LABELS: [&str; 3] = ["face", "license_plate", "plate"];
/// Frigate's delivery attributes (`DEFAULT_ATTRIBUTE_LABEL_MAP` in `frigate/const.py`):
/// a carrier's logo on a person or a car. To a neighbor, each one means a delivery.
const DELIVERY_LABELS: [&str; 14] = [
    "amazon",
    "an_post",
    "canada_post",
    "dhl",
    "dpd",
    "fedex",
    "gls",
    "nzpost",
    "postnl",
    "postnord",
    "purolator",
    "royal_mail",
    "ups",
    "usps",
];
/// What a delivery attribute becomes in a draft.
pub const DELIVERY: &str = "delivery";

/// What Frigate's MQTT topics are called under its `mqtt.topic_prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// `<prefix>/reviews`: review items (Frigate 0.14 and later).
    pub reviews: String,
    /// `<prefix>/events`: tracked objects (drafts only from a Frigate before 0.14).
    pub events: String,
}

/// What a hub event may become: a draft (or, by an owner's rule, a report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub source: Source,
    /// The hub's own id, for deduplication; `None`: every call is new.
    pub source_id: Option<String>,
    pub camera: String,
    pub labels: Vec<String>,
    pub zones: Vec<String>,
    /// When the camera saw it (Unix seconds).
    pub captured_at: u64,
    /// Where Frigate serves this candidate's clip (`None`: not a Frigate candidate).
    pub clip: Option<ClipSource>,
    /// Suggested text (webhook); else one is made from labels and camera.
    pub text: Option<String>,
    /// Suggested category (webhook); else `other`.
    pub category: Option<Category>,
}

/// The footage a Frigate candidate's clip is cut from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClipSource {
    /// A review item: the whole of its span on its camera (Unix seconds, start rounded
    /// down, end up), whichever of its tracked objects (or sounds) made it an alert.
    Review {
        id: String,
        camera: String,
        start: u64,
        end: u64,
    },
    /// One tracked object (Frigate before 0.14, which has no reviews).
    Event { id: String },
}

impl Candidate {
    /// The draft id this candidate always gets, if it has a source id.
    pub fn derived_id(&self) -> Option<DraftId> {
        self.source_id
            .as_deref()
            .map(|id| DraftId::derived(self.source, id))
    }
}

#[derive(Deserialize)]
struct Message<T> {
    #[serde(rename = "type")]
    kind: String,
    after: T,
}

#[derive(Deserialize)]
struct Review {
    id: String,
    camera: String,
    start_time: f64,
    #[serde(default)]
    end_time: Option<f64>,
    severity: String,
    #[serde(default)]
    data: ReviewData,
}

/// `data` of a review item. `detections` (tracked object ids, in no particular order:
/// Frigate builds it with `list(set(…))`), `sub_labels`, `verified_objects` and
/// `metadata` are not read.
#[derive(Deserialize, Default)]
struct ReviewData {
    #[serde(default)]
    objects: Vec<String>,
    #[serde(default)]
    zones: Vec<String>,
    #[serde(default)]
    audio: Vec<String>,
}

#[derive(Deserialize)]
struct TrackedObject {
    id: String,
    camera: String,
    label: String,
    start_time: f64,
    #[serde(default)]
    has_clip: bool,
    #[serde(default)]
    false_positive: Option<bool>,
    #[serde(default)]
    entered_zones: Vec<String>,
}

fn bad(why: impl Into<String>) -> HubError {
    HubError::Payload(why.into())
}

fn json<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<Message<T>, HubError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(bad(format!(
            "{} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit",
            payload.len()
        )));
    }
    serde_json::from_slice(payload).map_err(|e| bad(e.to_string()))
}

/// A camera name: 1 to 64 bytes of letters, digits, space, `_`, `-`, `.`. Frigate's
/// own camera names are narrower (`^[a-zA-Z0-9_-]+$`, `REGEX_CAMERA_NAME`); the name
/// goes into clip URLs and into reports' clip references.
pub(crate) fn name(what: &str, s: &str) -> Result<String, HubError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_NAME_BYTES.min(MAX_CAMERA_BYTES)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(bad(format!(
            "{what} {:?} is not a name (1 to {MAX_NAME_BYTES} of A-Z a-z 0-9 _ - . space)",
            s.chars().take(80).collect::<String>()
        )))
    }
}

/// Characters that would drive a terminal, forge a log line, or reorder or hide text
/// (bidi controls, zero-width characters, the BOM): escaped in names kept as data.
fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// A zone, label or audio name kept as data: any UTF-8, surrounding spaces trimmed,
/// control and invisible characters escaped (`\u{1b}`), cut to [`MAX_NAME_BYTES`] on a
/// character boundary (ending in `…`). `None` if nothing is left.
pub fn data_name(raw: &str) -> Option<String> {
    let mut escaped = String::new();
    for c in raw.trim().chars() {
        if must_escape(c) {
            escaped.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            escaped.push(c);
        }
        if escaped.len() > MAX_NAME_BYTES {
            break;
        }
    }
    if escaped.len() > MAX_NAME_BYTES {
        let mut cut = MAX_NAME_BYTES - '…'.len_utf8();
        while !escaped.is_char_boundary(cut) {
            cut -= 1;
        }
        escaped.truncate(cut);
        escaped.push('…');
    }
    (!escaped.is_empty()).then_some(escaped)
}

/// An id that goes into a URL path: no `/`, no `..`, no space.
fn url_id(what: &str, s: &str) -> Result<String, HubError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_NAME_BYTES
        && !s.contains("..")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(bad(format!(
            "{what} {:?} is not an id",
            s.chars().take(80).collect::<String>()
        )))
    }
}

fn unix_time(what: &str, t: f64) -> Result<f64, HubError> {
    if (0.0..1.0e11).contains(&t) {
        Ok(t)
    } else {
        Err(bad(format!("{what} {t} is not a Unix time")))
    }
}

/// Labels that mean something to a neighbor: recognition-derived ones dropped,
/// `-verified` (a face or plate match) reduced to the object, a carrier's logo
/// (`amazon`, `ups` …) made `delivery`, every name kept as data ([`data_name`]),
/// duplicates removed, at most [`MAX_LABELS`].
pub fn labels<'a>(raw: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in raw {
        let l = l.trim();
        let l = l.strip_suffix("-verified").unwrap_or(l);
        if RECOGNITION_LABELS.contains(&l) {
            continue;
        }
        let l = if DELIVERY_LABELS.contains(&l) {
            DELIVERY
        } else {
            l
        };
        if let Some(l) = data_name(l)
            && !out.contains(&l)
            && out.len() < MAX_LABELS
        {
            out.push(l);
        }
    }
    out
}

/// Zone names as data ([`data_name`]), duplicates removed, at most [`MAX_LABELS`].
pub fn zones<'a>(raw: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for z in raw {
        if let Some(z) = data_name(z)
            && !out.contains(&z)
            && out.len() < MAX_LABELS
        {
            out.push(z);
        }
    }
    out
}

/// `<prefix>/reviews`: a draft when an `alert` review item ends (its clip is complete).
pub fn parse_review(payload: &[u8]) -> Result<Option<Candidate>, HubError> {
    let message: Message<Review> = json(payload)?;
    let review = message.after;
    if message.kind != "end" || review.severity != "alert" {
        return Ok(None);
    }
    let id = url_id("review id", &review.id)?;
    let camera = name("camera", &review.camera)?;
    let start = unix_time("start_time", review.start_time)?;
    // An ended review has an end time; if one ever comes without, the clip still
    // starts where the review did.
    let end = unix_time("end_time", review.end_time.unwrap_or(start))?.max(start);
    Ok(Some(Candidate {
        source: Source::FrigateReview,
        source_id: Some(id.clone()),
        labels: labels(review.data.objects.iter().chain(&review.data.audio)),
        zones: zones(&review.data.zones),
        // Truncation and rounding to whole seconds are the intent.
        captured_at: start as u64,
        clip: Some(ClipSource::Review {
            id,
            camera: camera.clone(),
            start: start.floor() as u64,
            end: end.ceil() as u64,
        }),
        camera,
        text: None,
        category: None,
    }))
}

/// `<prefix>/events`: a candidate when a tracked object with a clip ends. Only a
/// Frigate before 0.14 (no reviews, so no alerts) has its events drafted: the bridge
/// decides that by Frigate's version, not by this parser.
pub fn parse_event(payload: &[u8]) -> Result<Option<Candidate>, HubError> {
    let message: Message<TrackedObject> = json(payload)?;
    let event = message.after;
    if message.kind != "end" || !event.has_clip || event.false_positive == Some(true) {
        return Ok(None);
    }
    let id = url_id("event id", &event.id)?;
    Ok(Some(Candidate {
        source: Source::FrigateEvent,
        source_id: Some(id.clone()),
        camera: name("camera", &event.camera)?,
        labels: labels(std::iter::once(&event.label)),
        zones: zones(&event.entered_zones),
        captured_at: unix_time("start_time", event.start_time)? as u64,
        clip: Some(ClipSource::Event { id }),
        text: None,
        category: None,
    }))
}

/// Frigate's version, as `/api/version` says it (`0.16.4-1234abc`): what it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl Version {
    /// `MAJOR.MINOR` from the start of Frigate's version text; `None` for anything
    /// else (a development build's `dev-…`).
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.trim().trim_start_matches('v');
        let mut parts = text.splitn(3, ['.', '-', '+']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Version { major, minor })
    }

    /// Review items (`<prefix>/reviews`, alerts and detections): 0.14 and later.
    pub fn has_reviews(self) -> bool {
        self >= Version {
            major: 0,
            minor: 14,
        }
    }

    /// `/api/review/<id>/clip.mp4`: 0.18 and later.
    pub fn has_review_clip(self) -> bool {
        self >= Version {
            major: 0,
            minor: 18,
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT.min(timeout)))
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .build()
        .into()
}

/// Asks Frigate its version (`GET /api/version`, every version since 0.12).
/// Blocking: call it from `spawn_blocking`.
pub fn fetch_version(api: &FrigateApi) -> Result<Version, HubError> {
    let url = api.version_url();
    let fail = |status: Option<u16>, why: String| HubError::Fetch {
        url: url.clone(),
        status,
        why,
    };
    let response = agent(VERSION_TIMEOUT)
        .get(&url)
        .call()
        .map_err(|e| fail(None, e.to_string()))?;
    let status = response.status().as_u16();
    let mut text = String::new();
    response
        .into_body()
        .into_reader()
        .take(256)
        .read_to_string(&mut text)
        .map_err(|e| fail(Some(status), e.to_string()))?;
    if status != 200 {
        return Err(fail(Some(status), format!("HTTP {status}")));
    }
    Version::parse(&text).ok_or_else(|| {
        fail(
            Some(status),
            format!(
                "{:?} is not a version",
                data_name(&text).unwrap_or_default()
            ),
        )
    })
}

/// What a fetched clip must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// An MP4 (ISO base media file): what Frigate serves. Its first box is checked.
    Mp4,
    /// Any non-empty file (a doorbell's clip URL).
    Any,
}

/// Box types an MP4 (ISO/IEC 14496-12) or QuickTime file may start with.
const FIRST_BOXES: [&[u8; 4]; 7] = [
    b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide",
];

/// Why an answer's first bytes are not a clip, if they are not.
fn not_a_clip(head: &[u8], expect: Expect) -> Option<String> {
    if head.is_empty() {
        return Some("the answer is empty (no recordings for this time?)".into());
    }
    if expect == Expect::Mp4
        && !head
            .get(4..8)
            .is_some_and(|t| FIRST_BOXES.iter().any(|b| &b[..] == t))
    {
        let shown: String = String::from_utf8_lossy(&head[..head.len().min(16)])
            .chars()
            .map(|c| if must_escape(c) { '.' } else { c })
            .collect();
        return Some(format!(
            "the answer is not an MP4 video (it starts {shown:?})"
        ));
    }
    None
}

/// Why an HTTP error answer says it failed: Frigate's JSON `message` (or FastAPI's
/// `detail`), else the start of the text.
fn error_text(status: u16, body: &[u8]) -> String {
    let said = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("detail"))
                .and_then(|m| m.as_str().map(str::to_owned))
        })
        .or_else(|| {
            let text = String::from_utf8_lossy(body);
            data_name(&text)
        });
    match said {
        Some(said) => format!("HTTP {status}: {said}"),
        None => format!("HTTP {status}"),
    }
}

/// Downloads a clip over HTTP straight into the clip library (hashing on the way). An
/// error answer, an empty one, or (for [`Expect::Mp4`]) one that is not a video is an
/// error, and nothing is kept. Blocking: call it from `spawn_blocking`.
pub fn fetch_clip(
    data_dir: &std::path::Path,
    url: &str,
    expect: Expect,
) -> Result<Imported, HubError> {
    let fail = |status: Option<u16>, why: String| HubError::Fetch {
        url: url.to_owned(),
        status,
        why,
    };
    let response = agent(CLIP_TIMEOUT)
        .get(url)
        .call()
        .map_err(|e| fail(None, e.to_string()))?;
    let status = response.status().as_u16();
    if status != 200 {
        let mut body = Vec::new();
        let _ = response
            .into_body()
            .into_reader()
            .take(MAX_ERROR_BODY)
            .read_to_end(&mut body);
        return Err(fail(Some(status), error_text(status, &body)));
    }
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if let Some(len) = response.body().content_length()
        && len > clips::MAX_CLIP_BYTES
    {
        return Err(HubError::Clip(ClipError::TooLarge {
            path: url.to_owned(),
            size: len,
        }));
    }
    let mut reader = response.into_body().into_reader();
    if content_type.starts_with("application/json") || content_type.starts_with("text/") {
        let mut body = Vec::new();
        let _ = (&mut reader).take(MAX_ERROR_BODY).read_to_end(&mut body);
        let why = error_text(status, &body);
        return Err(fail(
            Some(status),
            format!("the answer is {content_type}, not a video ({why})"),
        ));
    }
    // The first bytes say whether this is a clip at all, before anything is written.
    let mut head = Vec::new();
    (&mut reader)
        .take(16)
        .read_to_end(&mut head)
        .map_err(|e| fail(Some(status), e.to_string()))?;
    if let Some(why) = not_a_clip(&head, expect) {
        return Err(fail(Some(status), why));
    }
    let whole = std::io::Cursor::new(head).chain(reader);
    Ok(clips::import_reader(data_dir, url, whole, |_, _| {})?)
}

async fn fetch_one(data_dir: &std::path::Path, url: String) -> Result<clips::Clip, HubError> {
    let dir = data_dir.to_path_buf();
    match tokio::task::spawn_blocking(move || fetch_clip(&dir, &url, Expect::Mp4)).await {
        Ok(result) => result.map(|imported| imported.clip),
        Err(e) => Err(HubError::Storage {
            path: data_dir.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

/// Asks Frigate its version, off the async threads.
pub async fn version(api: &FrigateApi) -> Result<Version, HubError> {
    let api = api.clone();
    match tokio::task::spawn_blocking(move || fetch_version(&api)).await {
        Ok(result) => result,
        Err(e) => Err(HubError::Fetch {
            url: String::new(),
            status: None,
            why: e.to_string(),
        }),
    }
}

/// Fetches a Frigate candidate's clip into the library. A review's clip is its whole
/// span with [`CLIP_MARGIN_SECS`] either side: `/api/review/<id>/clip.mp4` from a
/// Frigate that has it (0.18; also tried when the version is unknown), else, or when
/// that answers 404, `/api/<camera>/start/<start>/end/<end>/clip.mp4` (every version).
/// An event's clip is `/api/events/<id>/clip.mp4`. The error says why there is none.
pub async fn fetch_candidate_clip(
    data_dir: &std::path::Path,
    api: &FrigateApi,
    source: &ClipSource,
    version: Option<Version>,
) -> Result<clips::Clip, String> {
    match source {
        ClipSource::Event { id } => fetch_one(data_dir, api.event_clip_url(id))
            .await
            .map_err(|e| e.to_string()),
        ClipSource::Review {
            id,
            camera,
            start,
            end,
        } => {
            let mut errors = Vec::new();
            if version.is_none_or(Version::has_review_clip) {
                match fetch_one(data_dir, api.review_clip_url(id, CLIP_MARGIN_SECS)).await {
                    Ok(clip) => return Ok(clip),
                    // Not a route of this Frigate, or the review is not in its database
                    // yet: the span itself is always there.
                    Err(HubError::Fetch {
                        status: Some(404), ..
                    }) => {}
                    Err(e) => errors.push(e.to_string()),
                }
            }
            if errors.is_empty() {
                let from = start.saturating_sub(CLIP_MARGIN_SECS);
                let to = end.saturating_add(CLIP_MARGIN_SECS);
                match fetch_one(data_dir, api.range_clip_url(camera, from, to)).await {
                    Ok(clip) => return Ok(clip),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            Err(errors.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The shape of `frigate/reviews` from Frigate 0.14's `PendingReviewSegment.get_data`
    /// (`frigate/review/maintainer.py`): an attribute (`face`) and a recognized person
    /// (`person-verified`, with a name in `sub_labels`) in `objects`.
    pub(crate) fn review(kind: &str, severity: &str) -> String {
        format!(
            r#"{{
  "type": "{kind}",
  "before": {{
    "id": "1718987129.308396-fqk5ka", "camera": "front_cam",
    "start_time": 1718987129.308396, "end_time": null, "severity": "detection",
    "thumb_path": "/media/frigate/clips/review/thumb-front_cam-1718987129.308396-fqk5ka.webp",
    "data": {{ "detections": ["1718987128.947436-g92ztx"], "objects": ["person"],
              "sub_labels": [], "zones": [], "audio": [] }}
  }},
  "after": {{
    "id": "1718987129.308396-fqk5ka", "camera": "front_cam",
    "start_time": 1718987129.308396, "end_time": 1718987159.1, "severity": "{severity}",
    "thumb_path": "/media/frigate/clips/review/thumb-front_cam-1718987129.308396-fqk5ka.webp",
    "data": {{
      "detections": ["1718987128.947436-g92ztx", "1718987148.879516-d7oq7r", "1718987126.934663-q5ywpt"],
      "objects": ["person", "car", "face", "person-verified", "license_plate"],
      "sub_labels": ["Bob"],
      "recognized_license_plate": "ABC123",
      "zones": ["front_yard"],
      "audio": []
    }}
  }}
}}"#
        )
    }

    #[test]
    fn an_ended_alert_review_becomes_a_candidate_without_names_or_plates() {
        let c = parse_review(review("end", "alert").as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(c.source, Source::FrigateReview);
        assert_eq!(c.source_id.as_deref(), Some("1718987129.308396-fqk5ka"));
        assert_eq!(c.camera, "front_cam");
        assert_eq!(c.labels, vec!["person", "car"]);
        assert_eq!(c.zones, vec!["front_yard"]);
        assert_eq!(c.captured_at, 1_718_987_129);
        assert_eq!(
            c.clip,
            Some(ClipSource::Review {
                id: "1718987129.308396-fqk5ka".into(),
                camera: "front_cam".into(),
                start: 1_718_987_129,
                end: 1_718_987_160,
            }),
            "the clip spans the review, not one of its detections"
        );
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("Bob") && !debug.contains("ABC123"),
            "{debug}"
        );
    }

    #[test]
    fn only_ended_alerts_become_candidates() {
        for (kind, severity) in [("new", "alert"), ("update", "alert"), ("end", "detection")] {
            assert_eq!(
                parse_review(review(kind, severity).as_bytes()).unwrap(),
                None,
                "{kind} {severity}"
            );
        }
    }

    #[test]
    fn any_utf8_zone_label_or_sound_is_kept_as_data_never_a_dropped_review() {
        let payload = serde_json::json!({
            "type": "end",
            "after": {
                "id": "1718987129.308396-fqk5ka", "camera": "einfahrt",
                "start_time": 1718987129.3, "end_time": 1718987150.0, "severity": "alert",
                "data": {
                    "detections": ["not/an id"],
                    "objects": ["person-verified", "amazon", "ups", "face", "license_plate"],
                    "zones": ["Einfahrt_Tür", "bad\u{1b}[31mzone", "x".repeat(200), "  ", "\u{202e}evil"],
                    "audio": ["dental_drill's_drill", "speech"]
                }
            }
        })
        .to_string();
        let c = parse_review(payload.as_bytes()).unwrap().unwrap();
        assert_eq!(
            c.labels,
            vec!["person", DELIVERY, "dental_drill's_drill", "speech"],
            "attributes: a carrier is a delivery, a face or plate is nothing"
        );
        assert_eq!(c.zones[0], "Einfahrt_Tür");
        assert_eq!(
            c.zones[1], "bad\\u{1b}[31mzone",
            "control characters escaped"
        );
        assert!(c.zones[2].len() <= MAX_NAME_BYTES && c.zones[2].ends_with('…'));
        assert_eq!(c.zones[3], "\\u{202e}evil", "bidi overrides escaped");
        assert_eq!(c.zones.len(), 4, "an empty name is skipped");
        for z in &c.zones {
            assert!(!z.chars().any(must_escape), "{z:?}");
        }
    }

    #[test]
    fn an_audio_only_alert_has_a_clip_source_though_it_has_no_detections() {
        let payload = br#"{"type":"end","after":{"id":"1718990000.1-abcdef","camera":"porch",
            "start_time":1718990000.1,"end_time":1718990012.7,"severity":"alert",
            "data":{"detections":[],"objects":[],"sub_labels":[],"zones":[],"audio":["scream"]}}}"#;
        let c = parse_review(payload).unwrap().unwrap();
        assert_eq!(c.labels, vec!["scream"]);
        assert!(
            matches!(
                c.clip,
                Some(ClipSource::Review {
                    start: 1_718_990_000,
                    end: 1_718_990_013,
                    ..
                })
            ),
            "{:?}",
            c.clip
        );
    }

    #[test]
    fn malformed_reviews_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"null",
            b"{}",
            b"not json",
            br#"{"type":"end","after":{"id":"../../api/config","camera":"c","start_time":1,"severity":"alert"}}"#,
            br#"{"type":"end","after":{"id":"x","camera":"c/d","start_time":1,"severity":"alert"}}"#,
            br#"{"type":"end","after":{"id":"x","camera":"c","start_time":-1,"severity":"alert"}}"#,
            br#"{"type":"end","after":{"id":"x","camera":"c","start_time":1e300,"severity":"alert"}}"#,
            br#"{"type":"end","after":{"id":"x","camera":"c","start_time":1,"end_time":1e300,"severity":"alert"}}"#,
        ] {
            assert!(
                parse_review(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let huge = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        assert!(parse_review(&huge).is_err());
    }

    #[test]
    fn an_ended_event_with_a_clip_becomes_a_candidate() {
        let event = r#"{"type":"end","before":{},"after":{"id":"1607123955.475377-mxklsc",
            "camera":"front_door","label":"person","sub_label":["John Smith",0.79],
            "start_time":1607123955.475377,"end_time":1607123961.9,"has_clip":true,
            "false_positive":false,"entered_zones":["yard","Hof_Süd"],
            "attributes":{"face":0.86}}}"#;
        let c = parse_event(event.as_bytes()).unwrap().unwrap();
        assert_eq!(c.source, Source::FrigateEvent);
        assert_eq!(c.labels, vec!["person"]);
        assert_eq!(c.zones, vec!["yard", "Hof_Süd"]);
        assert_eq!(
            c.clip,
            Some(ClipSource::Event {
                id: "1607123955.475377-mxklsc".into()
            })
        );
        assert!(!format!("{c:?}").contains("John"));
        let no_clip = event.replace("\"has_clip\":true", "\"has_clip\":false");
        assert_eq!(parse_event(no_clip.as_bytes()).unwrap(), None);
        let update = event.replace("\"type\":\"end\"", "\"type\":\"update\"");
        assert_eq!(parse_event(update.as_bytes()).unwrap(), None);
    }

    #[test]
    fn frigate_versions_are_read_from_api_version() {
        let v = |s| Version::parse(s);
        assert_eq!(
            v("0.14.1-f4f3cfa"),
            Some(Version {
                major: 0,
                minor: 14
            })
        );
        assert_eq!(
            v("0.18.0-beta1-0e1f2a3\n"),
            Some(Version {
                major: 0,
                minor: 18
            })
        );
        assert_eq!(
            v("0.13.2-6476f8a"),
            Some(Version {
                major: 0,
                minor: 13
            })
        );
        assert_eq!(v("1.0"), Some(Version { major: 1, minor: 0 }));
        assert_eq!(v("dev-abc"), None);
        assert_eq!(v(""), None);
        assert!(!v("0.13.2").unwrap().has_reviews());
        assert!(v("0.14.0").unwrap().has_reviews());
        assert!(!v("0.17.2").unwrap().has_review_clip());
        assert!(v("0.18.0").unwrap().has_review_clip());
        assert!(v("1.2").unwrap().has_review_clip());
    }

    #[test]
    fn empty_and_non_video_answers_are_not_clips() {
        assert!(not_a_clip(b"", Expect::Any).is_some());
        assert!(not_a_clip(b"", Expect::Mp4).is_some());
        assert!(not_a_clip(b"{\"success\": false}", Expect::Mp4).is_some());
        assert!(not_a_clip(b"<html><body>", Expect::Mp4).is_some());
        assert!(not_a_clip(b"\x00\x00\x00\x1cftypisom\x00\x00\x02\x00", Expect::Mp4).is_none());
        assert!(not_a_clip(b"<html><body>", Expect::Any).is_none());
        assert_eq!(
            error_text(400, br#"{"success":false,"message":"No recordings found for the specified time range"}"#),
            "HTTP 400: No recordings found for the specified time range"
        );
        assert_eq!(
            error_text(404, br#"{"detail":"Not Found"}"#),
            "HTTP 404: Not Found"
        );
        assert_eq!(error_text(502, b""), "HTTP 502");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let _ = parse_review(&bytes);
            let _ = parse_event(&bytes);
            let _ = Version::parse(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn mutated_reviews_never_panic(cut in 0usize..1500, byte in proptest::prelude::any::<u8>()) {
            let mut bytes = review("end", "alert").into_bytes();
            if let Some(b) = bytes.get_mut(cut) {
                *b = byte;
            }
            let _ = parse_review(&bytes);
            bytes.truncate(cut);
            let _ = parse_review(&bytes);
        }

        #[test]
        fn data_names_are_bounded_and_clean(s in "\\PC*|[\\x00-\\x1f\\u{202a}-\\u{202e}a-zé]{0,200}") {
            if let Some(n) = data_name(&s) {
                proptest::prop_assert!(n.len() <= MAX_NAME_BYTES);
                proptest::prop_assert!(!n.chars().any(must_escape));
                proptest::prop_assert!(!n.is_empty());
            }
        }
    }
}
