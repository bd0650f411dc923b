//! `porchlight clip …`: fetch a neighbor's clip; answer neighbors' requests for ours.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use porchlight_proto::codec;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::client::Api;
use crate::format::{self, Out};
use crate::{Cli, ClipCommand, bad};

/// How often `clip get` asks the node how the fetch stands.
const POLL: Duration = Duration::from_millis(300);

pub fn run(cli: &Cli, out: Out, data_dir: &Path, verb: &ClipCommand) -> anyhow::Result<()> {
    match verb {
        ClipCommand::Get {
            sha256,
            output,
            wait,
        } => get(cli, out, data_dir, sha256, output, *wait),
        ClipCommand::Requests => requests(out, data_dir),
        ClipCommand::Allow { id } => decide(out, data_dir, id, "allow"),
        ClipCommand::Deny { id } => decide(out, data_dir, id, "deny"),
    }
}

fn get(
    cli: &Cli,
    out: Out,
    data_dir: &Path,
    sha256: &str,
    output: &Path,
    wait: Duration,
) -> anyhow::Result<()> {
    let hex = sha256.trim().to_ascii_lowercase();
    let Some(sha) = codec::parse_hex::<32>(&hex) else {
        return Err(bad(format!(
            "{sha256:?} is not a clip SHA-256 (64 hex digits)"
        )));
    };
    if output.exists() {
        return Err(bad(format!(
            "{} exists: give a new file name",
            output.display()
        )));
    }
    let api = Api::find(data_dir)?;
    let mut state = api.call("POST", &format!("/v1/clips/{hex}/fetch"), None)?;
    let deadline = Instant::now() + wait;
    let talk = !cli.quiet && !out.json;
    let mut said_waiting = false;
    loop {
        match state["state"].as_str().unwrap_or("") {
            "done" => break,
            "failed" => anyhow::bail!(
                "fetching the clip failed: {}",
                state["error"].as_str().unwrap_or("unknown reason")
            ),
            "waiting" if !said_waiting && talk => {
                eprintln!(
                    "waiting for {} to allow this request (they run `porchlight clip requests`)",
                    state["owner"].as_str().unwrap_or("the owner")
                );
                said_waiting = true;
            }
            "fetching" if talk && std::io::stderr().is_terminal() => {
                eprint!(
                    "\rreceived {} of {} KiB",
                    state["received"].as_u64().unwrap_or(0) >> 10,
                    state["size"].as_u64().unwrap_or(0) >> 10
                );
                let _ = std::io::stderr().flush();
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "gave up after {}: the fetch is still {} (it goes on in the node; run this again to pick it up)",
                format_wait(wait),
                state["state"].as_str().unwrap_or("unfinished")
            );
        }
        std::thread::sleep(POLL);
        state = api.call("GET", &format!("/v1/clips/{hex}"), None)?;
    }
    if talk && std::io::stderr().is_terminal() {
        eprint!("\r\x1b[2K");
    }
    // The node verified the clip; check it again while copying, so that what lands at
    // `output` is exactly the hash the report carries.
    let library = porchlight_node::clips::path(data_dir, &sha);
    let size = copy_verified(&library, output, &sha)?;
    out.object(
        serde_json::json!({ "sha256": hex, "size": size, "path": output.display().to_string() }),
        || println!("{} ({size} bytes, SHA-256 verified)", output.display()),
    );
    Ok(())
}

fn format_wait(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

/// Copies `from` to `to` through a temporary file, checking the SHA-256 on the way; the
/// file appears at `to` only if it matches.
fn copy_verified(from: &Path, to: &Path, sha: &[u8; 32]) -> anyhow::Result<u64> {
    let mut input = std::fs::File::open(from)
        .with_context(|| format!("the clip is not in the library at {}", from.display()))?;
    let temp = to.with_file_name(format!(
        ".{}.partial",
        to.file_name().and_then(|n| n.to_str()).unwrap_or("clip")
    ));
    let mut output = std::fs::File::create(&temp)
        .map_err(|e| bad(format!("cannot write {}: {e}", temp.display())))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    let copied = (|| -> std::io::Result<()> {
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            let chunk = buf.get(..n).unwrap_or_default();
            hasher.update(chunk);
            output.write_all(chunk)?;
            size += n as u64;
        }
        output.sync_all()
    })();
    let digest: [u8; 32] = hasher.finalize().into();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&temp);
        return Err(anyhow::Error::new(e).context("copying the clip"));
    }
    if &digest != sha {
        let _ = std::fs::remove_file(&temp);
        anyhow::bail!("the clip in the library does not match its SHA-256: discarded");
    }
    std::fs::rename(&temp, to).with_context(|| format!("writing {}", to.display()))?;
    Ok(size)
}

fn requests(out: Out, data_dir: &Path) -> anyhow::Result<()> {
    let api = Api::find(data_dir)?;
    let v = api.call("GET", "/v1/clips/requests", None)?;
    let list = v.as_array().cloned().unwrap_or_default();
    if out.json {
        for r in &list {
            println!("{r}");
        }
        return Ok(());
    }
    if list.is_empty() {
        println!("no clip requests are waiting");
        return Ok(());
    }
    let now = porchlight_node::now();
    for r in &list {
        println!(
            "{}  {} ({}) asks for clip {}…  {}",
            text(&r["id"]),
            text(&r["requester_name"]),
            text(&r["requester_fingerprint"]),
            text(&r["sha256"]).get(..16).unwrap_or(""),
            r["asked_at"]
                .as_u64()
                .map(|t| format::ago(t, now))
                .unwrap_or_default()
        );
    }
    println!("allow one with `porchlight clip allow ID`, refuse with `porchlight clip deny ID`");
    Ok(())
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn decide(out: Out, data_dir: &Path, id: &str, what: &str) -> anyhow::Result<()> {
    let id = id.trim();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!(
            "{id:?} is not a request id (see `porchlight clip requests`)"
        )));
    }
    let api = Api::find(data_dir)?;
    let v = api.call("POST", &format!("/v1/clips/requests/{id}/{what}"), None)?;
    out.object(v.clone(), || {
        println!(
            "{} {}'s request for clip {}…",
            if what == "allow" {
                "allowed"
            } else {
                "refused"
            },
            text(&v["requester_name"]),
            text(&v["sha256"]).get(..16).unwrap_or("")
        )
    });
    Ok(())
}
