//! `porchlight-node`: the running Porchlight node.
//!
//! # Layout
//! - [`store`]: the one `Store` over sled.
//! - [`engine`]: the hood engine: keys, roster, key ring and rate state over the store;
//!   applies `porchlight_proto::validate` verdicts. No network.
//! - [`identity`]: the member's key file.
//! - [`instrument`]: process-wide byte and gossip counters for benchmarks.
//! - [`local`]: what the CLI does to a data dir with no node running (init, found).
//! - [`clips`]: the clip library under `<data dir>/clips`.
//! - [`sharing`]: clip sharing: the owner's policy and asks, the requester's fetch.
//! - [`config`]: the settings file, `porchlight.toml`.
//! - [`net`], [`gate`], [`node`]: the libp2p swarm and the event loop.
//! - [`api`]: the local HTTP API.
//! - [`words`]: limits, times and field errors as a person reads them.
//! - [`hub`]: doorbell and NVR hubs: Frigate over MQTT and a webhook make drafts that a
//!   person approves; alerts go out to MQTT with Home Assistant discovery.

pub mod api;
pub mod clips;
pub mod config;
pub mod engine;
pub mod gate;
pub mod hub;
pub mod identity;
pub mod instrument;
pub mod links;
pub mod local;
pub mod net;
pub mod node;
pub mod quiet;
pub mod sharing;
pub mod store;
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

/// Unix seconds as a UTC date and time, `2026-12-07 16:40 UTC`, for messages a person
/// reads (Howard Hinnant's civil-from-days; no time-zone database needed).
pub fn date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(super::date(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::date(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(super::date(951_782_400), "2000-02-29 00:00 UTC");
    }
}
