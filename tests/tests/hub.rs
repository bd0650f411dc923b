//! Issue #6, hub half: Frigate over MQTT makes drafts that only a person's approval sends
//! to neighbors; alerts go out to MQTT with a retained Home Assistant discovery config;
//! the bridge survives malformed payloads and a broker restart; the webhook drafts too.
//!
//! A real mosquitto runs per test on a free 127.0.0.1 port (`.ci/run` installs it), and a
//! small HTTP server on 127.0.0.1 stands in for Frigate's API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use porchlight_node::api;
use porchlight_node::hub::mqtt::Bridge;
use porchlight_node::hub::settings::TopicPrefix;
use porchlight_node::hub::{Broker, FrigateApi, Hub};
use porchlight_node::node::FeedItem;
use porchlight_proto::codec;
use porchlight_proto::item::Body;
use porchlight_tests::{TestNode, WAIT, eventually};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

// ---------------------------------------------------------------- mosquitto

fn mosquitto_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file());
    on_path
        .or_else(|| Some(PathBuf::from("/usr/sbin/mosquitto")).filter(|p| p.is_file()))
        .expect(
            "these tests need the mosquitto broker: `apt-get install mosquitto` \
             (.ci/run installs it)",
        )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A mosquitto of our own: loopback, anonymous, no persistence.
struct Mosquitto {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Mosquitto {
    fn start() -> Mosquitto {
        let mut m = Mosquitto {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\n",
                self.port
            ),
        )
        .unwrap();
        let log = std::fs::File::create(self.dir.path().join("mosquitto.log")).unwrap();
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto starts");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let log = std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap();
                panic!("mosquitto exited with {status}: {log}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn broker(&self) -> Broker {
        Broker::parse(&format!("mqtt://127.0.0.1:{}", self.port)).unwrap()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------- a stand-in for Frigate

/// The Frigate versions whose HTTP answers the stand-in gives, as their source has them
/// (`frigate/api/media.py`, `frigate/api/app.py` at each tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frigate {
    /// Before reviews: `frigate/events` is all there is.
    V0_13,
    /// Flask behind nginx: a clip with a Content-Length; no recordings: 500.
    V0_14,
    /// FastAPI, ffmpeg streamed (chunked); no recordings: 200 with an empty body.
    V0_16,
    /// No recordings: 400 "No recordings found for the specified time range".
    V0_17,
    /// As 0.17, plus `/api/review/<id>/clip.mp4?padding=N`.
    V0_18,
}

impl Frigate {
    fn version(self) -> &'static str {
        match self {
            Frigate::V0_13 => "0.13.2-6476f8a",
            Frigate::V0_14 => "0.14.1-f4f3cfa",
            Frigate::V0_16 => "0.16.4-4131252",
            Frigate::V0_17 => "0.17.2-c1b2e5f",
            Frigate::V0_18 => "0.18.0-beta1-e3fa701",
        }
    }

    fn flask(self) -> bool {
        matches!(self, Frigate::V0_13 | Frigate::V0_14)
    }
}

/// What the stand-in's database and recordings hold.
#[derive(Debug, Clone, Default)]
struct Footage {
    /// camera → the span (Unix seconds) its recordings cover.
    recordings: HashMap<String, (u64, u64)>,
    /// review id → (camera, start, end): reviews in Frigate's database (0.18's route).
    reviews: HashMap<String, (String, f64, f64)>,
    /// event id → (camera, start, end): tracked objects in Frigate's database.
    events: HashMap<String, (String, f64, f64)>,
}

/// The MP4 Frigate's ffmpeg would cut from `camera`'s recordings from `start` to `end`:
/// an `ftyp` box, then bytes that say which span they are, so a test knows which span
/// it got.
fn mp4(camera: &str, start: f64, end: f64) -> Vec<u8> {
    let mut bytes = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2".to_vec();
    let span = format!("{camera} {start} {end};");
    while bytes.len() < 200_000 {
        bytes.extend_from_slice(span.as_bytes());
    }
    bytes
}

fn sha(bytes: &[u8]) -> String {
    codec::hex(&Sha256::digest(bytes))
}

enum Answer {
    /// 200 with a clip (a Content-Length for Flask behind nginx, else chunked).
    Clip(Vec<u8>),
    /// A JSON answer with this status.
    Json(u16, Value),
    /// 200 `video/mp4`, chunked, and no bytes (Frigate 0.15 and 0.16 without recordings).
    EmptyStream,
    Text(String),
}

fn recording_clip(
    version: Frigate,
    footage: &Footage,
    camera: &str,
    start: f64,
    end: f64,
) -> Answer {
    let has = footage
        .recordings
        .get(camera)
        .is_some_and(|(from, to)| (*from as f64) <= end && (*to as f64) >= start);
    if has {
        return Answer::Clip(mp4(camera, start, end));
    }
    match version {
        Frigate::V0_13 | Frigate::V0_14 => Answer::Json(
            500,
            json!({"success": false, "message": "Could not create clip from recordings"}),
        ),
        Frigate::V0_16 => Answer::EmptyStream,
        Frigate::V0_17 | Frigate::V0_18 => Answer::Json(
            400,
            json!({"success": false, "message": "No recordings found for the specified time range"}),
        ),
    }
}

fn answer(version: Frigate, footage: &Footage, target: &str) -> Answer {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let padding: f64 = query
        .strip_prefix("padding=")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let not_found =
        |message: &str| Answer::Json(404, json!({"success": false, "message": message}));
    match parts.as_slice() {
        ["api", "version"] => Answer::Text(version.version().to_owned()),
        ["api", "review", id, "clip.mp4"] if version == Frigate::V0_18 => {
            match footage.reviews.get(*id) {
                Some((camera, start, end)) => {
                    recording_clip(version, footage, camera, start - padding, end + padding)
                }
                None => not_found("Review not found"),
            }
        }
        ["api", "events", id, "clip.mp4"] => match footage.events.get(*id) {
            Some((camera, start, end)) => recording_clip(version, footage, camera, *start, *end),
            None => not_found("Event not found"),
        },
        ["api", camera, "start", start, "end", end, "clip.mp4"] => {
            match (start.parse::<f64>(), end.parse::<f64>()) {
                (Ok(start), Ok(end)) => recording_clip(version, footage, camera, start, end),
                _ => Answer::Json(422, json!({"detail": "not a number"})),
            }
        }
        // `/api/<camera>/<label>/clip.mp4`: the latest event of that camera and label
        // (before 0.18, `/api/review/<id>/clip.mp4` lands here).
        ["api", _, _, "clip.mp4"] => not_found("Event not found"),
        _ => Answer::Json(404, json!({"detail": "Not Found"})),
    }
}

/// An HTTP server on 127.0.0.1 that answers as one Frigate version does; it records
/// every request's target.
struct FakeFrigate {
    addr: SocketAddr,
    requests: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeFrigate {
    async fn start(version: Frigate, footage: Footage) -> FakeFrigate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        let footage = Arc::new(footage);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let footage = footage.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let target = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                    seen.lock().unwrap().push(target.clone());
                    let mut response = Vec::new();
                    match answer(version, &footage, &target) {
                        Answer::Clip(bytes) if version.flask() => {
                            response.extend_from_slice(
                                format!(
                                    "HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\n\
                                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                                    bytes.len()
                                )
                                .as_bytes(),
                            );
                            response.extend_from_slice(&bytes);
                        }
                        Answer::Clip(bytes) => {
                            response.extend_from_slice(
                                b"HTTP/1.1 200 OK\r\ncontent-type: video/mp4\r\n\
                                  transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
                            );
                            for chunk in bytes.chunks(8192) {
                                response
                                    .extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                                response.extend_from_slice(chunk);
                                response.extend_from_slice(b"\r\n");
                            }
                            response.extend_from_slice(b"0\r\n\r\n");
                        }
                        Answer::EmptyStream => response.extend_from_slice(
                            b"HTTP/1.1 200 OK\r\ncontent-type: video/mp4\r\n\
                              transfer-encoding: chunked\r\nconnection: close\r\n\r\n0\r\n\r\n",
                        ),
                        Answer::Json(status, body) => {
                            let body = body.to_string();
                            response.extend_from_slice(
                                format!(
                                    "HTTP/1.1 {status} Error\r\ncontent-type: application/json\r\n\
                                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                                    body.len()
                                )
                                .as_bytes(),
                            );
                        }
                        Answer::Text(text) => {
                            let kind = if version.flask() {
                                "text/html; charset=utf-8"
                            } else {
                                "text/plain; charset=utf-8"
                            };
                            response.extend_from_slice(
                                format!(
                                    "HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\n\
                                     content-length: {}\r\nconnection: close\r\n\r\n{text}",
                                    text.len()
                                )
                                .as_bytes(),
                            );
                        }
                    }
                    let _ = stream.write_all(&response).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        FakeFrigate {
            addr,
            requests,
            task,
        }
    }

