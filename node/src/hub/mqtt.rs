//! The MQTT bridge: Frigate's messages in (as drafts), the hood's alerts out, and a
//! retained Home Assistant discovery config for an `event` entity.
//!
//! Three tasks under one `hub` span: the *poll* task owns rumqttc's event loop (it
//! reconnects with backoff, and subscribes and announces again after each ConnAck, since
//! sessions are clean); the *intake* task parses Frigate payloads and fetches clips (at
//! most [`MAX_FETCHES`] at once); the *alerts* task publishes every accepted report.
//! Every queue is bounded; a malformed payload is a log line; a broker that goes away is
//! retried for as long as the node runs.

use std::sync::Arc;
use std::time::Duration;

use porchlight_proto::item::Body;
use porchlight_proto::report::Category;
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::frigate::{self, ClipSource, Version};
use super::settings::TopicPrefix;
use super::{Broker, FrigateApi, Hub, HubError, Intake};
use crate::node::{Event as NodeEvent, FeedItem, NodeError};

/// Requests (publishes, subscribes) waiting for the connection: rumqttc's channel.
pub const REQUEST_QUEUE: usize = 64;
/// Frigate messages waiting to be parsed; more are dropped with a log line.
pub const INTAKE_QUEUE: usize = 32;
/// Clip downloads at once.
pub const MAX_FETCHES: usize = 2;
/// Largest MQTT packet accepted from the broker.
pub const MAX_INCOMING_BYTES: usize = frigate::MAX_PAYLOAD_BYTES + 1024;
/// Largest MQTT packet sent (an alert is a few kilobytes).
pub const MAX_OUTGOING_BYTES: usize = 64 * 1024;
pub const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Reconnect backoff: doubles from the first to the last after each failure.
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a clean stop waits to say "offline" to the broker.
pub const STOP_WAIT: Duration = Duration::from_secs(2);
/// Where Home Assistant looks for discovery configs (its default).
pub const DISCOVERY_PREFIX: &str = "homeassistant";

/// The topics of one hood on the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// `porchlight/<hood>/alerts`: every accepted report, as JSON.
    pub alerts: String,
    /// `porchlight/<hood>/availability`: `online` (retained), `offline` (will).
    pub availability: String,
    /// `homeassistant/event/porchlight_<hood id prefix>/alerts/config` (retained).
    pub discovery: String,
    pub discovery_payload: String,
}

/// The hood's segment in topic names: its name in lower case, letters and digits with
/// `-` between words ("Elm Street" → `elm-street`); the first 8 hex digits of its id if
/// the name has no such characters.
pub fn hood_slug(name: &str, hood_hex: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() >= 48 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-').to_owned();
    if slug.is_empty() {
        hood_hex.get(..8).unwrap_or(hood_hex).to_owned()
    } else {
        slug
    }
}

impl Topics {
    pub fn new(hood_hex: &str, hood_name: &str) -> Topics {
        let slug = hood_slug(hood_name, hood_hex);
        let id = format!("porchlight_{}", hood_hex.get(..8).unwrap_or(hood_hex));
        let alerts = format!("porchlight/{slug}/alerts");
        let availability = format!("porchlight/{slug}/availability");
        let discovery_payload = json!({
            "name": "Alerts",
            "unique_id": format!("{id}_alerts"),
            "state_topic": alerts,
            "event_types": Category::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            "availability_topic": availability,
            "payload_available": "online",
            "payload_not_available": "offline",
            "qos": 1,
            "icon": "mdi:home-alert",
            "device": {
                "identifiers": [id],
                "name": format!("Porchlight {hood_name}"),
                "manufacturer": "Porchlight",
                "model": "neighborhood alerts",
                "sw_version": env!("CARGO_PKG_VERSION"),
            },
        })
        .to_string();
        Topics {
            discovery: format!("{DISCOVERY_PREFIX}/event/{id}/alerts/config"),
            alerts,
            availability,
            discovery_payload,
        }
    }
}

/// The alert JSON for a report: the feed's JSON plus `event_type` (its category), which
/// Home Assistant's MQTT event entity needs. `None` for other kinds of items.
pub fn alert_json(item: &FeedItem) -> Option<Value> {
    let Body::Report(report) = &item.body else {
        return None;
    };
    let mut value = crate::feed::feed_json(item);
    if let Some(map) = value.as_object_mut() {
        map.insert("event_type".into(), report.category.as_str().into());
    }
    Some(value)
}

