//! The hub: `run --mqtt/--frigate` start the bridge; `drafts`, `approve`, `discard`
//! decide what camera events become reports.

use std::path::Path;

use anyhow::Context;
use clap::Args;
use porchlight_node::hub::{self, Broker, FrigateApi, Hub, mqtt::Bridge};
use porchlight_node::node::{Config, Node};
use serde_json::{Value, json};

use crate::bad;
use crate::client::Api;
use crate::format::{self, Out};

/// Hub settings for the verbs that run a node (`run`, `up`); they override
/// `porchlight.toml`'s `mqtt` and `frigate`.
#[derive(Debug, Args, Clone, Default)]
pub struct HubArgs {
    /// Bridge Frigate and Home Assistant through this MQTT broker:
    /// mqtt://[user[:password]@]host[:port] (plain TCP, on the home network).
    #[arg(long, value_name = "URL")]
    pub mqtt: Option<String>,
    /// Frigate's HTTP API, where the bridge fetches clips: http://host:5000.
    #[arg(long, value_name = "URL")]
    pub frigate: Option<String>,
}

impl HubArgs {
    /// Applies `--mqtt` and `--frigate` over the config file; a bad URL is exit 2.
    pub fn apply(&self, config: &mut Config) -> anyhow::Result<()> {
        if let Some(url) = &self.mqtt {
            config.hub.mqtt = Some(Broker::parse(url).map_err(|e| bad(format!("--mqtt: {e}")))?);
        }
        if let Some(url) = &self.frigate {
            config.hub.frigate =
                Some(FrigateApi::parse(url).map_err(|e| bad(format!("--frigate: {e}")))?);
        }
        if config.hub.frigate.is_some() && config.hub.mqtt.is_none() {
            return Err(bad(
                "--frigate needs --mqtt (or `mqtt` in porchlight.toml): Frigate's events \
                 come over MQTT",
            ));
        }
        Ok(())
    }
}

/// The hub the API and the bridge share, and the bridge if a broker is set.
pub async fn start(
    node: &Node,
    data_dir: &Path,
    settings: &hub::Settings,
) -> anyhow::Result<(Hub, Option<Bridge>)> {
    let hub = Hub::with_clip_quota(
        node.clone(),
        data_dir,
        settings.auto_post.clone(),
        settings
            .unposted_clip_quota
            .unwrap_or(porchlight_node::hub::DEFAULT_UNPOSTED_CLIP_QUOTA),
    );
    // Expired drafts and their clips, and the quota of clips nobody posted: now and
    // every minute. The task ends when the node stops.
    hub.spawn_sweeper();
    let bridge = match &settings.mqtt {
        Some(broker) => Some(
            Bridge::start(
                hub.clone(),
                broker.clone(),
                settings.frigate.clone(),
                &settings.frigate_topic_prefix,
            )
            .await
            .context("starting the MQTT bridge")?,
        ),
        None => None,
    };
    Ok((hub, bridge))
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The draft's id (or its first 8 characters), from `porchlight drafts`.
    pub id: String,
    /// The report's text [default: the draft's, e.g. "person at the front door camera"].
    #[arg(long)]
    pub text: Option<String>,
    /// The category [default: suspicious-activity with --behavior, else other].
    #[arg(long)]
    pub category: Option<String>,
    /// What the person did (required for suspicious-activity: behavior, not looks).
    #[arg(long)]
    pub behavior: Option<String>,
    /// A coarse place: a block or a corner, not a house number.
    #[arg(long = "where", value_name = "WHERE")]
    pub place: Option<String>,
    /// info, warning or urgent [default: warning].
    #[arg(long)]
    pub severity: Option<String>,
    /// Who may fetch the clip: members (any neighbor, no need to `clip allow`), ask
    /// (you allow each request) or never [default: your clip_policy].
    #[arg(long, value_name = "WHO")]
    pub share: Option<String>,
}

fn draft_id(id: &str) -> anyhow::Result<String> {
    let id = id.trim().to_ascii_lowercase();
    if id.len() < 4 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!(
            "{id:?} is not a draft id: give at least 4 hex digits (see `porchlight drafts`)"
        )));
    }
    Ok(id)
}

pub fn drafts(out: Out, data_dir: &Path) -> anyhow::Result<()> {
    let api = Api::find(data_dir)?;
    let v = api.call("GET", "/v1/drafts", None)?;
    let list = v.as_array().cloned().unwrap_or_default();
    if out.json {
        for d in &list {
            println!("{d}");
        }
        return Ok(());
    }
    if list.is_empty() {
        println!("no drafts: camera events waiting for approval appear here");
        return Ok(());
    }
    let now = porchlight_node::now();
    println!(
        "{:<9} {:<14} {:<9} {:<8} {:<10} TEXT",
        "ID", "CAMERA", "CLIP", "SHARE", "SEEN"
    );
    let mut missing = Vec::new();
    for d in &list {
        let s = |k: &str| d[k].as_str().unwrap_or("").to_owned();
        let (clip, share) = match d["clip_sha256"].as_str() {
            Some(sha) => (sha.get(..8).unwrap_or(sha).to_owned(), s("share")),
            None => {
                missing.push((s("id"), s("clip_error")));
                ("none".to_owned(), "-".to_owned())
            }
        };
        println!(
            "{:<9} {:<14} {:<9} {:<8} {:<10} {}",
            s("id").get(..8).unwrap_or(""),
            s("camera"),
            clip,
            share,
            d["captured_at"]
                .as_u64()
                .map(|t| format::ago(t, now))
                .unwrap_or_default(),
            s("text"),
        );
    }
    for (id, why) in missing {
        println!("{}: no clip: {why}", id.get(..8).unwrap_or(""));
    }
    println!(
        "next: `porchlight approve ID` posts one to the hood (`--share members` lets \
         neighbors fetch its clip without asking you); `porchlight discard ID` drops it"
    );
    Ok(())
}

pub fn approve(out: Out, data_dir: &Path, args: &ApproveArgs) -> anyhow::Result<()> {
    let id = draft_id(&args.id)?;
    let api = Api::find(data_dir)?;
    let mut body = serde_json::Map::new();
    let fields = [
        ("text", &args.text),
        ("category", &args.category),
        ("behavior", &args.behavior),
        ("where", &args.place),
        ("severity", &args.severity),
        ("share", &args.share),
    ];
    for (key, value) in fields {
        if let Some(v) = value {
            body.insert(key.into(), Value::String(v.clone()));
        }
    }
    let v = api.call(
        "POST",
        &format!("/v1/drafts/{id}/approve"),
        Some(Value::Object(body)),
    )?;
    out.object(v.clone(), || {
        println!("{}", v["id"].as_str().unwrap_or(""));
        match v["share"].as_str() {
            Some("members") => eprintln!("its clip: any member may fetch it"),
            Some("ask") => {
                eprintln!("its clip: you allow each request (`porchlight clip requests`)")
            }
            Some("never") => eprintln!("its clip: nobody may fetch it"),
            _ => {}
        }
    });
    Ok(())
}

pub fn discard(out: Out, data_dir: &Path, id: &str) -> anyhow::Result<()> {
    let id = draft_id(id)?;
    let api = Api::find(data_dir)?;
    let v = api.call("POST", &format!("/v1/drafts/{id}/discard"), Some(json!({})))?;
    out.object(v.clone(), || {
        println!(
            "discarded {}; nothing was posted",
            v["discarded"].as_str().unwrap_or("")
        );
    });
    Ok(())
}
