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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use porchlight_node::api;
use porchlight_node::hub::mqtt::Bridge;
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

/// Serves `GET /api/events/<id>/clip.mp4` for the clips it holds; 404 otherwise.
struct FakeFrigate {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeFrigate {
    async fn start(clips: HashMap<String, Vec<u8>>) -> FakeFrigate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let clips = Arc::new(clips);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let clips = clips.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split_whitespace().nth(1).unwrap_or("");
                    let clip = path
                        .strip_prefix("/api/events/")
                        .and_then(|p| p.strip_suffix("/clip.mp4"))
                        .and_then(|id| clips.get(id));
                    let response = match clip {
                        Some(bytes) => {
                            let mut r = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\n\
                                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                                bytes.len()
                            )
                            .into_bytes();
                            r.extend_from_slice(bytes);
                            r
                        }
                        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                    };
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
    let clip = clip_bytes();
    let sha = codec::hex(&Sha256::digest(&clip));
    let frigate = FakeFrigate::start(HashMap::from([(EVENT_ID.to_owned(), clip.clone())])).await;
    let alice = TestNode::found("alice").await;
    let bob = alice.invite("bob").await;
    let hub = Hub::new(alice.node.clone(), alice.dir.path(), vec![]);
    let bridge = Bridge::start(hub.clone(), broker.broker(), Some(frigate.api()))
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
    let fetched = frigate.requests.load(Ordering::SeqCst);
    frigate_mqtt
        .publish(
            "frigate/reviews",
            review("end", "1718987129.308396-fqk5ka", "alert"),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(local.drafts().await.len(), 1);
    assert_eq!(frigate.requests.load(Ordering::SeqCst), fetched);

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
    let bridge = Bridge::start(hub, broker.broker(), None).await.unwrap();
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
    let clip = clip_bytes();
    let frigate = FakeFrigate::start(HashMap::from([(EVENT_ID.to_owned(), clip)])).await;
    let alice = TestNode::found("alice").await;
    let bob = alice.invite("bob").await;
    let hub = Hub::new(alice.node.clone(), alice.dir.path(), vec![]);
    let bridge = Bridge::start(hub.clone(), broker.broker(), Some(frigate.api()))
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
    let rules =
        porchlight_node::hub::Settings::from_file(None, None, &[toml_rule("driveway", "vehicle")])
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