/// A running bridge. [`Bridge::stop`] says `offline` and ends its tasks.
#[derive(Debug)]
pub struct Bridge {
    client: AsyncClient,
    topics: Arc<Topics>,
    poll: JoinHandle<()>,
    others: Vec<JoinHandle<()>>,
}

impl Bridge {
    /// Starts the bridge to `broker` for the node of `hub`, reading Frigate's messages
    /// under `frigate_prefix` (its `mqtt.topic_prefix`). Returns at once: the connection
    /// is made (and remade) in the background.
    pub async fn start(
        hub: Hub,
        broker: Broker,
        frigate: Option<FrigateApi>,
        frigate_prefix: &TopicPrefix,
    ) -> Result<Bridge, HubError> {
        let frigate_topics = Arc::new(frigate_prefix.topics());
        let status = hub.node().status().await?;
        let (Some(hood), Some(hood_name)) = (status.hood, status.hood_name) else {
            return Err(HubError::Node(NodeError::NoHood));
        };
        let topics = Arc::new(Topics::new(&hood.to_hex(), &hood_name));
        let client_id = format!("porchlight-{}", &status.member.to_hex()[..12]);
        let mut options = MqttOptions::new(client_id, broker.host.clone(), broker.port);
        options
            .set_keep_alive(KEEP_ALIVE)
            .set_clean_session(true)
            .set_max_packet_size(MAX_INCOMING_BYTES, MAX_OUTGOING_BYTES)
            .set_last_will(LastWill::new(
                topics.availability.clone(),
                "offline",
                QoS::AtLeastOnce,
                true,
            ));
        if let Some(user) = &broker.username {
            options.set_credentials(user.clone(), broker.password.clone().unwrap_or_default());
        }
        let (client, eventloop) = AsyncClient::new(options, REQUEST_QUEUE);
        let (intake_tx, intake_rx) = mpsc::channel(INTAKE_QUEUE);
        let span = tracing::info_span!("hub", broker = %broker);
        tracing::info!(parent: &span, alerts = %topics.alerts, frigate = frigate.as_ref().map(|f| f.base()).unwrap_or("none"), reviews = %frigate_topics.reviews, "MQTT bridge starting");
        let poll = tokio::spawn(
            poll(
                eventloop,
                client.clone(),
                topics.clone(),
                frigate_topics.clone(),
                intake_tx,
            )
            .instrument(span.clone()),
        );
        let intake = tokio::spawn(
            intake(hub.clone(), frigate, frigate_topics, intake_rx).instrument(span.clone()),
        );
        let alerts = tokio::spawn(
            alerts(hub.node().events(), client.clone(), topics.clone()).instrument(span),
        );
        Ok(Bridge {
            client,
            topics,
            poll,
            others: vec![intake, alerts],
        })
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Says `offline` (retained) and disconnects, within [`STOP_WAIT`]; then ends the
    /// tasks. A crash says `offline` too: it is the connection's will.
    pub async fn stop(self) {
        for task in &self.others {
            task.abort();
        }
        let _ = self.client.try_publish(
            self.topics.availability.clone(),
            QoS::AtLeastOnce,
            true,
            "offline",
        );
        let _ = self.client.try_disconnect();
        let mut poll = self.poll;
        if tokio::time::timeout(STOP_WAIT, &mut poll).await.is_err() {
            poll.abort();
        }
    }
}

/// After each ConnAck: subscriptions (the session is clean), `online`, discovery.
/// Frigate publishes at its `mqtt.qos` (0 unless set); subscribing at 1 takes whatever
/// it sends at the QoS it sends.
fn announce(client: &AsyncClient, topics: &Topics, frigate: &frigate::Topics) {
    let requests = [
        client.try_subscribe(frigate.reviews.clone(), QoS::AtLeastOnce),
        client.try_subscribe(frigate.events.clone(), QoS::AtLeastOnce),
        client.try_publish(
            topics.availability.clone(),
            QoS::AtLeastOnce,
            true,
            "online",
        ),
        client.try_publish(
            topics.discovery.clone(),
            QoS::AtLeastOnce,
            true,
            topics.discovery_payload.clone(),
        ),
    ];
    for r in requests {
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not queue a subscription or announcement");
        }
    }
}

