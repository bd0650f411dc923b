//! What the owner sets for the hub (`porchlight.toml`, or `--mqtt` and `--frigate`):
//! the broker, Frigate's API, and auto-post rules (none by default).

use serde::{Deserialize, Serialize};

use super::drafts::{Draft, DraftId, Source};
use super::{Approval, HubError};

/// The MQTT port when the URL names none.
pub const DEFAULT_MQTT_PORT: u16 = 1883;

/// The hub settings a node runs with.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The MQTT broker; `None`: no bridge.
    pub mqtt: Option<Broker>,
    /// Frigate's HTTP API, for clips; `None`: drafts from Frigate carry no clip.
    pub frigate: Option<FrigateApi>,
    /// Frigate's `mqtt.topic_prefix`.
    pub frigate_topic_prefix: TopicPrefix,
    /// Rules that post a matching draft at once. Empty by default.
    pub auto_post: Vec<AutoPost>,
    /// Most bytes of clips in the library that no live report references (drafts'
    /// clips, leftovers); past it the oldest go. `None`: `DEFAULT_UNPOSTED_CLIP_QUOTA`.
    pub unposted_clip_quota: Option<u64>,
}

impl Settings {
    /// Settings from the file's `mqtt`, `frigate`, `frigate_topic_prefix` and
    /// `[[auto_post]]` entries.
    pub fn from_file(
        mqtt: Option<&str>,
        frigate: Option<&str>,
        frigate_topic_prefix: Option<&str>,
        rules: &[AutoPostRule],
    ) -> Result<Settings, HubError> {
        Ok(Settings {
            mqtt: mqtt.map(Broker::parse).transpose()?,
            frigate: frigate.map(FrigateApi::parse).transpose()?,
            frigate_topic_prefix: frigate_topic_prefix
                .map(TopicPrefix::parse)
                .transpose()?
                .unwrap_or_default(),
            auto_post: rules
                .iter()
                .enumerate()
                .map(|(i, r)| AutoPost::from_rule(i + 1, r))
                .collect::<Result<_, _>>()?,
            unposted_clip_quota: None,
        })
    }
}

/// An MQTT broker on the home network: `mqtt://[user[:password]@]host[:port]`.
/// Plain TCP only: a home broker on the LAN; the build carries no TLS.
#[derive(Clone, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password: settings end up in logs.
        f.debug_struct("Broker")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "mqtt://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "mqtt://{}:{}", self.host, self.port)
        }
    }
}

fn url_error(what: &'static str, url: &str, why: impl Into<String>) -> HubError {
    // A URL may carry a password: show only what is before the `@`'s host part.
    let shown = match url.rsplit_once('@') {
        Some((before, host)) => {
            let scheme = before.split_once("://").map_or("", |(s, _)| s);
            format!("{scheme}://…@{host}")
        }
        None => url.to_owned(),
    };
    HubError::Url {
        what,
        url: shown,
        why: why.into(),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = (bytes.next()? as char).to_digit(16)?;
            let lo = (bytes.next()? as char).to_digit(16)?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// `host[:port]` or `[v6]:port`.
fn host_port(what: &'static str, url: &str, s: &str) -> Result<(String, Option<u16>), HubError> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| url_error(what, url, "unclosed [ in the host"))?;
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err(url_error(what, url, "junk after the host")),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err(url_error(what, url, "no valid host name"));
    }
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| url_error(what, url, format!("port {p:?} is not 1 to 65535")))?,
        ),
    };
    Ok((host.to_owned(), port))
}

