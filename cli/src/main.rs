//! `porchlight`: the neighbor's command. Thin: it parses, calls `porchlight-node` (to set
//! up a data dir or run the node) or the running node's local API, and prints.

mod client;
mod clip_verbs;
mod format;
mod hub_verbs;
mod open;
mod setup;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use porchlight_node::config;
use porchlight_node::local::{self, LocalError};
use porchlight_node::node::{Event, Node, NodeError, Setup};
use porchlight_node::store::StoreError;
use serde_json::json;

/// How long a clean stop may take before the process gives up waiting.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(15);
/// How long the invite `up` prints stays valid.
const START_INVITE_VALID: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Parser)]
#[command(
    name = "porchlight",
    version,
    about = "Encrypted neighborhood alerts, from neighbor to neighbor",
    after_help = "Start here:\n  porchlight up --name Alice --hood \"Elm Street\"   \
                  first run: identity, hood, invite, node\n  \
                  porchlight join CODE --name Bob && porchlight run   a neighbor joins\n\n\
                  Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad input."
)]
struct Cli {
    /// Where this node keeps its keys, config and data [default: $PORCHLIGHT_DATA_DIR if
    /// set, else $XDG_DATA_HOME/porchlight, else ~/.local/share/porchlight].
    // Not clap's `env`: with the variable set, clap's usage lines would show
    // `--data-dir <DIR>` as if the command line had it.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Machine-readable output: JSON (one object per line for lists and streams).
    #[arg(long, global = true)]
    json: bool,
    /// More log detail (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Only warnings and errors in the log; no progress.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

/// Network settings for `join`: it serves no API.
#[derive(Debug, Args, Clone, Default)]
struct JoinNetArgs {
    /// Listen on this multiaddr while joining (by default `join` opens no listener).
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<String>,
    /// Do not look for neighbors on the local network (mDNS).
    #[arg(long)]
    no_mdns: bool,
}

/// Network settings for the verbs that run a node (`run`, `up`).
#[derive(Debug, Args, Clone, Default)]
struct NetArgs {
    /// Listen on this multiaddr instead of the config's (repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<String>,
    /// Serve the local API on this address instead of the config's (127.0.0.1:8484).
    #[arg(long, value_name = "ADDR")]
    api: Option<String>,
    /// Also serve the page to phones on the home LAN, over TLS, on this address (the
    /// node's LAN address and a port: 192.168.1.20:8443); see docs/web.md.
    #[arg(long, value_name = "ADDR")]
    web_lan: Option<String>,
    /// Do not look for neighbors on the local network (mDNS).
    #[arg(long)]
    no_mdns: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create this node's identity (a new key) in the data dir and set your name.
    #[command(after_help = "Example:\n  porchlight init --name Alice")]
    Init {
        /// Your display name in the hood.
        #[arg(long)]
        name: String,
    },
    /// Neighborhoods ("hoods").
    #[command(subcommand)]
    Hood(HoodCommand),
    /// Join a hood with an invite code from a neighbor (no running node needed).
    #[command(
        after_help = "Example:\n  porchlight join porchlight1qv… --name Bob\n  \
                            porchlight run"
    )]
    Join {
        /// The `porchlight1…` code.
        code: String,
        /// Your display name (else the one `init` set).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        net: JoinNetArgs,
    },
    /// Run the node in the foreground (logs to stdout; SIGTERM stops it cleanly).
    #[command(after_help = "Examples:\n  porchlight run\n  \
                      porchlight run --listen /ip4/0.0.0.0/tcp/4001 --api 127.0.0.1:8484\n  \
                      porchlight run --mqtt mqtt://homeassistant.local --frigate http://frigate.local:5000\n  \
                      porchlight --json run      # JSON log lines")]
    Run {
        #[command(flatten)]
        net: NetArgs,
        #[command(flatten)]
        hub: hub_verbs::HubArgs,
    },
    /// First run in one step: init and create a hood if needed, print an invite, run.
    #[command(
        after_help = "Examples:\n  porchlight up --name Alice --hood \"Elm Street\"\n  \
                            porchlight up --name Alice --hood \"Elm Street\" --no-mdns \\\n    \
                            --listen /ip4/127.0.0.1/tcp/4001 --api 127.0.0.1:8484   # try it privately"
    )]
    Up {
        /// Your display name (first run only).
        #[arg(long)]
        name: Option<String>,
        /// The new hood's name (first run only).
        #[arg(long, default_value = "My neighborhood")]
        hood: String,
        /// The new hood's rules (first run only).
        #[command(flatten)]
        policy: setup::PolicyArgs,
        #[command(flatten)]
        net: NetArgs,
        #[command(flatten)]
        hub: hub_verbs::HubArgs,
    },
    /// Print this node's member id and fingerprint (creates nothing: `init` does).
    #[command(after_help = "Example:\n  porchlight id")]
    Id,
    /// Print a one-time invite code for one neighbor.
    #[command(after_help = "Examples:\n  porchlight invite\n  \
                            porchlight invite --expires 24h --qr")]
    Invite {
        /// How long the code stays valid: 90s, 30m, 24h, 7d or 2w (from 1 second to 30 days).
        #[arg(long, default_value = "7d", value_parser = format::parse_invite_lifetime)]
        expires: Duration,
        /// Also draw the code as a QR code in the terminal.
        #[arg(long)]
        qr: bool,
    },
    /// Publish a report to the hood; prints its id.
    #[command(
        after_help = "Example:\n  porchlight post --category suspicious-activity \\\n    \
                            --text \"man trying car doors\" \\\n    \
                            --behavior \"tried the handles of three parked cars\" \\\n    \
                            --where \"Elm St, 400 block\" --severity warning \
                            --clip doorbell.mp4"
    )]
    Post(PostArgs),
    /// List live reports, newest last.
    #[command(after_help = "Examples:\n  porchlight feed --since 24h\n  \
                            porchlight feed --follow --category break-in\n  \
                            porchlight --json feed    # one JSON object per line")]
    Feed {
        /// Keep printing new reports as they arrive (Ctrl-C stops).
        #[arg(long)]
        follow: bool,
        /// Only reports from this recent: 30m, 24h, 7d.
        #[arg(long, value_parser = format::parse_duration)]
        since: Option<Duration>,
        /// Only this category (and updates to its reports).
        #[arg(long)]
        category: Option<String>,
    },
    /// Add news to one of your reports.
    #[command(after_help = "Example:\n  porchlight update 3f2a9c1b --text \"he left towards 5th\"")]
    Update {
        /// The report's id (or its first 8 characters).
        id: String,
        /// The news: what changed (at most 1000 bytes).
        #[arg(long)]
        text: String,
        /// A new severity: info, warning or urgent.
        #[arg(long)]
        severity: Option<String>,
    },
    /// Say "all clear" on one of your reports.
    #[command(after_help = "Example:\n  porchlight resolve 3f2a9c1b --text \"it was the plumber\"")]
    Resolve {
        /// The report's id (or its first 8 characters).
        id: String,
        /// What it turned out to be (optional, at most 1000 bytes).
        #[arg(long, default_value = "")]
        text: String,
    },
    /// Take one of your reports back: every neighbor's node deletes it.
    #[command(after_help = "Example:\n  porchlight retract 3f2a9c1b")]
    Retract {
        /// The report's id (or its first 8 characters).
        id: String,
    },
    /// Tell the author of an urgent report that asked that you have seen it (`feed`
    /// tells them too, when it prints the report). Only the author learns it was you.
    #[command(after_help = "Example:\n  porchlight seen 3f2a9c1b")]
    Seen {
        /// The report's id (or its first 8 characters).
        id: String,
    },
    /// The hood's members: name, fingerprint, role, joined, last seen.
    #[command(after_help = "Example:\n  porchlight members")]
    Members,
    /// Remove a member by name or id prefix (admins only); the hood rekeys. The hood's
    /// only admin cannot remove herself: `promote` someone first.
    #[command(after_help = "Examples:\n  porchlight remove Mallory\n  \
                            porchlight promote Bob && porchlight remove Alice   # Alice leaves")]
    Remove {
        /// A name, or the start of a member id.
        member: String,
    },
    /// Hide a member's reports on this node only (nobody is told; `unmute` undoes it).
    #[command(after_help = "Example:\n  porchlight mute Mallory")]
    Mute {
        /// A name, or the start of a member id.
        member: String,
    },
    /// Show a muted member's reports again.
    #[command(after_help = "Example:\n  porchlight unmute Mallory")]
    Unmute {
        /// A name, or the start of a member id.
        member: String,
    },
    /// Make a member an admin (admins only), e.g. before the only admin leaves.
    #[command(after_help = "Example:\n  porchlight promote Bob")]
    Promote {
        /// A name, or the start of a member id.
        member: String,
    },
    /// Identity, hood, policy, epoch, members, connected peers, addresses, API.
    #[command(after_help = "Example:\n  porchlight status")]
    Status,
    /// Doorbell clips: fetch a neighbor's, answer requests for yours.
    #[command(subcommand)]
    Clip(ClipCommand),
    /// Sign in to the page the node serves: prints a one-time link (and opens it where a
    /// desktop is present).
    #[command(after_help = "Examples:\n  porchlight open\n  \
                            porchlight open --print    # only print the link\n  \
                            porchlight open --pair     # pair a phone on the home LAN (web_lan)\n  \
                            porchlight open --unpair   # sign every paired phone out")]
    Open {
        /// Only print the link; do not start a browser.
        #[arg(long)]
        print: bool,
        /// A one-time pairing link for a phone on the home LAN (needs `web_lan`), with
        /// the fingerprint of the page's certificate.
        #[arg(long, conflicts_with_all = ["print", "unpair"])]
        pair: bool,
        /// Unpair every phone paired on the home LAN.
        #[arg(long, conflicts_with = "print")]
        unpair: bool,
    },
    /// Camera events (Frigate, the webhook) waiting for you to approve or discard.
    #[command(after_help = "Examples:\n  porchlight drafts\n  \
                            porchlight --json drafts    # one JSON object per line")]
    Drafts,
    /// Post a draft to the hood as a report; you may set its text and category.
    #[command(after_help = "Examples:\n  porchlight approve 3f2a9c1b\n  \
                            porchlight approve 3f2a9c1b --text \"man trying car doors\" \\\n    \
                            --behavior \"tried the handles of three parked cars\" \
                            --where \"Elm St, 400 block\"")]
    Approve(hub_verbs::ApproveArgs),
    /// Drop a draft: nothing is posted, and its clip is deleted unless a report uses it.
    #[command(after_help = "Example:\n  porchlight discard 3f2a9c1b")]
    Discard {
        /// The draft's id (or its first 8 characters), from `porchlight drafts`.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClipCommand {
    /// Fetch a clip a report references from its owner; verified against its SHA-256
    /// before it is written.
    #[command(after_help = "Example:\n  porchlight clip get 9f86d081884c7d65… -o porch.mp4")]
    Get {
        /// The clip's SHA-256 (from `porchlight feed --json`: `clips[].sha256`).
        sha256: String,
        /// Where to write the clip.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// How long to wait for an owner who allows each request: 30s, 10m, 1h.
        #[arg(long, default_value = "10m", value_parser = format::parse_duration)]
        wait: Duration,
    },
    /// Neighbors' requests for your clips, waiting for you (clip policy `ask`).
    #[command(after_help = "Example:\n  porchlight clip requests")]
    Requests,
    /// Let a neighbor have the clip they asked for.
    #[command(after_help = "Example:\n  porchlight clip allow 1a2b3c4d")]
    Allow {
        /// The request's id, from `porchlight clip requests`.
        id: String,
    },
    /// Refuse a neighbor's request for a clip.
    #[command(after_help = "Example:\n  porchlight clip deny 1a2b3c4d")]
    Deny {
        /// The request's id, from `porchlight clip requests`.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum HoodCommand {
    /// Start a new hood; you become its first admin. Its rules are fixed here.
    #[command(after_help = "Examples:\n  porchlight hood create \"Elm Street\"\n  \
                            porchlight hood create \"Elm Street\" --invite admins \
                            --posts-per-hour 10 --expires 24h --max-expires 7d")]
    Create {
        /// The hood's name, as members see it.
        name: String,
        #[command(flatten)]
        policy: setup::PolicyArgs,
    },
}

