//! "Seen by" on this node (issue #22; the protocol is `porchlight_proto::seen`).
//!
//! - As a report's **author**: the secret of each own report that asked for acks, who
//!   could read it (the roster at posting, minus the author: the "of" in "seen by N of
//!   M") and who has acknowledged it so far. Store tree `seen_asks`, report id →
//!   [`AskRecord`]; one entry per own live asking report (so bounded by the rate limit),
//!   deleted when the report expires or goes, and with it the secret: after that nobody,
//!   this node included, can tell whose the acks were.
//! - As a **reader**: which reports this member has acknowledged, so that it answers
//!   once. Tree `seen_acked`, report id → the report's `expires_at`; deleted with it.
//! - [`Acks`]: the acks this node holds, by report, in memory (for validation's bound
//!   of acks per report and to delete the acks of a report that goes before it expires).

use std::collections::{BTreeMap, BTreeSet};

use porchlight_proto::{ItemId, MemberId};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::store::{Store, StoreError};

const ASKS: &str = "seen_asks";
/// Largest stored ask: its secret and times, and two lists of at most `MAX_MEMBERS` ids.
const MAX_ASK_BYTES: usize = 64 + 2 * (8 + 32 * porchlight_proto::limits::MAX_MEMBERS);
const ACKED: &str = "seen_acked";

#[derive(Debug, thiserror::Error)]
pub enum SeenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no live report {0}")]
    UnknownReport(String),
    #[error("report {0} did not ask who has seen it")]
    NotAsking(String),
    #[error("report {0} is yours: only neighbors acknowledge it")]
    OwnReport(String),
    #[error("cannot make the acknowledgement: {0}")]
    Proto(#[from] porchlight_proto::seen::SeenError),
    #[error("a stored seen record is corrupt")]
    Corrupt,
}

/// What the author's node keeps about one of its reports that asked for acks.
#[derive(Clone, Serialize, Deserialize)]
pub struct AskRecord {
    /// The X25519 secret of the report's ask.
    pub secret: [u8; 32],
    pub expires_at: u64,
    /// The members who could read the report: the roster when it was posted, minus
    /// the author.
    pub of: Vec<MemberId>,
    /// Those of them whose ack arrived, in the order they arrived.
    pub by: Vec<MemberId>,
}

impl std::fmt::Debug for AskRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AskRecord")
            .field("expires_at", &self.expires_at)
            .field("of", &self.of.len())
            .field("by", &self.by.len())
            .finish_non_exhaustive()
    }
}

/// "Seen by N of M", as the author's feed shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenCount {
    pub of: usize,
    /// Who has seen it, in the order their acks arrived.
    pub by: Vec<MemberId>,
}

/// "Seen by N of M" as a feed item carries it: M, and the names of who has seen it
/// (a fingerprint for someone no longer a member).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenBy {
    pub of: usize,
    pub by: Vec<String>,
}

fn corrupt(_: impl std::fmt::Debug) -> SeenError {
    SeenError::Corrupt
}

/// Keeps the ask of our own report `report` (before it is sent, so no ack can arrive
/// before the secret that opens it is here).
pub fn put_ask(
    store: &Store,
    report: &ItemId,
    secret: &Zeroizing<[u8; 32]>,
    expires_at: u64,
    of: Vec<MemberId>,
) -> Result<(), SeenError> {
    let record = Zeroizing::new(porchlight_proto::codec::encode(&AskRecord {
        secret: **secret,
        expires_at,
        of,
        by: Vec::new(),
    }));
    store
        .open_tree(ASKS)?
        .insert(report.0, record.as_slice())
        .map_err(StoreError::from)?;
    Ok(())
}

pub fn forget_ask(store: &Store, report: &ItemId) -> Result<(), SeenError> {
    store
        .open_tree(ASKS)?
        .remove(report.0)
        .map_err(StoreError::from)?;
    Ok(())
}

/// The ask of our own report `report`, if it asked.
pub fn ask(store: &Store, report: &ItemId) -> Result<Option<AskRecord>, SeenError> {
    let Some(bytes) = store
        .open_tree(ASKS)?
        .get(report.0)
        .map_err(StoreError::from)?
    else {
        return Ok(None);
    };
    let bytes = Zeroizing::new(bytes.to_vec());
    porchlight_proto::codec::decode::<AskRecord>(&bytes, MAX_ASK_BYTES)
        .map(Some)
        .map_err(corrupt)
}

/// Counts `acker`'s ack of our report `report` (`porchlight_proto::seen::open` checked
/// that they could read it). Returns whether the count changed: a second ack by the same
/// member changes nothing.
pub fn count_acker(store: &Store, report: &ItemId, acker: MemberId) -> Result<bool, SeenError> {
    let Some(mut record) = ask(store, report)? else {
        return Ok(false);
    };
    if !record.of.contains(&acker) || record.by.contains(&acker) {
        return Ok(false);
    }
    record.by.push(acker);
    let bytes = Zeroizing::new(porchlight_proto::codec::encode(&record));
    store
        .open_tree(ASKS)?
        .insert(report.0, bytes.as_slice())
        .map_err(StoreError::from)?;
    Ok(true)
}

