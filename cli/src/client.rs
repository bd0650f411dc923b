//! The verbs that talk to the running node through its local API.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use porchlight_node::api::{ADDR_FILE, TOKEN_FILE};
use porchlight_node::clips;
use porchlight_proto::codec;
use porchlight_proto::report::{Category, Location, Report, Severity};
use serde_json::{Value, json};

use crate::format::{self, Out};
use crate::{Cli, Command, PostArgs, bad};

/// Clips at least this big show import progress.
const PROGRESS_FROM_BYTES: u64 = 16 * 1024 * 1024;

/// The running node's API, found through the files it writes into the data dir.
pub(crate) struct Api {
    base: String,
    auth: String,
    data_dir: PathBuf,
}

fn no_node(data_dir: &Path, why: &str) -> anyhow::Error {
    bad(format!(
        "no node is running for {}{why}: start one with `porchlight run` \
         (or `porchlight up` on first run), or pass --data-dir",
        data_dir.display()
    ))
}

impl Api {
    pub(crate) fn find(data_dir: &Path) -> anyhow::Result<Api> {
        let addr = std::fs::read_to_string(data_dir.join(ADDR_FILE));
        let token = std::fs::read_to_string(data_dir.join(TOKEN_FILE));
        let (Ok(addr), Ok(token)) = (addr, token) else {
            return Err(no_node(data_dir, ""));
        };
        Ok(Api {
            base: format!("http://{}", addr.trim()),
            auth: format!("Bearer {}", token.trim()),
            data_dir: data_dir.to_path_buf(),
        })
    }

    fn agent(timeout: Option<Duration>) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(timeout)
            .build()
            .into()
    }

    fn send(
        &self,
        agent: &ureq::Agent,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<ureq::http::Response<ureq::Body>> {
        let url = format!("{}{path}", self.base);
        let result = match (method, body) {
            ("GET", _) => agent.get(&url).header("Authorization", &self.auth).call(),
            (_, Some(body)) => agent
                .post(&url)
                .header("Authorization", &self.auth)
                .send_json(body),
            (_, None) => agent
                .post(&url)
                .header("Authorization", &self.auth)
                .send_empty(),
        };
        result.map_err(|e| match e {
            ureq::Error::ConnectionFailed => {
                no_node(&self.data_dir, " (its last run did not stop cleanly)")
            }
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                no_node(&self.data_dir, " (its last run did not stop cleanly)")
            }
            other => anyhow::anyhow!(
                "the node for {} does not answer ({other}); is it still running?",
                self.data_dir.display()
            ),
        })
    }

    /// One request; the answer's JSON, or the API's error as an error (4xx: bad input).
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let agent = Api::agent(Some(Duration::from_secs(60)));
        let mut response = self.send(&agent, method, path, body.as_ref())?;
        // A read the node is too busy for now (its feed reader serves other clients)
        // comes back as 503 with `Retry-After`: wait as told, a few times, then give up.
        for _ in 0..BUSY_RETRIES {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            match retry_after {
                Some(secs) if method == "GET" && response.status() == 503 => {
                    std::thread::sleep(Duration::from_secs(secs.clamp(1, 10)));
                    response = self.send(&agent, method, path, body.as_ref())?;
                }
                _ => break,
            }
        }
        let status = response.status();
        let value: Value = response
            .body_mut()
            .read_json()
            .context("unreadable answer from the node")?;
        if status.is_success() {
            return Ok(value);
        }
        let message = value["error"]
            .as_str()
            .unwrap_or("request failed")
            .to_owned();
        if status.is_client_error() {
            Err(bad(message))
        } else {
            Err(anyhow::anyhow!(message))
        }
    }
}