#[derive(Debug, Args)]
struct PostArgs {
    /// suspicious-activity, package-theft, break-in, vehicle, fire, medical, hazard,
    /// lost-pet, found-pet or other.
    #[arg(long)]
    category: String,
    /// What happened.
    #[arg(long)]
    text: String,
    /// What the person did (required for suspicious-activity: behavior, not looks).
    #[arg(long)]
    behavior: Option<String>,
    /// A coarse place: a block or a corner, not a house number.
    #[arg(long = "where", value_name = "WHERE")]
    place: Option<String>,
    /// A geohash of at most 7 characters (a block).
    #[arg(long)]
    geohash: Option<String>,
    /// info, warning or urgent [default: warning].
    #[arg(long)]
    severity: Option<String>,
    /// A doorbell clip: hashed into the report, kept in this node's library (repeatable).
    #[arg(long, value_name = "FILE")]
    clip: Vec<PathBuf>,
    /// Camera name for the clips.
    #[arg(long)]
    camera: Option<String>,
    /// Lifetime: 30m, 24h, 3d [default: 72h; at most the hood's maximum, 30 days unless
    /// the hood's policy says less].
    #[arg(long, value_parser = format::parse_duration)]
    expires: Option<Duration>,
    /// Ask neighbors to acknowledge that they have seen it (urgent reports only): your
    /// feed then shows "seen by N of M", and only you see who.
    #[arg(long)]
    ask_seen: bool,
}