    fn api(&self) -> FrigateApi {
        FrigateApi::parse(&format!("http://{}", self.addr)).unwrap()
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests other than `/api/version`.
    fn clip_requests(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| r != "/api/version")
            .collect()
    }
}

impl Drop for FakeFrigate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------- an MQTT client for the test

/// A test's own MQTT client: reconnects, resubscribes after every ConnAck, and hands
/// every message it receives to `messages`.
struct Client {
    client: AsyncClient,
    messages: mpsc::Receiver<rumqttc::Publish>,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    /// Connects and returns once the broker has acknowledged every subscription.
    async fn connect(port: u16, id: &str, subscriptions: &[&str]) -> Client {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_max_packet_size(1024 * 1024, 1024 * 1024);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, messages) = mpsc::channel(1024);
        let subs: Vec<String> = subscriptions.iter().map(|s| s.to_string()).collect();
        let sub_client = client.clone();
        let (acked_tx, mut acked) = tokio::sync::watch::channel(0usize);
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for s in &subs {
                            let _ = sub_client.try_subscribe(s.clone(), QoS::AtLeastOnce);
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        acked_tx.send_modify(|n| *n += 1);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send(p).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        let wanted = subscriptions.len();
        tokio::time::timeout(WAIT, acked.wait_for(|n| *n >= wanted))
            .await
            .expect("the broker acknowledges the subscriptions")
            .unwrap();
        Client {
            client,
            messages,
            task,
        }
    }