/// Runs a client verb, or returns `None` for the verbs that are not.
pub fn run(cli: &Cli, data_dir: &Path) -> Option<anyhow::Result<()>> {
    let out = Out::new(cli.json);
    let result = match &cli.command {
        Command::Invite { expires, qr } => invite(out, data_dir, *expires, *qr),
        Command::Post(args) => post(cli, out, data_dir, args),
        Command::Feed {
            follow,
            since,
            category,
        } => feed(out, data_dir, *follow, *since, category.as_deref()),
        Command::Update { id, text, severity } => lifecycle(
            out,
            data_dir,
            id,
            "update",
            json!({ "text": text, "severity": severity }),
        ),
        Command::Resolve { id, text } => {
            lifecycle(out, data_dir, id, "resolve", json!({ "text": text }))
        }
        Command::Retract { id } => lifecycle(out, data_dir, id, "retract", json!({})),
        Command::Seen { id } => seen(out, data_dir, id),
        Command::Members => members(out, data_dir),
        Command::Remove { member } => remove(out, data_dir, member),
        Command::Promote { member } => promote(out, data_dir, member),
        Command::Mute { member } => mute(out, data_dir, member, true),
        Command::Unmute { member } => mute(out, data_dir, member, false),
        Command::Status => status(out, data_dir),
        Command::Clip(verb) => crate::clip_verbs::run(cli, out, data_dir, verb),
        Command::Drafts => crate::hub_verbs::drafts(out, data_dir),
        Command::Open { pair: true, .. } => crate::open::pair(out, data_dir),
        Command::Open { unpair: true, .. } => crate::open::unpair(out, data_dir),
        Command::Open { print, .. } => crate::open::open(out, data_dir, *print),
        Command::Approve(args) => crate::hub_verbs::approve(out, data_dir, args),
        Command::Discard { id } => crate::hub_verbs::discard(out, data_dir, id),
        _ => return None,
    };
    Some(result)
}

fn invite(out: Out, data_dir: &Path, expires: Duration, qr: bool) -> anyhow::Result<()> {
    let api = Api::find(data_dir)?;
    let v = api.call(
        "POST",
        "/v1/invites",
        Some(json!({ "expires_in_secs": expires.as_secs() })),
    )?;
    let code = v["code"].as_str().unwrap_or_default().to_owned();
    out.object(v.clone(), || {
        println!("{code}");
    });
    if qr && !out.json {
        // Upper case: the QR alphanumeric mode, a smaller code; bech32 reads either case.
        match qrcode::QrCode::new(code.to_uppercase()) {
            Ok(q) => {
                let art = q
                    .render::<qrcode::render::unicode::Dense1x2>()
                    .dark_color(qrcode::render::unicode::Dense1x2::Light)
                    .light_color(qrcode::render::unicode::Dense1x2::Dark)
                    .quiet_zone(true)
                    .build();
                println!("{art}");
            }
            Err(e) => eprintln!("(cannot draw a QR code for this invite: {e})"),
        }
    }
    Ok(())
}

/// The `post` flag that sets a field of a report.
fn flag(what: &str) -> String {
    match what {
        "location" => "--where".to_owned(),
        "clips" => "--clip".to_owned(),
        other => format!("--{other}"),
    }
}

/// Checks `--expires` against the hood's maximum report lifetime, in the flag's words
/// (the node checks again, in the API's).
fn check_expires(api: &Api, expires: Option<Duration>) -> anyhow::Result<()> {
    let Some(expires) = expires else {
        return Ok(());
    };
    let status = api.call("GET", "/v1/status", None)?;
    if let Some(max) = status["policy"]["max_report_lifetime_secs"].as_u64()
        && expires.as_secs() > max
    {
        return Err(bad(format!(
            "--expires {} is longer than this hood's maximum report lifetime, {}",
            porchlight_node::words::span(expires.as_secs()),
            porchlight_node::words::span(max)
        )));
    }
    Ok(())
}