/// An error that is the user's to fix: exit code 2.
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

pub fn bad(message: impl Into<String>) -> anyhow::Error {
    BadInput(message.into()).into()
}

/// Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad input.
const EXIT_FAILURE: i32 = 1;
const EXIT_BAD_INPUT: i32 = 2;

fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PORCHLIGHT_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("porchlight");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".local/share/porchlight");
    }
    PathBuf::from("porchlight-data")
}

/// Logs: `run` writes them to stdout (a service manager collects them), every other verb
/// to stderr so that stdout stays the verb's output.
fn init_logging(cli: &Cli) {
    let default = if cli.quiet {
        "warn"
    } else {
        match cli.verbose {
            0 => "porchlight=info,porchlight_node=info,warn",
            1 => "porchlight=debug,porchlight_node=debug,info",
            _ => "porchlight=trace,porchlight_node=trace,debug",
        }
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let to_stdout = matches!(cli.command, Command::Run { .. });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match (to_stdout, cli.json) {
        (true, true) => builder.json().with_writer(std::io::stdout).init(),
        (true, false) => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_writer(std::io::stdout)
            .init(),
        (false, _) => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .init(),
    }
}

/// glibc's malloc gives threads that allocate at the same time arenas of their own (up
/// to eight per core) and keeps what is freed in each for that arena alone. A node that
/// serves a large feed on its reader thread, its tokio workers and sled's threads grew
/// from 73 to 129 MiB that way while the memory in use stayed the same; with one arena
/// its peak stayed at 73 MiB (docs/performance.md, "Feed and status on a large store").
/// The arena count can only be set before the first allocation (the workspace forbids
/// the `unsafe` a `mallopt` call needs), so a long-running verb runs itself again with
/// `MALLOC_ARENA_MAX=1` in its environment, unless that (or any value an operator chose)
/// is set already. The process keeps its id, arguments and open files; if the exec
/// fails, it runs on as it is.
fn one_malloc_arena(command: &Command) {
    const VAR: &str = "MALLOC_ARENA_MAX";
    let long_running = matches!(
        command,
        Command::Run { .. } | Command::Up { .. } | Command::Join { .. }
    );
    if !cfg!(all(target_os = "linux", target_env = "gnu"))
        || !long_running
        || std::env::var_os(VAR).is_some()
    {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    use std::os::unix::process::CommandExt as _;
    let _failed = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(VAR, "1")
        .exec();
}

fn main() {
    let cli = Cli::parse();
    one_malloc_arena(&cli.command);
    init_logging(&cli);
    let data_dir = cli.data_dir.clone().unwrap_or_else(default_data_dir);
    let result = match client::run(&cli, &data_dir) {
        Some(result) => result,
        None => match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime.block_on(local_verb(&cli, &data_dir)),
            Err(e) => Err(anyhow::Error::new(e).context("cannot start the async runtime")),
        },
    };
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            let code = if e.downcast_ref::<BadInput>().is_some() {
                EXIT_BAD_INPUT
            } else {
                EXIT_FAILURE
            };
            eprintln!("error: {e:#}");
            std::process::exit(code)
        }
    }
}