    async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    /// The next message on `topic` that `wanted` accepts, within `WAIT`.
    async fn next(
        &mut self,
        topic: &str,
        wanted: impl Fn(&rumqttc::Publish) -> bool,
    ) -> rumqttc::Publish {
        tokio::time::timeout(WAIT, async {
            loop {
                let p = self.messages.recv().await.expect("the test client runs");
                if p.topic == topic && wanted(&p) {
                    return p;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no message on {topic} within {WAIT:?}"))
    }

    /// Messages that came within `quiet` on `topic`.
    async fn drain(&mut self, topic: &str, quiet: Duration) -> Vec<rumqttc::Publish> {
        let mut got = Vec::new();
        while let Ok(Some(p)) = tokio::time::timeout(quiet, self.messages.recv()).await {
            if p.topic == topic {
                got.push(p);
            }
        }
        got
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------- the local API

struct Local {
    running: Option<api::Running>,
    base: String,
    auth: String,
}

impl Local {
    async fn serve(node: &TestNode, hub: Hub) -> Local {
        let running = api::serve_with_hub(
            node.node.clone(),
            "127.0.0.1:0".parse().unwrap(),
            node.dir.path(),
            hub,
        )
        .await
        .unwrap();
        let token = std::fs::read_to_string(node.dir.path().join(api::TOKEN_FILE)).unwrap();
        Local {
            base: format!("http://{}", running.addr),
            auth: format!("Bearer {token}"),
            running: Some(running),
        }
    }

    /// One request: (status, JSON answer).
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let auth = self.auth.clone();
        let method = method.to_owned();
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let mut response = match (method.as_str(), body) {
                ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
                (_, Some(b)) => agent.post(&url).header("Authorization", &auth).send_json(b),
                (_, None) => agent.post(&url).header("Authorization", &auth).send_empty(),
            }
            .unwrap();
            let status = response.status().as_u16();
            let value = response.body_mut().read_json().unwrap_or(Value::Null);
            (status, value)
        })
        .await
        .unwrap()
    }

    async fn drafts(&self) -> Vec<Value> {
        let (status, v) = self.call("GET", "/v1/drafts", None).await;
        assert_eq!(status, 200, "{v}");
        v.as_array().cloned().unwrap()
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop();
        }
    }
}

// ---------------------------------------------------------------- Frigate's messages

const EVENT_ID: &str = "1718987128.947436-g92ztx";

/// A `frigate/reviews` message in the shape Frigate documents (integrations/mqtt),
/// with a face-recognition sub-label and a plate that must never be copied.
fn review(kind: &str, review_id: &str, severity: &str) -> String {
    json!({
        "type": kind,
        "before": {
            "id": review_id, "camera": "front_cam", "start_time": 1718987129.308396,
            "end_time": null, "severity": "detection",
            "thumb_path": format!("/media/frigate/clips/review/thumb-front_cam-{review_id}.webp"),
            "data": {"detections": [EVENT_ID], "objects": ["person"], "sub_labels": [],
                     "zones": [], "audio": []}
        },
        "after": {
            "id": review_id, "camera": "front_cam", "start_time": 1718987129.308396,
            "end_time": if kind == "end" { json!(1718987159.5) } else { Value::Null },
            "severity": severity,
            "thumb_path": format!("/media/frigate/clips/review/thumb-front_cam-{review_id}.webp"),
            "data": {"detections": [EVENT_ID, "1718987148.879516-d7oq7r"],
                     "objects": ["person", "face"], "sub_labels": ["Mallory Smith"],
                     "recognized_license_plate": "PLT4242",
                     "zones": ["front_yard"], "audio": []}
        }
    })
    .to_string()
}

/// Publishes an ended alert review until its draft (with its clip) appears: a message
/// sent while the bridge reconnects is gone, as MQTT has it.
async fn drafted(local: &Local, frigate: &Client, review_id: &str) -> bool {
    eventually(|| async {
        frigate
            .publish("frigate/reviews", review("end", review_id, "alert"))
            .await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        local
            .drafts()
            .await
            .iter()
            .any(|d| d["source_id"] == review_id && d["clip_sha256"].is_string())
    })
    .await
}

fn clip_bytes() -> Vec<u8> {
    (0..700_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// Frigate's footage for [`review`]: front_cam recorded all day, the review and its
/// first detection in its database.
fn front_cam_footage() -> Footage {
    let mut footage = Footage::default();
    footage
        .recordings
        .insert("front_cam".into(), (1_718_900_000, 1_719_000_000));
    footage.events.insert(
        EVENT_ID.into(),
        ("front_cam".into(), 1718987128.947436, 1718987131.0),
    );
    footage
}

/// The clip of [`review`]: its whole span (start rounded down, end up) and 5 s either side.
fn review_clip() -> Vec<u8> {
    mp4("front_cam", 1718987124.0, 1718987165.0)
}

fn reports(feed: &[FeedItem]) -> usize {
    feed.iter()
        .filter(|i| matches!(i.body, Body::Report(_)))
        .count()
}

/// Waits until the bridge has announced itself: its subscriptions went before.
async fn wait_online(port: u16, bridge: &Bridge) {
    let mut watcher =
        Client::connect(port, "watcher", &[bridge.topics().availability.as_str()]).await;
    let topic = bridge.topics().availability.clone();
    watcher.next(&topic, |p| &p.payload[..] == b"online").await;
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frigate_review_becomes_a_draft_that_neighbors_get_only_after_approval() {
    let broker = Mosquitto::start();
    let clip = review_clip();
    let sha = codec::hex(&Sha256::digest(&clip));
    let frigate = FakeFrigate::start(Frigate::V0_16, front_cam_footage()).await;
    let alice = TestNode::found("alice").await;
    let bob = alice.invite("bob").await;
    let hub = Hub::new(alice.node.clone(), alice.dir.path(), vec![]);
    let bridge = Bridge::start(
        hub.clone(),
        broker.broker(),
        Some(frigate.api()),
        &TopicPrefix::default(),
    )
    .await
    .unwrap();
    let local = Local::serve(&alice, hub).await;
    wait_online(broker.port, &bridge).await;
    let mut frigate_mqtt =
        Client::connect(broker.port, "frigate", &[bridge.topics().alerts.as_str()]).await;

    // Frigate's life cycle of one review: new, update (now an alert), end.
    for kind in ["new", "update", "end"] {
        frigate_mqtt
            .publish(
                "frigate/reviews",
                review(kind, "1718987129.308396-fqk5ka", "alert"),
            )
            .await;
    }
    assert!(
        eventually(|| async { local.drafts().await.len() == 1 }).await,
        "the ended alert became a draft"
    );
    let draft = local.drafts().await.remove(0);
    assert_eq!(draft["clip_sha256"], sha, "{draft}");
    assert_eq!(draft["clip_size"], clip.len());
    assert_eq!(draft["camera"], "front_cam");
    assert_eq!(draft["labels"], json!(["person"]));
    assert_eq!(draft["source"], "frigate-review");
    let text = draft.to_string();
    assert!(
        !text.contains("Mallory") && !text.contains("PLT4242") && !text.contains("face"),
        "no name, plate or face: {text}"
    );
    assert_eq!(
        std::fs::read(porchlight_node::clips::path(
            alice.dir.path(),
            &codec::parse_hex::<32>(&sha).unwrap()
        ))
        .unwrap(),
        clip,
        "the clip is in alice's library under its hash"
    );

    // Nothing left home: neither neighbor nor broker saw anything, even after a sync.
    alice.node.sync_now().await.unwrap();
    bob.node.sync_now().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        reports(&bob.feed().await),
        0,
        "bob sees nothing before approval"
    );
    assert_eq!(reports(&alice.feed().await), 0, "nothing was posted");
    assert!(
        frigate_mqtt
            .drain(&bridge.topics().alerts, Duration::from_millis(200))
            .await
            .is_empty(),
        "no alert went out"
    );
    // The same review again does not make a second draft (nor fetch the clip again).
    let fetched = frigate.clip_requests().len();
    frigate_mqtt
        .publish(
            "frigate/reviews",
            review("end", "1718987129.308396-fqk5ka", "alert"),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(local.drafts().await.len(), 1);
    assert_eq!(frigate.clip_requests().len(), fetched);

    // A person approves: the report carries the clip's hash to bob.
    let id = draft["id"].as_str().unwrap();
    let (status, posted) = local
        .call(
            "POST",
            &format!("/v1/drafts/{}/approve", &id[..8]),
            Some(json!({"text": "someone tried our door at 3am", "where": "Elm St, 400 block"})),
        )
        .await;
    assert_eq!(status, 201, "{posted}");
    let report_id = posted["id"].as_str().unwrap().to_owned();
    let got =
        eventually(|| async { bob.feed().await.iter().any(|i| i.id.to_hex() == report_id) }).await;
    assert!(got, "bob receives the approved report");
    let item = bob
        .feed()
        .await
        .into_iter()
        .find(|i| i.id.to_hex() == report_id)
        .unwrap();
    let Body::Report(report) = &item.body else {
        panic!("a report")
    };
    assert_eq!(codec::hex(&report.clips[0].sha256), sha);
    assert_eq!(report.clips[0].size, clip.len() as u64);
    assert_eq!(report.clips[0].camera, "front_cam");
    assert_eq!(
        report.category.as_str(),
        "other",
        "a camera sees objects, not intent"
    );
    assert_eq!(report.text, "someone tried our door at 3am");
    assert!(local.drafts().await.is_empty(), "the draft is used up");
    let (status, _) = local
        .call("POST", &format!("/v1/drafts/{id}/approve"), None)
        .await;
    assert_eq!(status, 404, "approving twice posts nothing");
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_neighbors_report_goes_to_the_alerts_topic_and_discovery_is_retained() {
    let broker = Mosquitto::start();
    let alice = TestNode::found("alice").await;
    let bob = alice.invite("bob").await;
    let hub = Hub::new(alice.node.clone(), alice.dir.path(), vec![]);
    let bridge = Bridge::start(hub, broker.broker(), None, &TopicPrefix::default())
        .await
        .unwrap();
    let topics = bridge.topics().clone();
    assert_eq!(topics.alerts, "porchlight/elm-street/alerts");
    wait_online(broker.port, &bridge).await;
    let mut automation =
        Client::connect(broker.port, "automation", &[topics.alerts.as_str()]).await;

    let id = bob.post("parcel taken from the porch").await;
    let alert = automation
        .next(&topics.alerts, |p| {
            serde_json::from_slice::<Value>(&p.payload).unwrap()["id"] == id.to_hex()
        })
        .await;
    assert!(!alert.retain, "alerts are events, not state");
    let alert: Value = serde_json::from_slice(&alert.payload).unwrap();
    assert_eq!(alert["event_type"], "package-theft", "{alert}");
    assert_eq!(alert["category"], "package-theft");
    assert_eq!(alert["author_name"], "bob");
    assert_eq!(alert["text"], "parcel taken from the porch");

    // Home Assistant, started after the fact, finds the retained discovery config.
    let mut home_assistant =
        Client::connect(broker.port, "home-assistant", &["homeassistant/#"]).await;
    let config = home_assistant.next(&topics.discovery, |_| true).await;
    assert!(config.retain, "the discovery config is retained");
    assert!(
        topics
            .discovery
            .starts_with("homeassistant/event/porchlight_")
    );
    let config: Value = serde_json::from_slice(&config.payload).unwrap();
    assert_eq!(config["state_topic"], topics.alerts);
    assert_eq!(config["availability_topic"], topics.availability);
    let types: Vec<&str> = config["event_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(types.len(), 10);
    for c in porchlight_proto::report::Category::ALL {
        assert!(types.contains(&c.as_str()), "{c:?}");
    }
    assert!(
        config["unique_id"]
            .as_str()
            .unwrap()
            .starts_with("porchlight_")
    );

    // A clean stop says offline, retained, for whoever looks later.
    bridge.stop().await;
    let mut later = Client::connect(broker.port, "later", &[topics.availability.as_str()]).await;
    later
        .next(&topics.availability, |p| {
            p.retain && &p.payload[..] == b"offline"
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payloads_and_a_broker_restart_do_not_stop_the_bridge() {
    let mut broker = Mosquitto::start();
    let frigate = FakeFrigate::start(Frigate::V0_17, front_cam_footage()).await;
    let alice = TestNode::found("alice").await;
    let bob = alice.invite("bob").await;
    let hub = Hub::new(alice.node.clone(), alice.dir.path(), vec![]);
    let bridge = Bridge::start(
        hub.clone(),
        broker.broker(),
        Some(frigate.api()),
        &TopicPrefix::default(),
    )
    .await
    .unwrap();
    let topics = bridge.topics().clone();
    let local = Local::serve(&alice, hub).await;
    wait_online(broker.port, &bridge).await;
    let frigate_mqtt = Client::connect(broker.port, "frigate", &[]).await;

    let garbage: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        b"{}".to_vec(),
        b"null".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x80],
        review("end", "../../api/config", "alert").into_bytes(),
        review("end", "r1", "alert")
            .replace("front_cam", "front/cam")
            .into_bytes(),
        review("end", "r1", "alert")
            .replace("1718987129.308396,", "-5,")
            .into_bytes(),
        format!("[{}]", "1,".repeat(50_000) + "1").into_bytes(),
        // Over the bridge's packet limit: the connection drops and is remade.
        vec![b'{'; 300 * 1024],
    ];
    for g in &garbage {
        frigate_mqtt.publish("frigate/reviews", g.clone()).await;
        frigate_mqtt.publish("frigate/events", g.clone()).await;
    }
    // Then a good one: the bridge is still there.
    assert!(
        drafted(&local, &frigate_mqtt, "review-before-restart").await,
        "a good review after garbage"
    );
    assert_eq!(local.drafts().await.len(), 1, "garbage made no drafts");

    // The broker goes away and comes back (without its retained messages).
    broker.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.spawn();
    assert!(
        drafted(&local, &frigate_mqtt, "review-after-restart").await,
        "drafts again after the restart"
    );
    // Alerts flow again, and the bridge has announced itself again.
    let mut automation =
        Client::connect(broker.port, "automation", &[topics.alerts.as_str()]).await;
    let mut home_assistant =
        Client::connect(broker.port, "home-assistant", &["homeassistant/#"]).await;
    let config = home_assistant.next(&topics.discovery, |p| p.retain).await;
    assert!(!config.payload.is_empty());
    let id = bob.post("ladder left against the fence").await;
    let alert = automation
        .next(&topics.alerts, |p| {
            serde_json::from_slice::<Value>(&p.payload).unwrap()["id"] == id.to_hex()
        })
        .await;
    assert!(
        !alert.payload.is_empty(),
        "alerts reach MQTT after the restart"
    );
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_drafts_like_frigate_and_a_rule_can_post_at_once() {
    let alice = TestNode::found("alice").await;
    let bob = alice.invite("bob").await;
    let rules = porchlight_node::hub::Settings::from_file(
        None,
        None,
        None,
        &[toml_rule("driveway", "vehicle")],
    )
    .unwrap()
    .auto_post;
    let hub = Hub::new(alice.node.clone(), alice.dir.path(), rules);
    let local = Local::serve(&alice, hub).await;
    let clip_file = alice.dir.path().join("ring.mp4");
    let clip = clip_bytes();
    std::fs::write(&clip_file, &clip).unwrap();
    let sha = codec::hex(&Sha256::digest(&clip));

    // Bad calls change nothing.
    for (body, want) in [
        (json!({"label": "person"}), 400),
        (json!({"camera": "door", "colour": "red"}), 400),
        (json!({"camera": "door/../x"}), 400),
        (json!({"camera": "door", "category": "burglar"}), 400),
        (
            json!({"camera": "door", "clip_path": "/nonexistent.mp4"}),
            400,
        ),
        (
            json!({"camera": "door", "clip_path": clip_file, "clip_url": "http://x/y"}),
            400,
        ),
        (
            json!({"camera": "door", "clip_url": "https://cloud.example/clip.mp4"}),
            400,
        ),
    ] {
        let (status, v) = local
            .call("POST", "/v1/hub/events", Some(body.clone()))
            .await;
        assert_eq!(status, want, "{body} → {v}");
        assert!(v["error"].is_string(), "{v}");
    }
    assert!(local.drafts().await.is_empty());

    // A doorbell without Frigate: the same draft flow.
    let (status, draft) = local
        .call(
            "POST",
            "/v1/hub/events",
            Some(json!({"camera": "doorbell", "label": "person", "clip_path": clip_file, "id": "ring-77"})),
        )
        .await;
    assert_eq!(status, 201, "{draft}");
    assert_eq!(draft["clip_sha256"], sha);
    assert_eq!(draft["text"], "person at the doorbell camera");
    let (status, again) = local
        .call(
            "POST",
            "/v1/hub/events",
            Some(json!({"camera": "doorbell", "label": "person", "id": "ring-77"})),
        )
        .await;
    assert_eq!(
        (status, &again["duplicate"]),
        (200, &draft["id"]),
        "{again}"
    );
    assert_eq!(local.drafts().await.len(), 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(reports(&bob.feed().await), 0, "nothing left home");

    // Discarding drops the draft and its clip; nothing is posted.
    let id = draft["id"].as_str().unwrap();
    let (status, v) = local
        .call("POST", &format!("/v1/drafts/{id}/discard"), None)
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(local.drafts().await.is_empty());
    assert!(
        !porchlight_node::clips::path(alice.dir.path(), &codec::parse_hex::<32>(&sha).unwrap())
            .exists(),
        "the discarded clip is gone from the library"
    );
    let (status, _) = local
        .call("POST", &format!("/v1/drafts/{id}/discard"), None)
        .await;
    assert_eq!(status, 404);

    // The owner's rule for the driveway camera posts at once.
    let (status, v) = local
        .call(
            "POST",
            "/v1/hub/events",
            Some(
                json!({"camera": "driveway", "label": "car", "text": "car idling with lights off"}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let posted = v["posted"].as_str().unwrap().to_owned();
    assert!(
        eventually(|| async { bob.feed().await.iter().any(|i| i.id.to_hex() == posted) }).await,
        "bob receives the auto-posted report"
    );
    assert!(local.drafts().await.is_empty());
}

fn toml_rule(camera: &str, category: &str) -> porchlight_node::hub::settings::AutoPostRule {
    porchlight_node::hub::settings::AutoPostRule {
        camera: Some(camera.into()),
        category: Some(category.into()),
        ..Default::default()
    }
}

// ---------------------------------------------------------------- issue #16: true to Frigate

/// A `frigate/reviews` message as Frigate `version` builds it
/// (`PendingReviewSegment.get_data` in `frigate/review/maintainer.py`): 0.17 added
/// `verified_objects`, `thumb_time` and `metadata`. `detections` comes from
/// `list(set(…))`, so its order is arbitrary.
#[allow(clippy::too_many_arguments)]
fn versioned_review(
    version: Frigate,
    kind: &str,
    id: &str,
    camera: &str,
    (start, end): (f64, f64),
    detections: &[&str],
    objects: &[&str],
    zones: &[&str],
    audio: &[&str],
) -> String {
    let mut data = json!({
        "detections": detections, "objects": objects, "sub_labels": ["Mallory Smith"],
        "zones": zones, "audio": audio,
    });
    if matches!(version, Frigate::V0_17 | Frigate::V0_18) {
        data["verified_objects"] = json!(
            objects
                .iter()
                .filter(|o| o.contains("-verified"))
                .collect::<Vec<_>>()
        );
        data["thumb_time"] = json!(start + 1.5);
        data["metadata"] = Value::Null;
    }
    let after = json!({
        "id": id, "camera": camera, "start_time": start,
        "end_time": if kind == "end" { json!(end) } else { Value::Null },
        "severity": "alert",
        "thumb_path": format!("/media/frigate/clips/review/thumb-{camera}-{id}.webp"),
        "data": data,
    });
    json!({"type": kind, "before": after, "after": after}).to_string()
}

/// A `frigate/events` message (`TrackedObject.to_dict`), `has_clip` true.
fn event_end(id: &str, camera: &str, label: &str, (start, end): (f64, f64)) -> String {
    let after = json!({
        "id": id, "camera": camera, "frame_time": end, "snapshot": null, "label": label,
        "sub_label": null, "top_score": 0.81, "false_positive": false,
        "start_time": start, "end_time": end, "score": 0.8, "box": [1, 2, 3, 4],
        "area": 4, "ratio": 1.0, "region": [0, 0, 320, 320], "stationary": false,
        "motionless_count": 0, "position_changes": 2, "current_zones": [],
        "entered_zones": ["driveway"], "has_clip": true, "has_snapshot": false,
        "attributes": {}, "current_attributes": [],
    });
    json!({"type": "end", "before": after, "after": after}).to_string()
}

/// Frigate publishes at its `mqtt.qos`, 0 unless set.
async fn publish_qos0(client: &Client, topic: &str, payload: String) {
    client
        .client
        .publish(topic, QoS::AtMostOnce, false, payload)
        .await
        .unwrap();
}

/// The draft from `source_id`, once there (`None` after `WAIT`).
async fn draft_of(local: &Local, source_id: &str) -> Option<Value> {
    let found = eventually(|| async {
        local
            .drafts()
            .await
            .iter()
            .any(|d| d["source_id"] == source_id)
    })
    .await;
    if !found {
        return None;
    }
    local
        .drafts()
        .await
        .into_iter()
        .find(|d| d["source_id"] == source_id)
}

async fn start_bridge(
    hub: &Hub,
    broker: &Mosquitto,
    frigate: Option<&FakeFrigate>,
    prefix: &TopicPrefix,
) -> Bridge {
    let bridge = Bridge::start(
        hub.clone(),
        broker.broker(),
        frigate.map(FakeFrigate::api),
        prefix,
    )
    .await
    .unwrap();
    wait_online(broker.port, &bridge).await;
    bridge
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frigate_version_gives_the_whole_review_as_its_clip_and_any_name_is_data() {
    let broker = Mosquitto::start();
    let alice = TestNode::found("alice").await;
    let hub = Hub::new(alice.node.clone(), alice.dir.path(), vec![]);
    let local = Local::serve(&alice, hub.clone()).await;
    let frigate_mqtt = Client::connect(broker.port, "frigate", &[]).await;
    for (n, version) in [
        Frigate::V0_14,
        Frigate::V0_16,
        Frigate::V0_17,
        Frigate::V0_18,
    ]
    .into_iter()
    .enumerate()
    {
        let start = 1_718_990_000.25 + 1000.0 * n as f64;
        let end = start + 40.5;
        let id = format!("{start}-rv{n}abc");
        // The first detection is a car that passed for two seconds; the person who
        // made this an alert came later.
        let car = format!("{}-car{n}x", start + 1.0);
        let person = format!("{}-per{n}x", start + 20.0);
        let mut footage = Footage::default();
        footage
            .recordings
            .insert("einfahrt".into(), (1_718_900_000, 1_719_900_000));
        footage
            .reviews
            .insert(id.clone(), ("einfahrt".into(), start, end));
        footage
            .events
            .insert(car.clone(), ("einfahrt".into(), start + 1.0, start + 3.0));
        let frigate = FakeFrigate::start(version, footage).await;
        let bridge = start_bridge(&hub, &broker, Some(&frigate), &TopicPrefix::default()).await;
        for kind in ["new", "update", "end"] {
            let message = versioned_review(
                version,
                kind,
                &id,
                "einfahrt",
                (start, end),
                &[&car, &person],
                &["car", "person-verified", "amazon", "face", "license_plate"],
                &["Einfahrt_Tür", "Hof"],
                &["dental_drill's_drill"],
            );
            publish_qos0(&frigate_mqtt, "frigate/reviews", message).await;
        }
        let draft = draft_of(&local, &id)
            .await
            .unwrap_or_else(|| panic!("{version:?}: the review became a draft"));
        let want = if version == Frigate::V0_18 {
            mp4("einfahrt", start - 5.0, end + 5.0)
        } else {
            mp4("einfahrt", start.floor() - 5.0, end.ceil() + 5.0)
        };
        assert_eq!(
            draft["clip_sha256"],
            sha(&want),
            "{version:?}: the clip spans the whole review: {draft} after {:?}",
            frigate.requests()
        );
        let requests = frigate.clip_requests();
        assert!(
            !requests.iter().any(|r| r.starts_with("/api/events/")),
            "{version:?}: {requests:?}"
        );
        if version == Frigate::V0_18 {
            assert_eq!(
                requests,
                vec![format!("/api/review/{id}/clip.mp4?padding=5")]
            );
        } else {
            assert_eq!(
                requests,
                vec![format!(
                    "/api/einfahrt/start/{}/end/{}/clip.mp4",
                    start.floor() as u64 - 5,
                    end.ceil() as u64 + 5
                )],
                "{version:?}"
            );
        }
        assert_eq!(
            draft["labels"],
            json!(["car", "person", "delivery", "dental_drill's_drill"]),
            "{draft}"
        );
        assert_eq!(draft["zones"], json!(["Einfahrt_Tür", "Hof"]));
        assert_eq!(
            draft["text"],
            "car, person, delivery and dental drill's drill at the einfahrt camera"
        );
        let text = draft.to_string();
        for never in ["amazon", "face", "license_plate", "verified", "Mallory"] {
            assert!(!text.contains(never), "{never}: {text}");
        }
        bridge.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_error_answers_from_frigate_are_clip_errors_not_clips() {
    let broker = Mosquitto::start();
    let alice = TestNode::found("alice").await;
    let hub = Hub::new(alice.node.clone(), alice.dir.path(), vec![]);
    let local = Local::serve(&alice, hub.clone()).await;
    let frigate_mqtt = Client::connect(broker.port, "frigate", &[]).await;
    for (n, (version, why)) in [
        (Frigate::V0_16, "empty"),
        (
            Frigate::V0_14,
            "HTTP 500: Could not create clip from recordings",
        ),
        (
            Frigate::V0_17,
            "HTTP 400: No recordings found for the specified time range",
        ),
        (
            Frigate::V0_18,
            "HTTP 400: No recordings found for the specified time range",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let start = 1_718_990_000.5 + 1000.0 * n as f64;
        let id = format!("{start}-norec{n}");
        let person = format!("{start}-p{n}");
        // Recording is off for this camera: Frigate has no footage for the review.
        let mut footage = Footage::default();
        footage
            .reviews
            .insert(id.clone(), ("porch".into(), start, start + 30.0));
        footage
            .events
            .insert(person.clone(), ("porch".into(), start, start + 30.0));
        let frigate = FakeFrigate::start(version, footage).await;
        let bridge = start_bridge(&hub, &broker, Some(&frigate), &TopicPrefix::default()).await;
        let message = versioned_review(
            version,
            "end",
            &id,
            "porch",
            (start, start + 30.0),
            &[&person],
            &["person"],
            &[],
            &[],
        );
        publish_qos0(&frigate_mqtt, "frigate/reviews", message).await;
        let draft = draft_of(&local, &id).await.expect("a draft without a clip");
        assert!(draft["clip_sha256"].is_null(), "{version:?}: {draft}");
        let error = draft["clip_error"]
            .as_str()
            .unwrap_or_else(|| panic!("{draft}"));
        assert!(error.contains(why), "{version:?}: {error}");
        bridge.stop().await;
    }
    assert!(
        !porchlight_node::clips::path(alice.dir.path(), &Sha256::digest(b"").into()).exists(),
        "no empty clip in the library"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audio_only_alert_gets_its_clip_and_every_clipless_draft_says_why() {
    let broker = Mosquitto::start();
    let alice = TestNode::found("alice").await;
    let hub = Hub::new(alice.node.clone(), alice.dir.path(), vec![]);
    let local = Local::serve(&alice, hub.clone()).await;
    let frigate_mqtt = Client::connect(broker.port, "frigate", &[]).await;

    // An audio-only alert: no tracked object, `detections: []`; its span is recorded.
    let start = 1_718_999_000.75;
    let mut footage = Footage::default();
    footage
        .recordings
        .insert("garden".into(), (1_718_900_000, 1_719_900_000));
    let frigate = FakeFrigate::start(Frigate::V0_16, footage).await;
    let bridge = start_bridge(&hub, &broker, Some(&frigate), &TopicPrefix::default()).await;
    let id = format!("{start}-audio1");
    let message = versioned_review(
        Frigate::V0_16,
        "end",
        &id,
        "garden",
        (start, start + 12.0),
        &[],
        &[],
        &[],
        &["scream"],
    );
    publish_qos0(&frigate_mqtt, "frigate/reviews", message).await;
    let draft = draft_of(&local, &id)
        .await
        .expect("the audio alert's draft");
    assert_eq!(
        draft["clip_sha256"],
        sha(&mp4(
            "garden",
            start.floor() - 5.0,
            (start + 12.0).ceil() + 5.0
        )),
        "{draft}"
    );
    assert_eq!(draft["text"], "scream at the garden camera");
    bridge.stop().await;

    // Without a Frigate URL, the draft says so.
    let bridge = start_bridge(&hub, &broker, None, &TopicPrefix::default()).await;
    let id = format!("{start}-nourl");
    let message = versioned_review(
        Frigate::V0_16,
        "end",
        &id,
        "garden",
        (start, start + 12.0),
        &[],
        &[],
        &[],
        &["scream"],
    );
    publish_qos0(&frigate_mqtt, "frigate/reviews", message).await;
    let draft = draft_of(&local, &id).await.expect("a draft");
    assert!(
        draft["clip_error"]
            .as_str()
            .unwrap()
            .contains("no Frigate URL"),
        "{draft}"
    );
    bridge.stop().await;

    // A webhook without a clip: the draft says so too.
    let (status, draft) = local
        .call(
            "POST",
            "/v1/hub/events",
            Some(json!({"camera": "doorbell", "label": "person"})),
        )
        .await;
    assert_eq!(status, 201, "{draft}");
    assert!(
        draft["clip_error"]
            .as_str()
            .unwrap_or("")
            .contains("no clip"),
        "{draft}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_make_drafts_only_from_a_frigate_without_reviews_even_right_after_a_restart() {
    let broker = Mosquitto::start();
    let alice = TestNode::found("alice").await;
    let hub = Hub::new(alice.node.clone(), alice.dir.path(), vec![]);
    let local = Local::serve(&alice, hub.clone()).await;
    let frigate_mqtt = Client::connect(broker.port, "frigate", &[]).await;
    let span = (1_718_995_000.5, 1_718_995_010.0);
    let mut footage = Footage::default();
    footage
        .recordings
        .insert("einfahrt".into(), (1_718_900_000, 1_719_900_000));
    footage.events.insert(
        "1718995000.5-car001".into(),
        ("einfahrt".into(), span.0, span.1),
    );

    // Frigate 0.16 sends an event for every tracked object, alert or not. Right after
    // each (re)start of the bridge, an event comes before any review.
    let frigate = FakeFrigate::start(Frigate::V0_16, footage.clone()).await;
    for round in 0..2 {
        let bridge = start_bridge(&hub, &broker, Some(&frigate), &TopicPrefix::default()).await;
        let event = event_end("1718995000.5-car001", "einfahrt", "car", span);
        publish_qos0(&frigate_mqtt, "frigate/events", event).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            local.drafts().await.is_empty(),
            "round {round}: a detection-level event is not a draft"
        );
        assert!(
            eventually(|| async { frigate.requests().iter().any(|r| r == "/api/version") }).await,
            "the bridge asked Frigate's version"
        );
        assert!(
            frigate.clip_requests().is_empty(),
            "{:?}",
            frigate.requests()
        );
        bridge.stop().await;
    }

    // Frigate 0.13 has no reviews: its events are what there is.
    let old = FakeFrigate::start(Frigate::V0_13, footage).await;
    let bridge = start_bridge(&hub, &broker, Some(&old), &TopicPrefix::default()).await;
    let event = event_end("1718995000.5-car001", "einfahrt", "car", span);
    publish_qos0(&frigate_mqtt, "frigate/events", event).await;
    let draft = draft_of(&local, "1718995000.5-car001")
        .await
        .expect("an event from Frigate 0.13 is a draft");
    assert_eq!(draft["source"], "frigate-event");
    assert_eq!(draft["clip_sha256"], sha(&mp4("einfahrt", span.0, span.1)));
    assert_eq!(
        old.clip_requests(),
        vec!["/api/events/1718995000.5-car001/clip.mp4".to_owned()]
    );
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frigates_topic_prefix_is_a_setting() {
    let broker = Mosquitto::start();
    let alice = TestNode::found("alice").await;
    let hub = Hub::new(alice.node.clone(), alice.dir.path(), vec![]);
    let local = Local::serve(&alice, hub.clone()).await;
    let frigate = FakeFrigate::start(Frigate::V0_17, front_cam_footage()).await;
    let prefix = TopicPrefix::parse("nvr/garage").unwrap();
    let bridge = start_bridge(&hub, &broker, Some(&frigate), &prefix).await;
    let frigate_mqtt = Client::connect(broker.port, "frigate", &[]).await;
    publish_qos0(
        &frigate_mqtt,
        "frigate/reviews",
        review("end", "1718987129.308396-other1", "alert"),
    )
    .await;
    publish_qos0(
        &frigate_mqtt,
        "nvr/garage/reviews",
        review("end", "1718987129.308396-fqk5ka", "alert"),
    )
    .await;
    let draft = draft_of(&local, "1718987129.308396-fqk5ka")
        .await
        .expect("the review under the prefix is a draft");
    assert_eq!(draft["clip_sha256"], sha(&review_clip()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        local.drafts().await.len(),
        1,
        "another Frigate's prefix is not ours"
    );
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_with_share_members_lets_a_neighbor_fetch_the_clip_without_asking() {
    let alice = TestNode::found("alice").await;
    let bob = alice.invite("bob").await;
    let hub = Hub::new(alice.node.clone(), alice.dir.path(), vec![]);
    let local = Local::serve(&alice, hub).await;
    let mut shas = Vec::new();
    for n in 0..2u8 {
        let file = alice.dir.path().join(format!("ring-{n}.mp4"));
        let mut bytes = clip_bytes();
        bytes[0] = n;
        std::fs::write(&file, &bytes).unwrap();
        let (status, draft) = local
            .call(
                "POST",
                "/v1/hub/events",
                Some(json!({"camera": "doorbell", "label": "person", "clip_path": file, "id": format!("ring-{n}")})),
            )
            .await;
        assert_eq!(status, 201, "{draft}");
        shas.push(draft["clip_sha256"].as_str().unwrap().to_owned());
    }
    let drafts = local.drafts().await;
    assert!(
        drafts.iter().all(|d| d["share"] == "ask"),
        "drafts show the owner's policy: {drafts:?}"
    );
    let id = |n: usize| drafts[n]["id"].as_str().unwrap().to_owned();

    // A bad share changes nothing.
    let (status, v) = local
        .call(
            "POST",
            &format!("/v1/drafts/{}/approve", id(0)),
            Some(json!({"share": "everyone"})),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(local.drafts().await.len(), 2);

    // Approved as the policy says (ask): bob waits for alice.
    let (status, plain) = local
        .call("POST", &format!("/v1/drafts/{}/approve", id(0)), None)
        .await;
    assert_eq!((status, &plain["share"]), (201, &json!("ask")), "{plain}");
    // Approved with share=members: bob gets it at once.
    let (status, shared) = local
        .call(
            "POST",
            &format!("/v1/drafts/{}/approve", id(1)),
            Some(json!({"share": "members"})),
        )
        .await;
    assert_eq!(
        (status, &shared["share"]),
        (201, &json!("members")),
        "{shared}"
    );
    for report in [&plain["id"], &shared["id"]] {
        let report = report.as_str().unwrap().to_owned();
        assert!(
            eventually(|| async { bob.feed().await.iter().any(|i| i.id.to_hex() == report) }).await
        );
    }
    let fetch = |sha: &str| {
        let sha = codec::parse_hex::<32>(sha).unwrap();
        let node = bob.node.clone();
        let dir = bob.dir.path().to_path_buf();
        async move {
            porchlight_node::clips::sharing::fetch(&node, &dir, sha, |_, _| {})
                .await
                .unwrap()
        }
    };
    assert!(
        matches!(
            fetch(&shas[0]).await,
            porchlight_node::clips::sharing::Fetched::Waiting { .. }
        ),
        "the policy holds for a clip approved without share"
    );
    assert!(
        matches!(
            fetch(&shas[1]).await,
            porchlight_node::clips::sharing::Fetched::Done { .. }
        ),
        "share=members: no `clip allow` needed"
    );
    let got = std::fs::read(porchlight_node::clips::path(
        bob.dir.path(),
        &codec::parse_hex::<32>(&shas[1]).unwrap(),
    ))
    .unwrap();
    assert_eq!(sha(&got), shas[1]);
    assert!(
        alice
            .node
            .clip_asks()
            .await
            .unwrap()
            .iter()
            .all(|a| codec::hex(&a.sha256) != shas[1]),
        "alice was not asked about the shared clip"
    );
}

// ---------------------------------------------------------------- Home Assistant's own code

/// The Python of the virtualenv that `.ci/run` fills with Home Assistant
/// (tests/ha/requirements.txt): `PORCHLIGHT_HA_PYTHON`, else the cached venv for the
/// pinned version. `None` outside CI when it is not there; under CI it must be.
fn home_assistant_python() -> Option<PathBuf> {
    let pinned =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ha/requirements.txt"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("homeassistant==").map(str::to_owned))
            .expect("tests/ha/requirements.txt pins homeassistant");
    let python = std::env::var_os("PORCHLIGHT_HA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/var/cache/porchlight/ha-{pinned}/bin/python")));
    if python.is_file() {
        return Some(python);
    }
    let why = format!(
        "Home Assistant {pinned} is not installed at {}: run .ci/run once (it installs it)",
        python.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}");
    }
    eprintln!("\n!!!!!!!! SKIPPED the Home Assistant test: {why} !!!!!!!!\n");
    None
}

/// Runs Home Assistant's own MQTT code (tests/ha/check_mqtt.py) over `messages`:
/// (exit success, its output).
fn home_assistant_takes(python: &std::path::Path, messages: &[Value]) -> (bool, String) {
    let mut child = Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/ha/check_mqtt.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the Home Assistant venv's python runs");
    let mut input = String::new();
    for m in messages {
        input.push_str(&m.to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, input.as_bytes()).unwrap();
    drop(stdin);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("Home Assistant's check did not end within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn as_line(p: &rumqttc::Publish) -> Value {
    json!({
        "topic": p.topic,
        "payload": String::from_utf8(p.payload.to_vec()).expect("Porchlight publishes UTF-8"),
        "retain": p.retain,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistants_own_mqtt_code_takes_every_discovery_config_and_alert() {
    use porchlight_proto::report::{Category, ClipRef, Location, Report, Severity};
    let Some(python) = home_assistant_python() else {
        return;
    };
    let broker = Mosquitto::start();
    let alice = TestNode::found_with_rate("alice", 100).await;
    let hub = Hub::new(alice.node.clone(), alice.dir.path(), vec![]);
    let bridge = start_bridge(&hub, &broker, None, &TopicPrefix::default()).await;
    let topics = bridge.topics().clone();
    let mut home_assistant = Client::connect(
        broker.port,
        "home-assistant",
        &["homeassistant/#", "porchlight/#"],
    )
    .await;
    let mut messages = vec![
        as_line(&home_assistant.next(&topics.discovery, |p| p.retain).await),
        as_line(&home_assistant.next(&topics.availability, |_| true).await),
    ];

    // One alert of every category, with every field a report may carry.
    let now = porchlight_node::now();
    for category in Category::ALL {
        let behavior = (category == Category::SuspiciousActivity)
            .then(|| "tried three car doors on the block".to_owned());
        let report = Report {
            created_at: now,
            expires_at: now + 3600,
            category,
            severity: Severity::Urgent,
            text: format!("{} — Straße „Am Hang“", category.as_str()),
            behavior,
            location: Location {
                text: "Elm St, 400 block".into(),
                geohash: Some("u33dc0".into()),
            },
            clips: vec![ClipRef {
                sha256: [7; 32],
                size: 4_812_331,
                camera: "front_cam".into(),
                captured_at: now - 60,
            }],
            ask_seen: None,
        };
        alice.node.post(Body::Report(report)).await.unwrap();
    }
    for category in Category::ALL {
        let alert = home_assistant
            .next(&topics.alerts, |p| {
                serde_json::from_slice::<Value>(&p.payload).unwrap()["event_type"]
                    == category.as_str()
            })
            .await;
        messages.push(as_line(&alert));
    }
    bridge.stop().await;
    messages.push(as_line(
        &home_assistant
            .next(&topics.availability, |p| &p.payload[..] == b"offline")
            .await,
    ));

    let (ok, out) = tokio::task::spawn_blocking({
        let python = python.clone();
        let messages = messages.clone();
        move || home_assistant_takes(&python, &messages)
    })
    .await
    .unwrap();
    assert!(
        ok,
        "Home Assistant refused what Porchlight published:\n{out}"
    );
    assert!(
        out.contains("1 discovery configs, 10 alerts taken"),
        "{out}"
    );

    // The check can fail: a config without event_types, an unknown event type, an
    // alert sent retained, a topic Home Assistant's matcher refuses.
    let mut config: Value = serde_json::from_str(messages[0]["payload"].as_str().unwrap()).unwrap();
    config.as_object_mut().unwrap().remove("event_types");
    let no_types =
        json!({"topic": topics.discovery, "payload": config.to_string(), "retain": true});
    let mut unknown_type = messages[2].clone();
    unknown_type["payload"] = json!(messages[2]["payload"].as_str().unwrap().replacen(
        r#""event_type":""#,
        r#""event_type":"burglary-"#,
        1
    ));
    let mut retained = messages[2].clone();
    retained["retain"] = json!(true);
    let mut dotted = messages[0].clone();
    dotted["topic"] = json!(topics.discovery.replace("porchlight_", "porchlight."));
    for (bad, why) in [
        (vec![no_types], "event_types"),
        (
            vec![messages[0].clone(), unknown_type],
            "Invalid event type",
        ),
        (vec![messages[0].clone(), retained], "retained"),
        (vec![dotted], "did not take"),
    ] {
        let (ok, out) = tokio::task::spawn_blocking({
            let python = python.clone();
            move || home_assistant_takes(&python, &bad)
        })
        .await
        .unwrap();
        assert!(!ok && out.contains(why), "{why}: {out}");
    }
}

/// Runs `tests/ha/check_automation.py` on a copy of docs/hub-integration.md.
fn home_assistant_reads_the_doc(python: &std::path::Path, doc: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub-integration.md");
    std::fs::write(&path, doc).unwrap();
    let out = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/ha/check_automation.py"
        ))
        .arg(&path)
        .output()
        .expect("the Home Assistant venv's python runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_documented_automation_is_valid_for_the_home_assistant_versions_it_names() {
    let Some(python) = home_assistant_python() else {
        return;
    };
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/hub-integration.md"
    ))
    .unwrap();
    let (ok, out) = home_assistant_reads_the_doc(&python, &doc);
    assert!(ok, "{out}");
    assert!(out.contains("pre-2024.10 automation is valid"), "{out}");
    // The check can fail: a trigger platform Home Assistant does not have.
    let broken = doc.replace("- platform: state", "- platform: stat");
    assert_ne!(broken, doc);
    let (ok, out) = home_assistant_reads_the_doc(&python, &broken);
    assert!(!ok && out.contains("Invalid platform"), "{out}");
}
