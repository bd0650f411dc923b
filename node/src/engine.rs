//! The hood engine: the member's keys, roster, key ring and rate state over the store.
//! No network here: the event loop hands it bytes and publishes what it queues. Every
//! protocol rule is `porchlight_proto`'s; the engine applies verdicts to the store.

use porchlight_proto::checkpoint::Checkpoint;
use porchlight_proto::item::{Body, Item};
use porchlight_proto::membership::{self, MembershipError};
use porchlight_proto::report::Report;
use porchlight_proto::seen::SeenAsk;
use porchlight_proto::validate::{self, Accepted, Context, Lookup, RateLimiter, Reason, Verdict};
use porchlight_proto::{
    EpochId, HoodId, ItemId, JoinRequest, KeyRing, Kind, MemberId, MemberKeys, OpId, Policy,
    Roster, Welcome,
};
use porchlight_proto::{envelope, sync};
use rand_core::CryptoRng;

use crate::store::{ItemRecord, Store, StoreError};

/// What [`Engine::remove`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The member is removed (or left), and the hood rekeyed.
    Removed,
    /// Under a quorum policy: this member's vote was cast, and `needed` more votes by
    /// other members remove the target.
    Voted { needed: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("membership: {0}")]
    Membership(#[from] MembershipError),
    #[error("this node is not a member of the hood in the welcome")]
    NotWelcomed,
    #[error("the welcome is for another hood than the invite")]
    WrongHood,
    #[error("this node holds no epoch key it can seal with")]
    NoEpochKey,
    #[error("the item does not fit in an envelope")]
    TooLarge,
    #[error("the hood refused our own item: {0}")]
    Refused(Reason),
    #[error("this exact item was already posted")]
    AlreadyPosted,
    #[error(
        "this device's clock says {now}, before the newest report it holds ({newest}): \
         set the clock (is time sync running?) and post again"
    )]
    ClockBehind { now: String, newest: String },
    #[error("stored operations are corrupt: {0}")]
    CorruptOps(String),
    #[error("sync: {0}")]
    Sync(sync::SyncError),
    #[error(
        "this node's member was removed from the hood: it can no longer post, invite, \
         remove or promote (`porchlight status` says so)"
    )]
    Removed,
    #[error(
        "you are the hood's only admin: make another member an admin first \
         (`porchlight promote NAME`), then remove yourself"
    )]
    LastAdminLeaving,
    #[error(
        "{0} is the hood's only admin: make another member an admin first \
         (`porchlight promote NAME`)"
    )]
    LastAdmin(String),
    #[error("{0} is already an admin")]
    AlreadyAdmin(String),
    #[error(
        "this hood's policy lets only admins invite: ask an admin \
         (`porchlight members` shows who)"
    )]
    InviteForbidden,
    #[error(transparent)]
    Seen(#[from] crate::seen::SeenError),
    #[error(
        "this node joined recently and is still fetching the hood's history ({0} \
         membership operations to go): it can post, invite, remove or promote once it \
         has them and has checked them (`porchlight status` shows the progress)"
    )]
    FetchingHistory(usize),
}

/// What became of bytes handed to [`Engine::ingest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingest {
    /// Accepted and stored now.
    New(Box<Accepted>),
    /// A membership operation from sync, applied now.
    NewOp(OpId),
    /// Already seen: not stored again, no second alert.
    Duplicate,
    Rejected(Reason),
    Ignored(Reason),
}

/// Whether an operation refused for `reason` may be taken once more operations arrive.
fn waits_for_more(reason: &Reason) -> bool {
    matches!(reason, Reason::MissingParents | Reason::UnknownAuthor)
}

struct StoreLookup<'a>(&'a Store, &'a crate::seen::Acks);

impl Lookup for StoreLookup<'_> {
    fn report_author(&self, report: &ItemId) -> Option<MemberId> {
        match self.0.item(report) {
            Ok(Some(record)) if record.kind == Kind::Report => Some(record.author),
            _ => None,
        }
    }

    fn seen_ask(&self, report: &ItemId) -> Option<(SeenAsk, u64)> {
        let (_, r) = live_report(self.0, report).ok()??;
        Some((r.ask_seen?, r.expires_at))
    }

    fn acks_held(&self, report: &ItemId) -> usize {
        self.1.held(report)
    }
}

/// The live report `id` in `store`, with its signed item.
fn live_report(store: &Store, id: &ItemId) -> Result<Option<(Item, Report)>, EngineError> {
    let Some(record) = store.item(id)? else {
        return Ok(None);
    };
    if record.kind != Kind::Report {
        return Ok(None);
    }
    let Ok(item) = Item::decode(&record.item) else {
        return Ok(None);
    };
    match item.body() {
        Ok(Body::Report(r)) => Ok(Some((item, r))),
        _ => Ok(None),
    }
}

/// What [`Engine::acknowledge`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acked {
    /// The ack was made, stored and queued: its item id.
    Sent(ItemId),
    /// This member had acknowledged the report already: nothing was sent.
    Already,
}

// Keys that expire (issue #20): the ratchet's deletion and when a spent epoch rekeys.
mod keys_expire;
// Rotating exchange keys and healing rekeys (issue #20).
mod rotation;
pub use rotation::EXCHANGE_GRACE;

/// Most membership operations held while their causal parents (or their author's join)
/// are on their way. Past this the oldest is dropped; sync brings it again.
pub const MAX_WAITING_OPS: usize = 1024;

#[derive(Debug)]
pub struct Engine {
    keys: MemberKeys,
    store: Store,
    roster: Roster,
    ring: KeyRing,
    rate: RateLimiter,
    /// Operations that arrived before a parent or their author's join, by op id, as
    /// signed item bytes: applied as soon as what they wait for is.
    waiting: std::collections::BTreeMap<OpId, Vec<u8>>,
    /// The member's exchange secrets, oldest first (`engine/rotation.rs`).
    exchange: Vec<crate::store::ExchangeRecord>,
    /// The acks held, by report (`seen`).
    acks: crate::seen::Acks,
}

impl Engine {
    /// The engine for the hood in `store`, or `None` if this node has no hood yet.
    pub fn load(store: Store, keys: MemberKeys) -> Result<Option<Engine>, EngineError> {
        let Some(hood) = store.hood()? else {
            return Ok(None);
        };
        let mut items = Vec::new();
        for bytes in store.ops()? {
            items.push(Item::decode(&bytes).map_err(|e| EngineError::CorruptOps(e.to_string()))?);
        }
        let roster = match store.checkpoint()? {
            // Joined from a checkpoint whose history had not all arrived.
            Some(bytes) => {
                let checkpoint = Checkpoint::decode(&bytes)
                    .map_err(|e| EngineError::CorruptOps(format!("checkpoint: {e}")))?;
                Roster::resume(&hood, &checkpoint, &items)?
            }
            None => Roster::from_items(&hood, &items)?,
        };
        let ring = store.key_ring(&hood)?;
        // From the small expiry index (author and times of every live item): a restart
        // reads no records, which on a store of 100,000 items took tens of MiB.
        let mut rate = RateLimiter::new();
        for entry in store.live() {
            let entry = entry?;
            // Acks are signed by one-time keys, and not rate-limited.
            if !roster.is_member(&entry.author) {
                continue;
            }
            rate.count(
                roster.policy(),
                &entry.author,
                entry.created_at,
                entry.expires_at,
            );
        }
        let mut engine = Engine {
            keys,
            store,
            roster,
            ring,
            rate,
            waiting: Default::default(),
            exchange: Vec::new(),
            acks: Default::default(),
        };
        engine.load_exchange()?;
        // Finish what a crash may have interrupted: keys the log carries for us, and the
        // items of members the log removed.
        engine.learn_keys()?;
        if !engine.roster.is_provisional()
            && let Some(bytes) = engine.store.checkpoint()?
        {
            // The history was checked at this start (it was whole when the node
            // stopped): whoever the checkpoint listed and the history does not admit
            // leaves with their items, as when the check happens on a running node.
            let listed: Vec<MemberId> = Checkpoint::decode(&bytes)
                .map(|c| c.members.iter().map(|m| m.id).collect())
                .unwrap_or_default();
            engine.history_arrived()?;
            engine.forget_gone(listed)?;
        }
        // Items of anyone who is not a member: removed, or admitted by a join the fold
        // voids. A stop between storing the operation that made them so and deleting
        // their items (`apply_op_now`, `history_arrived`) must not keep them for good.
        // One pass over the small expiry index.
        // Acks are the one kind of item whose author is no member (a one-time key).
        let mut gone = Vec::new();
        for entry in engine.store.live() {
            let entry = entry?;
            if !engine.roster.is_member(&entry.author) {
                if let Some(report) = engine.ack_of(&entry.id)? {
                    engine.acks.insert(report, entry.id);
                } else {
                    gone.push(entry.id);
                }
            }
        }
        for id in &gone {
            engine.store.remove_item(id)?;
        }
        if !gone.is_empty() {
            tracing::info!(
                deleted = gone.len(),
                "deleted the items of authors who are no longer members"
            );
        }
        Ok(Some(engine))
    }

