//! Deterministic randomness for tests, the protocol's test vectors and fuzzing.
//! SHA-256 in counter mode over a seed: reproducible, and not for real keys.

use std::convert::Infallible;

use rand_core::{TryCryptoRng, TryRng};
use sha2::{Digest, Sha256};

/// A reproducible byte stream from a `u64` seed.
#[derive(Debug, Clone)]
pub struct SeededRng {
    seed: u64,
    counter: u64,
    buffer: [u8; 32],
    used: usize,
}

impl SeededRng {
    pub fn new(seed: u64) -> SeededRng {
        SeededRng {
            seed,
            counter: 0,
            buffer: [0; 32],
            used: 32,
        }
    }

    /// `N` bytes from the stream.
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        self.fill(&mut out);
        out
    }

    fn fill(&mut self, dst: &mut [u8]) {
        for byte in dst {
            if self.used == 32 {
                self.buffer = Sha256::new()
                    .chain_update(b"porchlight-testkit\0")
                    .chain_update(self.seed.to_le_bytes())
                    .chain_update(self.counter.to_le_bytes())
                    .finalize()
                    .into();
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.buffer[self.used];
            self.used += 1;
        }
    }
}

impl TryRng for SeededRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(u32::from_le_bytes(self.bytes()))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(u64::from_le_bytes(self.bytes()))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.fill(dst);
        Ok(())
    }
}

impl TryCryptoRng for SeededRng {}

use crate::hood::Policy;
use crate::identity::MemberKeys;
use crate::invite::{SignedTicket, Ticket, TicketId};
use crate::item::{Body, Item};
use crate::keys::KeyRing;
use crate::membership::{self, JoinRequest, Roster};
use crate::report::{Category, Location, Report, Severity};
use crate::validate::{self, Context, RateLimiter, Verdict};
use crate::{HoodId, envelope};

/// A fixed "now" for tests: 2023-11-14T22:13:20Z.
pub const NOW: u64 = 1_700_000_000;

/// One member of a [`TestHood`]: their keys and the epoch keys they learned.
#[derive(Debug, Clone)]
pub struct TestMember {
    pub keys: MemberKeys,
    pub ring: KeyRing,
}

/// A hood built in memory with real keys and real operations, for tests.
/// Every member shares one roster (as if gossip were instant).
#[derive(Debug, Clone)]
pub struct TestHood {
    pub rng: SeededRng,
    pub roster: Roster,
    pub members: Vec<TestMember>,
    pub now: u64,
}

impl TestHood {
    pub fn new(seed: u64) -> TestHood {
        TestHood::with_policy(seed, Policy::default())
    }

    pub fn with_policy(seed: u64, policy: Policy) -> TestHood {
        let mut rng = SeededRng::new(seed);
        let keys = MemberKeys::generate(&mut rng);
        let new = membership::found(&keys, "Elm Street", "Alice", policy, NOW, &mut rng)
            .expect("a valid test policy founds a hood");
        let roster = new.roster().expect("a fresh hood is valid");
        let mut ring = KeyRing::new();
        roster.learn_keys(&keys, &mut ring);
        TestHood {
            rng,
            roster,
            members: vec![TestMember { keys, ring }],
            now: NOW,
        }
    }

    pub fn hood(&self) -> HoodId {
        self.roster.hood()
    }

    /// A ticket from member `inviter`, valid for an hour.
    pub fn ticket(&mut self, inviter: usize) -> (SignedTicket, Ticket) {
        let ticket = Ticket {
            hood: self.hood(),
            hood_name: self.roster.name().to_owned(),
            inviter: self.members[inviter].keys.id(),
            id: TicketId(self.rng.bytes()),
            expires_at: self.now + 3600,
            bootstrap: vec!["/ip4/127.0.0.1/tcp/4001".into()],
        };
        let signed = SignedTicket::issue(&self.members[inviter].keys, &ticket)
            .expect("a test ticket is within bounds");
        (signed, ticket)
    }

    /// Fresh keys for a would-be member (not yet in the hood).
    pub fn outsider(&mut self) -> MemberKeys {
        MemberKeys::generate(&mut self.rng)
    }