/// Checks a post the way the node will, so that bad input fails before any clip is
/// imported (the node checks again: it is the authority).
fn precheck(args: &PostArgs) -> anyhow::Result<()> {
    let category = Category::parse(&args.category).ok_or_else(|| {
        let all: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
        bad(format!(
            "unknown category {:?}: one of {}",
            args.category,
            all.join(", ")
        ))
    })?;
    let severity = match args.severity.as_deref() {
        None => Severity::Warning,
        Some(s) => Severity::parse(s).ok_or_else(|| {
            bad(format!(
                "unknown severity {s:?}: one of info, warning, urgent"
            ))
        })?,
    };
    if args.ask_seen && severity != Severity::Urgent {
        return Err(bad(
            "--ask-seen: only an urgent report may ask who has seen it (add --severity urgent)",
        ));
    }
    let report = Report {
        created_at: 0,
        expires_at: 1,
        category,
        severity,
        text: args.text.clone(),
        behavior: args.behavior.clone(),
        location: Location {
            text: args.place.clone().unwrap_or_default(),
            geohash: args.geohash.clone(),
        },
        clips: vec![],
        ask_seen: None,
    };
    report
        .check()
        .map_err(|e| bad(porchlight_node::words::field_error(&e, flag)))?;
    if args.clip.len() > porchlight_proto::report::MAX_CLIPS {
        return Err(bad(format!(
            "at most {} clips per report",
            porchlight_proto::report::MAX_CLIPS
        )));
    }
    for clip in &args.clip {
        if !clip.is_file() {
            return Err(bad(format!(
                "clip file {} not found (or not a file)",
                clip.display()
            )));
        }
    }
    Ok(())
}