impl Broker {
    pub fn parse(url: &str) -> Result<Broker, HubError> {
        const WHAT: &str = "MQTT broker";
        let url = url.trim();
        let rest = if let Some(r) = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
        {
            r
        } else if url.starts_with("mqtts://") || url.starts_with("ssl://") {
            return Err(url_error(
                WHAT,
                url,
                "TLS is not supported: use a broker on the home network with mqtt://",
            ));
        } else {
            return Err(url_error(
                WHAT,
                url,
                "write it as mqtt://[user[:password]@]host[:port]",
            ));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(url_error(WHAT, url, "a broker URL has no path or query"));
        }
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pass) = match u.split_once(':') {
                    Some((user, pass)) => (user, Some(pass)),
                    None => (u, None),
                };
                let decode = |s: &str| {
                    percent_decode(s)
                        .ok_or_else(|| url_error(WHAT, url, "bad %-escape in the user or password"))
                };
                (Some(decode(user)?), pass.map(decode).transpose()?)
            }
        };
        let (host, port) = host_port(WHAT, url, hostport)?;
        Ok(Broker {
            host,
            port: port.unwrap_or(DEFAULT_MQTT_PORT),
            username,
            password,
        })
    }
}

/// Frigate's HTTP API, e.g. `http://frigate.local:5000` (its unauthenticated port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrigateApi {
    base: String,
}