/// "Seen by N of M" for our own report `report`, if it asked.
pub fn count(store: &Store, report: &ItemId) -> Result<Option<SeenCount>, SeenError> {
    Ok(ask(store, report)?.map(|r| SeenCount {
        of: r.of.len(),
        by: r.by,
    }))
}

/// Whether this member has acknowledged `report`.
pub fn acked(store: &Store, report: &ItemId) -> Result<bool, SeenError> {
    Ok(store
        .open_tree(ACKED)?
        .contains_key(report.0)
        .map_err(StoreError::from)?)
}

/// Records (or, with `false`, takes back, when sending failed) that this member
/// acknowledged `report`, which expires at `expires_at`.
pub fn set_acked(
    store: &Store,
    report: &ItemId,
    expires_at: u64,
    acked: bool,
) -> Result<(), SeenError> {
    let tree = store.open_tree(ACKED)?;
    if acked {
        tree.insert(report.0, &expires_at.to_be_bytes()[..])
            .map_err(StoreError::from)?;
    } else {
        tree.remove(report.0).map_err(StoreError::from)?;
    }
    Ok(())
}

/// Deletes the asks and the acknowledged marks of reports that expired by `now` or are
/// no longer live (retracted, or their author removed): with an ask goes its secret.
pub fn expire(store: &Store, now: u64) -> Result<usize, SeenError> {
    let mut gone = 0;
    let asks = store.open_tree(ASKS)?;
    let mut drop = Vec::new();
    for entry in asks.iter() {
        let (key, value) = entry.map_err(StoreError::from)?;
        let value = Zeroizing::new(value.to_vec());
        let expired = porchlight_proto::codec::decode::<AskRecord>(&value, MAX_ASK_BYTES)
            .map_or(true, |r| r.expires_at <= now);
        let live = <[u8; 32]>::try_from(key.as_ref())
            .is_ok_and(|id| store.has_item(&ItemId(id)).unwrap_or(true));
        if expired || !live {
            drop.push(key);
        }
    }
    for key in drop {
        asks.remove(key).map_err(StoreError::from)?;
        gone += 1;
    }
    let acked = store.open_tree(ACKED)?;
    let mut drop = Vec::new();
    for entry in acked.iter() {
        let (key, value) = entry.map_err(StoreError::from)?;
        let expires_at = <[u8; 8]>::try_from(value.as_ref()).map_or(0, u64::from_be_bytes);
        if expires_at <= now {
            drop.push(key);
        }
    }
    for key in drop {
        acked.remove(key).map_err(StoreError::from)?;
        gone += 1;
    }
    Ok(gone)
}

/// The acks this node holds, by the report they acknowledge. In memory: built at start
/// from the store (acks are the only items whose author is no member), then kept as
/// acks come and go. Bounded by the live acks, which validation bounds per report.
#[derive(Debug, Default, Clone)]
pub struct Acks {
    by_report: BTreeMap<ItemId, BTreeSet<ItemId>>,
}

impl Acks {
    pub fn insert(&mut self, report: ItemId, ack: ItemId) {
        self.by_report.entry(report).or_default().insert(ack);
    }

    pub fn held(&self, report: &ItemId) -> usize {
        self.by_report.get(report).map_or(0, BTreeSet::len)
    }

    /// Forgets the reports for which `keep` says no, and returns their acks (for the
    /// store to delete). Acks that expired (with their report) are forgotten too, as
    /// the store no longer holds them.
    pub fn drain_unless(&mut self, mut keep: impl FnMut(&ItemId) -> bool) -> Vec<ItemId> {
        let mut out = Vec::new();
        self.by_report.retain(|report, acks| {
            if keep(report) {
                true
            } else {
                out.extend(acks.iter().copied());
                false
            }
        });
        out
    }