/// Errors of the local verbs that are the user's to fix become [`BadInput`].
fn local_error(e: LocalError, data_dir: &Path) -> anyhow::Error {
    match e {
        LocalError::AlreadyInHood { .. } | LocalError::EmptyName => bad(e.to_string()),
        LocalError::Store(StoreError::Locked) => bad(format!(
            "a node is running for {}: stop it first (or use another --data-dir)",
            data_dir.display()
        )),
        other => anyhow::Error::new(other),
    }
}

/// An invite's refusal, with times as dates.
pub fn invite_error(e: porchlight_proto::invite::InviteError) -> anyhow::Error {
    match e {
        porchlight_proto::invite::InviteError::Expired { expired_at } => bad(format!(
            "the invite expired at {}; ask for a new one",
            porchlight_node::words::utc(expired_at)
        )),
        other => bad(other.to_string()),
    }
}

fn node_error(e: NodeError, data_dir: &Path) -> anyhow::Error {
    match e {
        NodeError::Invite(e) => invite_error(e),
        NodeError::NoHood | NodeError::JoinRefused(_) => bad(e.to_string()),
        NodeError::Store(StoreError::Locked) => {
            local_error(LocalError::Store(StoreError::Locked), data_dir)
        }
        other => anyhow::Error::new(other),
    }
}