impl FrigateApi {
    pub fn parse(url: &str) -> Result<FrigateApi, HubError> {
        const WHAT: &str = "Frigate URL";
        let url = url.trim();
        let Some(rest) = url.strip_prefix("http://") else {
            let why = if url.starts_with("https://") {
                "https is not supported: use Frigate's http port on the home network (5000)"
            } else {
                "write it as http://host[:port]"
            };
            return Err(url_error(WHAT, url, why));
        };
        let rest = rest.trim_end_matches('/');
        let (hostport, path) = match rest.split_once('/') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        if hostport.contains('@') || rest.contains(['?', '#', ' ']) {
            return Err(url_error(WHAT, url, "no user, query or spaces"));
        }
        let (host, port) = host_port(WHAT, url, hostport)?;
        let mut base = if host.contains(':') {
            format!("http://[{host}]")
        } else {
            format!("http://{host}")
        };
        if let Some(port) = port {
            base.push_str(&format!(":{port}"));
        }
        if let Some(path) = path {
            base.push('/');
            base.push_str(path);
        }
        Ok(FrigateApi { base })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /api/version`: Frigate's version as plain text (`0.16.4-1234abc`).
    pub fn version_url(&self) -> String {
        format!("{}/api/version", self.base)
    }

    /// Where Frigate serves the clip of one tracked object (event). `event` is an id
    /// checked by the parser (no `/`, no `..`).
    pub fn event_clip_url(&self, event: &str) -> String {
        format!("{}/api/events/{event}/clip.mp4", self.base)
    }

    /// Frigate 0.18's clip of a whole review item, `padding` seconds either side.
    /// `review` is an id checked by the parser.
    pub fn review_clip_url(&self, review: &str, padding: u64) -> String {
        format!(
            "{}/api/review/{review}/clip.mp4?padding={padding}",
            self.base
        )
    }

    /// The recordings of `camera` from `start` to `end` (Unix seconds), cut into one
    /// clip: every Frigate version serves this. `camera` is a checked name.
    pub fn range_clip_url(&self, camera: &str, start: u64, end: u64) -> String {
        format!(
            "{}/api/{}/start/{start}/end/{end}/clip.mp4",
            self.base,
            path_segment(camera)
        )
    }
}

/// `s` as one URL path segment: every byte but RFC 3986's unreserved characters
/// percent-encoded, so a name from an MQTT message (which anyone on the home broker can
/// publish) cannot add `/` or `..` segments to a Frigate URL.
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Frigate's `mqtt.topic_prefix` (default `frigate`): Frigate publishes its review
/// items to `<prefix>/reviews` and its tracked objects to `<prefix>/events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPrefix(String);

/// Frigate's default `mqtt.topic_prefix`.
pub const DEFAULT_FRIGATE_TOPIC_PREFIX: &str = "frigate";
/// Longest topic prefix accepted (MQTT allows 65535 bytes; Frigate's are short).
pub const MAX_TOPIC_PREFIX_BYTES: usize = 200;

impl Default for TopicPrefix {
    fn default() -> TopicPrefix {
        TopicPrefix(DEFAULT_FRIGATE_TOPIC_PREFIX.to_owned())
    }
}

impl TopicPrefix {
    /// A prefix Frigate could publish under: 1 to 200 bytes of UTF-8, no MQTT wildcard
    /// (`+`, `#`), no control character, not starting or ending with `/`.
    pub fn parse(prefix: &str) -> Result<TopicPrefix, HubError> {
        let why = if prefix.is_empty() || prefix.len() > MAX_TOPIC_PREFIX_BYTES {
            Some(format!("1 to {MAX_TOPIC_PREFIX_BYTES} bytes"))
        } else if prefix.contains(['+', '#']) {
            Some("MQTT wildcards (+ and #) are not part of a topic".to_owned())
        } else if prefix.chars().any(char::is_control) {
            Some("no control characters".to_owned())
        } else if prefix.starts_with('/') || prefix.ends_with('/') {
            Some("no / at its start or end (Frigate adds /reviews)".to_owned())
        } else {
            None
        };
        match why {
            Some(why) => Err(HubError::Url {
                what: "frigate_topic_prefix",
                url: prefix.chars().take(80).collect(),
                why,
            }),
            None => Ok(TopicPrefix(prefix.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The topics Frigate publishes under this prefix.
    pub fn topics(&self) -> super::frigate::Topics {
        super::frigate::Topics {
            reviews: format!("{}/reviews", self.0),
            events: format!("{}/events", self.0),
        }
    }
}

/// One `[[auto_post]]` table in `porchlight.toml`: which drafts (all the given matchers
/// must match) and what report to post for them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoPostRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<String>,
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
}

/// A checked auto-post rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoPost {
    pub camera: Option<String>,
    pub zone: Option<String>,
    pub label: Option<String>,
    pub approval: Approval,
}

impl AutoPost {
    fn from_rule(index: usize, r: &AutoPostRule) -> Result<AutoPost, HubError> {
        let rule_err = |why: String| HubError::Rule { index, why };
        if r.camera.is_none() && r.zone.is_none() && r.label.is_none() {
            return Err(rule_err(
                "give at least one of camera, zone or label (a rule for everything would \
                 post every event without a person looking)"
                    .into(),
            ));
        }
        let rule = AutoPost {
            camera: r.camera.clone(),
            zone: r.zone.clone(),
            label: r.label.clone(),
            approval: Approval {
                text: r.text.clone(),
                category: r.category.clone(),
                behavior: r.behavior.clone(),
                place: r.place.clone(),
                geohash: None,
                severity: r.severity.clone(),
                expires_in_secs: None,
                share: None,
            },
        };
        // Judge the report it would make now, not at 3 a.m. when a camera fires.
        let probe = Draft {
            id: DraftId([0; 8]),
            source: Source::Webhook,
            source_id: None,
            camera: r.camera.clone().unwrap_or_else(|| "camera".into()),
            labels: vec![],
            zones: vec![],
            captured_at: 0,
            created_at: 0,
            expires_at: 1,
            clip: None,
            clip_error: None,
            text: "probe".into(),
            category: porchlight_proto::report::Category::Other,
        };
        rule.approval
            .report(&probe, 0, crate::node::DEFAULT_TTL_SECS)
            .map_err(|e| rule_err(e.to_string()))?;
        Ok(rule)
    }

    /// True if every matcher the rule gives matches the draft.
    pub fn matches(&self, draft: &Draft) -> bool {
        self.camera.as_ref().is_none_or(|c| *c == draft.camera)
            && self.zone.as_ref().is_none_or(|z| draft.zones.contains(z))
            && self.label.as_ref().is_none_or(|l| draft.labels.contains(l))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_camera_name_is_one_url_path_segment() {
        assert_eq!(path_segment("front_door-2"), "front_door-2");
        assert_eq!(path_segment("Einfahrt Tür"), "Einfahrt%20T%C3%BCr");
        assert_eq!(path_segment("../../config"), "%2E%2E%2F%2E%2E%2Fconfig");
    }

    #[test]
    fn broker_urls() {
        let b = Broker::parse("mqtt://homeassistant.local").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("homeassistant.local", 1883));
        let b = Broker::parse("mqtt://porch:p%40ss@10.0.0.2:1884/").unwrap();
        assert_eq!(b.username.as_deref(), Some("porch"));
        assert_eq!(b.password.as_deref(), Some("p@ss"));
        assert_eq!(b.port, 1884);
        assert!(!format!("{b:?}").contains("p@ss"));
        assert_eq!(b.to_string(), "mqtt://10.0.0.2:1884");
        let b = Broker::parse("tcp://[::1]:1883").unwrap();
        assert_eq!(b.host, "::1");
        for bad in [
            "mqtts://x",
            "x:1883",
            "mqtt://",
            "mqtt://h:0",
            "mqtt://h:99999",
            "mqtt://h/topic",
            "mqtt://h o",
        ] {
            assert!(Broker::parse(bad).is_err(), "{bad}");
        }
        let err = Broker::parse("mqtts://u:secret@h").unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn frigate_urls() {
        let f = FrigateApi::parse("http://frigate.local:5000/").unwrap();
        assert_eq!(
            f.event_clip_url("1718987128.947436-g92ztx"),
            "http://frigate.local:5000/api/events/1718987128.947436-g92ztx/clip.mp4"
        );
        assert_eq!(
            f.review_clip_url("1718987129.308396-fqk5ka", 5),
            "http://frigate.local:5000/api/review/1718987129.308396-fqk5ka/clip.mp4?padding=5"
        );
        assert_eq!(
            f.range_clip_url("front_cam", 1718987124, 1718987165),
            "http://frigate.local:5000/api/front_cam/start/1718987124/end/1718987165/clip.mp4"
        );
        assert_eq!(f.version_url(), "http://frigate.local:5000/api/version");
        let f = FrigateApi::parse("http://nvr/frigate").unwrap();
        assert_eq!(f.base(), "http://nvr/frigate");
        for bad in [
            "https://nvr",
            "nvr:5000",
            "http://",
            "http://u@nvr",
            "http://nvr?x",
        ] {
            assert!(FrigateApi::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topic_prefixes() {
        assert_eq!(TopicPrefix::default().topics().reviews, "frigate/reviews");
        let p = TopicPrefix::parse("home/frigate-2").unwrap();
        assert_eq!(p.topics().events, "home/frigate-2/events");
        assert_eq!(
            TopicPrefix::parse("Frigate_Hof_Tür").unwrap().as_str(),
            "Frigate_Hof_Tür"
        );
        let long = "x".repeat(201);
        for bad in [
            "",
            "frigate/#",
            "a+b",
            "/frigate",
            "frigate/",
            "a\u{0}b",
            long.as_str(),
        ] {
            assert!(TopicPrefix::parse(bad).is_err(), "{bad:?}");
        }
        let s = Settings::from_file(None, None, Some("nvr2"), &[]).unwrap();
        assert_eq!(s.frigate_topic_prefix.topics().reviews, "nvr2/reviews");
        assert!(Settings::from_file(None, None, Some("a/#"), &[]).is_err());
    }

    #[test]
    fn rules_are_judged_when_loaded() {
        let ok = AutoPostRule {
            camera: Some("driveway".into()),
            category: Some("vehicle".into()),
            ..Default::default()
        };
        assert!(Settings::from_file(None, None, None, std::slice::from_ref(&ok)).is_ok());
        let everything = AutoPostRule {
            category: Some("other".into()),
            ..Default::default()
        };
        let suspicious = AutoPostRule {
            label: Some("person".into()),
            category: Some("suspicious-activity".into()),
            ..Default::default()
        };
        let unknown = AutoPostRule {
            label: Some("person".into()),
            category: Some("burglar".into()),
            ..Default::default()
        };
        for bad in [everything, suspicious, unknown] {
            let err = Settings::from_file(None, None, None, &[ok.clone(), bad]).unwrap_err();
            assert!(err.to_string().starts_with("auto_post rule 2"), "{err}");
        }
    }
}