fn post(cli: &Cli, out: Out, data_dir: &Path, args: &PostArgs) -> anyhow::Result<()> {
    precheck(args)?;
    let api = Api::find(data_dir)?;
    check_expires(&api, args.expires)?;
    // Clips go into the node's library here, with progress; the report carries hashes.
    let mut clip_refs = Vec::new();
    let mut imported = Vec::new();
    let show_progress = !cli.quiet && std::io::stderr().is_terminal();
    for path in &args.clip {
        let name = path.display().to_string();
        let result = clips::import(data_dir, path, |done, total| {
            if show_progress && total >= PROGRESS_FROM_BYTES {
                eprint!("\rhashing {name}: {} of {} MiB", done >> 20, total >> 20);
                let _ = std::io::stderr().flush();
            }
        });
        if show_progress {
            eprint!("\r\x1b[2K");
        }
        let done = match result {
            Ok(done) => done,
            Err(e) => {
                forget(data_dir, &imported);
                return Err(match e {
                    clips::ClipError::Read { .. }
                    | clips::ClipError::NotAFile { .. }
                    | clips::ClipError::TooLarge { .. } => bad(e.to_string()),
                    other => anyhow::Error::new(other),
                });
            }
        };
        if done.new {
            imported.push(done.clip.sha256);
        }
        clip_refs.push(json!({
            "sha256": codec::hex(&done.clip.sha256),
            "camera": args.camera,
        }));
    }
    let result = api.call(
        "POST",
        "/v1/reports",
        Some(json!({
            "category": args.category,
            "text": args.text,
            "behavior": args.behavior,
            "where": args.place,
            "geohash": args.geohash,
            "severity": args.severity,
            "expires_in_secs": args.expires.map(|d| d.as_secs()),
            "clips": clip_refs,
            "ask_seen": args.ask_seen,
        })),
    );
    let v = match result {
        Ok(v) => v,
        // Refused (4xx): nothing was sent, the clips this command added go. Any other
        // failure (a 500 after the report went out, a lost connection) may have sent
        // it: the clips stay for neighbors who ask (the library's quota bounds them).
        Err(e) if e.downcast_ref::<crate::BadInput>().is_some() => {
            forget(data_dir, &imported);
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    out.object(v.clone(), || println!("{}", v["id"].as_str().unwrap_or("")));
    Ok(())
}

/// Removes clips this command added to the library, when the post they were for failed.
fn forget(data_dir: &Path, added: &[[u8; 32]]) {
    for sha in added {
        let _ = std::fs::remove_file(clips::path(data_dir, sha));
    }
}

fn feed_query(since: Option<Duration>, category: Option<&str>) -> String {
    let mut q = Vec::new();
    if let Some(since) = since {
        q.push(format!(
            "since={}",
            porchlight_node::now().saturating_sub(since.as_secs())
        ));
    }
    if let Some(c) = category {
        // Category names are kebab-case words; anything else is refused by the node,
        // so percent-encode what is not a plain character.
        let encoded: String = c
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'-' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        q.push(format!("category={encoded}"));
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// How many times a `GET` the node answers with 503 and `Retry-After` is asked again.
const BUSY_RETRIES: usize = 5;

/// Feed items per request when listing the whole feed (the API's maximum page).
const FEED_PAGE: usize = 1000;
/// Most pages one listing reads (a million items; a hood's store holds far fewer).
const MAX_FEED_PAGES: usize = 1000;

/// The whole feed, oldest first, read a page at a time from the newest back
/// (`GET /v1/feed?limit=&before=`), so that the node never builds it all at once.
fn all_pages(api: &Api, query: &str) -> anyhow::Result<Vec<Value>> {
    let join = if query.is_empty() { '?' } else { '&' };
    let mut pages: Vec<Vec<Value>> = Vec::new();
    let mut before: Option<String> = None;
    for _ in 0..MAX_FEED_PAGES {
        let cursor = before
            .as_ref()
            .map(|b| format!("&before={b}"))
            .unwrap_or_default();
        let page = api.call(
            "GET",
            &format!("/v1/feed{query}{join}limit={FEED_PAGE}{cursor}"),
            None,
        )?;
        let page: Vec<Value> = page.as_array().cloned().unwrap_or_default();
        let full = page.len() >= FEED_PAGE;
        before = page
            .first()
            .and_then(|i| i["id"].as_str())
            .map(str::to_owned);
        pages.push(page);
        if !full || before.is_none() {
            break;
        }
    }
    Ok(pages.into_iter().rev().flatten().collect())
}

/// Prints a feed item. A neighbor's report that asks who has seen it, printed for a
/// person (not as JSON, which a program may be reading), tells its author this person
/// has: once (`porchlight seen`).
fn print_item(out: Out, api: &Api, item: &Value) {
    if out.json {
        println!("{item}");
        return;
    }
    println!("{}", format::item_line(item, porchlight_node::now()));
    if item["acknowledged"] == Value::Bool(false)
        && let Some(id) = item["id"].as_str()
        && let Err(e) = api.call("POST", &format!("/v1/reports/{id}/seen"), None)
    {
        eprintln!(
            "(could not tell its author you have seen {}: {e})",
            &id[..id.len().min(8)]
        );
    }
}

/// `porchlight seen ID`: tells the author of a report that asked that this person has
/// seen it.
fn seen(out: Out, data_dir: &Path, id: &str) -> anyhow::Result<()> {
    let api = Api::find(data_dir)?;
    let id: String = id.trim().to_owned();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!("{id:?} is not a report id (hex digits)")));
    }
    let v = api.call("POST", &format!("/v1/reports/{id}/seen"), None)?;
    out.object(v.clone(), || {
        let report = v["report"].as_str().unwrap_or("");
        let short = report.get(..8).unwrap_or(report);
        let author = v["author_name"].as_str().unwrap_or("its author");
        if v["already"] == Value::Bool(true) {
            println!("you had already told {author} you have seen {short}");
        } else {
            println!("told {author} you have seen {short} (only {author} learns it was you)");
        }
    });
    Ok(())
}

fn feed(
    out: Out,
    data_dir: &Path,
    follow: bool,
    since: Option<Duration>,
    category: Option<&str>,
) -> anyhow::Result<()> {
    let api = Api::find(data_dir)?;
    let query = feed_query(since, category);
    // With --follow, subscribe first, then list: nothing falls between the two.
    let stream = if follow {
        let agent = Api::agent(None);
        let mut response = api.send(&agent, "GET", &format!("/v1/events{query}"), None)?;
        let status = response.status();
        if !status.is_success() {
            let value: Value = response.body_mut().read_json().unwrap_or_default();
            let message = value["error"]
                .as_str()
                .unwrap_or("the node refused the stream")
                .to_owned();
            // A full node (503) is not the user's mistake.
            return Err(if status.is_client_error() {
                bad(message)
            } else {
                anyhow::anyhow!(message)
            });
        }
        Some(BufReader::new(response.into_body().into_reader()))
    } else {
        None
    };
    let items = all_pages(&api, &query)?;
    let mut shown = std::collections::HashSet::new();
    for item in &items {
        if let Some(id) = item["id"].as_str() {
            shown.insert(id.to_owned());
        }
        print_item(out, &api, item);
    }
    let Some(stream) = stream else { return Ok(()) };
    let _ = std::io::stdout().flush();
    // Server-sent events: `event:` and `data:` lines, a blank line ends an event.
    let mut data = String::new();
    for line in stream.lines() {
        // The node closes the stream when it stops.
        let Ok(line) = line else { break };
        if let Some(d) = line.strip_prefix("data:") {
            data.push_str(d.trim_start());
        } else if line.is_empty() && !data.is_empty() {
            if let Ok(item) = serde_json::from_str::<Value>(&data)
                && item["kind"] == "removed"
            {
                // This node's own removal: said once, in the stream's own format.
                if out.json {
                    println!("{item}");
                } else {
                    println!("{}", item["message"].as_str().unwrap_or("removed"));
                }
                let _ = std::io::stdout().flush();
            } else if let Ok(item) = serde_json::from_str::<Value>(&data)
                && item.is_object()
            {
                let id = item["id"].as_str().unwrap_or_default().to_owned();
                if shown.insert(id) {
                    print_item(out, &api, &item);
                    let _ = std::io::stdout().flush();
                }
                // Bounded: the ids only dedupe the listing against the first events.
                if shown.len() > 100_000 {
                    shown.clear();
                }
            }
            data.clear();
        }
    }
    anyhow::bail!("the node stopped; the feed ends here")
}

fn lifecycle(out: Out, data_dir: &Path, id: &str, what: &str, body: Value) -> anyhow::Result<()> {
    let api = Api::find(data_dir)?;
    let id: String = id.trim().to_owned();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!("{id:?} is not a report id (hex digits)")));
    }
    let v = api.call("POST", &format!("/v1/reports/{id}/{what}"), Some(body))?;
    out.object(v.clone(), || println!("{}", v["id"].as_str().unwrap_or("")));
    Ok(())
}