fn no_hood(data_dir: &Path) -> anyhow::Error {
    bad(format!(
        "there is no hood in {}: create one with `porchlight hood create NAME`, \
         or join with an invite: `porchlight join CODE` (or check --data-dir)",
        data_dir.display()
    ))
}

/// Applies `--listen`, `--api` and `--no-mdns` over the config file.
fn apply_net(config: &mut porchlight_node::node::Config, net: &NetArgs) -> anyhow::Result<()> {
    if let Some(api) = &net.api {
        config.api = Some(api.parse().map_err(|_| {
            bad(format!(
                "--api {api:?} is not an address like 127.0.0.1:8484"
            ))
        })?);
    }
    if !net.listen.is_empty() {
        config.listen = net
            .listen
            .iter()
            .map(|a| {
                a.parse()
                    .map_err(|e| bad(format!("--listen {a:?} is not a multiaddr: {e}")))
            })
            .collect::<anyhow::Result<_>>()?;
    }
    if net.no_mdns {
        config.mdns = false;
    }
    if let Some(lan) = &net.web_lan {
        config.web_lan = Some(lan.parse().map_err(|_| {
            bad(format!(
                "--web-lan {lan:?} is not an address like 192.168.1.20:8443"
            ))
        })?);
    }
    Ok(())
}

fn load_config(data_dir: &Path) -> anyhow::Result<porchlight_node::node::Config> {
    config::load(data_dir).map_err(|e| bad(e.to_string()))
}

