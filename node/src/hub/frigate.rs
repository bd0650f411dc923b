//! Frigate's MQTT payloads, parsed once at the edge into a [`Candidate`], and the clip
//! fetch from Frigate's HTTP API.
//!
//! The parsers are pure and never panic on any input: bytes in, `Ok(Some(candidate))`
//! for a message that should become a draft, `Ok(None)` for one that should not (a
//! `new` or `update` message, a `detection` review), an error for a malformed one. Only
//! the fields a report may carry are read: Frigate's `sub_labels`, `sub_label`,
//! `recognized_license_plate`, `attributes` and the like are never deserialized, and
//! labels derived from recognition (`face`, `license_plate`, `…-verified`) are dropped.

use std::time::Duration;

use porchlight_proto::report::{Category, MAX_CAMERA_BYTES};
use serde::Deserialize;

use super::drafts::{DraftId, Source};
use super::{FrigateApi, HubError};
use crate::clips::{self, ClipError, Imported};

/// The topic of Frigate review items (Frigate 0.14 and later).
pub const REVIEWS_TOPIC: &str = "frigate/reviews";
/// The topic of Frigate tracked objects (used only when no review has been seen).
pub const EVENTS_TOPIC: &str = "frigate/events";
/// Largest payload parsed; Frigate's are a few kilobytes.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Labels and zones kept per draft.
pub const MAX_LABELS: usize = 16;
/// Event ids of a review whose clips are tried, in order.
pub const MAX_CLIP_TRIES: usize = 3;
/// Longest camera, label, zone or id name taken from a hub.
pub const MAX_NAME_BYTES: usize = 64;
/// A clip download that takes longer than this is abandoned.
pub const CLIP_TIMEOUT: Duration = Duration::from_secs(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Labels that come from recognizing a face or a plate: never copied into a draft.
const RECOGNITION_LABELS: [&str; 3] = ["face", "license_plate", "plate"];

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
    /// Frigate event ids whose clip may be fetched, in order of preference.
    pub clip_events: Vec<String>,
    /// Suggested text (webhook); else one is made from labels and camera.
    pub text: Option<String>,
    /// Suggested category (webhook); else `other`.
    pub category: Option<Category>,
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
    severity: String,
    #[serde(default)]
    data: ReviewData,
}

#[derive(Deserialize, Default)]
struct ReviewData {
    #[serde(default)]
    detections: Vec<String>,
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

/// A name from the hub (camera, label, zone): 1 to 64 bytes of letters, digits, space,
/// `_`, `-`, `.` — what Frigate allows in its config, and safe in a report.
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

fn unix_secs(what: &str, t: f64) -> Result<u64, HubError> {
    if (0.0..1.0e11).contains(&t) {
        // Truncation to whole seconds is the intent.
        Ok(t as u64)
    } else {
        Err(bad(format!("{what} {t} is not a Unix time")))
    }
}

/// Labels safe to carry: recognition-derived ones dropped, `-verified` (a face or plate
/// match) reduced to the object, duplicates removed, at most [`MAX_LABELS`].
pub(crate) fn labels<'a>(
    what: &str,
    raw: impl IntoIterator<Item = &'a String>,
) -> Result<Vec<String>, HubError> {
    let mut out: Vec<String> = Vec::new();
    for l in raw {
        let l = l.strip_suffix("-verified").unwrap_or(l);
        if RECOGNITION_LABELS.contains(&l) {
            continue;
        }
        let l = name(what, l)?;
        if !out.contains(&l) && out.len() < MAX_LABELS {
            out.push(l);
        }
    }
    Ok(out)
}

