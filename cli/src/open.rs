//! `porchlight open`: a one-time sign-in link to the page the node serves
//! (docs/web.md), printed, and opened in a browser where a desktop session is present.
//! `--pair`: a one-time pairing link for a phone on the home LAN; `--unpair`: sign every
//! paired phone out.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::client::Api;
use crate::format::Out;

pub fn open(out: Out, data_dir: &Path, print_only: bool) -> anyhow::Result<()> {
    let api = Api::find(data_dir)?;
    let v = api.call("POST", "/v1/web/link", None)?;
    let url = v["url"].as_str().unwrap_or_default().to_owned();
    let minutes = v["expires_in_secs"].as_u64().unwrap_or(0) / 60;
    let opened = !print_only && desktop() && launch(&url);
    let mut answer = v.clone();
    answer["opened"] = opened.into();
    out.object(answer, || {
        println!("{url}");
        if opened {
            eprintln!("Opened in your browser. The link works once, for {minutes} minutes.");
        } else {
            eprintln!(
                "Open this link in a browser on this computer. It works once, for {minutes} \
                 minutes."
            );
        }
    });
    Ok(())
}

/// A pairing link for a phone on the home LAN, with the certificate's fingerprint.
/// Never opened here: opening it on this computer would pair the computer.
pub fn pair(out: Out, data_dir: &Path) -> anyhow::Result<()> {
    let api = Api::find(data_dir)?;
    let v = api.call("POST", "/v1/web/pair", None)?;
    let minutes = v["expires_in_secs"].as_u64().unwrap_or(0) / 60;
    let mut answer = v.clone();
    if let Some(o) = answer.as_object_mut() {
        o.remove("svg");
    }
    out.object(answer, || {
        println!("{}", v["url"].as_str().unwrap_or_default());
        eprintln!(
            "Open this link on the phone (or show its QR code: Settings in the page on this \
             computer). It works once, for {minutes} minutes."
        );
        eprintln!(
            "The phone's browser warns that the certificate is self-signed: before going on, \
             check that its public key SHA-256 is\n  {}\n(base64: {})",
            v["fingerprint_hex"].as_str().unwrap_or_default(),
            v["fingerprint"].as_str().unwrap_or_default()
        );
    });
    Ok(())
}

/// Signs every paired phone out.
pub fn unpair(out: Out, data_dir: &Path) -> anyhow::Result<()> {
    let api = Api::find(data_dir)?;
    let v = api.call("POST", "/v1/web/unpair", None)?;
    out.object(v.clone(), || {
        println!(
            "unpaired {} phone(s): each must be paired again",
            v["unpaired"].as_u64().unwrap_or(0)
        );
    });
    Ok(())
}

/// Whether a graphical session is there to open a browser in.
fn desktop() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// Starts `xdg-open URL` and lets it go; any failure (no xdg-open, no browser) only
/// means the person opens the printed link themselves.
fn launch(url: &str) -> bool {
    Command::new("xdg-open")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .is_ok()
}