    /// Founds a new hood with this node's member as founder.
    pub fn found(
        store: Store,
        keys: MemberKeys,
        hood_name: &str,
        my_name: &str,
        policy: Policy,
        now: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<Engine, EngineError> {
        let new = membership::found(&keys, hood_name, my_name, policy, now, rng)?;
        let roster = new.roster()?;
        Engine::adopt(store, keys, roster)
    }

    /// Becomes a member from a `Welcome` (the join protocol's answer).
    pub fn from_welcome(
        store: Store,
        keys: MemberKeys,
        hood: &HoodId,
        welcome: &Welcome,
    ) -> Result<Engine, EngineError> {
        let roster = match Roster::from_welcome(hood, &keys.id(), welcome) {
            Err(MembershipError::NotWelcomed) => return Err(EngineError::NotWelcomed),
            other => other?,
        };
        if roster.hood() != *hood {
            return Err(EngineError::WrongHood);
        }
        if !roster.is_member(&keys.id()) {
            return Err(EngineError::NotWelcomed);
        }
        Engine::adopt(store, keys, roster)
    }

    /// Becomes the member `keys` of the hood whose whole membership log is `items` (a
    /// node set up from another's log, as the benchmarks do).
    pub fn from_log(
        store: Store,
        keys: MemberKeys,
        hood: &HoodId,
        items: &[Item],
    ) -> Result<Engine, EngineError> {
        let roster = Roster::from_items(hood, items)?;
        if !roster.is_member(&keys.id()) {
            return Err(EngineError::NotWelcomed);
        }
        Engine::adopt(store, keys, roster)
    }

    fn adopt(store: Store, keys: MemberKeys, roster: Roster) -> Result<Engine, EngineError> {
        for item in roster.items() {
            let created_at = match item.body() {
                Ok(Body::Membership(op)) => op.created_at(),
                _ => 0,
            };
            store.put_op(&item.op_id(), created_at, &item.encode())?;
        }
        // Before the hood: a store with a hood and no checkpoint holds a whole log.
        if let Some(checkpoint) = roster.checkpoint() {
            store.set_checkpoint(Some(&checkpoint.encode()))?;
            tracing::info!(
                missing = roster.history_missing(),
                "joined from a checkpoint: fetching the rest of the hood's history"
            );
        }
        let mut engine = Engine {
            keys,
            store,
            roster,
            ring: KeyRing::new(),
            rate: RateLimiter::new(),
            waiting: Default::default(),
            exchange: Vec::new(),
            acks: Default::default(),
        };
        engine.load_exchange()?;
        engine.learn_keys()?;
        if engine.ring.is_empty() {
            return Err(EngineError::NoEpochKey);
        }
        engine.store.set_hood(&engine.roster.hood())?;
        Ok(engine)
    }

    /// Every operation the checkpoint we joined with covers is here, and the roster
    /// folds them: the checkpoint is no longer needed. Says whether it held.
    fn history_arrived(&mut self) -> Result<(), EngineError> {
        // Operations the checkpoint vouched for that no member takes leave the store
        // before the checkpoint does: a store without the checkpoint must hold a whole,
        // causally complete log to load again.
        for stray in self.roster.take_strays() {
            let created_at = match stray.body() {
                Ok(Body::Membership(op)) => op.created_at(),
                _ => 0,
            };
            self.store.remove_op(&stray.op_id(), created_at)?;
            tracing::warn!(op = %stray.op_id(), "dropped an operation the checkpoint vouched for and no member holds");
        }
        self.store.set_checkpoint(None)?;
        match self.roster.checkpoint_held() {
            Some(false) => tracing::error!(
                "the hood's history arrived and contradicts the checkpoint the admitting \
                 member sent: the roster now follows the history"
            ),
            _ => tracing::info!(
                operations = self.roster.len(),
                "the hood's history arrived and matches the checkpoint we joined with"
            ),
        }
        Ok(())
    }

    /// Refuses what changes the hood while the roster is provisional.
    pub fn ensure_settled(&self) -> Result<(), EngineError> {
        match self.roster.history_missing() {
            0 => Ok(()),
            missing => Err(EngineError::FetchingHistory(missing)),
        }
    }

    fn learn_keys(&mut self) -> Result<(), EngineError> {
        let before: Vec<EpochId> = self.ring.iter().map(|k| k.id()).collect();
        let (_, failed) =
            self.roster
                .learn_keys_with(&self.keys.id(), &self.exchange_secrets(), &mut self.ring);
        if failed > 0 {
            tracing::warn!(failed, "key wraps addressed to us did not open");
        }
        let new: Vec<EpochId> = self
            .ring
            .iter()
            .map(|k| k.id())
            .filter(|id| !before.contains(id))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        // A key deleted for good (expired or retired) stays deleted, though the log
        // still wraps it to us.
        let forgotten = self.store.forgotten_keys()?;
        self.ring
            .retain(|id, _| !(new.contains(id) && forgotten.contains(id)));
        for key in self.ring.iter() {
            if new.contains(&key.id()) {
                self.store.put_key(key)?;
            }
        }
        Ok(())
    }

    pub fn hood(&self) -> HoodId {
        self.roster.hood()
    }

    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    pub fn keys(&self) -> &MemberKeys {
        &self.keys
    }

    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Refuses what only a current member may do, once this node's member was removed.
    pub fn ensure_member(&self) -> Result<(), EngineError> {
        if self.roster.is_member(&self.keys.id()) {
            Ok(())
        } else {
            Err(EngineError::Removed)
        }
    }

    /// Whether this node's member may hand out invites: a current member, and an admin
    /// if the hood's policy says so. (An invite that no member would honour is refused
    /// when it is made, not when a neighbor tries it.)
    pub fn check_invite(&self) -> Result<(), EngineError> {
        self.ensure_member()?;
        if self
            .roster
            .policy()
            .invite
            .allows(self.roster.is_admin(&self.keys.id()))
        {
            Ok(())
        } else {
            Err(EngineError::InviteForbidden)
        }
    }

    /// A removal must not leave the hood without an admin: nobody could promote or
    /// (under the default policy) remove anyone again.
    fn check_admin_remains(&self, target: &MemberId) -> Result<(), EngineError> {
        if !self.roster.is_admin(target) {
            return Ok(());
        }
        let others = self
            .roster
            .members()
            .filter(|m| m.admin && m.id != *target)
            .count();
        if others > 0 {
            return Ok(());
        }
        if *target == self.keys.id() {
            return Err(EngineError::LastAdminLeaving);
        }
        let name = self
            .roster
            .member(target)
            .map_or_else(|| target.fingerprint(), |m| m.name.clone());
        Err(EngineError::LastAdmin(name))
    }

    /// Judges bytes from the network (gossip or sync) and stores what is accepted.
    pub fn ingest(&mut self, bytes: &[u8], now: u64) -> Result<Ingest, EngineError> {
        let verdict = validate::validate(
            bytes,
            &Context {
                roster: &self.roster,
                keys: &self.ring,
                rate: &self.rate,
                lookup: &StoreLookup(&self.store, &self.acks),
                now,
            },
        );
        match verdict {
            Verdict::Accept(accepted) => {
                // The same signed item in any envelope (the one we hold, or one re-sealed
                // with a new nonce) is the same item: one copy, one alert. Items are named
                // by their inner id, so this is one look-up.
                if accepted.expires_at.is_some() && self.store.seen(&accepted.id)? {
                    return Ok(Ingest::Duplicate);
                }
                self.apply(&accepted, bytes, now)?;
                Ok(Ingest::New(accepted))
            }
            Verdict::Reject(reason) => Ok(Ingest::Rejected(reason)),
            Verdict::Ignore(reason) => {
                if waits_for_more(&reason)
                    && let Ok(opened) = envelope::open(bytes, &self.hood(), &self.ring)
                {
                    self.wait(opened.item.encode());
                }
                Ok(Ingest::Ignored(reason))
            }
        }
    }

    /// Holds an operation until what it waits for arrives.
    fn wait(&mut self, item_bytes: Vec<u8>) {
        if self.waiting.len() >= MAX_WAITING_OPS {
            self.waiting.pop_first();
        }
        self.waiting.insert(OpId::of(&item_bytes), item_bytes);
    }

    /// Applies waiting operations whose parents and authors have arrived, until none
    /// is left that can be (each round applies at least one, so at most
    /// `MAX_WAITING_OPS` rounds).
    fn apply_waiting(&mut self, now: u64) -> Result<(), EngineError> {
        loop {
            let mut progress = false;
            let ids: Vec<OpId> = self.waiting.keys().copied().collect();
            for id in ids {
                let Some(bytes) = self.waiting.get(&id) else {
                    continue;
                };
                match validate::validate_op(bytes, &self.roster, now) {
                    Ok(verified) => {
                        self.waiting.remove(&id);
                        self.apply_op_now(&verified.item, verified.op.created_at())?;
                        progress = true;
                    }
                    Err(reason) if waits_for_more(&reason) => {}
                    Err(_) => {
                        self.waiting.remove(&id);
                    }
                }
            }
            if !progress {
                return Ok(());
            }
        }
    }

    fn apply(&mut self, a: &Accepted, bytes: &[u8], now: u64) -> Result<(), EngineError> {
        match (&a.body, a.expires_at) {
            (Body::Membership(_), _) => {
                self.apply_op(&a.item, a.created_at, now)?;
                self.store.mark_seen(&a.id, u64::MAX)?;
            }
            (body, Some(expires_at)) => {
                if let Body::Retract(r) = body {
                    // The retracted report's body goes from this store; its ids stay seen
                    // until it would have expired, so that sync cannot bring it back.
                    self.store.remove_item(&r.report)?;
                }
                self.store.put_item(
                    &a.id,
                    &a.op_id,
                    &ItemRecord {
                        kind: a.item.kind,
                        envelope: bytes.to_vec(),
                        item: a.item.encode(),
                        author: a.item.author,
                        created_at: a.created_at,
                        expires_at,
                        received_at: now,
                    },
                )?;
                self.rate.record(self.roster.policy(), a);
                if let Body::Seen(seen) = body {
                    self.acks.insert(seen.report, a.id);
                    self.count_ack(a, seen)?;
                }
            }
            (_, None) => {}
        }
        Ok(())
    }

    /// The report the held ack `id` acknowledges; `None` if `id` is not an ack.
    fn ack_of(&self, id: &ItemId) -> Result<Option<ItemId>, EngineError> {
        let Some(record) = self.store.item(id)? else {
            return Ok(None);
        };
        if record.kind != Kind::Seen {
            return Ok(None);
        }
        match Item::decode(&record.item).map(|i| i.body()) {
            Ok(Ok(Body::Seen(seen))) => Ok(Some(seen.report)),
            _ => Ok(None),
        }
    }

    /// An accepted ack of one of our own reports: opened with the report's secret and
    /// counted if its acker could read the report. Anyone else's ack is only held and
    /// relayed (nobody else can tell whose it is). One that does not open, or whose
    /// acker could not read the report, is logged and not counted.
    fn count_ack(
        &mut self,
        a: &Accepted,
        seen: &porchlight_proto::seen::Seen,
    ) -> Result<(), EngineError> {
        let Some(ask) = crate::seen::ask(&self.store, &seen.report)? else {
            return Ok(());
        };
        match porchlight_proto::seen::open(&a.item, seen, &self.hood(), &ask.secret, &ask.of) {
            Ok(acker) => {
                if crate::seen::count_acker(&self.store, &seen.report, acker)? {
                    tracing::debug!(report = %seen.report, "a neighbor has seen our report");
                } else {
                    tracing::debug!(report = %seen.report, "a repeated ack: counted once");
                }
            }
            Err(e) => {
                tracing::warn!(report = %seen.report, error = %e, "an ack of our report not counted");
            }
        }
        Ok(())
    }

    /// Acknowledges that this node's person has seen `report` (read it in the feed or
    /// on the page, or said so with `porchlight seen`): once per report, never on
    /// receipt. Refused for a report that is not live, did not ask, or is our own.
    pub async fn acknowledge(
        &mut self,
        report: ItemId,
        now: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<Acked, EngineError> {
        use crate::seen::SeenError;
        self.ensure_member()?;
        self.ensure_settled()?;
        let short = report.to_hex()[..8].to_owned();
        let Some((item, r)) = live_report(&self.store, &report)? else {
            return Err(SeenError::UnknownReport(short).into());
        };
        let Some(ask) = r.ask_seen else {
            return Err(SeenError::NotAsking(short).into());
        };
        if item.author == self.keys.id() {
            return Err(SeenError::OwnReport(short).into());
        }
        if crate::seen::acked(&self.store, &report)? {
            return Ok(Acked::Already);
        }
        self.rekey_if_needed(now, rng).await?;
        let epoch = self.roster.sealing_epoch().ok_or(EngineError::NoEpochKey)?;
        let ack = porchlight_proto::seen::acknowledge(
            &self.keys,
            &self.hood(),
            report,
            &ask,
            now,
            r.expires_at,
            rng,
        )
        .map_err(SeenError::from)?;
        // Marked first: a crash after the ack went out must not send a second one.
        crate::seen::set_acked(&self.store, &report, r.expires_at, true)?;
        match self.stage(&ack, epoch, now, rng) {
            Ok(id) => {
                self.store.flush().await?;
                Ok(Acked::Sent(id))
            }
            Err(e) => {
                crate::seen::set_acked(&self.store, &report, r.expires_at, false)?;
                Err(e)
            }
        }
    }

    /// Adds an operation to the store and the roster, learns the keys it carries, and
    /// deletes the items of anyone it removed (so every node holds the same item set:
    /// a removed member's items go everywhere, also those sent before the news arrived).
    fn apply_op(&mut self, item: &Item, created_at: u64, now: u64) -> Result<(), EngineError> {
        self.apply_op_now(item, created_at)?;
        self.apply_waiting(now)
    }

    fn apply_op_now(&mut self, item: &Item, created_at: u64) -> Result<(), EngineError> {
        let members_before: Vec<MemberId> = self.roster.members().map(|m| m.id).collect();
        let provisional = self.roster.is_provisional();
        // The roster first: if it refuses (full), nothing is stored that would stop the
        // node from loading again.
        self.roster.insert(item)?;
        self.store
            .put_op(&item.op_id(), created_at, &item.encode())?;
        if provisional && !self.roster.is_provisional() {
            self.history_arrived()?;
        }
        self.learn_keys()?;
        self.forget_gone(members_before)
    }

    /// Stops waiting for the history the checkpoint we joined with covers, when sync
    /// sessions keep bringing none of what is missing (an admitter that covered an
    /// operation nobody holds would otherwise keep this node from writing for good):
    /// the roster follows what arrived, checked as if it were all.
    pub fn give_up_history(&mut self) -> Result<(), EngineError> {
        if !self.roster.is_provisional() {
            return Ok(());
        }
        let missing = self.roster.history_missing();
        let members_before: Vec<MemberId> = self.roster.members().map(|m| m.id).collect();
        self.roster.give_up_checkpoint();
        tracing::warn!(
            missing,
            "gave up waiting for the rest of the history the checkpoint covers: no member \
             has it; the roster follows what arrived"
        );
        self.history_arrived()?;
        self.learn_keys()?;
        self.forget_gone(members_before)
    }

    /// Deletes the items of everyone in `members_before` who is no longer a member.
    fn forget_gone(&mut self, members_before: Vec<MemberId>) -> Result<(), EngineError> {
        // Everyone who stopped being a member: removed, or admitted by a join that a
        // concurrent removal voided.
        let gone: Vec<MemberId> = members_before
            .into_iter()
            .filter(|m| !self.roster.is_member(m))
            .collect();
        for member in gone {
            let deleted = self.store.remove_items_by(&member)?;
            tracing::info!(member = %member.fingerprint(), deleted, "no longer a member; their items deleted");
            if member == self.keys.id() {
                tracing::warn!("this member was removed from the hood");
            }
        }
        Ok(())
    }

    /// Judges a membership operation that came by sync (signed item bytes, no envelope)
    /// and applies it. See `porchlight_proto::validate::validate_op`.
    pub fn ingest_op(&mut self, bytes: &[u8], now: u64) -> Result<Ingest, EngineError> {
        match validate::validate_op(bytes, &self.roster, now) {
            Ok(verified) => {
                let id = verified.item.op_id();
                self.apply_op(&verified.item, verified.op.created_at(), now)?;
                Ok(Ingest::NewOp(id))
            }
            Err(Reason::DuplicateOp) => Ok(Ingest::Duplicate),
            Err(reason) if waits_for_more(&reason) => {
                self.wait(bytes.to_vec());
                Ok(Ingest::Ignored(reason))
            }
            Err(reason) if reason.is_ignore() => Ok(Ingest::Ignored(reason)),
            Err(reason) => Ok(Ingest::Rejected(reason)),
        }
    }

    /// The set catch-up sync reconciles, sealed for negentropy.
    pub fn sync_storage(&self) -> Result<negentropy::NegentropyStorageVector, EngineError> {
        sync::storage(self.store.sync_elements()?).map_err(EngineError::Sync)
    }

    /// The elements a peer asked for, as many as fit in one response.
    pub fn fetch(&self, ids: &[[u8; 32]]) -> Result<Vec<sync::Element>, EngineError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for id in ids {
            let element = if let Some(record) = self.store.item(&ItemId(*id))? {
                sync::Element::Envelope(record.envelope)
            } else if let Some(op) = self.store.op(&OpId(*id))? {
                sync::Element::Op(op)
            } else {
                continue;
            };
            if bytes + element.len() + 16 > sync::MAX_RESPONSE_BYTES {
                break;
            }
            bytes += element.len() + 16;
            out.push(element);
        }
        Ok(out)
    }

    /// A digest of what this node holds: its live items, its membership operations, and
    /// the epoch it seals under. Two nodes in sync have the same digest.
    pub fn digest(&self) -> Result<[u8; 32], EngineError> {
        self.digest_of(&self.sync_storage()?)
    }

    /// [`Engine::digest`] over `set`, the sync set as [`Engine::sync_storage`] built it
    /// (sorted by time, then id): no pass over the store.
    pub fn digest_of(
        &self,
        set: &negentropy::NegentropyStorageVector,
    ) -> Result<[u8; 32], EngineError> {
        use negentropy::NegentropyStorageBase as _;
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        let local = |e: negentropy::Error| EngineError::Sync(sync::SyncError::Local(e.to_string()));
        let size = set.size().map_err(local)?;
        set.iterate(0, size, &mut |item, _| {
            h.update(item.timestamp.to_be_bytes());
            h.update(item.id.as_bytes());
            Ok(true)
        })
        .map_err(local)?;
        h.update(self.roster.sealing_epoch().map_or([0; 32], |e| e.0));
        Ok(h.finalize().into())
    }

    fn seal(
        &self,
        item: &Item,
        epoch: EpochId,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<u8>, EngineError> {
        let key = self.ring.get(&epoch).ok_or(EngineError::NoEpochKey)?;
        envelope::seal_random(item, &self.hood(), key, rng).map_err(|_| EngineError::TooLarge)
    }

    /// Seals our own item, runs it through the same validation as anyone's, stores it
    /// and queues it for publishing. Returns its id once it is durable.
    async fn submit(
        &mut self,
        item: &Item,
        epoch: EpochId,
        now: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<ItemId, EngineError> {
        let id = self.stage(item, epoch, now, rng)?;
        self.store.flush().await?;
        Ok(id)
    }

    /// [`Engine::submit`] up to the fsync: stored and queued, not yet durable.
    fn stage(
        &mut self,
        item: &Item,
        epoch: EpochId,
        now: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<ItemId, EngineError> {
        let bytes = self.seal(item, epoch, rng)?;
        match self.ingest(&bytes, now)? {
            Ingest::New(a) => {
                // Stored and applied: it is ours now. A full outbox only delays it (sync
                // delivers it), so it is not an error to the person who posted.
                if let Err(e) = self.store.push_outbox(&bytes) {
                    tracing::warn!(error = %e, "outbox full; the item will go out by sync");
                }
                Ok(a.id)
            }
            Ingest::Rejected(r) | Ingest::Ignored(r) => Err(EngineError::Refused(r)),
            // The same signed item is already here (the same body posted twice within
            // one second signs identically).
            Ingest::Duplicate | Ingest::NewOp(_) => Err(EngineError::AlreadyPosted),
        }
    }

    async fn submit_op(
        &mut self,
        op: &Item,
        now: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<ItemId, EngineError> {
        match self.newest_held_epoch(now) {
            Some(epoch) => self.submit(op, epoch, now, rng).await,
            // No epoch this node holds can seal now: every one ran past its ratchet or
            // was deleted (a hood where nobody posted or rekeyed for six weeks). The
            // operation (typically the rekey that makes a fresh epoch) goes into the log
            // as signed, and catch-up sync hands it on as an operation, as it does every
            // operation; gossip does not carry it.
            _ => match self.ingest_op(&op.encode(), now)? {
                Ingest::NewOp(id) => {
                    self.store.flush().await?;
                    Ok(ItemId(id.0))
                }
                Ingest::Rejected(r) | Ingest::Ignored(r) => Err(EngineError::Refused(r)),
                Ingest::Duplicate | Ingest::New(_) => Err(EngineError::AlreadyPosted),
            },
        }
    }

    /// Rekeys if the roster asks for it (after a removal, or when a member lacks the
    /// sealing key). Returns whether it did.
    pub async fn rekey_if_needed(
        &mut self,
        now: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<bool, EngineError> {
        // Also when this node lacks the sealing key: a wrap to us that does not open (a
        // misbehaving rekeyer) is repaired by rekeying for everyone.
        if self.roster.is_provisional() {
            return Ok(false);
        }
        let lacking = self
            .roster
            .sealing_epoch()
            .is_some_and(|e| !self.ring.contains(&e));
        if !self.roster.needs_rekey() && !lacking && !self.sealing_epoch_spent(now) {
            return Ok(false);
        }
        let (op, _, _) = self.roster.rekey(&self.keys, now, rng)?;
        self.submit_op(&op, now, rng).await?;
        Ok(true)
    }

    /// Whether this member cannot read what everyone seals under: the roster names an
    /// epoch to seal under and this node lacks its key, typically because the wrap a
    /// rekeyer addressed to us does not open (while the roster counts us a holder, so
    /// everyone else seals under it).
    pub fn locked_out(&self) -> bool {
        self.roster.is_member(&self.keys.id())
            && self
                .roster
                .sealing_epoch()
                .is_some_and(|e| !self.ring.contains(&e))
    }

    /// Whether the event loop should rekey now: this member is [locked
    /// out](Engine::locked_out), or a vote of theirs completed a removal by quorum and the
    /// removed member still holds the newest key (`Roster::owes_rekey`).
    pub fn keys_due(&self) -> bool {
        self.locked_out() || self.roster.owes_rekey(&self.keys.id())
    }

    /// Rekeys at once if this member is [locked out](Engine::locked_out), or owes the
    /// rekey after a removal by quorum that their vote completed. The new epoch
    /// is one generation past the bad one and wrapped to every member, so every node
    /// seals under it and this member reads again. (Waiting for this member's next post,
    /// as before, left them reading nothing meanwhile.) Returns whether it rekeyed.
    pub async fn repair_keys(
        &mut self,
        now: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<bool, EngineError> {
        if self.roster.owes_rekey(&self.keys.id()) {
            tracing::info!("our vote completed a removal by quorum; rekeying");
        } else if self.locked_out() {
            tracing::warn!("this member lacks the key everyone seals under; rekeying");
        } else {
            // Else the day's healing rekey, or a rotation (`engine/rotation.rs`).
            return self.upkeep(now, rng).await;
        }
        self.rekey_if_needed(now, rng).await
    }

    /// Posts a report-kind body: signs, seals under the sealing epoch (rekeying first if
    /// needed), stores durably and queues it. The returned id is acknowledged.
    pub async fn post(
        &mut self,
        body: &Body,
        now: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<ItemId, EngineError> {
        let id = self.post_staged(body, now, rng).await?;
        self.store.flush().await?;
        Ok(id)
    }

    /// [`Engine::post`] without its final fsync: the item is stored and queued but not
    /// yet durable, so that the caller can publish it first and acknowledge it only
    /// after [`Store::flush`]. (A rekey it needs first is made durable here.)
    pub async fn post_staged(
        &mut self,
        body: &Body,
        now: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<ItemId, EngineError> {
        self.ensure_member()?;
        self.ensure_settled()?;
        // A clock behind the hood's (a Pi without a real-time clock after a power cut)
        // would date the report before what neighbors already hold.
        if let Some(newest) = self.store.newest_created_at()?
            && now.saturating_add(porchlight_proto::limits::MAX_CLOCK_SKEW_SECS) < newest
        {
            return Err(EngineError::ClockBehind {
                now: crate::words::utc(now),
                newest: crate::words::utc(newest),
            });
        }
        self.rekey_if_needed(now, rng).await?;
        let epoch = self.roster.sealing_epoch().ok_or(EngineError::NoEpochKey)?;
        // A report that asks who has seen it gets a key made here, whatever key the
        // caller put in: the secret is this node's alone.
        let mut body = body.clone();
        let mut asked = None;
        if let Body::Report(r) = &mut body
            && r.ask_seen.is_some()
        {
            let (ask, secret) = SeenAsk::generate(rng);
            r.ask_seen = Some(ask);
            asked = Some((secret, r.expires_at));
        }
        let item = Item::sign(&self.keys, &self.hood(), &body);
        let Some((secret, expires_at)) = asked else {
            return self.stage(&item, epoch, now, rng);
        };
        // The secret is kept before the report goes out, so that every ack finds it.
        let id = ItemId::of_item(&item.encode());
        let me = self.keys.id();
        let of: Vec<MemberId> = self
            .roster
            .members()
            .map(|m| m.id)
            .filter(|m| *m != me)
            .collect();
        crate::seen::put_ask(&self.store, &id, &secret, expires_at, of)?;
        self.stage(&item, epoch, now, rng).inspect_err(|_| {
            let _ = crate::seen::forget_ask(&self.store, &id);
        })
    }

    /// Admits a joiner: publishes the `Join` and returns the `Welcome` for them.
    pub async fn admit(
        &mut self,
        request: &JoinRequest,
        now: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<Welcome, EngineError> {
        // Asked again by a joiner already admitted with this ticket (a retry, or a replay):
        // the same welcome, not another operation.
        self.ensure_settled()?;
        let ticket = request.verify()?;
        if self.roster.ticket_holder(&ticket.id) == Some(request.joiner) {
            return Ok(self.roster.welcome(&self.keys, &request.joiner)?);
        }
        let op = self
            .roster
            .admit(&self.keys, &self.ring, request, now, rng)?;
        self.submit_op(&op, now, rng).await?;
        Ok(self.roster.welcome(&self.keys, &request.joiner)?)
    }

    /// Removes a member and rekeys, so that they cannot read what comes next. Under a
    /// quorum policy, casts this member's vote instead (`RemoveVote`), and rekeys if it was
    /// the vote that removed them.
    pub async fn remove(
        &mut self,
        target: MemberId,
        now: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<Removal, EngineError> {
        self.ensure_member()?;
        self.ensure_settled()?;
        if target != self.keys.id() && self.roster.policy().remove.quorum().is_some() {
            // No last-admin check: a quorum exists to remove a rogue admin, even the last.
            let op = self.roster.vote_remove(&self.keys, target, now)?;
            self.submit_op(&op, now, rng).await?;
            if self.roster.is_member(&target) {
                let needed = self.roster.votes_needed(&target, now).unwrap_or(0);
                return Ok(Removal::Voted { needed });
            }
            self.rekey_if_needed(now, rng).await?;
            return Ok(Removal::Removed);
        }
        self.check_admin_remains(&target)?;
        let op = self.roster.remove(&self.keys, target, now)?;
        self.submit_op(&op, now, rng).await?;
        // Leaving: the others rekey (a node that is no longer a member cannot).
        if target != self.keys.id() {
            self.rekey_if_needed(now, rng).await?;
        }
        Ok(Removal::Removed)
    }

    /// Renames this member (a `Rename` operation); nothing is sent if the name is already
    /// this one.
    pub async fn rename(
        &mut self,
        name: &str,
        now: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<(), EngineError> {
        self.ensure_member()?;
        self.ensure_settled()?;
        if self
            .roster
            .member(&self.keys.id())
            .is_some_and(|m| m.name == name)
        {
            return Ok(());
        }
        let op = self.roster.rename(&self.keys, name, now)?;
        self.submit_op(&op, now, rng).await?;
        Ok(())
    }

    pub async fn promote(
        &mut self,
        target: MemberId,
        now: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<(), EngineError> {
        self.ensure_member()?;
        self.ensure_settled()?;
        if let Some(member) = self.roster.member(&target)
            && member.admin
        {
            return Err(EngineError::AlreadyAdmin(member.name.clone()));
        }
        let op = self.roster.promote(&self.keys, target, now)?;
        self.submit_op(&op, now, rng).await?;
        Ok(())
    }

    /// Deletes expired items, and the epoch keys no live item can need; returns how many
    /// items went.
    pub fn expire(&mut self, now: u64) -> Result<usize, EngineError> {
        self.rate.prune(self.roster.policy(), now);
        self.retire_keys(now)?;
        self.retire_exchange(now)?;
        let expired = self.store.expire(now)?;
        // Acks go with their report: at its expiry (they expire at the same time), and
        // also when it goes sooner (retracted, or its author removed).
        let store = &self.store;
        let orphans = self
            .acks
            .drain_unless(|report| store.has_item(report).unwrap_or(true));
        let mut removed = 0;
        for ack in &orphans {
            if self.store.remove_item(ack)? {
                removed += 1;
            }
        }
        crate::seen::expire(&self.store, now)?;
        Ok(expired + removed)
    }

    /// Retires the keys of epochs superseded longer ago than any item can live: an item
    /// sealed under an epoch was made before the next epoch was (give or take the clock
    /// skew), and lives at most the policy's longest lifetime. The sealing epoch and
    /// epochs the roster does not know are kept.
    fn retire_keys(&mut self, now: u64) -> Result<(), EngineError> {
        let sealing = self.roster.sealing_epoch();
        let keep_for = u64::from(self.roster.policy().max_ttl_secs)
            + 2 * porchlight_proto::limits::MAX_CLOCK_SKEW_SECS;
        let roster = &self.roster;
        // Only legacy epochs retire by their successor's date: a ratchet epoch's windows
        // go as they age (`forget_old_windows`), whatever a successor claims.
        let legacy: std::collections::BTreeSet<EpochId> = self
            .ring
            .iter()
            .filter(|k| k.is_legacy())
            .map(|k| k.id())
            .collect();
        let retired = self.ring.retain(|id, _| {
            Some(*id) == sealing
                || !legacy.contains(id)
                || roster
                    .epoch_retired_at(id)
                    .is_none_or(|at| now < at.saturating_add(keep_for))
        });
        for epoch in retired {
            self.store.forget_key(&epoch)?;
            tracing::info!(%epoch, "epoch key retired: no live item can need it");
        }
        self.forget_old_windows(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use porchlight_proto::testkit::{NOW, SeededRng, TestHood};

    fn engine(dir: &std::path::Path, seed: u64) -> Engine {
        let mut rng = SeededRng::new(seed);
        let keys = MemberKeys::generate(&mut rng);
        let store = Store::open(dir).unwrap();
        Engine::found(
            store,
            keys,
            "Elm Street",
            "Alice",
            Policy::default(),
            NOW,
            &mut rng,
        )
        .unwrap()
    }

    /// Bob, admitted by `alice` through the engine's `admit` on ticket `n`: his keys,
    /// and his engine over a store in `dir` made from the welcome.
    async fn admit_bob(
        alice: &mut Engine,
        n: u8,
        dir: &std::path::Path,
        rng: &mut SeededRng,
    ) -> (MemberKeys, Engine) {
        let bob = MemberKeys::generate(rng);
        let ticket = porchlight_proto::Ticket {
            hood: alice.hood(),
            hood_name: "Elm Street".into(),
            inviter: alice.keys().id(),
            id: porchlight_proto::TicketId([n; 16]),
            expires_at: NOW + 60,
            bootstrap: vec![],
        };
        let signed = porchlight_proto::invite::SignedTicket::issue(alice.keys(), &ticket).unwrap();
        let request = JoinRequest::new(&bob, signed, &ticket, "Bob").unwrap();
        let welcome = alice.admit(&request, NOW, rng).await.unwrap();
        let engine = Engine::from_welcome(
            Store::open(dir).unwrap(),
            bob.clone(),
            &alice.hood(),
            &welcome,
        )
        .unwrap();
        (bob, engine)
    }

    #[tokio::test]
    async fn a_clock_behind_the_newest_item_refuses_to_post_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = SeededRng::new(9);
        let mut e = engine(dir.path(), 1);
        e.post(&TestHood::new(1).report("first"), NOW, &mut rng)
            .await
            .unwrap();
        // A power cut later, the clock restarts an hour behind.
        let mut late = TestHood::new(1);
        late.now = NOW - 3600;
        let err = e
            .post(&late.report("second"), NOW - 3600, &mut rng)
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::ClockBehind { .. }), "{err}");
        assert!(err.to_string().contains("2023-11-14 22:13 UTC"), "{err}");
        assert_eq!(e.store().item_count(), 1);
        // Within the tolerated skew it posts.
        let mut near = TestHood::new(1);
        near.now = NOW - 60;
        e.post(&near.report("third"), NOW - 60, &mut rng)
            .await
            .unwrap();
    }

    /// A joiner whose welcome lacks part of the log: provisional across a restart
    /// (the checkpoint is stored), refuses to post until sync brings the rest, then
    /// drops the checkpoint and posts.
    #[tokio::test]
    async fn a_joiner_from_a_checkpoint_posts_once_the_history_arrived() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = SeededRng::new(3);
        let mut h = TestHood::new(21);
        h.join(0, 0);
        h.rekey(1);
        h.remove(0, 1);
        let dave = h.join(0, 0);
        let mut welcome = h
            .roster
            .welcome(&h.members[0].keys, &h.members[dave].keys.id())
            .unwrap();
        let history = welcome.ops.split_off(2);
        let keys = h.members[dave].keys.clone();
        {
            let mut e = Engine::from_welcome(
                Store::open(dir.path()).unwrap(),
                keys.clone(),
                &h.hood(),
                &welcome,
            )
            .unwrap();
            assert!(e.roster().is_provisional());
            let err = e
                .post(&h.report("too soon"), NOW, &mut rng)
                .await
                .unwrap_err();
            assert!(
                matches!(err, EngineError::FetchingHistory(n) if n == history.len()),
                "{err}"
            );
            assert_eq!(e.store().item_count(), 0);
            // Part of the history, then a restart.
            assert!(matches!(
                e.ingest_op(&history[0].encode(), NOW).unwrap(),
                Ingest::NewOp(_)
            ));
            e.store().flush().await.unwrap();
        }
        let mut e = Engine::load(Store::open(dir.path()).unwrap(), keys)
            .unwrap()
            .unwrap();
        assert!(e.roster().is_provisional());
        assert_eq!(e.roster().history_missing(), history.len() - 1);
        for op in history.iter().rev() {
            let _ = e.ingest_op(&op.encode(), NOW).unwrap();
        }
        assert!(!e.roster().is_provisional());
        assert_eq!(e.roster().checkpoint_held(), Some(true));
        assert_eq!(e.store().checkpoint().unwrap(), None);
        assert_eq!(e.roster().heads(), h.roster.heads());
        e.post(&h.report("now"), NOW, &mut rng).await.unwrap();
    }

    /// A hostile admitter covers an operation whose parent nobody holds (an outsider's,
    /// so the checkpoint's state is still true). The joiner takes it at the checkpoint's
    /// word; once the history is here it drops it from the roster and the store, so the
    /// data dir (which then holds a whole log, no checkpoint) starts again.
    #[tokio::test]
    async fn a_covered_operation_without_its_parent_leaves_the_store_and_the_joiner_restarts() {
        use porchlight_proto::item::OpId;
        use porchlight_proto::membership::{Op, Promote};
        let dir = tempfile::tempdir().unwrap();
        let mut h = TestHood::new(23);
        h.join(0, 0);
        h.rekey(1);
        let dave = h.join(0, 0);
        let outsider = h.outsider();
        let orphan = Item::sign(
            &outsider,
            &h.hood(),
            &Body::Membership(Op::Promote(Promote {
                parents: vec![OpId([0x5a; 32])],
                created_at: NOW,
                target: h.members[1].keys.id(),
            })),
        );
        let mut welcome = h
            .roster
            .welcome(&h.members[0].keys, &h.members[dave].keys.id())
            .unwrap();
        let mut history = welcome.ops.split_off(2);
        for list in [
            &mut welcome.checkpoint.covered,
            &mut welcome.checkpoint.heads,
        ] {
            let at = list.binary_search(&orphan.op_id()).unwrap_err();
            list.insert(at, orphan.op_id());
        }
        welcome.signature = h.members[0].keys.sign(&[&Welcome::signed_digest(
            &h.hood(),
            &welcome.ops[1].op_id(),
            &welcome.checkpoint,
        )]);
        history.insert(0, orphan.clone());
        let keys = h.members[dave].keys.clone();
        {
            let mut e = Engine::from_welcome(
                Store::open(dir.path()).unwrap(),
                keys.clone(),
                &h.hood(),
                &welcome,
            )
            .unwrap();
            for op in &history {
                let _ = e.ingest_op(&op.encode(), NOW).unwrap();
            }
            assert!(!e.roster().is_provisional());
            assert_eq!(e.roster().checkpoint_held(), Some(false));
            assert_eq!(e.store().op(&orphan.op_id()).unwrap(), None);
            assert_eq!(e.store().checkpoint().unwrap(), None);
            e.store().flush().await.unwrap();
        }
        let e = Engine::load(Store::open(dir.path()).unwrap(), keys)
            .unwrap()
            .unwrap();
        assert!(!e.roster().is_provisional());
        assert_eq!(e.roster().heads(), h.roster.heads());
        assert_eq!(e.roster().sealing_epoch(), h.roster.sealing_epoch());
        // The same set as everyone: the same sync digest as a node built from the log.
        let other = tempfile::tempdir().unwrap();
        let items: Vec<Item> = h.roster.items().cloned().collect();
        let honest = Engine::from_log(
            Store::open(other.path()).unwrap(),
            h.members[1].keys.clone(),
            &h.hood(),
            &items,
        )
        .unwrap();
        assert_eq!(e.digest().unwrap(), honest.digest().unwrap());
    }

    /// An admitter covers an operation nobody holds: the joiner waits, then gives up on
    /// the checkpoint, follows the history that did arrive, forgets the checkpoint and
    /// posts.
    #[tokio::test]
    async fn a_joiner_gives_up_on_history_nobody_holds_and_posts() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = SeededRng::new(5);
        let mut h = TestHood::new(23);
        h.join(0, 0);
        let dave = h.join(0, 0);
        let mut welcome = h
            .roster
            .welcome(&h.members[0].keys, &h.members[dave].keys.id())
            .unwrap();
        let history = welcome.ops.split_off(2);
        let ghost = OpId([0x5a; 32]);
        welcome.checkpoint.covered.push(ghost);
        welcome.checkpoint.covered.sort();
        let join = welcome.ops[1].op_id();
        welcome.signature = h.members[0].keys.sign(&[&Welcome::signed_digest(
            &h.hood(),
            &join,
            &welcome.checkpoint,
        )]);
        let mut e = Engine::from_welcome(
            Store::open(dir.path()).unwrap(),
            h.members[dave].keys.clone(),
            &h.hood(),
            &welcome,
        )
        .unwrap();
        for op in &history {
            let _ = e.ingest_op(&op.encode(), NOW).unwrap();
        }
        assert_eq!(e.roster().history_missing(), 1);
        assert!(matches!(
            e.post(&h.report("not yet"), NOW, &mut rng).await,
            Err(EngineError::FetchingHistory(1))
        ));
        e.give_up_history().unwrap();
        assert!(!e.roster().is_provisional());
        assert_eq!(e.roster().checkpoint_held(), Some(false));
        assert_eq!(e.store().checkpoint().unwrap(), None);
        assert_eq!(e.roster().heads(), h.roster.heads());
        e.post(&h.report("now"), NOW, &mut rng).await.unwrap();
    }

    /// A node that stopped between storing an operation that voids someone's admission
    /// and deleting their items (`apply_op_now`: the operation is put, then
    /// `forget_gone`; likewise a checked checkpoint is forgotten before the items of
    /// whoever it listed and the history does not admit go) kept those items for good:
    /// a start deleted only removed members' items, and a voided joiner is not removed.
    /// Their items then stayed in this node's sync set and digest, apart from everyone's.
    #[tokio::test]
    async fn a_start_deletes_the_items_of_anyone_who_is_no_member() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = TestHood::new(31);
        let bob = h.join(0, 0);
        let carol = h.join(0, 0);
        h.rekey(0);
        // Alice removes Carol before she hears that Carol admitted Erin: the removal
        // voids Erin's admission.
        let carol_id = h.members[carol].keys.id();
        let removal = h
            .roster
            .clone()
            .remove(&h.members[0].keys, carol_id, NOW)
            .unwrap();
        let erin = h.join(0, carol);
        let erin_id = h.members[erin].keys.id();
        let body = h.report("erin was here");
        let report = h.seal(erin, &body);
        let items: Vec<Item> = h.roster.items().cloned().collect();
        let keys = h.members[bob].keys.clone();
        {
            let mut e = Engine::from_log(
                Store::open(dir.path()).unwrap(),
                keys.clone(),
                &h.hood(),
                &items,
            )
            .unwrap();
            assert!(matches!(e.ingest(&report, NOW).unwrap(), Ingest::New(_)));
            assert_eq!(e.store().item_count(), 1);
            // The removal is stored; the node stops before deleting Erin's items.
            e.store()
                .put_op(&removal.op_id(), NOW, &removal.encode())
                .unwrap();
            e.store().flush().await.unwrap();
        }
        let e = Engine::load(Store::open(dir.path()).unwrap(), keys)
            .unwrap()
            .unwrap();
        assert!(!e.roster().is_member(&erin_id));
        assert!(!e.roster().is_removed(&erin_id));
        assert_eq!(e.store().item_count(), 0, "a non-member's item was kept");
    }

    #[tokio::test]
    async fn post_is_stored_queued_and_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = SeededRng::new(9);
        let body = TestHood::new(1).report("bike taken");
        let (id, keys) = {
            let mut e = engine(dir.path(), 1);
            let id = e.post(&body, NOW, &mut rng).await.unwrap();
            assert_eq!(e.store().outbox().unwrap().len(), 1);
            (id, e.keys().clone())
        };
        let e = Engine::load(Store::open(dir.path()).unwrap(), keys)
            .unwrap()
            .unwrap();
        let record = e.store().item(&id).unwrap().unwrap();
        assert_eq!(Item::decode(&record.item).unwrap().body().unwrap(), body);
        assert_eq!(e.store().outbox().unwrap().len(), 1);
        assert!(e.ring().contains(&e.roster().sealing_epoch().unwrap()));
    }

    #[tokio::test]
    async fn replayed_envelope_is_a_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = SeededRng::new(9);
        let mut e = engine(dir.path(), 2);
        let body = TestHood::new(1).report("x");
        let id = e.post(&body, NOW, &mut rng).await.unwrap();
        let bytes = e.store().item(&id).unwrap().unwrap().envelope;
        assert_eq!(e.ingest(&bytes, NOW).unwrap(), Ingest::Duplicate);
        assert_eq!(e.store().item_count(), 1);
    }

    #[tokio::test]
    async fn resealed_copy_of_an_item_is_a_duplicate_and_retracted_items_stay_gone() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = SeededRng::new(9);
        let mut e = engine(dir.path(), 5);
        let id = e
            .post(&TestHood::new(1).report("x"), NOW, &mut rng)
            .await
            .unwrap();
        let record = e.store().item(&id).unwrap().unwrap();
        let item = Item::decode(&record.item).unwrap();
        // Same signed item, new nonce: a new envelope id, but the same item.
        let epoch = e.roster().sealing_epoch().unwrap();
        let key = e.ring().get(&epoch).unwrap().clone();
        let resealed = envelope::seal_random(&item, &e.hood(), &key, &mut rng).unwrap();
        assert_ne!(
            ItemId::of_envelope(&resealed),
            ItemId::of_envelope(&record.envelope)
        );
        assert_eq!(
            envelope::open(&resealed, &e.hood(), e.ring()).unwrap().id,
            id
        );
        assert_eq!(e.ingest(&resealed, NOW).unwrap(), Ingest::Duplicate);
        assert_eq!(e.store().item_count(), 1);

        let retract = Body::Retract(porchlight_proto::report::Retract {
            created_at: NOW,
            expires_at: NOW + 3600,
            report: id,
        });
        e.post(&retract, NOW, &mut rng).await.unwrap();
        assert!(!e.store().has_item(&id).unwrap());
        for bytes in [record.envelope, resealed] {
            assert_eq!(e.ingest(&bytes, NOW).unwrap(), Ingest::Duplicate);
        }
        assert!(
            !e.store().has_item(&id).unwrap(),
            "the retracted report does not come back"
        );
    }

    /// Admits a new member into `alice`'s hood; returns their keys.
    async fn admit(
        alice: &mut Engine,
        name: &str,
        ticket_id: u8,
        rng: &mut SeededRng,
    ) -> MemberKeys {
        let joiner = MemberKeys::generate(rng);
        let ticket = porchlight_proto::Ticket {
            hood: alice.hood(),
            hood_name: "Elm Street".into(),
            inviter: alice.keys().id(),
            id: porchlight_proto::TicketId([ticket_id; 16]),
            expires_at: NOW + 60,
            bootstrap: vec![],
        };
        let signed = porchlight_proto::invite::SignedTicket::issue(alice.keys(), &ticket).unwrap();
        let request = JoinRequest::new(&joiner, signed, &ticket, name).unwrap();
        alice.admit(&request, NOW, rng).await.unwrap();
        joiner
    }

    #[tokio::test]
    async fn the_only_admin_cannot_leave_until_she_promotes_someone() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = SeededRng::new(9);
        let mut alice = engine(dir.path(), 6);
        let bob = admit(&mut alice, "Bob", 1, &mut rng).await;
        let me = alice.keys().id();
        let ops = alice.roster().len();
        assert!(matches!(
            alice.remove(me, NOW, &mut rng).await,
            Err(EngineError::LastAdminLeaving)
        ));
        assert_eq!(alice.roster().len(), ops, "nothing was signed");
        alice.promote(bob.id(), NOW, &mut rng).await.unwrap();
        assert!(matches!(
            alice.promote(bob.id(), NOW, &mut rng).await,
            Err(EngineError::AlreadyAdmin(name)) if name == "Bob"
        ));
        alice.remove(me, NOW, &mut rng).await.unwrap();
        assert!(alice.roster().is_admin(&bob.id()));
        // Removed: every change is refused with the one error.
        assert!(matches!(alice.check_invite(), Err(EngineError::Removed)));
        assert!(matches!(
            alice
                .post(&TestHood::new(1).report("x"), NOW, &mut rng)
                .await,
            Err(EngineError::Removed)
        ));
        assert!(matches!(
            alice.remove(bob.id(), NOW, &mut rng).await,
            Err(EngineError::Removed)
        ));
    }

    #[tokio::test]
    async fn superseded_epoch_keys_are_retired_once_no_live_item_can_need_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = SeededRng::new(5);
        let mut e = engine(dir.path(), 4);
        let first = e.roster().sealing_epoch().unwrap();
        let (op, key, _) = e.roster().rekey(e.keys(), NOW + 10, &mut rng).unwrap();
        e.submit_op(&op, NOW + 10, &mut rng).await.unwrap();
        assert_eq!(e.roster().sealing_epoch(), Some(key.id()));
        let max_ttl = u64::from(e.roster().policy().max_ttl_secs);
        // A ratchet epoch is not retired by its successor's claimed date (a backdated
        // rekey could claim any): past the longest lifetime its old windows are gone,
        // the rest of it stays while an item sealed under it late could be live.
        let base = porchlight_proto::keys::first_window(NOW);
        e.expire(NOW + 10 + max_ttl + 1201).unwrap();
        let held = e.ring().get(&first).unwrap();
        assert!(held.oldest_window().unwrap() > base);
        // Once its last window is older than any live item, it goes, from memory and
        // from disk.
        let last = held.last_window().unwrap();
        let gone = (last + 1) * porchlight_proto::keys::WINDOW_SECS + max_ttl + 1201;
        e.expire(gone).unwrap();
        assert!(!e.ring().contains(&first));
        let stored = e.store().key_ring(&e.hood()).unwrap();
        assert!(!stored.contains(&first));
    }

    #[tokio::test]
    async fn removal_rekeys_and_new_posts_use_the_new_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = SeededRng::new(9);
        let mut alice = engine(dir.path(), 3);
        // Bob joins through the engine's admit.
        let bob_dir = tempfile::tempdir().unwrap();
        let (bob, bob_engine) = admit_bob(&mut alice, 1, bob_dir.path(), &mut rng).await;
        assert!(bob_engine.roster().is_member(&bob.id()));
        let before = alice.roster().sealing_epoch().unwrap();
        alice.remove(bob.id(), NOW, &mut rng).await.unwrap();
        let after = alice.roster().sealing_epoch().unwrap();
        assert_ne!(before, after);
        assert!(
            !alice
                .roster()
                .epoch(&after)
                .unwrap()
                .holders
                .contains(&bob.id())
        );
        let id = alice
            .post(&TestHood::new(1).report("y"), NOW, &mut rng)
            .await
            .unwrap();
        let env = alice.store().item(&id).unwrap().unwrap().envelope;
        assert_eq!(
            porchlight_proto::Envelope::decode(&env).unwrap().epoch,
            after
        );
    }

    /// R7 (docs/threat-model.md): a rekeyer wraps a key that does not open to one
    /// member, while the roster counts them a holder, so everyone seals under it. The
    /// victim's node rekeys as soon as the operation is applied, not at its next post,
    /// and reads what the rekeyer posts next.
    #[tokio::test]
    async fn a_member_handed_a_bad_wrap_rekeys_at_once_and_reads_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = SeededRng::new(9);
        let mut alice = engine(dir.path(), 3);
        let bob_dir = tempfile::tempdir().unwrap();
        let (bob, mut bob_engine) = admit_bob(&mut alice, 2, bob_dir.path(), &mut rng).await;
        assert!(!bob_engine.locked_out());
        // Alice's hostile rekey: Bob's wrap carries another key than the epoch's.
        let hood = alice.hood();
        let roster = alice.roster();
        let generation = roster.epochs().map(|e| e.generation).max().unwrap() + 1;
        let key = porchlight_proto::keys::EpochKey::generate(&hood, generation, NOW, &mut rng);
        let other = porchlight_proto::keys::EpochKey::generate(&hood, generation, NOW, &mut rng);
        let wrap_to =
            |k: &porchlight_proto::keys::EpochKey, m: &MemberKeys, rng: &mut SeededRng| {
                porchlight_proto::keys::wrap(k, &hood, m.id(), &m.exchange_key(), rng).unwrap()
            };
        // Addressed to Bob, so the roster counts him a holder; sealed for another epoch,
        // so it does not open under this one.
        let bad = wrap_to(&other, &bob, &mut rng);
        let rekey = Item::sign(
            alice.keys(),
            &hood,
            &Body::Membership(porchlight_proto::membership::Op::Rekey(
                porchlight_proto::membership::Rekey {
                    parents: roster.heads(),
                    created_at: NOW,
                    generation,
                    epoch: key.id(),
                    wraps: vec![wrap_to(&key, alice.keys(), &mut rng), bad],
                },
            )),
        );
        assert_eq!(
            alice.ingest_op(&rekey.encode(), NOW).unwrap(),
            Ingest::NewOp(rekey.op_id())
        );
        assert_eq!(
            bob_engine.ingest_op(&rekey.encode(), NOW).unwrap(),
            Ingest::NewOp(rekey.op_id())
        );
        // Everyone would seal under the bad epoch, which Bob cannot open.
        assert_eq!(bob_engine.roster().sealing_epoch(), Some(key.id()));
        assert!(bob_engine.locked_out());
        assert!(bob_engine.repair_keys(NOW, &mut rng).await.unwrap());
        assert!(!bob_engine.locked_out());
        // Bob's rekey reaches Alice; she seals under it and Bob reads her next report.
        for item in bob_engine.roster().items() {
            let _ = alice.ingest_op(&item.encode(), NOW).unwrap();
        }
        let sealing = alice.roster().sealing_epoch().unwrap();
        assert_ne!(sealing, key.id());
        assert_eq!(bob_engine.roster().sealing_epoch(), Some(sealing));
        let id = alice
            .post(&TestHood::new(1).report("after the repair"), NOW, &mut rng)
            .await
            .unwrap();
        let env = alice.store().item(&id).unwrap().unwrap().envelope;
        assert!(matches!(
            bob_engine.ingest(&env, NOW).unwrap(),
            Ingest::New(_)
        ));
        assert!(!bob_engine.repair_keys(NOW, &mut rng).await.unwrap());
    }
}
