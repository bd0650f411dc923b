//! How the node and the CLI say limits, times and errors to a person: dates, spans of time
//! with their unit, and field errors in the words of the request that caused them.

use porchlight_proto::Policy;
use porchlight_proto::codec::FieldError;
use porchlight_proto::hood::Permission;

/// `2026-11-29 08:40 UTC` for Unix seconds.
pub fn utc(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
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

/// A span of seconds in the largest whole unit: `30 days`, `5 hours`, `1 minute`,
/// `90 seconds`.
pub fn span(secs: u64) -> String {
    let (n, unit) = match secs {
        0 => (0, "second"),
        s if s % 86_400 == 0 => (s / 86_400, "day"),
        s if s % 3600 == 0 => (s / 3600, "hour"),
        s if s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// The JSON field of the API's report requests that holds a proto field.
pub fn api_field(what: &str) -> String {
    match what {
        "location" => "where",
        "camera" => "clips[].camera",
        "expires_at" => "expires_in_secs",
        other => other,
    }
    .to_owned()
}

/// A field error in the words of whoever made the request: `name` maps proto's field
/// names to the request's own (JSON fields for the API, flags for the command). Lengths
/// of text are bytes of UTF-8, and say so: a letter like é takes two.
pub fn field_error(e: &FieldError, name: impl Fn(&str) -> String) -> String {
    match e {
        FieldError::TooLong {
            what: "clips",
            len,
            max,
        } => format!(
            "{} has {len} clips, over the limit of {max} clips per report",
            name("clips")
        ),
        FieldError::TooLong { what, len, max } => format!(
            "{} is {len} bytes long, over the limit of {max} bytes (UTF-8: letters like é \
             take 2 bytes, emoji 4)",
            name(what)
        ),
        FieldError::ControlCharacter { what } => format!(
            "{} holds a control or invisible formatting character",
            name(what)
        ),
        FieldError::Empty { what } => format!("{} must not be empty", name(what)),
        FieldError::Invalid { what, why } => format!("{}: {why}", name(what)),
    }
}

/// Who a permission lets do a thing, as `members` and `status` say it.
pub fn permission(p: Permission) -> String {
    match p {
        Permission::AnyMember => "members".to_owned(),
        Permission::AdminsOnly => "admins".to_owned(),
        Permission::Quorum(k) => format!("quorum:{k}"),
    }
}

/// The rate limit in words: `30 posts per member per hour`.
pub fn rate_limit(policy: &Policy) -> String {
    let window = u64::from(policy.rate_limit.window_secs);
    let per = if window == 3600 {
        "hour".to_owned()
    } else {
        span(window)
    };
    format!("{} posts per member per {per}", policy.rate_limit.max_items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_are_right() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_796_034_000), "2026-11-30 10:20 UTC");
    }

    #[test]
    fn spans_say_their_unit() {
        assert_eq!(span(30 * 86_400), "30 days");
        assert_eq!(span(72 * 3600), "3 days");
        assert_eq!(span(5 * 3600), "5 hours");
        assert_eq!(span(60), "1 minute");
        assert_eq!(span(90), "90 seconds");
    }

    #[test]
    fn text_limits_say_bytes_and_the_request_field() {
        let e = FieldError::TooLong {
            what: "location",
            len: 121,
            max: 120,
        };
        let said = field_error(&e, api_field);
        assert!(said.starts_with("where is 121 bytes long"), "{said}");
        assert!(said.contains("limit of 120 bytes"), "{said}");
    }
}