/// `frigate/reviews`: a draft when an `alert` review item ends (its clip is complete).
pub fn parse_review(payload: &[u8]) -> Result<Option<Candidate>, HubError> {
    let message: Message<Review> = json(payload)?;
    let review = message.after;
    if message.kind != "end" || review.severity != "alert" {
        return Ok(None);
    }
    let detections = review
        .data
        .detections
        .iter()
        .take(MAX_CLIP_TRIES)
        .map(|d| url_id("detection id", d))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Candidate {
        source: Source::FrigateReview,
        source_id: Some(url_id("review id", &review.id)?),
        camera: name("camera", &review.camera)?,
        labels: labels(
            "object",
            review.data.objects.iter().chain(&review.data.audio),
        )?,
        zones: labels("zone", &review.data.zones)?,
        captured_at: unix_secs("start_time", review.start_time)?,
        clip_events: detections,
        text: None,
        category: None,
    }))
}

/// `frigate/events`: a draft when a tracked object with a clip ends (for Frigate
/// versions before review items).
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
        labels: labels("label", std::iter::once(&event.label))?,
        zones: labels("zone", &event.entered_zones)?,
        captured_at: unix_secs("start_time", event.start_time)?,
        clip_events: vec![id],
        text: None,
        category: None,
    }))
}

/// Downloads a clip over HTTP straight into the clip library (hashing on the way).
/// Blocking: call it from `spawn_blocking`.
pub fn fetch_clip(data_dir: &std::path::Path, url: &str) -> Result<Imported, HubError> {
    let fail = |why: String| HubError::Fetch {
        url: url.to_owned(),
        why,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(CLIP_TIMEOUT))
        .max_redirects(0)
        .build()
        .into();
    let response = agent.get(url).call().map_err(|e| fail(e.to_string()))?;
    let status = response.status();
    if status != 200 {
        return Err(fail(format!("HTTP {status}")));
    }
    if let Some(len) = response.body().content_length()
        && len > clips::MAX_CLIP_BYTES
    {
        return Err(HubError::Clip(ClipError::TooLarge {
            path: url.to_owned(),
            size: len,
        }));
    }
    let reader = response.into_body().into_reader();
    Ok(clips::import_reader(data_dir, url, reader, |_, _| {})?)
}

/// Fetches the clip of the first of a candidate's Frigate events that has one.
pub async fn fetch_review_clip(
    data_dir: &std::path::Path,
    frigate: &FrigateApi,
    candidate: &Candidate,
) -> Result<Option<clips::Clip>, String> {
    let mut errors = Vec::new();
    for event in &candidate.clip_events {
        let url = frigate.clip_url(event);
        let dir = data_dir.to_path_buf();
        let fetched = tokio::task::spawn_blocking(move || fetch_clip(&dir, &url)).await;
        match fetched {
            Ok(Ok(imported)) => return Ok(Some(imported.clip)),
            Ok(Err(e)) => errors.push(e.to_string()),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(None)
    } else {
        Err(errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The shape Frigate documents for `frigate/reviews` (docs/integrations/mqtt.md).
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
        assert_eq!(c.clip_events[0], "1718987128.947436-g92ztx");
        assert_eq!(c.clip_events.len(), MAX_CLIP_TRIES);
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
            br#"{"type":"end","after":{"id":"x","camera":"c","start_time":1,"severity":"alert","data":{"detections":["a/b"]}}}"#,
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
            "false_positive":false,"entered_zones":["yard","driveway"],
            "attributes":{"face":0.86}}}"#;
        let c = parse_event(event.as_bytes()).unwrap().unwrap();
        assert_eq!(c.source, Source::FrigateEvent);
        assert_eq!(c.labels, vec!["person"]);
        assert_eq!(c.zones, vec!["yard", "driveway"]);
        assert_eq!(c.clip_events, vec!["1607123955.475377-mxklsc"]);
        assert!(!format!("{c:?}").contains("John"));
        let no_clip = event.replace("\"has_clip\":true", "\"has_clip\":false");
        assert_eq!(parse_event(no_clip.as_bytes()).unwrap(), None);
        let update = event.replace("\"type\":\"end\"", "\"type\":\"update\"");
        assert_eq!(parse_event(update.as_bytes()).unwrap(), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let _ = parse_review(&bytes);
            let _ = parse_event(&bytes);
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
    }
}