/// The verbs that work on the data dir itself: set up, join, run.
async fn local_verb(cli: &Cli, data_dir: &Path) -> anyhow::Result<()> {
    let out = format::Out::new(cli.json);
    match &cli.command {
        Command::Init { name } => {
            if name.trim().is_empty() {
                return Err(local_error(LocalError::EmptyName, data_dir));
            }
            // In a hood, the name is the one the roster has (set when founding or
            // joining); changing the config then would only mislead.
            if let Some(hood) = local::hood(data_dir).map_err(|e| local_error(e, data_dir))? {
                return Err(bad(format!(
                    "{} is already set up, in the hood {:?}; the name members see was fixed \
                     when you joined",
                    data_dir.display(),
                    hood.name
                )));
            }
            let done = local::init(data_dir, name).map_err(|e| local_error(e, data_dir))?;
            out.object(
                json!({
                    "member": done.member.to_hex(),
                    "fingerprint": done.member.fingerprint(),
                    "name": done.name,
                    "created": done.created,
                    "data_dir": data_dir.display().to_string(),
                }),
                || {
                    if done.created {
                        println!("created your identity in {}", data_dir.display());
                    } else {
                        println!("your identity in {} was already there; name set", data_dir.display());
                    }
                    println!("name:        {}", done.name);
                    println!("fingerprint: {}", done.member.fingerprint());
                    println!("next: `porchlight hood create NAME` to start a hood, or `porchlight join CODE`");
                },
            );
            Ok(())
        }
        Command::Hood(HoodCommand::Create { name, policy }) => {
            let policy = policy.policy()?;
            let hood = setup::or_undo(data_dir, async {
                local::create_hood(data_dir, name, policy)
                    .await
                    .map_err(|e| local_error(e, data_dir))
            })
            .await?;
            out.object(
                json!({
                    "hood": hood.id.to_hex(),
                    "hood_name": hood.name,
                    "policy": porchlight_node::api::policy_json(&policy),
                }),
                || {
                    println!("created the hood {:?}; you are its first admin", hood.name);
                    println!(
                        "policy:      {}",
                        format::policy_line(&porchlight_node::api::policy_json(&policy))
                    );
                    println!(
                        "next: `porchlight run`, then `porchlight invite` in another terminal"
                    );
                },
            );
            Ok(())
        }
        Command::Id => {
            if !data_dir.join(porchlight_node::identity::FILE).exists() {
                return Err(bad(format!(
                    "there is no identity in {}: create one with `porchlight init --name NAME`",
                    data_dir.display()
                )));
            }
            let (keys, _) = porchlight_node::identity::load_or_create(data_dir)?;
            out.object(
                json!({ "member": keys.id().to_hex(), "fingerprint": keys.id().fingerprint() }),
                || {
                    println!("member id:   {}", keys.id());
                    println!("fingerprint: {}", keys.id().fingerprint());
                },
            );
            Ok(())
        }
        Command::Join { code, name, net } => join(cli, data_dir, code, name.as_deref(), net).await,
        Command::Run { net, hub } => {
            // Judged before anything is read or written: a mistyped --data-dir gets an
            // error, not a new identity, database and settings file.
            if !setup::has_hood_files(data_dir) {
                return Err(no_hood(data_dir));
            }
            let mut config = load_config(data_dir)?;
            apply_net(&mut config, net)?;
            hub.apply(&mut config)?;
            serve(cli, data_dir, config, Setup::Existing, None).await
        }
        Command::Up {
            name,
            hood,
            policy,
            net,
            hub,
        } => {
            // Every flag is judged before anything is created.
            let policy = policy.policy()?;
            if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                return Err(local_error(LocalError::EmptyName, data_dir));
            }
            let before = setup::Before::look(data_dir);
            let started = async {
                let mut config = load_config(data_dir)?;
                apply_net(&mut config, net)?;
                hub.apply(&mut config)?;
                if let Some(name) = name {
                    local::init(data_dir, name).map_err(|e| local_error(e, data_dir))?;
                    config.name = name.trim().to_owned();
                }
                Ok(config)
            }
            .await;
            let config = match started {
                Ok(config) => config,
                Err(e) => {
                    before.undo();
                    return Err(e);
                }
            };
            let setup = Setup::Found {
                hood_name: hood.clone(),
                policy,
            };
            serve(cli, data_dir, config, setup, Some(before)).await
        }
        _ => Err(anyhow::anyhow!(
            "internal: a client verb reached the local path"
        )),
    }
}