    /// The join request `keys` makes for `ticket`.
    pub fn request(keys: &MemberKeys, signed: &SignedTicket, ticket: &Ticket) -> JoinRequest {
        JoinRequest::new(keys, signed.clone(), ticket, "Neighbor").expect("valid test name")
    }

    /// Invited by `inviter`, admitted by `admitter`: returns the new member's index.
    pub fn join(&mut self, inviter: usize, admitter: usize) -> usize {
        let (signed, ticket) = self.ticket(inviter);
        let keys = self.outsider();
        let request = TestHood::request(&keys, &signed, &ticket);
        let join = self
            .roster
            .admit(
                &self.members[admitter].keys,
                &self.members[admitter].ring,
                &request,
                self.now,
                &mut self.rng,
            )
            .expect("test admission is allowed");
        self.members.push(TestMember {
            keys,
            ring: KeyRing::new(),
        });
        self.apply(&join);
        self.members.len() - 1
    }

    /// Inserts an operation and lets every member learn the keys it carries.
    pub fn apply(&mut self, op: &Item) {
        self.roster
            .insert(op)
            .expect("test operation is well formed");
        for m in &mut self.members {
            self.roster.learn_keys(&m.keys, &mut m.ring);
        }
    }

    /// `remover` removes `target`, then rekeys, as a node does.
    pub fn remove(&mut self, remover: usize, target: usize) {
        let target = self.members[target].keys.id();
        let op = self
            .roster
            .remove(&self.members[remover].keys, target, self.now)
            .expect("test removal is allowed");
        self.apply(&op);
        self.rekey(remover);
    }

    pub fn rekey(&mut self, by: usize) {
        let (op, _, _) = self
            .roster
            .rekey(&self.members[by].keys, self.now, &mut self.rng)
            .expect("a member may rekey");
        self.apply(&op);
    }

    /// A valid report body.
    pub fn report(&self, text: &str) -> Body {
        Body::Report(Report {
            created_at: self.now,
            expires_at: self.now + 72 * 3600,
            category: Category::PackageTheft,
            severity: Severity::Warning,
            text: text.to_owned(),
            behavior: None,
            location: Location {
                text: "Elm St, 400 block".into(),
                geohash: Some("9q8yyk8".into()),
            },
            clips: vec![],
            ask_seen: None,
        })
    }

    /// Signs `body` as member `author` and seals it under the roster's sealing epoch.
    pub fn seal(&mut self, author: usize, body: &Body) -> Vec<u8> {
        let item = Item::sign(&self.members[author].keys, &self.hood(), body);
        self.seal_item(author, &item)
    }

    /// Seals an already signed item with member `by`'s key for the sealing epoch.
    pub fn seal_item(&mut self, by: usize, item: &Item) -> Vec<u8> {
        let epoch = self
            .roster
            .sealing_epoch()
            .expect("test hood has a clean epoch");
        let key = self.members[by]
            .ring
            .get(&epoch)
            .expect("test member holds the sealing epoch")
            .clone();
        // In the window of the item's `created_at`, or of now if its body does not say
        // (tests seal malformed bodies too).
        let created_at = item.body().map_or(self.now, |b| b.times().0);
        let nonce = self.rng.bytes();
        envelope::seal_in_window(
            item,
            &self.hood(),
            &key,
            crate::keys::window_of(created_at),
            nonce,
        )
        .expect("test item fits")
    }

    /// Runs `bytes` through validation as member `judge` would, and an accepted
    /// membership operation into the roster (as a node does); returns the verdict.
    pub fn ingest_as(&mut self, judge: usize, bytes: &[u8]) -> Verdict {
        let verdict = self.validate_as(judge, bytes);
        if let Verdict::Accept(a) = &verdict
            && a.item.kind == crate::item::Kind::Membership
        {
            self.apply(&a.item);
        }
        verdict
    }

    /// The verdict member `judge` reaches on `bytes`.
    pub fn validate_as(&self, judge: usize, bytes: &[u8]) -> Verdict {
        self.validate_with(judge, bytes, &RateLimiter::new())
    }

    pub fn validate_with(&self, judge: usize, bytes: &[u8], rate: &RateLimiter) -> Verdict {
        validate::validate(
            bytes,
            &Context {
                roster: &self.roster,
                keys: &self.members[judge].ring,
                rate,
                lookup: &(),
                now: self.now,
            },
        )
    }
}
