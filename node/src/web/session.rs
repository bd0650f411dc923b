//! Sign-in codes and sessions for the page: a code from `porchlight open` (through the
//! bearer-token API) is good once, for [`CODE_TTL`]; redeeming it makes a session whose
//! secret lives only in an HttpOnly cookie, good for [`SESSION_TTL`]. Both are bounded in
//! number; only SHA-256 digests of the secrets are kept, so a lookup's timing says nothing
//! about a secret.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use porchlight_proto::codec;
use rand_core::Rng;
use sha2::{Digest, Sha256};

/// How long a sign-in link works.
pub const CODE_TTL: Duration = Duration::from_secs(10 * 60);
/// Sign-in codes waiting at once; a new one past this drops the oldest.
pub const MAX_CODES: usize = 8;
/// How long a session lasts from sign-in (then `porchlight open` again).
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions at once (browsers, tabs share one); a new one past this ends the oldest.
pub const MAX_SESSIONS: usize = 16;
/// How long a pairing link for a phone on the home LAN works.
pub const PAIR_CODE_TTL: Duration = Duration::from_secs(10 * 60);
/// How long a paired phone stays signed in (then it is paired again).
pub const PAIRED_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Paired phones at once; pairing one more unpairs the one paired first.
pub const MAX_PAIRED: usize = 8;
/// Pairing links waiting at once.
pub const MAX_PAIR_CODES: usize = 4;

/// How long codes and sessions last and how many there may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub code_ttl: Duration,
    pub max_codes: usize,
    pub session_ttl: Duration,
    pub max_sessions: usize,
}

impl Limits {
    /// Sign-in on the node's own computer (`porchlight open`).
    pub const SIGN_IN: Limits = Limits {
        code_ttl: CODE_TTL,
        max_codes: MAX_CODES,
        session_ttl: SESSION_TTL,
        max_sessions: MAX_SESSIONS,
    };
    /// Phones paired on the home LAN.
    pub const PAIRED: Limits = Limits {
        code_ttl: PAIR_CODE_TTL,
        max_codes: MAX_PAIR_CODES,
        session_ttl: PAIRED_TTL,
        max_sessions: MAX_PAIRED,
    };
}

type Digest32 = [u8; 32];

fn digest(secret: &str) -> Digest32 {
    Sha256::digest(secret.as_bytes()).into()
}

fn secret() -> String {
    let mut bytes = [0u8; 32];
    crate::rng().fill_bytes(&mut bytes);
    codec::hex(&bytes)
}

/// Codes and sessions, each by digest with its expiry.
#[derive(Debug)]
pub struct Secrets {
    limits: Limits,
    codes: HashMap<Digest32, Instant>,
    sessions: HashMap<Digest32, Instant>,
}

impl Default for Secrets {
    fn default() -> Secrets {
        Secrets::new(Limits::SIGN_IN)
    }
}

/// Drops expired entries, then the one expiring first while `map` is at `max`.
fn make_room(map: &mut HashMap<Digest32, Instant>, max: usize, now: Instant) {
    map.retain(|_, expires| *expires > now);
    while map.len() >= max {
        let Some(oldest) = map.iter().min_by_key(|(_, e)| **e).map(|(k, _)| *k) else {
            break;
        };
        map.remove(&oldest);
    }
}

