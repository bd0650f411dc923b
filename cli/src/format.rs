//! Output: JSON or human lines, durations and times.

use std::time::Duration;

use serde_json::Value;

/// Where a verb's result goes: one JSON object per line with `--json`, else text.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
}

impl Out {
    pub fn new(json: bool) -> Out {
        Out { json }
    }

    /// Prints `value` as one JSON line, or runs `human`.
    pub fn object(&self, value: Value, human: impl FnOnce()) {
        if self.json {
            println!("{value}");
        } else {
            human();
        }
    }
}

/// The longest duration the command takes (a hood's policy may allow less).
const MAX_DURATION_SECS: u64 = 365 * 86_400;

/// Parses `90s`, `30m`, `24h`, `7d`, `2w`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let usage = || format!("{s:?} is not a duration like 90s, 30m, 24h, 7d or 2w");
    let n: u64 = number.parse().map_err(|_| usage())?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(usage()),
    };
    let secs = n
        .checked_mul(unit_secs)
        .filter(|&s| s > 0 && s <= MAX_DURATION_SECS)
        .ok_or_else(|| format!("{s:?} must be more than 0 and at most a year"))?;
    Ok(Duration::from_secs(secs))
}

/// `2026-11-29 08:40 UTC` for Unix seconds.
pub fn utc(secs: u64) -> String {
    porchlight_node::words::utc(secs)
}

/// `invite --expires`: a duration from 1 second to 30 days, said the way the API says it.
pub fn parse_invite_lifetime(s: &str) -> Result<Duration, String> {
    let rule = porchlight_node::api::invite_lifetime_rule();
    match parse_duration(s) {
        Ok(d) if d.as_secs() <= porchlight_node::api::MAX_INVITE_SECS => Ok(d),
        Ok(_) => Err(format!("{:?}: {rule}", s.trim())),
        Err(e) if e.contains("not a duration") => Err(e),
        Err(_) => Err(format!("{:?}: {rule}", s.trim())),
    }
}

/// The hood's policy (the API's `policy` object) in one line.
pub fn policy_line(p: &Value) -> String {
    let span = |k: &str| {
        p[k].as_u64()
            .map_or_else(|| "?".to_owned(), porchlight_node::words::span)
    };
    let who = |k: &str| match p[k].as_str() {
        Some("admins") => "admins",
        Some("members") => "any member",
        _ => "?",
    };
    let per = match p["window_secs"].as_u64() {
        Some(3600) => "hour".to_owned(),
        Some(w) => porchlight_node::words::span(w),
        None => "?".to_owned(),
    };
    format!(
        "{} may invite, {} may remove; at most {} posts per member per {per}; reports live \
         {} unless their author says otherwise, at most {}",
        who("invite"),
        who("remove"),
        p["posts_per_window"],
        span("default_report_lifetime_secs"),
        span("max_report_lifetime_secs"),
    )
}

/// `just now`, `5m ago`, `3h ago`, `2d ago`.
pub fn ago(secs: u64, now: u64) -> String {
    let d = now.saturating_sub(secs);
    match d {
        0..60 => "just now".into(),
        60..3600 => format!("{}m ago", d / 60),
        3600..86_400 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86_400),
    }
}

fn short(id: &Value) -> &str {
    id.as_str().and_then(|s| s.get(..8)).unwrap_or("")
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// One feed item (the API's JSON) as a line for a person.
pub fn item_line(item: &Value, now: u64) -> String {
    let when = item["created_at"]
        .as_u64()
        .map(|t| ago(t, now))
        .unwrap_or_default();
    let who = match text(&item["author_name"]) {
        "" => text(&item["author_fingerprint"]).to_owned(),
        name => name.to_owned(),
    };
    let id = short(&item["id"]);
    match text(&item["kind"]) {
        "report" => {
            let mut line = format!(
                "{id}  {when:>9}  [{}] {}: {}",
                text(&item["severity"]),
                text(&item["category"]),
                text(&item["text"]),
            );
            if let Some(b) = item["behavior"].as_str() {
                line.push_str(&format!(" (did: {b})"));
            }
            match text(&item["where"]) {
                "" => {}
                place => line.push_str(&format!(" @ {place}")),
            }
            let clips = item["clips"].as_array().map_or(0, Vec::len);
            if clips > 0 {
                line.push_str(&format!(
                    " [{clips} clip{}]",
                    if clips == 1 { "" } else { "s" }
                ));
            }
            line.push_str(&format!(" — {who}"));
            // Our own report that asked who has seen it.
            if let (Some(n), Some(of)) = (item["seen"]["n"].as_u64(), item["seen"]["of"].as_u64()) {
                line.push_str(&format!(" — seen by {n} of {of}"));
            } else if item["ask_seen"] == Value::Bool(true) {
                line.push_str(" (asks who has seen it)");
            }
            line
        }
        "update" => format!(
            "{id}  {when:>9}  update to {}{}: {} — {who}",
            short(&item["report"]),
            match item["severity"].as_str() {
                Some(s) => format!(" [now {s}]"),
                None => String::new(),
            },
            text(&item["text"])
        ),
        "resolve" => format!(
            "{id}  {when:>9}  all clear on {}{} — {who}",
            short(&item["report"]),
            match text(&item["text"]) {
                "" => String::new(),
                t => format!(": {t}"),
            }
        ),
        "retract" => format!(
            "{id}  {when:>9}  {who} took back {}",
            short(&item["report"])
        ),
        other => format!("{id}  {when:>9}  ({other})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_refuse_the_rest() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(1_209_600)));
        for bad in [
            "",
            "7",
            "d",
            "7y",
            "-1h",
            "0h",
            "99999999999999999999d",
            "1000d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn utc_dates_are_right() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_796_034_000), "2026-11-30 10:20 UTC");
    }
}
