//! `porchlight-node`: the running Porchlight node.
//!
//! # Layout
//! - [`store`]: the one `Store` over sled (`store/`: one file per tree or index).
//! - [`engine`]: the hood engine: keys, roster, key ring and rate state over the store;
//!   applies `porchlight_proto::validate` verdicts. No network.
//! - [`identity`]: the member's key file.
//! - [`local`]: what the CLI does to a data dir with no node running (init, found).
//! - [`clips`]: the clip library under `<data dir>/clips`, and (`clips::sharing`) clip
//!   sharing: the owner's policy and asks, the requester's fetch.
//! - [`seen`]: "seen by": the author's asks and counts, the reader's acknowledged marks.
//! - [`config`]: the settings file, `porchlight.toml`.
//! - [`feed`]: reading the feed off the event loop, a page at a time.
//! - [`mesh`]: the libp2p side: the composed behaviour and transports, the members-only
//!   gate, quiet idle, links, byte meters, instrumentation.
//! - [`node`]: the `Node` handle and the event loop (`node/`: handle, router, commands,
//!   peers, peer exchange, outsiders, catch-up sync, clip requests, join).
//! - [`notify`]: systemd's `READY=1` and watchdog notifications.
//! - [`api`]: the local HTTP API (`api/`: one file per resource).
//! - [`web`]: the page in the browser, on the local API's address (docs/web.md).
//! - [`words`]: limits, times and field errors as a person reads them.
//! - [`hub`]: doorbell and NVR hubs: Frigate over MQTT and a webhook make drafts that a
//!   person approves; alerts go out to MQTT with Home Assistant discovery.

pub mod api;
pub mod clips;
pub mod config;
pub mod engine;
pub mod feed;
pub mod hub;
pub mod identity;
pub mod local;
pub mod logs;
pub mod mesh;
pub mod mute;
pub mod node;
pub mod notify;
pub mod seen;
pub mod store;
pub mod web;
pub mod words;

/// The OS CSPRNG. A node cannot run without one; failing to read it is not an input
/// error but a broken machine, so it panics (inside `UnwrapErr`).
pub fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