fn members(out: Out, data_dir: &Path) -> anyhow::Result<()> {
    let api = Api::find(data_dir)?;
    let v = api.call("GET", "/v1/members", None)?;
    let now = porchlight_node::now();
    let list = v.as_array().cloned().unwrap_or_default();
    if out.json {
        for m in &list {
            println!("{m}");
        }
        return Ok(());
    }
    println!(
        "{:<20} {:<24} {:<7} {:<21} LAST SEEN",
        "NAME", "FINGERPRINT", "ROLE", "JOINED"
    );
    for m in &list {
        let name = format!(
            "{}{}",
            m["name"].as_str().unwrap_or(""),
            if m["me"].as_bool() == Some(true) {
                " (you)"
            } else {
                ""
            }
        );
        let seen = if m["connected"].as_bool() == Some(true) {
            "now".to_owned()
        } else {
            m["last_seen"]
                .as_u64()
                .map_or_else(|| "not since start".to_owned(), |t| format::ago(t, now))
        };
        println!(
            "{:<20} {:<24} {:<7} {:<21} {}",
            name,
            m["fingerprint"].as_str().unwrap_or(""),
            m["role"].as_str().unwrap_or(""),
            m["joined_at"].as_u64().map(format::utc).unwrap_or_default(),
            seen
        );
        // Under a quorum policy: pending votes to remove this member.
        if let Some(votes) = m["votes_against"].as_u64().filter(|v| *v > 0) {
            println!(
                "  {votes} vote{} to remove; {} more remove{}",
                if votes == 1 { "" } else { "s" },
                m["votes_needed"].as_u64().unwrap_or(0),
                if m["votes_needed"].as_u64() == Some(1) {
                    "s"
                } else {
                    ""
                },
            );
        }
    }
    Ok(())
}

fn remove(out: Out, data_dir: &Path, member: &str) -> anyhow::Result<()> {
    let api = Api::find(data_dir)?;
    let v = api.call(
        "POST",
        "/v1/members/remove",
        Some(json!({ "member": member })),
    )?;
    out.object(v.clone(), || {
        if let Some(needed) = v["votes_needed"].as_u64() {
            println!(
                "voted to remove {} ({}); {needed} more vote{} from other members remove{} them",
                v["name"].as_str().unwrap_or(""),
                v["fingerprint"].as_str().unwrap_or(""),
                if needed == 1 { "" } else { "s" },
                if needed == 1 { "s" } else { "" },
            )
        } else {
            println!(
                "removed {} ({}); the hood rekeys: they cannot read what is posted from now on",
                v["name"].as_str().unwrap_or(""),
                v["fingerprint"].as_str().unwrap_or("")
            )
        }
    });
    Ok(())
}

