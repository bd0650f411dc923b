//! `porchlight`: the neighbor's command. Thin: it parses, calls `porchlight-node`, prints.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use porchlight_node::node::{Event, FeedItem, Node, Setup};
use porchlight_proto::Policy;
use porchlight_proto::item::Body;

/// How long a clean stop may take before the process gives up waiting.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(15);
/// How long the invite printed at start stays valid.
const START_INVITE_VALID: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Parser)]
#[command(
    name = "porchlight",
    version,
    about = "Encrypted neighborhood alerts, from neighbor to neighbor"
)]
struct Cli {
    /// Where this node keeps its keys, config and data.
    #[arg(long, global = true, env = "PORCHLIGHT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Listen on this multiaddr instead of the config's (repeatable).
    #[arg(long, global = true)]
    listen: Vec<String>,
    /// Do not look for neighbors on the local network (mDNS).
    #[arg(long, global = true)]
    no_mdns: bool,
    /// Serve the local API on this address instead of the config's.
    #[arg(long, global = true)]
    api: Option<String>,
    /// Machine-readable output (JSON).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the node; on first run, create your identity and a new hood.
    Up {
        /// The new hood's name (first run only).
        #[arg(long, default_value = "My neighborhood")]
        hood: String,
        /// Your display name (first run only).
        #[arg(long)]
        name: Option<String>,
    },
    /// Join a hood with an invite code from a neighbor, then run.
    Join {
        /// The `porchlight1…` code.
        code: String,
        /// Your display name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Run the hood already in the data dir (for services).
    Run,
    /// Print this node's member id and fingerprint.
    Id,
    /// Post a report to the hood (talks to the running node).
    ///
    /// Example: porchlight post --category suspicious-activity --text "man trying car
    /// doors" --behavior "tried three car door handles" --where "Elm St, 400 block"
    Post {
        /// suspicious-activity, package-theft, break-in, vehicle, fire, medical, hazard,
        /// lost-pet, found-pet or other.
        #[arg(long)]
        category: String,
        #[arg(long)]
        text: String,
        /// What the person did (required for suspicious-activity).
        #[arg(long)]
        behavior: Option<String>,
        /// A coarse place: a block or a corner, not a house number.
        #[arg(long = "where")]
        place: Option<String>,
        /// At most 7 characters.
        #[arg(long)]
        geohash: Option<String>,
        /// info, warning or urgent.
        #[arg(long)]
        severity: Option<String>,
        /// Lifetime in hours (default 72).
        #[arg(long)]
        expires_hours: Option<u64>,
    },
    /// List live reports, oldest first.
    Feed,
    /// Print a one-time invite code for a neighbor.
    Invite {
        /// Validity in hours (default 168).
        #[arg(long, default_value_t = 168)]
        hours: u64,
    },
    /// The hood's members.
    Members,
    /// Remove a member by name or id prefix (admins; rekeys).
    Remove { member: String },
    /// This node's identity, hood, peers and counts.
    Status,
}

/// Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad input.
const EXIT_BAD_INPUT: i32 = 2;

/// Talks to the running node's local API.
fn call(
    data_dir: &std::path::Path,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, (i32, String)> {
    let addr = std::fs::read_to_string(data_dir.join(porchlight_node::api::ADDR_FILE));
    let token = std::fs::read_to_string(data_dir.join(porchlight_node::api::TOKEN_FILE));
    let (Ok(addr), Ok(token)) = (addr, token) else {
        return Err((
            EXIT_BAD_INPUT,
            format!(
                "no node is running for {}: start one with `porchlight run` (or `up`)",
                data_dir.display()
            ),
        ));
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let url = format!("http://{}{path}", addr.trim());
    let auth = format!("Bearer {}", token.trim());
    let result = match (method, body) {
        ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
        (_, Some(body)) => agent
            .post(&url)
            .header("Authorization", &auth)
            .send_json(body),
        (_, None) => agent.post(&url).header("Authorization", &auth).send_empty(),
    };
    let mut response = result.map_err(|e| {
        (
            1,
            format!(
                "the node for {} does not answer ({e}); is it still running?",
                data_dir.display()
            ),
        )
    })?;
    let status = response.status();
    let value: serde_json::Value = response
        .body_mut()
        .read_json()
        .map_err(|e| (1, format!("unreadable answer from the node: {e}")))?;
    if status.is_success() {
        Ok(value)
    } else {
        let message = value["error"]
            .as_str()
            .unwrap_or("request failed")
            .to_owned();
        let code = if status.is_client_error() {
            EXIT_BAD_INPUT
        } else {
            1
        };
        Err((code, message))
    }
}

fn print_value(json: bool, value: &serde_json::Value, human: impl FnOnce(&serde_json::Value)) {
    if json {
        println!("{value}");
    } else {
        human(value);
    }
}

/// Runs a verb that talks to the running node; returns the process exit code.
fn client(cli: &Cli, data_dir: &std::path::Path) -> Option<i32> {
    use serde_json::json;
    let result = match &cli.command {
        Command::Post {
            category,
            text,
            behavior,
            place,
            geohash,
            severity,
            expires_hours,
        } => call(
            data_dir,
            "POST",
            "/v1/reports",
            Some(json!({
                "category": category,
                "text": text,
                "behavior": behavior,
                "where": place,
                "geohash": geohash,
                "severity": severity,
                "expires_in_secs": expires_hours.map(|h| h.saturating_mul(3600)),
            })),
        )
        .map(|v| {
            print_value(cli.json, &v, |v| {
                println!("{}", v["id"].as_str().unwrap_or(""))
            })
        }),
        Command::Feed => call(data_dir, "GET", "/v1/feed", None).map(|v| {
            if cli.json {
                for item in v.as_array().into_iter().flatten() {
                    println!("{item}");
                }
            } else {
                for item in v.as_array().into_iter().flatten() {
                    println!(
                        "{} [{}] {}: {} (from {})",
                        item["id"].as_str().unwrap_or("").get(..8).unwrap_or(""),
                        item["severity"]
                            .as_str()
                            .unwrap_or(item["kind"].as_str().unwrap_or("")),
                        item["category"].as_str().unwrap_or(""),
                        item["text"].as_str().unwrap_or(""),
                        item["author_name"].as_str().unwrap_or(""),
                    );
                }
            }
        }),
        Command::Invite { hours } => call(
            data_dir,
            "POST",
            "/v1/invites",
            Some(json!({ "expires_in_secs": hours.saturating_mul(3600) })),
        )
        .map(|v| {
            print_value(cli.json, &v, |v| {
                println!("{}", v["code"].as_str().unwrap_or(""))
            })
        }),
        Command::Members => call(data_dir, "GET", "/v1/members", None).map(|v| {
            print_value(cli.json, &v, |v| {
                for m in v.as_array().into_iter().flatten() {
                    println!(
                        "{}  {}{}",
                        m["fingerprint"].as_str().unwrap_or(""),
                        m["name"].as_str().unwrap_or(""),
                        if m["admin"].as_bool() == Some(true) {
                            " (admin)"
                        } else {
                            ""
                        }
                    );
                }
            })
        }),
        Command::Remove { member } => call(
            data_dir,
            "POST",
            "/v1/members/remove",
            Some(json!({ "member": member })),
        )
        .map(|v| {
            print_value(cli.json, &v, |v| {
                println!("removed {}", v["removed"].as_str().unwrap_or(""))
            })
        }),
        Command::Status => call(data_dir, "GET", "/v1/status", None).map(|v| {
            print_value(cli.json, &v, |v| {
                println!("hood:        {}", v["hood_name"].as_str().unwrap_or("?"));
                println!("member:      {}", v["fingerprint"].as_str().unwrap_or(""));
                println!("members:     {}", v["members"]);
                println!("connected:   {}", v["connected"]);
                println!("items:       {}", v["items"]);
                println!("outbox:      {}", v["outbox"]);
            })
        }),
        _ => return None,
    };
    Some(match result {
        Ok(()) => 0,
        Err((code, message)) => {
            eprintln!("error: {message}");
            code
        }
    })
}

fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("porchlight");
    }
    if let Some(home) = std::env::var_os("HOME") {
        return PathBuf::from(home).join(".local/share/porchlight");
    }
    PathBuf::from("porchlight-data")
}

fn describe(item: &FeedItem) -> String {
    let who = if item.author_name.is_empty() {
        item.author.fingerprint()
    } else {
        item.author_name.clone()
    };
    match &item.body {
        Body::Report(r) => {
            let place = if r.location.text.is_empty() {
                String::new()
            } else {
                format!(" @ {}", r.location.text)
            };
            format!(
                "[{}] {} {}{}: {} (from {who})",
                r.severity.as_str(),
                r.category.as_str(),
                item.id.to_hex().get(..8).unwrap_or_default(),
                place,
                r.text
            )
        }
        Body::Update(u) => format!(
            "update to {}: {} (from {who})",
            &u.report.to_hex()[..8],
            u.text
        ),
        Body::Resolve(r) => format!(
            "all clear on {}: {} (from {who})",
            &r.report.to_hex()[..8],
            r.text
        ),
        Body::Retract(r) => format!("{who} retracted {}", &r.report.to_hex()[..8]),
        Body::Membership(_) => String::new(),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "porchlight=info,porchlight_node=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let data_dir = cli.data_dir.clone().unwrap_or_else(default_data_dir);
    if let Some(code) = client(&cli, &data_dir) {
        std::process::exit(code);
    }
    let mut config = porchlight_node::config::load(&data_dir)?;
    if let Some(api) = &cli.api {
        config.api = Some(
            api.parse()
                .with_context(|| format!("--api {api:?} is not an address like 127.0.0.1:8484"))?,
        );
    }
    if !cli.listen.is_empty() {
        config.listen = cli
            .listen
            .iter()
            .map(|a| {
                a.parse()
                    .with_context(|| format!("--listen {a:?} is not a multiaddr"))
            })
            .collect::<anyhow::Result<_>>()?;
    }
    if cli.no_mdns {
        config.mdns = false;
    }
    let (setup, print_invite) = match cli.command {
        Command::Id => {
            let (keys, _) = porchlight_node::identity::load_or_create(&data_dir)?;
            println!("member id:   {}", keys.id());
            println!("fingerprint: {}", keys.id().fingerprint());
            return Ok(());
        }
        Command::Up { hood, name } => {
            if let Some(name) = name {
                config.name = name;
            }
            (
                Setup::Found {
                    hood_name: hood,
                    policy: Policy::default(),
                },
                true,
            )
        }
        Command::Join { code, name } => {
            if let Some(name) = name {
                config.name = name;
            }
            (Setup::Join { code }, false)
        }
        Command::Run => (Setup::Existing, false),
        _ => unreachable!("client verbs returned above"),
    };
    let api_addr = config.api;
    let (node, task) = Node::start(config, setup)
        .await
        .with_context(|| format!("starting the node in {}", data_dir.display()))?;
    let api = match api_addr {
        Some(addr) => Some(
            porchlight_node::api::serve(node.clone(), addr, &data_dir)
                .await
                .context("starting the local API")?,
        ),
        None => None,
    };
    let status = node.status().await?;
    println!(
        "hood:        {}",
        status.hood_name.as_deref().unwrap_or("?")
    );
    println!("member:      {}", status.member.fingerprint());
    println!("peer id:     {}", status.peer_id);
    println!("members:     {}", status.members);
    for addr in &status.listen {
        println!("listening:   {addr}");
    }
    if let Some(api) = &api {
        println!("api:         http://{}", api.addr);
    }
    if print_invite {
        let code = node.invite(START_INVITE_VALID).await?;
        println!("invite (one neighbor, valid 24 h):\n{code}");
    }
    println!("ready: alerts from the hood appear below; Ctrl-C stops");
    let mut events = node.events();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            event = events.recv() => match event {
                Ok(Event::Item(item)) => println!("{}", describe(&item)),
                Ok(Event::Membership) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => eprintln!("({n} alerts skipped: the terminal was too slow)"),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    if let Some(api) = api {
        api.stop();
    }
    // The event loop flushes the store and stops; give it a bounded time, so that a
    // service manager's stop always ends the process.
    let stopped = tokio::time::timeout(SHUTDOWN_WAIT, async {
        node.shutdown().await;
        task.await
    })
    .await;
    match stopped {
        Ok(result) => result.context("the node task failed")??,
        Err(_) => anyhow::bail!("the node did not stop within {SHUTDOWN_WAIT:?}"),
    }
    // Everything is flushed: exit now rather than wait for the runtime to wind down
    // background work that no longer matters.
    std::process::exit(0)
}