/// Joins with `code` and stops: `porchlight run` then runs the node.
async fn join(
    cli: &Cli,
    data_dir: &Path,
    code: &str,
    name: Option<&str>,
    net: &JoinNetArgs,
) -> anyhow::Result<()> {
    let out = format::Out::new(cli.json);
    // The invite is judged before anything is written.
    let (_, ticket) = porchlight_proto::invite::parse(code.trim(), porchlight_node::now())
        .map_err(invite_error)?;
    if let Some(hood) = local::hood(data_dir).map_err(|e| local_error(e, data_dir))? {
        return Err(local_error(
            LocalError::AlreadyInHood { name: hood.name },
            data_dir,
        ));
    }
    let net = NetArgs {
        listen: net.listen.clone(),
        api: None,
        web_lan: None,
        no_mdns: net.no_mdns,
    };
    // A join that fails (refused, nobody reachable) leaves the data dir as it was; once
    // the hood admitted us, nothing is taken back.
    let (node, task) = setup::or_undo(data_dir, async {
        if let Some(name) = name {
            local::init(data_dir, name).map_err(|e| local_error(e, data_dir))?;
        }
        let mut config = load_config(data_dir)?;
        // Joining needs no listener of its own: the inviter answers on our connection.
        // This keeps `join` from contending for the ports a running node of another
        // hood uses.
        config.listen = Vec::new();
        config.api = None;
        apply_net(&mut config, &net)?;
        if !cli.quiet && !cli.json {
            eprintln!("contacting {:?} …", ticket.hood_name);
        }
        Node::start(
            config,
            Setup::Join {
                code: code.trim().to_owned(),
            },
        )
        .await
        .map_err(|e| node_error(e, data_dir))
    })
    .await?;
    let status = node.status().await;
    node.shutdown().await;
    match tokio::time::timeout(SHUTDOWN_WAIT, task).await {
        Ok(Ok(result)) => result.map_err(|e| node_error(e, data_dir))?,
        Ok(Err(e)) => return Err(anyhow::Error::new(e).context("the node task failed")),
        Err(_) => anyhow::bail!("the node did not stop within {SHUTDOWN_WAIT:?}"),
    }
    let status = status?;
    out.object(
        json!({
            "hood": status.hood.map(|h| h.to_hex()),
            "hood_name": status.hood_name,
            "members": status.members,
            "member": status.member.to_hex(),
        }),
        || {
            println!(
                "joined {:?} ({} members)",
                status.hood_name.as_deref().unwrap_or("?"),
                status.members
            );
            println!("next: `porchlight run` to start your node");
        },
    );
    Ok(())
}