fn mute(out: Out, data_dir: &Path, member: &str, mute: bool) -> anyhow::Result<()> {
    let api = Api::find(data_dir)?;
    let path = if mute {
        "/v1/members/mute"
    } else {
        "/v1/members/unmute"
    };
    let v = api.call("POST", path, Some(json!({ "member": member })))?;
    out.object(v.clone(), || {
        let who = format!(
            "{} ({})",
            v["name"].as_str().unwrap_or(""),
            v["fingerprint"].as_str().unwrap_or("")
        );
        match (mute, v["changed"].as_bool() == Some(true)) {
            (true, true) => {
                println!("muted {who} on this node: their reports are hidden here; nobody is told")
            }
            (true, false) => println!("{who} was already muted"),
            (false, true) => println!("unmuted {who}: their reports show again"),
            (false, false) => println!("{who} was not muted"),
        }
    });
    Ok(())
}

fn promote(out: Out, data_dir: &Path, member: &str) -> anyhow::Result<()> {
    let api = Api::find(data_dir)?;
    let v = api.call(
        "POST",
        "/v1/members/promote",
        Some(json!({ "member": member })),
    )?;
    out.object(v.clone(), || {
        println!(
            "{} ({}) is an admin now",
            v["name"].as_str().unwrap_or(""),
            v["fingerprint"].as_str().unwrap_or("")
        )
    });
    Ok(())
}

fn status(out: Out, data_dir: &Path) -> anyhow::Result<()> {
    let api = Api::find(data_dir)?;
    let v = api.call("GET", "/v1/status", None)?;
    out.object(v.clone(), || {
        let s = |k: &str| v[k].as_str().unwrap_or("?").to_owned();
        println!("fingerprint: {}", s("fingerprint"));
        println!("member id:   {}", s("member"));
        println!("peer id:     {}", s("peer_id"));
        println!(
            "hood:        {} ({})",
            s("hood_name"),
            s("hood").get(..16).unwrap_or("")
        );
        if v["policy"].is_object() {
            println!("policy:      {}", format::policy_line(&v["policy"]));
        }
        let removed = v["removed"].as_bool() == Some(true);
        match v["epoch"].as_str().and_then(|e| e.get(..16)) {
            Some(epoch) => println!("epoch:       {epoch}"),
            None if removed => println!("epoch:       none (removed: no key to seal with)"),
            // After a removal (or a member leaving), until someone rekeys: the next post
            // from any member does.
            None => println!("epoch:       none yet: the hood rekeys with the next post"),
        }
        if removed {
            println!(
                "removed:     this member was removed from the hood; it can no longer post, \
                 and what is sealed from now on is not readable here"
            );
        }
        println!("members:     {}", v["members"]);
        if let Some(missing) = v["history_missing"].as_u64().filter(|m| *m > 0) {
            println!(
                "history:     joined from a checkpoint; {missing} membership operations still \
                 to fetch (posting waits until they are here and checked)"
            );
        }
        let others = v["connected_others"].as_u64().unwrap_or(0);
        println!(
            "connected:   {} member{}, {others} other peer{}{}",
            v["connected_members"],
            if v["connected_members"] == 1 { "" } else { "s" },
            if others == 1 { "" } else { "s" },
            if others > 0 {
                " (not members: a neighbor presenting an invite, a removed member, or a \
                 stranger's node on the LAN; they get no hood traffic)"
            } else {
                ""
            }
        );
        for p in v["peers"].as_array().into_iter().flatten() {
            println!("  peer       {}", p.as_str().unwrap_or(""));
        }
        for a in v["listen"].as_array().into_iter().flatten() {
            println!("listening:   {}", a.as_str().unwrap_or(""));
        }
        println!("api:         {}", s("api"));
        println!(
            "reports:     {} live, {} waiting to send",
            v["items"], v["outbox"]
        );
    });
    Ok(())
}