impl Secrets {
    pub fn new(limits: Limits) -> Secrets {
        Secrets {
            limits,
            codes: HashMap::new(),
            sessions: HashMap::new(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A new one-time sign-in code.
    pub fn new_code(&mut self, now: Instant) -> String {
        make_room(&mut self.codes, self.limits.max_codes, now);
        let code = secret();
        self.codes.insert(digest(&code), now + self.limits.code_ttl);
        code
    }

    /// Spends `code` (whatever the answer, it is gone) and, if it was good, returns a
    /// new session's secret.
    pub fn redeem(&mut self, code: &str, now: Instant) -> Option<String> {
        let expires = self.codes.remove(&digest(code))?;
        if expires <= now {
            return None;
        }
        make_room(&mut self.sessions, self.limits.max_sessions, now);
        let session = secret();
        self.sessions
            .insert(digest(&session), now + self.limits.session_ttl);
        Some(session)
    }

    /// Whether `session` is a live session.
    pub fn valid(&self, session: &str, now: Instant) -> bool {
        self.sessions
            .get(&digest(session))
            .is_some_and(|expires| *expires > now)
    }

    /// Ends a session (sign out).
    pub fn end(&mut self, session: &str) {
        self.sessions.remove(&digest(session));
    }

    /// Ends every session and drops every waiting code; returns how many sessions
    /// were live.
    pub fn end_all(&mut self, now: Instant) -> usize {
        let live = self.live(now);
        self.sessions.clear();
        self.codes.clear();
        live
    }

    /// Sessions not yet expired.
    pub fn live(&self, now: Instant) -> usize {
        self.sessions.values().filter(|e| **e > now).count()
    }

    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_good_once() {
        let mut s = Secrets::default();
        let now = Instant::now();
        let code = s.new_code(now);
        let session = s.redeem(&code, now).expect("a fresh code signs in");
        assert!(s.valid(&session, now));
        assert!(s.redeem(&code, now).is_none(), "a spent code is refused");
        assert!(s.redeem("00", now).is_none());
    }

    #[test]
    fn codes_and_sessions_expire() {
        let mut s = Secrets::default();
        let now = Instant::now();
        let late = s.new_code(now);
        assert!(s.redeem(&late, now + CODE_TTL).is_none());
        let code = s.new_code(now);
        let session = s.redeem(&code, now).expect("signs in");
        assert!(s.valid(&session, now + SESSION_TTL - Duration::from_secs(1)));
        assert!(!s.valid(&session, now + SESSION_TTL));
    }

    #[test]
    fn codes_and_sessions_are_bounded_and_the_oldest_go_first() {
        let mut s = Secrets::default();
        let now = Instant::now();
        let first = s.new_code(now);
        let codes: Vec<String> = (1..=MAX_CODES as u64)
            .map(|i| s.new_code(now + Duration::from_millis(i)))
            .collect();
        assert!(s.codes.len() <= MAX_CODES);
        assert!(
            s.redeem(&first, now).is_none(),
            "the oldest code was dropped"
        );
        let oldest_session = s.redeem(&codes[0], now).expect("signs in");
        for i in 0..MAX_SESSIONS as u64 {
            let c = s.new_code(now + Duration::from_millis(100 + i));
            s.redeem(&c, now + Duration::from_millis(100 + i))
                .expect("signs in");
        }
        assert_eq!(s.sessions(), MAX_SESSIONS);
        assert!(!s.valid(&oldest_session, now), "the oldest session ended");
        s.end("nothing");
    }

    #[test]
    fn paired_sessions_are_few_long_and_all_end_at_once() {
        let mut s = Secrets::new(Limits::PAIRED);
        let now = Instant::now();
        let code = s.new_code(now);
        assert!(
            s.redeem(&code, now + PAIR_CODE_TTL).is_none(),
            "a pairing code expires"
        );
        let phones: Vec<String> = (0..MAX_PAIRED as u64 + 1)
            .map(|i| {
                let t = now + Duration::from_millis(i);
                let c = s.new_code(t);
                s.redeem(&c, t).expect("pairs")
            })
            .collect();
        assert_eq!(
            s.live(now),
            MAX_PAIRED,
            "pairing one more unpaired the first"
        );
        assert!(!s.valid(&phones[0], now));
        assert!(s.valid(&phones[1], now + PAIRED_TTL - Duration::from_secs(1)));
        let waiting = s.new_code(now);
        assert_eq!(s.end_all(now), MAX_PAIRED);
        assert!(
            phones.iter().all(|p| !s.valid(p, now)),
            "every phone unpaired"
        );
        assert!(
            s.redeem(&waiting, now).is_none(),
            "and a waiting pairing link is void"
        );
    }
}