    pub fn len(&self) -> usize {
        self.by_report.values().map(BTreeSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_report.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use porchlight_proto::item::{Body, Item};
    use porchlight_proto::report::{Retract, Severity};
    use porchlight_proto::seen::SeenAsk;
    use porchlight_proto::testkit::{NOW, SeededRng, TestHood};
    use porchlight_proto::{JoinRequest, MemberKeys, Policy, Ticket, TicketId};

    use crate::engine::{Acked, Engine, EngineError, Ingest};
    use crate::store::Store;

    use super::*;

    /// Alice's engine, and Bob's, admitted by her.
    async fn alice_and_bob(a: &std::path::Path, b: &std::path::Path) -> (Engine, Engine) {
        let mut rng = SeededRng::new(11);
        let alice_keys = MemberKeys::generate(&mut rng);
        let mut alice = Engine::found(
            Store::open(a).unwrap(),
            alice_keys,
            "Elm Street",
            "Alice",
            Policy::default(),
            NOW,
            &mut rng,
        )
        .unwrap();
        let bob = MemberKeys::generate(&mut rng);
        let ticket = Ticket {
            hood: alice.hood(),
            hood_name: "Elm Street".into(),
            inviter: alice.keys().id(),
            id: TicketId([7; 16]),
            expires_at: NOW + 60,
            bootstrap: vec![],
        };
        let signed = porchlight_proto::invite::SignedTicket::issue(alice.keys(), &ticket).unwrap();
        let request = JoinRequest::new(&bob, signed, &ticket, "Bob").unwrap();
        let welcome = alice.admit(&request, NOW, &mut rng).await.unwrap();
        let bob =
            Engine::from_welcome(Store::open(b).unwrap(), bob, &alice.hood(), &welcome).unwrap();
        (alice, bob)
    }

    fn asking_report() -> Body {
        let Body::Report(mut r) = TestHood::new(1).report("smoke from the garage") else {
            unreachable!()
        };
        r.severity = Severity::Urgent;
        r.ask_seen = Some(SeenAsk::generate(&mut SeededRng::new(2)).0);
        Body::Report(r)
    }

    fn envelope(e: &Engine, id: &ItemId) -> Vec<u8> {
        e.store().item(id).unwrap().unwrap().envelope
    }

    /// Bob's ack reaches Alice: counted once (a replay, and Bob asking again, change
    /// nothing), kept across Alice's restart, and deleted with the report when she takes
    /// it back.
    #[tokio::test]
    async fn an_ack_is_counted_once_survives_a_restart_and_goes_with_its_report() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut rng = SeededRng::new(5);
        let (mut alice, mut bob) = alice_and_bob(a.path(), b.path()).await;
        let report = alice.post(&asking_report(), NOW, &mut rng).await.unwrap();
        let bob_id = bob.keys().id();
        assert_eq!(
            count(alice.store(), &report).unwrap(),
            Some(SeenCount { of: 1, by: vec![] })
        );
        // Alice cannot acknowledge her own report; Bob cannot before he has it.
        assert!(matches!(
            alice.acknowledge(report, NOW, &mut rng).await,
            Err(EngineError::Seen(SeenError::OwnReport(_)))
        ));
        assert!(matches!(
            bob.acknowledge(report, NOW, &mut rng).await,
            Err(EngineError::Seen(SeenError::UnknownReport(_)))
        ));
        assert!(matches!(
            bob.ingest(&envelope(&alice, &report), NOW).unwrap(),
            Ingest::New(_)
        ));
        // Receiving it sent nothing.
        assert_eq!(bob.store().outbox().unwrap().len(), 0);
        let Acked::Sent(ack) = bob.acknowledge(report, NOW, &mut rng).await.unwrap() else {
            panic!("the first ack is sent")
        };
        assert_eq!(bob.store().outbox().unwrap().len(), 1);
        assert_eq!(
            bob.acknowledge(report, NOW, &mut rng).await.unwrap(),
            Acked::Already
        );
        assert_eq!(bob.store().outbox().unwrap().len(), 1, "answered once");
        let bytes = envelope(&bob, &ack);
        assert!(matches!(alice.ingest(&bytes, NOW).unwrap(), Ingest::New(_)));
        assert_eq!(alice.ingest(&bytes, NOW).unwrap(), Ingest::Duplicate);
        assert_eq!(
            count(alice.store(), &report).unwrap(),
            Some(SeenCount {
                of: 1,
                by: vec![bob_id]
            })
        );
        // A restart keeps the ack (its author is no member, yet it is no stray item)
        // and the count.
        let keys = alice.keys().clone();
        alice.store().flush().await.unwrap();
        drop(alice);
        // sled lets go of the lock from a background thread a moment after the handle.
        let mut store = None;
        for _ in 0..200 {
            match Store::open(a.path()) {
                Ok(s) => {
                    store = Some(s);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
        let store = store.expect("the store reopens within 10 s");
        let mut alice = Engine::load(store, keys).unwrap().unwrap();
        assert!(alice.store().has_item(&ack).unwrap());
        assert_eq!(
            count(alice.store(), &report).unwrap().unwrap().by,
            vec![bob_id]
        );
        // Alice takes the report back: the ack and the ask (its secret) go.
        alice
            .post(
                &Body::Retract(Retract {
                    created_at: NOW,
                    expires_at: NOW + 3600,
                    report,
                }),
                NOW,
                &mut rng,
            )
            .await
            .unwrap();
        alice.expire(NOW + 1).unwrap();
        assert!(!alice.store().has_item(&ack).unwrap());
        assert_eq!(ask(alice.store(), &report).unwrap().map(|_| ()), None);
        // Bob's mark goes when the report would have expired.
        let expires_at = Item::decode(&bob.store().item(&report).unwrap().unwrap().item)
            .unwrap()
            .body()
            .unwrap()
            .times()
            .1
            .unwrap();
        assert!(acked(bob.store(), &report).unwrap());
        bob.expire(expires_at).unwrap();
        assert!(!acked(bob.store(), &report).unwrap());
        assert!(!bob.store().has_item(&ack).unwrap());
    }
}