async fn poll(
    mut eventloop: EventLoop,
    client: AsyncClient,
    topics: Arc<Topics>,
    frigate: Arc<frigate::Topics>,
    intake: mpsc::Sender<(String, Vec<u8>)>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!("connected to the MQTT broker");
                backoff = MIN_BACKOFF;
                announce(&client, &topics, &frigate);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if intake.try_send((p.topic, p.payload.to_vec())).is_err() {
                    tracing::warn!("dropped a Frigate message: the intake queue is full");
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                tracing::info!("disconnected from the MQTT broker");
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, retry_in_secs = backoff.as_secs(), "MQTT broker connection failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Frigate's version, asked once it is needed and kept once known (a Frigate that did
/// not answer is asked again next time).
#[derive(Debug, Clone, Default)]
struct KnownVersion(Arc<std::sync::Mutex<Option<Version>>>);

impl KnownVersion {
    async fn get(&self, api: &FrigateApi) -> Option<Version> {
        if let Ok(known) = self.0.lock()
            && let Some(v) = *known
        {
            return Some(v);
        }
        match frigate::version(api).await {
            Ok(v) => {
                tracing::info!(version = %v, "Frigate's version");
                if let Ok(mut known) = self.0.lock() {
                    *known = Some(v);
                }
                Some(v)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell Frigate's version");
                None
            }
        }
    }
}

async fn intake(
    hub: Hub,
    frigate: Option<FrigateApi>,
    topics: Arc<frigate::Topics>,
    mut messages: mpsc::Receiver<(String, Vec<u8>)>,
) {
    let fetches = Arc::new(Semaphore::new(MAX_FETCHES));
    let version = KnownVersion::default();
    let mut seen_reviews = false;
    while let Some((topic, payload)) = messages.recv().await {
        let parsed = if topic == topics.reviews {
            let parsed = frigate::parse_review(&payload);
            seen_reviews |= parsed.is_ok();
            parsed
        } else if topic == topics.events && !seen_reviews {
            frigate::parse_event(&payload)
        } else {
            continue;
        };
        let candidate = match parsed {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(%topic, error = %e, "ignored a malformed Frigate message");
                continue;
            }
        };
        if hub.already_has(&candidate).await {
            tracing::debug!(camera = %candidate.camera, "already drafted");
            continue;
        }
        let Ok(permit) = fetches.clone().acquire_owned().await else {
            return;
        };
        let hub = hub.clone();
        let frigate = frigate.clone();
        let version = version.clone();
        tokio::spawn(
            async move {
                let _permit = permit;
                let known = match &frigate {
                    Some(api) => version.get(api).await,
                    None => None,
                };
                // Frigate 0.14 and later send events for every tracked object, alerts
                // or not, and group them into reviews: only a Frigate known to be older
                // (it has no alerts) has its events drafted, whatever came first.
                if matches!(candidate.clip, Some(ClipSource::Event { .. }))
                    && known.is_none_or(Version::has_reviews)
                {
                    tracing::debug!(camera = %candidate.camera, version = ?known, "an event is not drafted: this Frigate has reviews, or its version is unknown");
                    return;
                }
                let clip = match (&frigate, &candidate.clip) {
                    (Some(api), Some(source)) => {
                        frigate::fetch_candidate_clip(hub.data_dir(), api, source, known).await
                    }
                    _ => Err("no Frigate URL is set (--frigate): the draft has no clip".into()),
                };
                if let Err(why) = &clip {
                    tracing::warn!(camera = %candidate.camera, error = %why, "no clip for this draft");
                }
                match hub.intake(candidate, clip).await {
                    Ok(Intake::Drafted(_) | Intake::Posted { .. } | Intake::Duplicate(_)) => {}
                    Err(e) => tracing::warn!(error = %e, "could not make a draft"),
                }
            }
            .in_current_span(),
        );
    }
}

async fn alerts(
    mut events: broadcast::Receiver<NodeEvent>,
    client: AsyncClient,
    topics: Arc<Topics>,
) {
    loop {
        match events.recv().await {
            Ok(NodeEvent::Item(item)) => {
                let Some(alert) = alert_json(&item) else {
                    continue;
                };
                // Waits while the broker is away (the queue is bounded); the node's
                // event channel drops what this falls behind on, and says so below.
                if client
                    .publish(
                        topics.alerts.clone(),
                        QoS::AtLeastOnce,
                        false,
                        alert.to_string(),
                    )
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(NodeEvent::Membership) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    skipped = n,
                    "alerts were not published to MQTT: the broker was too slow or away"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