/// Starts the node and the API, prints what `up`/`run` print, and serves until a signal.
/// `up` is interactive and passes what the data dir held before it: a node that cannot
/// start (a port in use) leaves nothing behind.
async fn serve(
    cli: &Cli,
    data_dir: &Path,
    config: porchlight_node::node::Config,
    setup: Setup,
    up: Option<setup::Before>,
) -> anyhow::Result<()> {
    let interactive = up.is_some();
    let mut signals = StopSignals::install()?;
    // Connections (the API's, the swarm's) and sled's files need more than a 1,024 default.
    if let Some(limit) = porchlight_node::api::raise_descriptor_limit() {
        tracing::debug!(limit, "open-files limit");
    }
    let api_addr = config.api;
    let web_lan = config.web_lan;
    let hub_settings = config.hub.clone();
    if let (Some(before), Some(addr)) = (&up, api_addr)
        && addr.port() != 0
        && let Err(e) = std::net::TcpListener::bind(addr)
    {
        before.undo();
        anyhow::bail!("cannot listen on {addr}: {e}");
    }
    let (node, task) = Node::start(config, setup)
        .await
        .map_err(|e| {
            if let Some(before) = &up {
                before.undo();
            }
            match e {
                NodeError::NoHood => no_hood(data_dir),
                other => node_error(other, data_dir),
            }
        })
        .with_context(|| format!("starting the node in {}", data_dir.display()))?;
    let started = async {
        let (hub, bridge) = hub_verbs::start(&node, data_dir, &hub_settings).await?;
        let api = match api_addr {
            Some(addr) => Some(
                porchlight_node::api::serve_with_lan(node.clone(), addr, data_dir, hub, web_lan)
                    .await
                    .context("starting the local API")?,
            ),
            None => None,
        };
        let status = node.status().await?;
        let invite = if interactive {
            Some(node.invite(START_INVITE_VALID).await?)
        } else {
            None
        };
        anyhow::Ok((bridge, api, status, invite))
    }
    .await;
    let (bridge, api, status, invite) = match started {
        Ok(started) => started,
        Err(e) => {
            // The node runs already: stop it cleanly (it flushes the store) before the
            // error ends the process.
            node.shutdown().await;
            let _ = tokio::time::timeout(SHUTDOWN_WAIT, task).await;
            return Err(e);
        }
    };
    let hood_name = status.hood_name.as_deref().unwrap_or("?");
    let api_url = api.as_ref().map(|a| format!("http://{}", a.addr));
    let lan_url = api
        .as_ref()
        .and_then(|a| a.lan)
        .map(|a| format!("https://{a}/"));
    if interactive {
        let out = format::Out::new(cli.json);
        out.object(
            json!({
                "event": "ready",
                "hood_name": hood_name,
                "member": status.member.to_hex(),
                "fingerprint": status.member.fingerprint(),
                "peer_id": status.peer_id.to_string(),
                "members": status.members,
                "listen": status.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "api": api_url,
                "web_lan": lan_url,
                "invite": invite,
            }),
            || {
                println!("hood:        {hood_name}");
                println!("member:      {}", status.member.fingerprint());
                println!("peer id:     {}", status.peer_id);
                println!("members:     {}", status.members);
                for addr in &status.listen {
                    println!("listening:   {addr}");
                }
                if let Some(url) = &api_url {
                    println!("api:         {url}");
                }
                if let Some(url) = &lan_url {
                    println!("home LAN:    {url} (pair a phone: `porchlight open --pair`)");
                }
                if let Some(code) = &invite {
                    println!("invite (one neighbor, valid 24 h):\n{code}");
                }
                println!("ready: alerts from the hood appear below; Ctrl-C stops");
            },
        );
    } else {
        tracing::info!(
            hood = hood_name,
            member = %status.member.fingerprint(),
            peer_id = %status.peer_id,
            members = status.members,
            api = api_url.as_deref().unwrap_or("off"),
            web_lan = lan_url.as_deref().unwrap_or("off"),
            "ready"
        );
    }
    // Under systemd with `Type=notify`: up now (the API answers). The event loop sends
    // the watchdog's `WATCHDOG=1` from here on.
    if let Err(e) = porchlight_node::notify::notify("READY=1") {
        tracing::warn!(error = %e, "cannot tell systemd the node is ready");
    }
    let mut events = node.events();
    let stop = signals.wait();
    tokio::pin!(stop);
    let mut task = task;
    // The node's event loop ending on its own (a failed store) ends the process, with an
    // error, so that a service manager restarts it.
    let mut ended = None;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            joined = &mut task => {
                ended = Some(joined);
                break;
            }
            event = events.recv() => match event {
                Ok(Event::Item(item)) => {
                    if interactive {
                        if cli.json {
                            println!("{}", porchlight_node::api::feed_json(&item));
                        } else {
                            println!("{}", format::item_line(&porchlight_node::api::feed_json(&item), porchlight_node::now()));
                        }
                    } else {
                        // Headless logs say that an alert came, not what it says: logs
                        // travel further than the data dir (journals, bug reports).
                        tracing::info!(id = %&item.id.to_hex()[..8], author = %item.author.fingerprint(), kind = ?item.body.kind(), "alert");
                    }
                }
                Ok(Event::Membership) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => tracing::warn!(skipped = n, "the output was too slow; alerts skipped (see `porchlight feed`)"),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    tracing::info!("stopping");
    let _ = porchlight_node::notify::notify("STOPPING=1");
    if let Some(api) = api {
        api.stop();
    }
    if let Some(bridge) = bridge {
        bridge.stop().await;
    }
    if let Some(joined) = ended {
        let failure = match joined {
            Ok(Ok(())) => anyhow::anyhow!("the node stopped on its own"),
            Ok(Err(e)) => anyhow::Error::new(e),
            Err(e) => anyhow::Error::new(e).context("the node task failed"),
        };
        tracing::error!(error = %format!("{failure:#}"), "the node stopped");
        return Err(failure.context(format!("the node for {} stopped", data_dir.display())));
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
    Ok(())
}

/// SIGTERM and SIGINT handlers, installed at once (a signal that arrives before them
/// would kill the process without the clean stop); `wait` resolves on the first one.
struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignals {
                term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    async fn wait(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
