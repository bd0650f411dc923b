//! `porchlight`: the neighbor's command. Thin: it parses, calls `porchlight-node`, prints.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use porchlight_node::node::{Event, FeedItem, Node, Setup};
use porchlight_proto::Policy;
use porchlight_proto::item::Body;

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
    let mut config = porchlight_node::config::load(&data_dir)?;
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
    };
    let (node, task) = Node::start(config, setup)
        .await
        .with_context(|| format!("starting the node in {}", data_dir.display()))?;
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
    node.shutdown().await;
    task.await.context("the node task failed")??;
    Ok(())
}
