//! The running node: a cloneable [`Node`] handle that sends commands on a bounded channel
//! to one event loop, which owns the swarm and the engine. The event loop routes; the
//! rules are `porchlight_proto`'s and the state changes are the engine's.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, PublishError};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, mdns, ping, request_response};
use porchlight_proto::invite::{self, InviteError, SignedTicket, Ticket, TicketId};
use porchlight_proto::item::{Body, Item};
use porchlight_proto::{
    HoodId, ItemId, JoinRequest, JoinResponse, MemberId, MemberKeys, Policy, clip, sync,
};
use rand_core::Rng;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use crate::engine::{Engine, EngineError, Ingest};
use crate::identity::{self, IdentityError};
use crate::links::Links;
use crate::net::{self, Behaviour, BehaviourEvent, NetError};
use crate::sharing::{ClipAsk, ClipPolicy, Sharing, SharingError};
use crate::store::{Store, StoreError};

/// Commands waiting for the event loop.
pub const COMMAND_QUEUE: usize = 64;
/// Events buffered for each subscriber; a slower one misses events (it can re-read the
/// store) rather than holding up the node.
pub const EVENT_QUEUE: usize = 256;
/// How long a non-member may stay connected (to present a ticket) before it is dropped.
pub const OUTSIDER_GRACE: Duration = Duration::from_secs(30);
/// A joiner waiting for the history its checkpoint covers gives up after this long
/// without one more covered operation, over at least `HISTORY_SESSIONS` sync sessions.
pub const HISTORY_PATIENCE: Duration = Duration::from_secs(180);
pub const HISTORY_SESSIONS: u64 = 4;
/// Most non-members connected at once (each may be presenting a ticket).
pub const MAX_OUTSIDERS: usize = 16;
/// A non-member connected this long without a join request is idle: when the slots are
/// full, the idlest makes room for a new one.
pub const OUTSIDER_IDLE: Duration = Duration::from_secs(5);
/// At most this many lines about refused join requests per `LOG_WINDOW`.
const JOIN_REFUSAL_LOGS: u32 = 10;
const LOG_WINDOW: Duration = Duration::from_secs(60);
/// Each reconcile answer sorts our whole set: a peer may ask at most this many times per
/// `RECONCILE_WINDOW` (a session takes a few rounds; sessions start every 30 s).
pub const MAX_RECONCILES_PER_WINDOW: u32 = 64;
pub const RECONCILE_WINDOW: Duration = Duration::from_secs(10);
/// How long `start` waits for a join to complete.
pub const JOIN_DEADLINE: Duration = Duration::from_secs(60);
/// Catch-up sync with every connected member this often (and on each new connection).
pub const SYNC_EVERY: u32 = 15;
/// Ticks between redials of remembered members while no member is connected.
const REDIAL_EVERY: u32 = 30;
/// Most sync sessions this node runs as initiator at once.
pub const MAX_SYNC_SESSIONS: usize = 8;
/// A session that has not finished in this long is dropped.
pub const SYNC_SESSION_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a peer that broke the sync protocol is refused.
pub const PENALTY: Duration = Duration::from_secs(600);
/// Most addresses remembered for one peer.
const MAX_KNOWN_ADDRS: usize = 8;
/// A member's link is renewed (`links`) at most once in this time.
const RENEW_EVERY: Duration = Duration::from_secs(60);
/// Most remembered peers dialed at start (a neighborhood's worth; more would only meet
/// the connection limit).
const MAX_START_DIALS: usize = 64;
/// Messages a peer may relay per `IGNORE_WINDOW` that this node cannot judge and so
/// ignores without blame (an unknown version or epoch, expired, a report not held yet).
/// Honest peers relay such messages only around a rekey or a reordering, a few at a
/// time; past the budget they count as invalid, and gossipsub's score sinks (D22).
pub const IGNORE_BUDGET: u32 = 100;
/// How long a removed member's open connection is kept after the removal, so that the
/// `Remove` operation (sealed under an epoch it still holds) reaches its node and tells
/// it (D21). New connections from it are refused at once, and nothing it could read is
/// sealed meanwhile: reports wait for the rekey that follows a removal.
pub const REMOVAL_NOTICE: Duration = Duration::from_secs(2);
/// Most removed members waiting for their cut-off at once (beyond, cut off at once).
const MAX_CUT_OFF: usize = 64;
pub const IGNORE_WINDOW: Duration = Duration::from_secs(60);
const TICK: Duration = Duration::from_secs(1);
/// How long the sync set built for one sync exchange is kept for the next while nothing
/// asks for it (about 40 bytes an element: 4 MB at 100,000 items).
const SYNC_SET_IDLE: Duration = Duration::from_secs(60);
const OUTBOX_EVERY: u32 = 5;
const EXPIRE_EVERY: u32 = 60;
/// Ticks between flushes that check the store still writes what sled holds in memory
/// (sled writes it every `store::FLUSH_EVERY_MS` on its own, but only a flush reports
/// that this failed). Free when nothing is waiting.
const CHECK_STORE_EVERY: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Invite(#[from] InviteError),
    #[error("cannot listen on {addr}: {why}")]
    Listen { addr: Multiaddr, why: String },
    #[error("this node is not in a hood yet: create one or join with an invite")]
    NoHood,
    #[error("this node is already in a hood ({0}); use a new data dir for another")]
    AlreadyInHood(String),
    #[error("the hood refused to admit us: {0}")]
    JoinRefused(String),
    #[error("could not reach a member of the hood within {0:?}: check the invite's addresses")]
    JoinTimeout(Duration),
    #[error("the node has stopped")]
    Stopped,
    #[error(transparent)]
    Sharing(#[from] SharingError),
    #[error(transparent)]
    Mute(#[from] crate::mute::MuteError),
    #[error("{0} is not reachable now: {1}")]
    Unreachable(String, String),
    #[error(
        "the store failed ({0}): nothing received or posted could be kept. Free disk space \
         or check the data dir and its disk, then start the node again"
    )]
    StoreFailed(String),
    /// A post went out to the hood (or waits in the outbox), but the flush that would
    /// make it survive a crash here failed. Its clips must stay: neighbors may ask.
    #[error(
        "report {} was sent to the hood, but this node could not store it durably: {why}",
        id.to_hex()
    )]
    NotDurable { id: ItemId, why: StoreError },
    #[error(
        "{0} is not a live item (it expired or was retracted): read the feed again from its newest page"
    )]
    UnknownCursor(String),
    /// Every feed reader's slot was taken for longer than `feed::READER_WAIT`.
    #[error(
        "the node is busy reading the feed for other clients: try again in {} s",
        crate::feed::RETRY_AFTER_SECS
    )]
    Busy,
}

/// How a node is configured. The CLI reads it from `porchlight.toml` in the data dir.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: Vec<Multiaddr>,
    /// Find neighbors on the LAN with mDNS.
    pub mdns: bool,
    /// Peers to dial at start, besides the remembered ones (with `/p2p/<peer id>`).
    pub bootstrap: Vec<Multiaddr>,
    /// This member's display name, used when founding or joining.
    pub name: String,
    /// Where the local HTTP API listens (`None`: no API). The binary starts it.
    pub api: Option<std::net::SocketAddr>,
    /// Who may fetch this member's clips.
    pub clip_policy: ClipPolicy,
    /// The hub bridge (MQTT, Frigate, auto-post rules). The binary starts it.
    pub hub: crate::hub::Settings,
}

impl Config {
    /// A node on loopback only, on a random port, without mDNS: for tests.
    pub fn loopback(data_dir: impl Into<PathBuf>, name: &str) -> Config {
        Config {
            data_dir: data_dir.into(),
            listen: vec![
                "/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr"),
                "/ip4/127.0.0.1/udp/0/quic-v1"
                    .parse()
                    .expect("valid multiaddr"),
            ],
            mdns: false,
            bootstrap: vec![],
            name: name.to_owned(),
            api: None,
            clip_policy: ClipPolicy::default(),
            hub: crate::hub::Settings::default(),
        }
    }
}

/// Whether a ping failure says the other end is gone: it timed out, waiting for the
/// pong or for the ping stream to open.
fn ping_timed_out(error: &ping::Failure) -> bool {
    match error {
        ping::Failure::Timeout => true,
        ping::Failure::Other { error } => error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut),
        _ => false,
    }
}

/// What to do at start when the data dir has no hood.
#[derive(Debug, Clone)]
pub enum Setup {
    /// Run the hood in the data dir (fails if there is none).
    Existing,
    /// Found a new hood (or run the existing one).
    Found { hood_name: String, policy: Policy },
    /// Join with an invite code (or run the existing hood).
    Join { code: String },
}

/// A report-kind item as the feed shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedItem {
    pub id: ItemId,
    pub author: MemberId,
    pub author_name: String,
    pub body: Body,
    pub created_at: u64,
    pub expires_at: u64,
}

#[derive(Debug, Clone)]
pub enum Event {
    /// A new report, update, resolve or retract (ours or a neighbor's).
    Item(Box<FeedItem>),
    /// The roster changed.
    Membership,
}

#[derive(Debug, Clone)]
pub struct Status {
    pub member: MemberId,
    pub peer_id: PeerId,
    pub hood: Option<HoodId>,
    pub hood_name: Option<String>,
    pub members: usize,
    pub connected: Vec<PeerId>,
    pub mesh_peers: usize,
    /// Members this node remembers addresses of (seen itself or heard by peer exchange):
    /// where it looks for the hood when it starts.
    pub known_peers: usize,
    pub listen: Vec<Multiaddr>,
    pub items: usize,
    pub outbox: usize,
    /// Digest of live items, operations and sealing epoch: equal on nodes in sync.
    pub digest: Option<[u8; 32]>,
    pub sealing_epoch: Option<porchlight_proto::EpochId>,
    pub sync: SyncStats,
    /// Gossipsub's score of each connected peer that has one. Below the graylist
    /// threshold (`PeerScoreThresholds::default()`, see `net::gossipsub`) gossipsub drops
    /// the peer's messages unread.
    pub gossip_scores: Vec<(PeerId, f64)>,
    /// This node's member was removed from the hood: it can no longer post or read
    /// what is sealed from now on.
    pub removed: bool,
    /// The hood's policy, fixed in its genesis.
    pub policy: Option<Policy>,
    /// Membership operations still to arrive after joining from a checkpoint (0 once
    /// the history is here and checked: until then the node posts nothing).
    pub history_missing: usize,
}

/// What `GET /v1/health` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// A write and a flush succeeded just now.
    pub store_writable: bool,
    /// Why not, if not.
    pub store_error: Option<String>,
    /// Members of the hood connected now.
    pub members_connected: usize,
    /// Unix seconds the newest item arrived (received or posted here, from the store's
    /// newest record at start); `None` if the store holds none.
    pub last_item_at: Option<u64>,
}

/// A member as `members` shows it.
#[derive(Debug, Clone)]
pub struct MemberInfo {
    pub member: porchlight_proto::membership::Member,
    /// Connected to this node now (always true for this node's own member).
    pub connected: bool,
    /// Unix seconds this node last had a connection to the member, or the newest
    /// creation time of the member's items it received or holds; `None` if neither.
    pub last_seen: Option<u64>,
    /// Under a quorum policy: live votes to remove the member, and how many more remove
    /// them (`None` without a quorum policy).
    pub votes_against: usize,
    pub votes_needed: Option<usize>,
    /// Muted on this node (`mute.rs`).
    pub muted: bool,
}

/// What catch-up sync has done since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub sessions: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub fetched: u64,
    pub penalties: u64,
}

type Reply<T> = oneshot::Sender<Result<T, NodeError>>;

/// The non-member connected longest without a join request, once idle for
/// `OUTSIDER_IDLE` (`deadlines` are their connection times plus `OUTSIDER_GRACE`).
fn idlest_outsider(
    deadlines: &HashMap<PeerId, Instant>,
    joining: &HashSet<PeerId>,
    now: Instant,
) -> Option<PeerId> {
    deadlines
        .iter()
        .filter(|(peer, _)| !joining.contains(peer))
        .filter(|(_, deadline)| **deadline <= now + OUTSIDER_GRACE - OUTSIDER_IDLE)
        .min_by_key(|(_, deadline)| **deadline)
        .map(|(peer, _)| *peer)
}

/// Removes and returns the peers whose time in `deadlines` has come.
fn take_due(deadlines: &mut HashMap<PeerId, Instant>, now: Instant) -> Vec<PeerId> {
    let due: Vec<PeerId> = deadlines
        .iter()
        .filter(|(_, at)| **at <= now)
        .map(|(peer, _)| *peer)
        .collect();
    for peer in &due {
        deadlines.remove(peer);
    }
    due
}

/// Posts stored and published, waiting for the flush that makes them durable.
const ACK_QUEUE: usize = COMMAND_QUEUE;

type PendingAck = (ItemId, Reply<ItemId>);

/// Acknowledges posts once they are durable, off the event loop: takes the first waiting
/// post and every other one queued by then, flushes once for all of them (a group
/// commit), and answers each. Ends when the event loop drops its sender.
async fn acknowledge(store: Store, mut pending: mpsc::Receiver<PendingAck>) {
    while let Some(first) = pending.recv().await {
        let mut batch = vec![first];
        while batch.len() < ACK_QUEUE {
            match pending.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        if store.flush().await.is_ok() {
            for (id, reply) in batch {
                let _ = reply.send(Ok(id));
            }
        } else {
            // Each gets its own attempt and its own error.
            for (id, reply) in batch {
                let result = store.flush().await.map(|()| id);
                let _ = reply.send(result.map_err(|why| NodeError::NotDurable { id, why }));
            }
        }
    }
}

#[derive(Debug)]
enum Command {
    Post(Box<Body>, Reply<ItemId>),
    Invite(Duration, Reply<String>),
    Remove(MemberId, Reply<crate::engine::Removal>),
    /// Mutes (`true`) or unmutes a member on this node; answers whether it changed.
    Mute(MemberId, bool, Reply<bool>),
    Promote(MemberId, Reply<()>),
    Ingest(Vec<u8>, Reply<Ingest>),
    /// With the digest (`true`), or without it.
    Status(bool, Reply<Status>),
    Reader(Reply<crate::feed::Reader>),
    Members(Reply<Vec<MemberInfo>>),
    Dial(Multiaddr, Reply<()>),
    Envelope(ItemId, Reply<Option<Vec<u8>>>),
    Block(PeerId, bool, Reply<()>),
    Sync(Reply<()>),
    ClipRequest(MemberId, clip::Request, Reply<clip::Response>),
    ClipAsks(Reply<Vec<ClipAsk>>),
    ClipDecide(String, bool, Reply<ClipAsk>),
    ClipShare(Option<([u8; 32], ClipPolicy)>, Reply<ClipPolicy>),
    Health(Reply<Health>),
    Shutdown,
}

/// A handle to a running node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Node {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    member: MemberId,
    peer_id: PeerId,
    /// The feed reader thread, shared by every clone.
    readers: crate::feed::Slots,
}

impl Node {
    /// Opens the data dir, sets up the hood as `setup` says, starts listening and spawns
    /// the event loop. Returns once the node is a member of a hood and listening.
    pub async fn start(
        config: Config,
        setup: Setup,
    ) -> Result<(Node, tokio::task::JoinHandle<Result<(), NodeError>>), NodeError> {
        let (keys, _) = identity::load_or_create(&config.data_dir)?;
        let store = Store::open(&config.data_dir.join(crate::local::DB_DIR))?;
        // The store's lock is ours: no other node of this data dir runs, so no import,
        // fetch or draft write is under way. What a killed process left goes.
        let swept = crate::clips::sweep_temp(&config.data_dir)
            + crate::hub::Drafts::open(&config.data_dir).sweep_temp();
        if swept > 0 {
            tracing::info!(files = swept, "deleted temp files a stopped process left");
        }
        match Node::start_on(config, setup, keys, store.clone()).await {
            Ok(started) => Ok(started),
            Err(e) => {
                // What start wrote (a founding, a welcome, peers) is kept even when it
                // then fails (a port in use, a join that timed out).
                if let Err(f) = store.flush().await {
                    tracing::warn!(error = %f, "flushing the store after a failed start");
                }
                Err(e)
            }
        }
    }

    /// [`Node::start`] on an opened store.
    async fn start_on(
        config: Config,
        setup: Setup,
        keys: MemberKeys,
        store: Store,
    ) -> Result<(Node, tokio::task::JoinHandle<Result<(), NodeError>>), NodeError> {
        let mut engine = Engine::load(store.clone(), keys.clone())?;
        let mut joining = None;
        let now = crate::now();
        match (&engine, &setup) {
            (Some(_), _) => {}
            (None, Setup::Existing) => return Err(NodeError::NoHood),
            (None, Setup::Found { hood_name, policy }) => {
                let founded = Engine::found(
                    store.clone(),
                    keys.clone(),
                    hood_name,
                    &config.name,
                    *policy,
                    now,
                    &mut crate::rng(),
                )?;
                store.flush().await?;
                engine = Some(founded);
            }
            (None, Setup::Join { code }) => {
                let (signed, ticket) = invite::parse(code, now)?;
                joining = Some((signed, ticket));
            }
        }
        let hood = match (&engine, &joining) {
            (Some(e), _) => e.hood(),
            (None, Some((_, ticket))) => ticket.hood,
            (None, None) => return Err(NodeError::NoHood),
        };
        let topic = IdentTopic::new(hood.topic());
        let mut swarm = net::swarm(&keys, &topic.hash(), config.mdns)?;
        for addr in &config.listen {
            port_is_free(addr)?;
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NodeError::Listen {
                    addr: addr.clone(),
                    why: e.to_string(),
                })?;
        }
        let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let (events, _) = broadcast::channel(EVENT_QUEUE);
        let (acks, pending_acks) = mpsc::channel(ACK_QUEUE);
        let acknowledger = tokio::spawn(acknowledge(store.clone(), pending_acks));
        let peer_id = *swarm.local_peer_id();
        let last_item_at = store.last_received();
        // Across restarts: when members were last connected (kept), and their newest
        // items, so that start-up dials the most recently seen first.
        let mut last_seen = store.seen_times().unwrap_or_default();
        for (member, at) in store.latest_by_author() {
            let t = last_seen.entry(member).or_default();
            *t = (*t).max(at.min(now));
        }
        let locked_out = engine.as_ref().is_some_and(Engine::keys_due);
        let muted = crate::mute::muted(&store)?;
        let mut event_loop = EventLoop {
            swarm,
            engine,
            keys: keys.clone(),
            store,
            topic,
            name: config.name.clone(),
            commands: commands_rx,
            acks,
            acknowledger,
            sync_flush: None,
            store_check: None,
            // A node that stopped before it repaired a bad wrap repairs at start.
            keys_due: locked_out,
            muted,
            history_watch: None,
            last_item_at,
            events: events.clone(),
            outsiders: HashMap::new(),
            joining_outsiders: HashSet::new(),
            last_seen,
            join_refusals: crate::logs::Budget::new(JOIN_REFUSAL_LOGS, LOG_WINDOW),
            addresses: HashMap::new(),
            join: None,
            listen: Vec::new(),
            syncs: HashMap::new(),
            sync_retry: HashSet::new(),
            sync_retried: HashMap::new(),
            peers_asked: HashSet::new(),
            peer_requests: HashMap::new(),
            peers_lost: HashMap::new(),
            links: Links::default(),
            renewing: HashMap::new(),
            renewed: HashMap::new(),
            remote: HashMap::new(),
            bootstrap: config.bootstrap.clone(),
            sync_stats: SyncStats::default(),
            reconciled: HashMap::new(),
            ignored: HashMap::new(),
            cut_off: HashMap::new(),
            stuck: Default::default(),
            data_dir: config.data_dir.clone(),
            sharing: Sharing::open(config.clip_policy, &config.data_dir),
            sync_set: None,
            meter: Default::default(),
            watchdog: crate::notify::watchdog_every().map(|every| (every, Instant::now())),
            clip_replies: HashMap::new(),
        };
        // Members and the deny list first: a connection made while we wait for the
        // listeners must already be judged by them.
        event_loop.after_roster_change(false);
        event_loop.wait_for_listeners(config.listen.len()).await;
        if event_loop.engine.is_some() {
            event_loop.subscribe();
        }
        event_loop.dial_known();
        if let Some((signed, ticket)) = joining {
            event_loop.join(signed, ticket).await?;
        }
        let span = tracing::info_span!("node", member = %&keys.id().to_hex()[..8]);
        let task = tokio::spawn(event_loop.run().instrument(span));
        Ok((
            Node {
                commands: commands_tx,
                events,
                member: keys.id(),
                peer_id,
                readers: crate::feed::Slots::new(),
            },
            task,
        ))
    }

    pub fn member(&self) -> MemberId {
        self.member
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// New items and membership changes, from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)?
    }

    /// Posts a report-kind body. The returned id means it is stored durably; it goes out
    /// as soon as a member is reachable.
    pub async fn post(&self, body: Body) -> Result<ItemId, NodeError> {
        self.ask(|r| Command::Post(Box::new(body), r)).await
    }

    /// A one-time invite code valid for `valid_for`.
    pub async fn invite(&self, valid_for: Duration) -> Result<String, NodeError> {
        self.ask(|r| Command::Invite(valid_for, r)).await
    }

    /// Removes a member and rekeys.
    pub async fn remove(&self, member: MemberId) -> Result<crate::engine::Removal, NodeError> {
        self.ask(|r| Command::Remove(member, r)).await
    }

    /// Mutes (`true`) or unmutes a member's reports on this node only (`mute.rs`);
    /// returns whether anything changed.
    pub async fn mute(&self, member: MemberId, mute: bool) -> Result<bool, NodeError> {
        self.ask(|r| Command::Mute(member, mute, r)).await
    }

    /// Makes a member an admin.
    pub async fn promote(&self, member: MemberId) -> Result<(), NodeError> {
        self.ask(|r| Command::Promote(member, r)).await
    }

    /// Judges and stores an envelope obtained outside gossip (sync, import).
    pub async fn ingest(&self, envelope: Vec<u8>) -> Result<Ingest, NodeError> {
        self.ask(|r| Command::Ingest(envelope, r)).await
    }

    pub async fn status(&self) -> Result<Status, NodeError> {
        self.ask(|r| Command::Status(true, r)).await
    }

    /// [`Node::status`] without `digest`, which is a pass over the whole sync set (a
    /// quarter second at 100,000 items): what the API's `status` answers with.
    pub async fn status_brief(&self) -> Result<Status, NodeError> {
        self.ask(|r| Command::Status(false, r)).await
    }

    /// Live report-kind items, oldest first: every one, read off the event loop. For
    /// the whole feed prefer pages ([`Node::feed_page`]).
    pub async fn feed(&self) -> Result<Vec<FeedItem>, NodeError> {
        self.read(|reader| reader.all()).await
    }

    /// One page of the feed (`feed::Query`), read off the event loop.
    pub async fn feed_page(&self, query: crate::feed::Query) -> Result<Vec<FeedItem>, NodeError> {
        self.read(move |reader| reader.page(&query)).await
    }

    /// Runs `read` with a reader of the store on the node's feed reader thread, off the
    /// event loop, one read at a time (`feed::Slots`); `NodeError::Busy` if the others
    /// keep it busy for longer than `feed::READER_WAIT`. Whatever `read` builds from the
    /// items (a page's JSON) is best built there too.
    pub async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&crate::feed::Reader) -> Result<T, NodeError> + Send + 'static,
    ) -> Result<T, NodeError> {
        let reader = self.reader().await?;
        self.readers.run(move || read(&reader)).await
    }

    /// A reader of the store, for reads off the event loop. Hold it briefly: it keeps
    /// the store open.
    pub async fn reader(&self) -> Result<crate::feed::Reader, NodeError> {
        self.ask(Command::Reader).await
    }

    pub async fn members(&self) -> Result<Vec<MemberInfo>, NodeError> {
        self.ask(Command::Members).await
    }

    /// Refuses (or, with `false`, allows again) connections with a peer, dropping any
    /// open one. Used to cut a node off by hand, and by tests to split a neighborhood.
    pub async fn block(&self, peer: PeerId, blocked: bool) -> Result<(), NodeError> {
        self.ask(|r| Command::Block(peer, blocked, r)).await
    }

    /// Starts catch-up sync with every connected member now.
    pub async fn sync_now(&self) -> Result<(), NodeError> {
        self.ask(Command::Sync).await
    }

    /// The envelope of a stored item, exactly as it travels.
    pub async fn envelope(&self, id: ItemId) -> Result<Option<Vec<u8>>, NodeError> {
        self.ask(|r| Command::Envelope(id, r)).await
    }

    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NodeError> {
        self.ask(|r| Command::Dial(addr, r)).await
    }

    /// Asks the event loop to stop; it flushes the store first.
    /// Sends one clip request to `owner` and waits for the answer.
    pub async fn clip_request(
        &self,
        owner: MemberId,
        request: clip::Request,
    ) -> Result<clip::Response, NodeError> {
        self.ask(|r| Command::ClipRequest(owner, request, r)).await
    }

    /// Clip requests waiting for this member to allow or deny them.
    pub async fn clip_asks(&self) -> Result<Vec<ClipAsk>, NodeError> {
        self.ask(Command::ClipAsks).await
    }

    /// Allows (or denies) a pending clip request.
    pub async fn clip_decide(&self, id: &str, allow: bool) -> Result<ClipAsk, NodeError> {
        let id = id.to_owned();
        self.ask(|r| Command::ClipDecide(id, allow, r)).await
    }

    /// Sets who may fetch clip `sha256`, over the policy (the owner's choice when
    /// approving a draft; kept across restarts).
    pub async fn share_clip(&self, sha256: [u8; 32], share: ClipPolicy) -> Result<(), NodeError> {
        self.ask(|r| Command::ClipShare(Some((sha256, share)), r))
            .await
            .map(|_| ())
    }

    /// The owner's clip policy (`clip_policy` in porchlight.toml).
    pub async fn clip_policy(&self) -> Result<ClipPolicy, NodeError> {
        self.ask(|r| Command::ClipShare(None, r)).await
    }

    /// Whether the store takes writes, members connected, the last item's arrival.
    pub async fn health(&self) -> Result<Health, NodeError> {
        self.ask(Command::Health).await
    }

    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }
}

/// Whom start-up dials of the remembered members `(last seen, peer, addresses)`: the
/// most recently seen first, those seen at the same time (or never) in random order, at
/// most `MAX_START_DIALS`.
fn start_dials(
    known: Vec<(u64, PeerId, Vec<Multiaddr>)>,
    rng: &mut impl rand_core::Rng,
) -> Vec<(PeerId, Vec<Multiaddr>)> {
    let mut known: Vec<(u64, u64, PeerId, Vec<Multiaddr>)> = known
        .into_iter()
        .map(|(seen, peer, addrs)| (seen, rng.next_u64(), peer, addrs))
        .collect();
    known.sort_by_key(|k| (std::cmp::Reverse(k.0), k.1));
    known
        .into_iter()
        .take(MAX_START_DIALS)
        .map(|(_, _, peer, addrs)| (peer, addrs))
        .collect()
}

/// Runs a node until `shutdown` completes: the shape a binary or a test wants.
/// libp2p listens with `SO_REUSEPORT` (so that dials can reuse the port), which lets a
/// second process bind a port a node already listens on and take some of its
/// connections. A plain bind first, without it, fails if anything holds the port.
fn port_is_free(addr: &Multiaddr) -> Result<(), NodeError> {
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(std::net::IpAddr::V6(a)),
            Protocol::Tcp(n) => port = Some((n, true)),
            Protocol::Udp(n) => port = Some((n, false)),
            _ => {}
        }
    }
    let (Some(ip), Some((port, tcp))) = (ip, port) else {
        return Ok(());
    };
    if port == 0 {
        return Ok(());
    }
    let socket = std::net::SocketAddr::new(ip, port);
    let bound = if tcp {
        std::net::TcpListener::bind(socket).map(drop)
    } else {
        std::net::UdpSocket::bind(socket).map(drop)
    };
    bound.map_err(|e| NodeError::Listen {
        addr: addr.clone(),
        why: format!("{e} (is another node running on this port?)"),
    })
}

pub async fn run(
    config: Config,
    setup: Setup,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let (node, task) = Node::start(config, setup).await?;
    shutdown.await;
    node.shutdown().await;
    task.await.map_err(|_| NodeError::Stopped)?
}

struct JoinState {
    inviter: PeerId,
    request: Vec<u8>,
    sent: bool,
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    engine: Option<Engine>,
    keys: MemberKeys,
    store: Store,
    topic: IdentTopic,
    name: String,
    commands: mpsc::Receiver<Command>,
    /// Posts waiting for their flush, for `acknowledge`.
    acks: mpsc::Sender<PendingAck>,
    /// The `acknowledge` task: it holds the store open until it ends.
    acknowledger: tokio::task::JoinHandle<()>,
    /// The flush after the last sync batch, if one was started.
    sync_flush: Option<tokio::task::JoinHandle<()>>,
    /// The last periodic check of the store (`CHECK_STORE_EVERY`), if one was started.
    store_check: Option<tokio::task::JoinHandle<()>>,
    /// Set when a roster change left this member without the key everyone seals under
    /// (a bad wrap): the event loop rekeys at once (`Engine::repair_keys`).
    keys_due: bool,
    /// Members this node mutes (`mute.rs`): no feed events for their items.
    muted: HashSet<MemberId>,
    /// While the roster starts from a checkpoint: how many covered operations were
    /// missing, since when, and how many sync sessions had started then.
    history_watch: Option<(usize, Instant, u64)>,
    /// Unix seconds the newest item arrived, for `health`.
    last_item_at: Option<u64>,
    events: broadcast::Sender<Event>,
    /// Connected non-members and when they must be gone.
    outsiders: HashMap<PeerId, Instant>,
    /// Those of them that sent a join request: not idle, so never evicted for another.
    joining_outsiders: HashSet<PeerId>,
    /// Log lines about refused join requests: anyone who reaches the port can send
    /// those, so a few a minute are logged and the rest counted.
    join_refusals: crate::logs::Budget,
    /// When each member was last connected or last sent an item (members only).
    last_seen: HashMap<MemberId, u64>,
    /// Addresses peers told us they listen on (identify), bounded by connected peers.
    addresses: HashMap<PeerId, Vec<Multiaddr>>,
    join: Option<JoinState>,
    listen: Vec<Multiaddr>,
    syncs: HashMap<PeerId, SyncSession>,
    /// Peers whose session failed through no fault of theirs; retried on the next tick
    /// if still connected (at most one try per peer a tick, so no hot loop).
    sync_retry: HashSet<PeerId>,
    /// When each connected peer's session was last retried that way.
    sync_retried: HashMap<PeerId, Instant>,
    /// Connected members asked for their peers (once per connection spell), and the
    /// outstanding asks by request id.
    peers_asked: HashSet<PeerId>,
    peer_requests: HashMap<request_response::OutboundRequestId, PeerId>,
    /// Peers whose ask went down with a connection that may be on its way out while a
    /// newer one stays (a restarted member back before its old link is seen closing):
    /// asked again on the newer one when that connection is seen closed.
    peers_lost: HashMap<PeerId, ConnectionId>,
    /// Every open connection per peer, oldest first: tells a member that came back while
    /// its old connection lingered (`links`).
    links: Links,
    /// Members whose connections are being closed to be made again (a replaced
    /// connection, `links`), with the addresses to dial once the last one is closed.
    renewing: HashMap<PeerId, Vec<Multiaddr>>,
    /// When each member was last renewed, for the last `RENEW_EVERY`.
    renewed: HashMap<PeerId, Instant>,
    /// The remote address of each connected peer's latest connection: what reach of
    /// addresses peer exchange may tell it (`net::Scope`).
    remote: HashMap<PeerId, Multiaddr>,
    /// The configured bootstrap addresses, dialed at start and when alone.
    bootstrap: Vec<Multiaddr>,
    sync_stats: SyncStats,
    /// Per connected peer: the start of its current window and its reconcile requests in it.
    reconciled: HashMap<PeerId, (Instant, u32)>,
    /// Per connected peer: the start of its ignore window and how many messages it
    /// relayed there that were ignored (`IGNORE_BUDGET`).
    ignored: HashMap<PeerId, (Instant, u32)>,
    /// Removed members still connected, and when to cut them off (`REMOVAL_NOTICE`).
    cut_off: HashMap<PeerId, Instant>,
    /// Outbox entries gossipsub refused with full queues (bounded by `MAX_OUTBOX`).
    stuck: HashSet<u64>,
    data_dir: PathBuf,
    /// The owner's side of clip sharing.
    sharing: Sharing,
    /// The sync set as last built, with the store's `sync_generation` it was built at
    /// and when it was last used: a responder answers every reconcile message of a
    /// session from it instead of reading and sorting the set each time.
    sync_set: Option<(u64, Arc<negentropy::NegentropyStorageVector>, Instant)>,
    /// Each member's byte budget for our fetch answers and clip chunks.
    meter: crate::meter::Meter,
    /// How often to tell systemd's watchdog the loop runs, and when it was last told.
    watchdog: Option<(Duration, Instant)>,
    /// Outstanding clip requests we sent (bounded by the behaviour's timeout and by the
    /// API's concurrent fetches).
    clip_replies: HashMap<request_response::OutboundRequestId, Reply<clip::Response>>,
}

/// One catch-up session this node runs as initiator with one peer.
struct SyncSession {
    /// `None` once the sets are reconciled and only fetching is left.
    initiator: Option<sync::Initiator>,
    need: std::collections::VecDeque<[u8; 32]>,
    requested: HashSet<[u8; 32]>,
    started: Instant,
    /// The request whose answer the session waits for: an answer or failure of any
    /// other (one of a session that timed out, on a connection since replaced) is
    /// stale and changes nothing.
    pending: Option<request_response::OutboundRequestId>,
}

impl EventLoop {
    async fn wait_for_listeners(&mut self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.listen.len() < count {
            match tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await {
                Ok(event) => self.on_swarm_event(event).await,
                Err(_) => break,
            }
        }
    }

    fn subscribe(&mut self) {
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .inner_mut()
            .subscribe(&self.topic)
        {
            tracing::error!(error = %e, "cannot subscribe to the hood topic");
        }
    }

    /// Dials remembered members (current ones, most recently seen first, at most
    /// `MAX_START_DIALS`) and the bootstrap addresses.
    fn dial_known(&mut self) {
        let mut targets: Vec<(Option<PeerId>, Vec<Multiaddr>)> = Vec::new();
        if let Ok(peers) = self.store.peers() {
            let mut known: Vec<(u64, PeerId, Vec<Multiaddr>)> = Vec::new();
            for (peer, addrs) in peers {
                let Ok(peer) = PeerId::from_bytes(&peer) else {
                    continue;
                };
                // Before a hood (a joiner) every remembered peer; then members only.
                if self.engine.is_some() && !self.is_member(&peer) {
                    continue;
                }
                let seen = net::member_id(&peer)
                    .and_then(|m| self.last_seen.get(&m).copied())
                    .unwrap_or(0);
                let addrs = addrs.iter().filter_map(|a| a.parse().ok()).collect();
                known.push((seen, peer, addrs));
            }
            targets.extend(
                start_dials(known, &mut crate::rng())
                    .into_iter()
                    .map(|(peer, addrs)| (Some(peer), addrs)),
            );
        }
        for addr in &self.bootstrap {
            let peer = addr.iter().find_map(|p| match p {
                Protocol::P2p(peer) => Some(peer),
                _ => None,
            });
            targets.push((peer, vec![addr.clone()]));
        }
        for (peer, addrs) in targets {
            let opts = match peer {
                Some(peer) if peer == *self.swarm.local_peer_id() => continue,
                Some(peer) => DialOpts::peer_id(peer).addresses(addrs).build(),
                None => match addrs.into_iter().next() {
                    Some(addr) => DialOpts::unknown_peer_id().address(addr).build(),
                    None => continue,
                },
            };
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(error = %e, "dial failed");
            }
        }
    }

    /// Presents the ticket to the inviter and waits for the welcome.
    async fn join(&mut self, signed: SignedTicket, ticket: Ticket) -> Result<(), NodeError> {
        let request = JoinRequest::new(&self.keys, signed, &ticket, &self.name)
            .map_err(|e| NodeError::JoinRefused(e.to_string()))?;
        let inviter = net::peer_id(&ticket.inviter)
            .ok_or_else(|| NodeError::JoinRefused("the invite names an invalid inviter".into()))?;
        let addrs: Vec<Multiaddr> = ticket
            .bootstrap
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        self.join = Some(JoinState {
            inviter,
            request: request.encode(),
            sent: false,
        });
        self.swarm
            .dial(DialOpts::peer_id(inviter).addresses(addrs).build())
            .map_err(|e| NodeError::JoinRefused(format!("cannot dial the inviter: {e}")))?;
        if self.swarm.is_connected(&inviter) {
            self.send_join_request();
        }
        let deadline = Instant::now() + JOIN_DEADLINE;
        while self.engine.is_none() {
            let event = tokio::time::timeout_at(deadline, self.swarm.select_next_some())
                .await
                .map_err(|_| NodeError::JoinTimeout(JOIN_DEADLINE))?;
            if let SwarmEvent::Behaviour(BehaviourEvent::Join(request_response::Event::Message {
                message: request_response::Message::Response { response, .. },
                peer,
                ..
            })) = &event
                && *peer == inviter
            {
                self.on_welcome(response, &ticket.hood).await?;
                continue;
            }
            if let SwarmEvent::Behaviour(BehaviourEvent::Join(
                request_response::Event::OutboundFailure { error, .. },
            )) = &event
            {
                return Err(NodeError::JoinRefused(format!(
                    "the join request failed: {error}"
                )));
            }
            self.on_swarm_event(event).await;
        }
        Ok(())
    }

    fn send_join_request(&mut self) {
        if let Some(join) = &mut self.join
            && !join.sent
        {
            join.sent = true;
            let request = join.request.clone();
            let inviter = join.inviter;
            self.swarm
                .behaviour_mut()
                .join
                .send_request(&inviter, request);
        }
    }

    async fn on_welcome(&mut self, response: &[u8], hood: &HoodId) -> Result<(), NodeError> {
        let welcome = match JoinResponse::decode(response) {
            Ok(JoinResponse::Welcome(w)) => w,
            Ok(JoinResponse::Refused(why)) => return Err(NodeError::JoinRefused(why)),
            Err(e) => return Err(NodeError::JoinRefused(format!("malformed answer: {e}"))),
        };
        let engine = Engine::from_welcome(self.store.clone(), self.keys.clone(), hood, &welcome)?;
        // Remember where the inviter is, so a restart finds the hood without the invite.
        if let Some(join) = &self.join {
            let addrs: Vec<String> = self
                .addresses
                .get(&join.inviter)
                .map(|a| a.iter().map(|a| a.to_string()).collect())
                .unwrap_or_default();
            if !addrs.is_empty() {
                self.store.remember_peer(&join.inviter.to_bytes(), &addrs)?;
            }
        }
        self.store.flush().await?;
        tracing::info!(
            members = engine.roster().members().count(),
            "joined the hood"
        );
        self.engine = Some(engine);
        self.join = None;
        // Our connection to the admitter predates our membership: renew it.
        self.after_roster_change(true);
        self.subscribe();
        Ok(())
    }

    async fn run(mut self) -> Result<(), NodeError> {
        let mut tick = tokio::time::interval(TICK);
        let mut ticks: u32 = 0;
        let mut failed = None;
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                command = self.commands.recv() => match command {
                    None | Some(Command::Shutdown) => break,
                    Some(command) => self.on_command(command).await,
                },
                _ = tick.tick() => {
                    ticks = ticks.wrapping_add(1);
                    self.on_tick(ticks);
                }
            }
            if std::mem::take(&mut self.keys_due) {
                self.repair_keys().await;
            }
            // A broken store (a full disk) fails every later write: stop, and say so,
            // rather than run on losing everything (a service manager restarts us, and a
            // reopened store works again once there is room).
            if let Some(why) = self.store.failure() {
                tracing::error!(error = %why, "the store failed; stopping");
                failed = Some(why);
                break;
            }
        }
        let flushed = self.store.flush().await;
        // The acknowledger answers what it holds and ends, and the last sync flush ends,
        // closing their handles on the store, before this node reports that it stopped
        // (a restart reopens the store).
        let EventLoop {
            acks,
            acknowledger,
            sync_flush,
            store_check,
            ..
        } = self;
        drop(acks);
        let _ = acknowledger.await;
        if let Some(f) = sync_flush {
            let _ = f.await;
        }
        if let Some(f) = store_check {
            let _ = f.await;
        }
        if let Some(why) = failed {
            return Err(NodeError::StoreFailed(why));
        }
        flushed?;
        tracing::info!("stopped");
        Ok(())
    }

    /// Rekeys if this member lacks the key everyone seals under (R7 in
    /// docs/threat-model.md), and publishes the rekey.
    async fn repair_keys(&mut self) {
        let Some(engine) = &mut self.engine else {
            return;
        };
        match engine.repair_keys(crate::now(), &mut crate::rng()).await {
            Ok(false) => {}
            Ok(true) => {
                self.after_roster_change(false);
                self.flush_outbox();
            }
            Err(e) => tracing::warn!(error = %e, "could not rekey for a key this member lacks"),
        }
    }

    fn on_tick(&mut self, ticks: u32) {
        let now = Instant::now();
        self.watch_history(now);
        // The event loop itself tells the watchdog it runs: a loop stuck anywhere stops
        // telling it, and systemd restarts the node.
        if let Some((every, last)) = &mut self.watchdog
            && now.duration_since(*last) >= *every
        {
            *last = now;
            if let Err(e) = crate::notify::notify("WATCHDOG=1") {
                tracing::warn!(error = %e, "cannot notify systemd's watchdog");
            }
        }
        if self
            .sync_set
            .as_ref()
            .is_some_and(|(_, _, used)| now.duration_since(*used) >= SYNC_SET_IDLE)
        {
            self.sync_set = None;
        }
        for peer in take_due(&mut self.outsiders, now) {
            if self.is_member(&peer) && self.swarm.behaviour().gossipsub.serves(&peer) {
                continue;
            }
            // A non-member, or a member whose connection predates its admission: close
            // it, and for a member dial again, so the new connection carries gossip.
            tracing::debug!(%peer, "closing a connection without hood traffic");
            let addrs = self.addresses.get(&peer).cloned().unwrap_or_default();
            let _ = self.swarm.disconnect_peer_id(peer);
            if self.is_member(&peer) && !addrs.is_empty() {
                let _ = self.swarm.dial(
                    DialOpts::peer_id(peer)
                        .condition(PeerCondition::Always)
                        .addresses(addrs)
                        .build(),
                );
            }
        }
        if ticks.is_multiple_of(OUTBOX_EVERY) {
            self.flush_outbox();
        }
        if ticks.is_multiple_of(CHECK_STORE_EVERY)
            && self.store_check.as_ref().is_none_or(|f| f.is_finished())
        {
            // The flush records a failure in the store; the loop then stops.
            let store = self.store.clone();
            self.store_check = Some(tokio::spawn(async move {
                let _ = store.flush().await;
            }));
        }
        self.syncs
            .retain(|_, s| s.started.elapsed() < SYNC_SESSION_TIMEOUT);
        for peer in take_due(&mut self.cut_off, now) {
            if self.swarm.is_connected(&peer) {
                tracing::info!(%peer, "disconnecting a removed member");
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
        for peer in std::mem::take(&mut self.sync_retry) {
            if self.swarm.is_connected(&peer) {
                self.start_sync(peer);
            }
        }
        if ticks.is_multiple_of(SYNC_EVERY) {
            self.sync_all();
        }
        // Alone (every neighbor left, was removed or moved): look for the hood again
        // where this node remembers members, including those heard of by peer exchange.
        if ticks.is_multiple_of(REDIAL_EVERY)
            && self
                .engine
                .as_ref()
                .is_some_and(|e| !e.roster().is_removed(&self.keys.id()))
            && !self.swarm.connected_peers().any(|p| self.is_member(p))
        {
            self.dial_known();
        }
        if ticks.is_multiple_of(EXPIRE_EVERY)
            && let Some(engine) = &mut self.engine
        {
            match engine.expire(crate::now()) {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "expired items deleted"),
                Err(e) => tracing::warn!(error = %e, "expiry failed"),
            }
        }
    }

    fn is_member(&self, peer: &PeerId) -> bool {
        match (&self.engine, net::member_id(peer)) {
            (Some(engine), Some(member)) => engine.roster().is_member(&member),
            _ => false,
        }
    }

    /// Brings the network's view in line with the roster: who gets gossip, who is
    /// denied, and (with `reconnect`) renews connections to members that predate their
    /// membership, so that gossip runs on them. Only the side that learned of its own
    /// admission reconnects: the admitter must not cut the connection its welcome is
    /// still travelling on.
    /// Gives up on the checkpoint this node joined with when the history it covers
    /// stops arriving: `HISTORY_PATIENCE` without one more operation, over at least
    /// `HISTORY_SESSIONS` sync sessions. Safe whenever it happens: the roster then
    /// follows what arrived, and the rest comes through ordinary validation if it ever
    /// does.
    fn watch_history(&mut self, now: Instant) {
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        if !engine.roster().is_provisional() {
            self.history_watch = None;
            return;
        }
        let missing = engine.roster().history_missing();
        let sessions = self.sync_stats.sessions;
        match self.history_watch {
            Some((before, since, at)) if before == missing => {
                if now.duration_since(since) < HISTORY_PATIENCE || sessions < at + HISTORY_SESSIONS
                {
                    return;
                }
            }
            _ => {
                self.history_watch = Some((missing, now, sessions));
                return;
            }
        }
        self.history_watch = None;
        if let Err(e) = engine.give_up_history() {
            tracing::error!(error = %e, "cannot give up on the checkpoint");
            return;
        }
        self.after_roster_change(false);
    }

    fn after_roster_change(&mut self, reconnect: bool) {
        let Some(engine) = &self.engine else { return };
        self.keys_due |= engine.keys_due();
        let members: Vec<PeerId> = engine
            .roster()
            .members()
            .filter_map(|m| net::peer_id(&m.id))
            .collect();
        let removed: Vec<PeerId> = engine.roster().removed().filter_map(net::peer_id).collect();
        let me_removed = engine.roster().is_removed(&self.keys.id());
        let behaviour = self.swarm.behaviour_mut();
        behaviour.gossipsub.set_members(members.iter().copied());
        behaviour.sync.set_members(members.iter().copied());
        behaviour.clips.set_members(members.iter().copied());
        behaviour.gate.denied = removed.iter().copied().collect();
        // Anyone still served hood traffic who is no longer a member (removed, or lost a
        // ticket race) is cut off; a non-member reconnecting gets no hood traffic.
        let served: Vec<PeerId> = self
            .swarm
            .connected_peers()
            .copied()
            .filter(|p| self.swarm.behaviour().gossipsub.serves(p) && !members.contains(p))
            .collect();
        for peer in served {
            if !removed.contains(&peer) {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
        let now = Instant::now();
        for peer in removed {
            if !self.swarm.is_connected(&peer) || self.cut_off.contains_key(&peer) {
                continue;
            }
            // Gossip still reaches it: the removal (and nothing it can read) goes out
            // first, and it is cut off after `REMOVAL_NOTICE`.
            if self.swarm.behaviour().gossipsub.serves(&peer) && self.cut_off.len() < MAX_CUT_OFF {
                self.cut_off.insert(peer, now + REMOVAL_NOTICE);
            } else {
                tracing::info!(%peer, "disconnecting a removed member");
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
        if me_removed {
            tracing::warn!("this node was removed from the hood");
        }
        let _ = self.events.send(Event::Membership);
        if !reconnect {
            return;
        }
        let stale: Vec<PeerId> = members
            .into_iter()
            .filter(|p| self.swarm.is_connected(p) && !self.swarm.behaviour().gossipsub.serves(p))
            .collect();
        for peer in stale {
            self.outsiders.remove(&peer);
            let addrs = self.addresses.get(&peer).cloned().unwrap_or_default();
            // Never cut a link we cannot make again.
            if addrs.is_empty() {
                continue;
            }
            let _ = self.swarm.disconnect_peer_id(peer);
            let _ = self.swarm.dial(
                DialOpts::peer_id(peer)
                    .condition(PeerCondition::Always)
                    .addresses(addrs)
                    .build(),
            );
        }
    }

    /// Publishes what waits in the outbox, oldest first, until gossip has no taker.
    fn flush_outbox(&mut self) {
        if self.engine.is_none() {
            return;
        }
        let waiting = match self.store.outbox() {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the outbox");
                return;
            }
        };
        for (seq, bytes) in waiting {
            let result = self
                .swarm
                .behaviour_mut()
                .gossipsub
                .inner_mut()
                .publish(self.topic.clone(), bytes);
            match result {
                // Gossipsub remembers an id even when no queue took the message, and then
                // calls the retry a duplicate: only a message we saw go out leaves the
                // outbox on `Duplicate` (the others wait until gossipsub forgets the id).
                Ok(_) => {
                    self.stuck.remove(&seq);
                    if let Err(e) = self.store.pop_outbox(seq) {
                        tracing::warn!(error = %e, "cannot update the outbox");
                    }
                }
                Err(PublishError::Duplicate) if !self.stuck.contains(&seq) => {
                    if let Err(e) = self.store.pop_outbox(seq) {
                        tracing::warn!(error = %e, "cannot update the outbox");
                    }
                }
                Err(PublishError::Duplicate) => break,
                Err(PublishError::AllQueuesFull(_)) => {
                    self.stuck.insert(seq);
                    break;
                }
                Err(PublishError::NoPeersSubscribedToTopic) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "publish failed; will retry");
                    break;
                }
            }
        }
    }

    fn feed_item(engine: &Engine, id: ItemId, item: &Item, body: Body) -> Option<FeedItem> {
        let (created_at, expires_at) = body.times();
        let author_name = engine
            .roster()
            .member(&item.author)
            .map(|m| m.name.clone())
            .unwrap_or_default();
        Some(FeedItem {
            id,
            author: item.author,
            author_name,
            body,
            created_at,
            expires_at: expires_at?,
        })
    }

    /// Ingests bytes from the network or an import; emits what is new.
    fn ingest(&mut self, bytes: &[u8]) -> Result<Ingest, NodeError> {
        let Some(engine) = &mut self.engine else {
            return Err(NodeError::NoHood);
        };
        let result = engine.ingest(bytes, crate::now())?;
        if let Ingest::New(accepted) = &result {
            self.last_item_at = Some(crate::now());
            if matches!(accepted.body, Body::Membership(_)) {
                self.after_roster_change(false);
            } else if let Some(item) =
                Self::feed_item(engine, accepted.id, &accepted.item, accepted.body.clone())
                && !self.muted.contains(&item.author)
            {
                let _ = self.events.send(Event::Item(Box::new(item)));
            }
            self.saw(accepted.item.author, accepted.created_at);
        }
        Ok(result)
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Post(body, reply) => match self.post(*body).await {
                // Published already; acknowledged once durable, by the acknowledger task,
                // so relaying does not wait for this node's disk.
                Ok(id) => match self.acks.try_send((id, reply)) {
                    Ok(()) => {}
                    // More posts waiting than the queue holds: this one waits here.
                    Err(
                        mpsc::error::TrySendError::Full((id, reply))
                        | mpsc::error::TrySendError::Closed((id, reply)),
                    ) => {
                        let result = self.store.flush().await.map(|()| id);
                        let _ = reply.send(result.map_err(|why| NodeError::NotDurable { id, why }));
                    }
                },
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Invite(valid_for, reply) => {
                let _ = reply.send(self.invite(valid_for));
            }
            Command::Remove(member, reply) => {
                let result = match &mut self.engine {
                    None => Err(NodeError::NoHood),
                    Some(engine) => engine
                        .remove(member, crate::now(), &mut crate::rng())
                        .await
                        .map_err(NodeError::from),
                };
                self.after_roster_change(false);
                self.flush_outbox();
                let _ = reply.send(result);
            }
            Command::Mute(member, mute, reply) => {
                let result = crate::mute::set(&self.store, &member, mute).await;
                if let Ok(true) = result {
                    if mute {
                        self.muted.insert(member);
                    } else {
                        self.muted.remove(&member);
                    }
                }
                let _ = reply.send(result.map_err(NodeError::from));
            }
            Command::Promote(member, reply) => {
                let result = match &mut self.engine {
                    None => Err(NodeError::NoHood),
                    Some(engine) => engine
                        .promote(member, crate::now(), &mut crate::rng())
                        .await
                        .map_err(NodeError::from),
                };
                self.after_roster_change(false);
                self.flush_outbox();
                let _ = reply.send(result);
            }
            Command::Ingest(bytes, reply) => {
                let result = self.ingest(&bytes);
                if let Err(e) = self.store.flush().await {
                    let _ = reply.send(Err(e.into()));
                    return;
                }
                let _ = reply.send(result);
            }
            Command::Status(digest, reply) => {
                let mut status = self.status();
                if digest {
                    status.digest = self.digest();
                }
                let _ = reply.send(Ok(status));
            }
            Command::Reader(reply) => {
                let _ = reply.send(self.reader());
            }
            Command::Members(reply) => {
                let _ = reply.send(self.members());
            }
            Command::Dial(addr, reply) => {
                let result = self
                    .swarm
                    .dial(addr)
                    .map_err(|e| NodeError::JoinRefused(format!("dial: {e}")));
                let _ = reply.send(result);
            }
            Command::Block(peer, blocked, reply) => {
                let gate = &mut self.swarm.behaviour_mut().gate;
                if blocked {
                    gate.blocked.insert(peer);
                    let _ = self.swarm.disconnect_peer_id(peer);
                } else {
                    gate.blocked.remove(&peer);
                }
                let _ = reply.send(Ok(()));
            }
            Command::Sync(reply) => {
                self.sync_all();
                let _ = reply.send(Ok(()));
            }
            Command::Envelope(id, reply) => {
                let result = self
                    .store
                    .item(&id)
                    .map(|r| r.map(|r| r.envelope))
                    .map_err(NodeError::from);
                let _ = reply.send(result);
            }
            Command::ClipRequest(owner, request, reply) => {
                self.send_clip_request(owner, request, reply)
            }
            Command::ClipAsks(reply) => {
                let _ = reply.send(Ok(self.sharing.asks()));
            }
            Command::ClipDecide(id, allow, reply) => {
                let _ = reply.send(self.sharing.decide(&id, allow).map_err(NodeError::from));
            }
            Command::ClipShare(choice, reply) => {
                let result = match choice {
                    Some((sha256, share)) => self
                        .sharing
                        .set_share(sha256, share)
                        .map(|()| share)
                        .map_err(NodeError::from),
                    None => Ok(self.sharing.policy),
                };
                let _ = reply.send(result);
            }
            Command::Health(reply) => {
                let members_connected = self
                    .swarm
                    .connected_peers()
                    .filter(|p| self.is_member(p))
                    .count();
                let last_item_at = self.last_item_at;
                let store = self.store.clone();
                // The probe writes and flushes: off the event loop.
                tokio::spawn(async move {
                    let probe = store.probe(crate::now()).await;
                    let store_error = probe
                        .err()
                        .map(|e| e.to_string())
                        .or_else(|| store.failure());
                    let _ = reply.send(Ok(Health {
                        store_writable: store_error.is_none(),
                        store_error,
                        members_connected,
                        last_item_at,
                    }));
                });
            }
            Command::Shutdown => {}
        }
    }

    fn send_clip_request(
        &mut self,
        owner: MemberId,
        request: clip::Request,
        reply: Reply<clip::Response>,
    ) {
        let Some(peer) = net::peer_id(&owner) else {
            let _ = reply.send(Err(NodeError::Unreachable(
                owner.fingerprint(),
                "not a valid member id".into(),
            )));
            return;
        };
        if !self.is_member(&peer) {
            let _ = reply.send(Err(NodeError::Unreachable(
                owner.fingerprint(),
                "not a member".into(),
            )));
            return;
        }
        if !self.swarm.is_connected(&peer) {
            let addrs = self.addresses.get(&peer).cloned().unwrap_or_default();
            let _ = self
                .swarm
                .dial(DialOpts::peer_id(peer).addresses(addrs).build());
        }
        let id = self
            .swarm
            .behaviour_mut()
            .clips
            .inner_mut()
            .send_request(&peer, request.encode());
        self.clip_replies.insert(id, reply);
    }

    /// The size of clip `sha256` if one of our own live reports references it: from
    /// the store's clip index, not a pass over the records.
    fn own_clip(&mut self, sha256: &[u8; 32]) -> Option<u64> {
        let me = self.keys.id();
        self.store
            .clip_refs(sha256)
            .ok()?
            .into_iter()
            .find(|(_, author, _)| *author == me)
            .map(|(_, _, size)| size)
    }

    fn on_clip(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                // The gate lets only members' connections speak this protocol.
                let now = std::time::Instant::now();
                match self.meter.check(peer, now) {
                    crate::meter::Verdict::Serve => {}
                    // Slowed: no answer (the requester's request fails; it may ask
                    // again later), no clip read.
                    crate::meter::Verdict::SlowDown => return,
                    crate::meter::Verdict::Penalize => {
                        return self.penalize(peer, "kept asking for clips over its byte budget");
                    }
                }
                let response = match (clip::Request::decode(&request), net::member_id(&peer)) {
                    (Ok(request), Some(requester)) => {
                        let own = self.own_clip(&request.sha256);
                        let answer = self.sharing.answer(
                            &self.data_dir,
                            requester,
                            &request,
                            own,
                            crate::now(),
                        );
                        if let clip::Response::Chunk { bytes, .. } = &answer {
                            self.meter.spent(peer, bytes.len(), now);
                        }
                        answer
                    }
                    _ => {
                        self.penalize(peer, "malformed clip request");
                        return;
                    }
                };
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .clips
                    .inner_mut()
                    .send_response(channel, response.encode());
            }
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                peer,
                ..
            } => {
                let Some(reply) = self.clip_replies.remove(&request_id) else {
                    return;
                };
                let result = clip::Response::decode(&response).map_err(|e| {
                    NodeError::Unreachable(format!("{peer}"), format!("malformed clip answer: {e}"))
                });
                let _ = reply.send(result);
            }
            request_response::Event::OutboundFailure {
                request_id,
                peer,
                error,
                ..
            } => {
                if let Some(reply) = self.clip_replies.remove(&request_id) {
                    let who =
                        net::member_id(&peer).map_or_else(|| peer.to_string(), |m| m.fingerprint());
                    let _ = reply.send(Err(NodeError::Unreachable(who, error.to_string())));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "clip request from a peer failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Stores, announces and publishes a post; the caller acknowledges it after a flush.
    async fn post(&mut self, body: Body) -> Result<ItemId, NodeError> {
        let engine = self.engine.as_mut().ok_or(NodeError::NoHood)?;
        let id = engine
            .post_staged(&body, crate::now(), &mut crate::rng())
            .await?;
        self.last_item_at = Some(crate::now());
        if let Some(record) = engine.store().item(&id)?
            && let Ok(item) = Item::decode(&record.item)
            && let Some(feed) = Self::feed_item(engine, id, &item, body)
        {
            let _ = self.events.send(Event::Item(Box::new(feed)));
        }
        self.flush_outbox();
        Ok(id)
    }

    fn invite(&mut self, valid_for: Duration) -> Result<String, NodeError> {
        let engine = self.engine.as_ref().ok_or(NodeError::NoHood)?;
        engine.check_invite()?;
        let mut id = [0u8; 16];
        crate::rng().fill_bytes(&mut id);
        let ticket = Ticket {
            hood: engine.hood(),
            hood_name: engine.roster().name().to_owned(),
            inviter: self.keys.id(),
            id: TicketId(id),
            expires_at: crate::now().saturating_add(valid_for.as_secs()),
            bootstrap: self.bootstrap_addresses(),
        };
        Ok(SignedTicket::issue(&self.keys, &ticket)?.to_code())
    }

    /// Addresses to put in an invite: routable ones first, loopback only if there is
    /// nothing else; as many as fit.
    fn bootstrap_addresses(&self) -> Vec<String> {
        let mut addrs: Vec<&Multiaddr> = self.swarm.external_addresses().collect();
        addrs.extend(self.listen.iter());
        let loopback = |a: &Multiaddr| {
            a.iter().any(|p| {
                matches!(p, Protocol::Ip4(ip) if ip.is_loopback())
                    || matches!(p, Protocol::Ip6(ip) if ip.is_loopback())
            })
        };
        addrs.sort_by_key(|a| loopback(a));
        let mut out: Vec<String> = Vec::new();
        for a in addrs {
            let s = a.to_string();
            if s.len() <= invite::MAX_ADDR_BYTES
                && !out.contains(&s)
                && out.len() < invite::MAX_BOOTSTRAP_ADDRS
            {
                out.push(s);
            }
        }
        out
    }

    /// The digest of what this node holds (`Engine::digest`), from the kept sync set.
    fn digest(&mut self) -> Option<[u8; 32]> {
        let set = self.sync_set().ok()?;
        self.engine.as_ref()?.digest_of(&set).ok()
    }

    /// The sync set, read from the store only if it changed since it was last read.
    fn sync_set(&mut self) -> Result<Arc<negentropy::NegentropyStorageVector>, String> {
        let generation = self.store.sync_generation();
        if let Some((built, set, used)) = &mut self.sync_set
            && *built == generation
        {
            *used = Instant::now();
            return Ok(set.clone());
        }
        let engine = self.engine.as_ref().ok_or("not in a hood")?;
        let set = Arc::new(engine.sync_storage().map_err(|e| e.to_string())?);
        self.sync_set = Some((generation, set.clone(), Instant::now()));
        Ok(set)
    }

    fn status(&self) -> Status {
        let gossip = self.swarm.behaviour().gossipsub.inner();
        Status {
            member: self.keys.id(),
            peer_id: *self.swarm.local_peer_id(),
            hood: self.engine.as_ref().map(|e| e.hood()),
            hood_name: self.engine.as_ref().map(|e| e.roster().name().to_owned()),
            members: self
                .engine
                .as_ref()
                .map_or(0, |e| e.roster().members().count()),
            connected: self.swarm.connected_peers().copied().collect(),
            mesh_peers: gossip.mesh_peers(&self.topic.hash()).count(),
            known_peers: self.store.peers().map_or(0, |p| p.len()),
            listen: self.listen.clone(),
            items: self.store.item_count(),
            outbox: self.store.outbox_len(),
            digest: None,
            sealing_epoch: self
                .engine
                .as_ref()
                .and_then(|e| e.roster().sealing_epoch()),
            sync: self.sync_stats,
            gossip_scores: self
                .swarm
                .connected_peers()
                .filter_map(|p| gossip.peer_score(p).map(|s| (*p, s)))
                .collect(),
            removed: self
                .engine
                .as_ref()
                .is_some_and(|e| e.roster().is_removed(&self.keys.id())),
            policy: self.engine.as_ref().map(|e| *e.roster().policy()),
            history_missing: self
                .engine
                .as_ref()
                .map_or(0, |e| e.roster().history_missing()),
        }
    }

    fn members(&self) -> Result<Vec<MemberInfo>, NodeError> {
        let engine = self.engine.as_ref().ok_or(NodeError::NoHood)?;
        let now = crate::now();
        let connected: std::collections::HashSet<MemberId> = self
            .swarm
            .connected_peers()
            .filter_map(net::member_id)
            .collect();
        // Items held are evidence too, across restarts: the store keeps each author's
        // newest in memory (`status` asks for this; a pass over the expiry index held up
        // the event loop for milliseconds at 100,000 items).
        let latest = self.store.latest_by_author();
        let pending: HashMap<MemberId, usize> = engine
            .roster()
            .pending_votes(now)
            .into_iter()
            .map(|p| (p.target, p.votes.len()))
            .collect();
        Ok(engine
            .roster()
            .members()
            .map(|m| {
                let me = m.id == self.keys.id();
                let connected = me || connected.contains(&m.id);
                let last_seen = if connected {
                    Some(now)
                } else {
                    self.last_seen
                        .get(&m.id)
                        .copied()
                        .max(latest.get(&m.id).map(|t| (*t).min(now)))
                };
                MemberInfo {
                    member: m.clone(),
                    connected,
                    last_seen,
                    votes_against: pending.get(&m.id).copied().unwrap_or(0),
                    votes_needed: engine.roster().votes_needed(&m.id, now),
                    muted: self.muted.contains(&m.id),
                }
            })
            .collect())
    }

    /// Keeps `member`'s last-seen time in the store (a member, connected or just gone),
    /// for the dial order of the next start.
    fn remember_seen(&mut self, member: MemberId) {
        if let Some(at) = self.last_seen.get(&member).copied()
            && let Err(e) = self.store.remember_seen(&member, at)
        {
            tracing::warn!(error = %e, "cannot keep a member's last-seen time");
        }
    }

    /// Notes that `member` was active at `at` (capped at now), if it is a member.
    fn saw(&mut self, member: MemberId, at: u64) {
        if let Some(engine) = &self.engine
            && engine.roster().is_member(&member)
        {
            let at = at.min(crate::now());
            let seen = self.last_seen.entry(member).or_default();
            *seen = (*seen).max(at);
        }
    }

    /// A store handle and the members' names: reads then run off the event loop.
    fn reader(&self) -> Result<crate::feed::Reader, NodeError> {
        let engine = self.engine.as_ref().ok_or(NodeError::NoHood)?;
        let names = engine
            .roster()
            .members()
            .map(|m| (m.id, m.name.clone()))
            .collect();
        Ok(crate::feed::Reader::new(self.store.clone(), names).muting(self.muted.clone()))
    }

    async fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        if let SwarmEvent::ConnectionClosed {
            peer_id,
            connection_id,
            num_established,
            ..
        } = &event
            && self.links.closed(*peer_id, *connection_id)
            && *num_established > 0
            && self.renew(*peer_id)
        {
            return;
        }
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.listen.push(address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
                // Back before the renewal's last connection closed: this one is not a
                // first either, and `links` will say so when the older ones close.
                self.renewing.remove(&peer_id);
                let gossip = !self.swarm.behaviour().gossipsub.gates(connection_id);
                self.links.established(
                    peer_id,
                    connection_id,
                    std::time::Instant::now(),
                    gossip,
                    endpoint.is_relayed(),
                );
                self.remote
                    .insert(peer_id, endpoint.get_remote_address().clone());
                if let Some(member) = net::member_id(&peer_id) {
                    self.saw(member, crate::now());
                    self.remember_seen(member);
                }
                if endpoint.is_dialer() {
                    let addr = endpoint.get_remote_address().clone();
                    let member = self.is_member(&peer_id);
                    let known = self.addresses.entry(peer_id).or_default();
                    if !known.contains(&addr) && known.len() < MAX_KNOWN_ADDRS {
                        known.push(addr);
                    }
                    if member {
                        let addrs: Vec<String> = known.iter().map(|a| a.to_string()).collect();
                        if let Err(e) = self.store.remember_peer(&peer_id.to_bytes(), &addrs) {
                            tracing::warn!(error = %e, "cannot remember a peer");
                        }
                    }
                }
                if self.engine.is_some() && !self.is_member(&peer_id) {
                    if !self.outsiders.contains_key(&peer_id)
                        && self.outsiders.len() >= MAX_OUTSIDERS
                    {
                        // Non-members must not take the slots members need. One that has
                        // sat idle (no join request) makes room for the newcomer, so
                        // whoever fills the slots cannot keep a neighbor from joining.
                        match idlest_outsider(
                            &self.outsiders,
                            &self.joining_outsiders,
                            Instant::now(),
                        ) {
                            Some(idle) => {
                                tracing::debug!(peer = %idle, "evicting an idle non-member for a new one");
                                self.outsiders.remove(&idle);
                                let _ = self.swarm.disconnect_peer_id(idle);
                            }
                            None => {
                                tracing::debug!(peer = %peer_id, "too many non-members connected; closing");
                                let _ = self.swarm.disconnect_peer_id(peer_id);
                                return;
                            }
                        }
                    }
                    self.outsiders
                        .entry(peer_id)
                        .or_insert(Instant::now() + OUTSIDER_GRACE);
                }
                if self.join.as_ref().is_some_and(|j| j.inviter == peer_id) {
                    self.send_join_request();
                }
                self.start_sync(peer_id);
                self.ask_peers(peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                if let Some(addrs) = self.renewing.remove(&peer_id) {
                    tracing::debug!(peer = %peer_id, "dialing a renewed member");
                    let _ = self.swarm.dial(
                        DialOpts::peer_id(peer_id)
                            .condition(PeerCondition::Disconnected)
                            .addresses(addrs)
                            .build(),
                    );
                }
                if let Some(member) = net::member_id(&peer_id) {
                    self.saw(member, crate::now());
                    self.remember_seen(member);
                }
                self.outsiders.remove(&peer_id);
                self.joining_outsiders.remove(&peer_id);
                self.addresses.remove(&peer_id);
                self.reconciled.remove(&peer_id);
                self.ignored.remove(&peer_id);
                self.sync_retried.remove(&peer_id);
                self.peers_asked.remove(&peer_id);
                self.peers_lost.remove(&peer_id);
                self.remote.remove(&peer_id);
            }
            // Another connection to the peer remains, and it may be newer than the ask (a
            // restarted peer's new connection can be up before its old one is seen
            // closing): ask on it.
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                ..
            } if self.peers_asked.contains(&peer_id)
                || self.peers_lost.get(&peer_id) == Some(&connection_id) =>
            {
                self.peers_asked.remove(&peer_id);
                self.peers_lost.remove(&peer_id);
                self.ask_peers(peer_id);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossip(event),
            SwarmEvent::Behaviour(BehaviourEvent::Join(event)) => self.on_join(event).await,
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => self.on_sync(event).await,
            SwarmEvent::Behaviour(BehaviourEvent::Clips(event)) => self.on_clip(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let addrs: Vec<Multiaddr> = info
                    .listen_addrs
                    .into_iter()
                    .take(MAX_KNOWN_ADDRS)
                    .collect();
                if self.is_member(&peer_id) {
                    let strings: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                    if let Err(e) = self.store.remember_peer(&peer_id.to_bytes(), &strings) {
                        tracing::warn!(error = %e, "cannot remember a peer");
                    }
                }
                self.addresses.insert(peer_id, addrs);
            }
            // Two pings in a row timed out (no pong, or the ping stream did not open in
            // time): the other end is gone. Other failures (a peer that does not speak
            // ping, a stream refused) are no sign of that.
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Err(error),
            })) if ping_timed_out(&error) => {
                tracing::debug!(%peer, %error, "pings go unanswered; closing the connection");
                self.swarm.close_connection(connection);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found.into_iter().take(32) {
                    if !self.swarm.is_connected(&peer) {
                        let _ = self
                            .swarm
                            .dial(DialOpts::peer_id(peer).addresses(vec![addr]).build());
                    }
                }
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                tracing::debug!(%error, "incoming connection failed")
            }
            SwarmEvent::OutgoingConnectionError { error, peer_id, .. } => {
                tracing::debug!(?peer_id, %error, "dial failed")
            }
            _ => {}
        }
    }

    /// A peer's first connection closed while a later one, perhaps its restarted node's,
    /// remains: gossipsub never sent our subscriptions on that one (`links`). For a
    /// member, closes the rest and dials it once nothing is left, so the next connection
    /// is a first one on both sides; true if it did. Left as it is: non-members (no
    /// gossip), peers the gate refuses (penalized, removed, blocked), a member renewed in
    /// the last `RENEW_EVERY` (each renewal costs a handshake and dials addresses the
    /// member gave), and one we know no address of (it can dial us; we could not dial
    /// it). Sync still reaches those. A member behind NAT that we cannot dial back after
    /// all is alone until its own redial, at most `REDIAL_EVERY` seconds later.
    fn renew(&mut self, peer: PeerId) -> bool {
        let now = Instant::now();
        self.renewed
            .retain(|_, at| now.duration_since(*at) < RENEW_EVERY);
        if !self.is_member(&peer)
            || self.swarm.behaviour().gate.refuses(&peer)
            || self.renewed.contains_key(&peer)
        {
            return false;
        }
        let addrs = self.addresses.get(&peer).cloned().unwrap_or_default();
        if addrs.is_empty() {
            tracing::debug!(%peer, "a member's connection was replaced; no address to renew it");
            return false;
        }
        tracing::info!(%peer, "a member came back while its old connection lingered; renewing");
        self.renewed.insert(peer, now);
        self.renewing.insert(peer, addrs);
        let _ = self.swarm.disconnect_peer_id(peer);
        true
    }

    fn on_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                // Judged before the message is taken: the operation that completes the
                // history was still taken at the checkpoint's word.
                let provisional = self
                    .engine
                    .as_ref()
                    .is_some_and(|e| e.roster().is_provisional());
                let acceptance = match self.ingest(&message.data) {
                    Ok(Ingest::New(accepted)) => {
                        tracing::debug!(item = %accepted.id, from = %propagation_source, "accepted");
                        MessageAcceptance::Accept
                    }
                    Ok(Ingest::Duplicate) | Ok(Ingest::NewOp(_)) => MessageAcceptance::Ignore,
                    Ok(Ingest::Ignored(reason)) => {
                        if self.over_ignore_budget(propagation_source) {
                            tracing::debug!(from = %propagation_source, %reason, "ignored, over the budget: rejected");
                            MessageAcceptance::Reject
                        } else {
                            tracing::debug!(from = %propagation_source, %reason, "ignored");
                            MessageAcceptance::Ignore
                        }
                    }
                    Ok(Ingest::Rejected(reason)) => {
                        tracing::info!(from = %propagation_source, %reason, "rejected");
                        MessageAcceptance::Reject
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not store a message");
                        MessageAcceptance::Ignore
                    }
                };
                // A node that joined from a checkpoint judges by its admitter's word until
                // the history is checked: it neither vouches for what it takes (no
                // forwarding: a false checkpoint's "member" would get this node blamed by
                // its neighbors) nor blames a peer for what it refuses.
                let acceptance = if provisional {
                    MessageAcceptance::Ignore
                } else {
                    acceptance
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .inner_mut()
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
            }
            gossipsub::Event::Subscribed { peer_id, topic } if topic == self.topic.hash() => {
                tracing::debug!(peer = %peer_id, "peer joined the hood topic");
                self.flush_outbox();
            }
            _ => {}
        }
    }

    /// Counts one ignored message relayed by `peer`; whether it is past the budget.
    fn over_ignore_budget(&mut self, peer: PeerId) -> bool {
        let now = Instant::now();
        let (start, count) = self.ignored.entry(peer).or_insert((now, 0));
        if now.duration_since(*start) >= IGNORE_WINDOW {
            *start = now;
            *count = 0;
        }
        *count = count.saturating_add(1);
        if *count == IGNORE_BUDGET + 1 {
            tracing::info!(%peer, "peer relays too many messages this node cannot read; they now count as invalid");
        }
        *count > IGNORE_BUDGET
    }

    /// Starts catch-up sync with every connected member (as many as sessions allow).
    fn sync_all(&mut self) {
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            self.start_sync(peer);
        }
    }

    /// Starts a session with `peer` as initiator, if it is a member we serve sync to and
    /// no session with it runs.
    fn start_sync(&mut self, peer: PeerId) {
        if self.engine.is_none()
            || self.syncs.contains_key(&peer)
            || self.syncs.len() >= MAX_SYNC_SESSIONS
            || !self.swarm.behaviour().sync.serves(&peer)
        {
            return;
        }
        let started = self.sync_set().and_then(|set| {
            sync::Initiator::start(set.as_ref().clone()).map_err(|e| e.to_string())
        });
        let (initiator, first) = match started {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start sync");
                return;
            }
        };
        let pending = self.send_sync(&peer, &sync::Request::Reconcile(first));
        self.sync_stats.sessions += 1;
        self.syncs.insert(
            peer,
            SyncSession {
                initiator: Some(initiator),
                need: Default::default(),
                requested: Default::default(),
                started: Instant::now(),
                pending: Some(pending),
            },
        );
    }

    fn send_sync(
        &mut self,
        peer: &PeerId,
        request: &sync::Request,
    ) -> request_response::OutboundRequestId {
        let bytes = request.encode();
        self.sync_stats.bytes_sent += bytes.len() as u64;
        self.swarm
            .behaviour_mut()
            .sync
            .inner_mut()
            .send_request(peer, bytes)
    }

    /// Sends the session's next request and waits for its answer only.
    fn send_in_session(&mut self, peer: PeerId, request: &sync::Request) {
        let id = self.send_sync(&peer, request);
        if let Some(session) = self.syncs.get_mut(&peer) {
            session.pending = Some(id);
        }
    }

    /// Whether `id` is the request `peer`'s session waits for.
    fn is_pending(&self, peer: &PeerId, id: request_response::OutboundRequestId) -> bool {
        self.syncs.get(peer).is_some_and(|s| s.pending == Some(id))
    }

    /// Peer exchange: asks a member, once per connection spell, where it reaches the
    /// other members, so this node can find the hood again after a restart even if the
    /// members it knew have moved (threat model D15).
    fn ask_peers(&mut self, peer: PeerId) {
        if self.engine.is_none()
            || self.peers_asked.contains(&peer)
            || !self.swarm.behaviour().sync.serves(&peer)
        {
            return;
        }
        self.peers_asked.insert(peer);
        let id = self.send_sync(&peer, &sync::Request::Peers);
        self.peer_requests.insert(id, peer);
    }

    /// What this node tells a member asking for peers: the members it is connected to
    /// now, at the addresses it reached them at or they listen on (first-hand, never
    /// hearsay passed on), and only addresses as private as the asker's own connection
    /// (a member connected over the internet learns no LAN or loopback address). Never
    /// the asker, never a non-member.
    fn peer_book(&self, asker: PeerId) -> Vec<sync::PeerAddrs> {
        let reach = self
            .remote
            .get(&asker)
            .map_or(net::Scope::Public, net::scope);
        let mut book: Vec<sync::PeerAddrs> = Vec::new();
        for (peer, addrs) in &self.addresses {
            if book.len() >= sync::MAX_PEERS {
                break;
            }
            if *peer == asker || !self.is_member(peer) || !self.swarm.is_connected(peer) {
                continue;
            }
            let Some(member) = net::member_id(peer) else {
                continue;
            };
            let addrs: Vec<String> = addrs
                .iter()
                .filter(|a| net::dialable(a) && net::scope(a) >= reach)
                .map(|a| a.to_string())
                .filter(|a| a.len() <= sync::MAX_ADDR_LEN)
                .take(sync::MAX_PEER_ADDRS)
                .collect();
            if !addrs.is_empty() {
                book.push(sync::PeerAddrs {
                    member: member.0,
                    addrs,
                });
            }
        }
        book
    }

    /// Remembers the members a peer told us about, except those this node is connected
    /// to now (it knows where they are, and its own connections and identify overwrite
    /// their entries). Heard addresses go in front of older ones (at most
    /// `MAX_KNOWN_ADDRS` a peer), so a member that moved is found at its new one; what a
    /// lying member can do with that is threat model D24.
    fn on_peers_response(&mut self, from: PeerId, bytes: &[u8]) {
        let peers = match sync::Response::decode(bytes) {
            Ok(sync::Response::Peers(peers)) => peers,
            Ok(sync::Response::Refused(why)) => {
                tracing::debug!(peer = %from, why, "peer refused peer exchange");
                return;
            }
            Ok(_) => return self.penalize(from, "answered a peer exchange with something else"),
            Err(_) => return self.penalize(from, "malformed peer exchange answer"),
        };
        let me = *self.swarm.local_peer_id();
        let remembered: HashMap<Vec<u8>, Vec<String>> =
            self.store.peers().unwrap_or_default().into_iter().collect();
        let mut learned = 0;
        for entry in peers {
            let Some(peer) = net::peer_id(&MemberId(entry.member)) else {
                continue;
            };
            if peer == me
                || peer == from
                || !self.is_member(&peer)
                || self.swarm.is_connected(&peer)
            {
                continue;
            }
            let mut addrs: Vec<String> = entry
                .addrs
                .into_iter()
                .filter(|a| a.parse::<Multiaddr>().is_ok_and(|a| net::dialable(&a)))
                .collect();
            if addrs.is_empty() {
                continue;
            }
            let key = peer.to_bytes();
            for old in remembered.get(&key).into_iter().flatten() {
                if !addrs.contains(old) {
                    addrs.push(old.clone());
                }
            }
            addrs.truncate(MAX_KNOWN_ADDRS);
            if remembered.get(&key) == Some(&addrs) {
                continue;
            }
            match self.store.remember_peer(&key, &addrs) {
                Ok(()) => learned += 1,
                Err(e) => tracing::warn!(error = %e, "cannot remember a peer"),
            }
        }
        tracing::debug!(peer = %from, learned, "peer exchange");
    }

    /// Cuts off a peer that broke the sync protocol, and refuses it for a while.
    fn penalize(&mut self, peer: PeerId, why: &str) {
        if self.swarm.behaviour().gate.is_penalized(&peer) {
            // Already cut off: answers still in flight on its closing connection (a sync
            // round and a peer exchange at once) do not count again.
            self.syncs.remove(&peer);
            return;
        }
        tracing::warn!(%peer, why, "peer misbehaved in sync; cutting it off");
        self.sync_stats.penalties += 1;
        self.syncs.remove(&peer);
        let gate = &mut self.swarm.behaviour_mut().gate;
        gate.penalized
            .retain(|_, until| *until > std::time::Instant::now());
        gate.penalized
            .insert(peer, std::time::Instant::now() + PENALTY);
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    /// Asks for the next batch of what the session needs, or ends the session.
    fn fetch_next(&mut self, peer: PeerId) {
        let Some(session) = self.syncs.get_mut(&peer) else {
            return;
        };
        let mut ids = Vec::new();
        while ids.len() < sync::MAX_FETCH_IDS {
            let Some(id) = session.need.pop_front() else {
                break;
            };
            ids.push(id);
        }
        if ids.is_empty() {
            self.syncs.remove(&peer);
            tracing::debug!(%peer, "sync session complete");
            return;
        }
        session.requested = ids.iter().copied().collect();
        self.send_in_session(peer, &sync::Request::Fetch(ids));
    }

    async fn on_sync(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                self.sync_stats.bytes_received += request.len() as u64;
                let response = self.answer_sync(peer, &request);
                let bytes = response.encode();
                self.sync_stats.bytes_sent += bytes.len() as u64;
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .inner_mut()
                    .send_response(channel, bytes);
            }
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        response,
                        request_id,
                    },
                ..
            } => {
                self.sync_stats.bytes_received += response.len() as u64;
                if self.peer_requests.remove(&request_id).is_some() {
                    self.on_peers_response(peer, &response);
                } else if self.is_pending(&peer, request_id) {
                    self.on_sync_response(peer, &response).await;
                } else {
                    tracing::debug!(%peer, "stale or unsolicited sync response dropped");
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                connection_id,
                request_id,
                error,
            } if self.peer_requests.remove(&request_id).is_some() => {
                tracing::debug!(%peer, %error, "peer exchange request failed");
                match error {
                    request_response::OutboundFailure::Io(e)
                        if e.kind() == std::io::ErrorKind::InvalidData =>
                    {
                        self.penalize(peer, "peer exchange answer over the size limit");
                    }
                    // Nobody's fault: unless another ask is on its way, ask again on
                    // the peer's next connection, or at once if the request went down
                    // with a connection the peer has already replaced.
                    _ if self.peer_requests.values().any(|p| *p == peer) => {}
                    request_response::OutboundFailure::ConnectionClosed
                        if self.swarm.is_connected(&peer) =>
                    {
                        self.peers_asked.remove(&peer);
                        self.ask_peers(peer);
                    }
                    // The ask may have gone down with a connection that is closing
                    // (its failure can come before the close is seen, and as an I/O
                    // error): ask again on another if that connection closes.
                    _ => {
                        self.peers_asked.remove(&peer);
                        if self.swarm.is_connected(&peer) {
                            self.peers_lost.insert(peer, connection_id);
                        }
                    }
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                error,
                request_id,
                ..
            } if self.is_pending(&peer, request_id) => {
                tracing::debug!(%peer, %error, "sync request failed");
                match error {
                    // Our codec's verdict on an answer over the size limit.
                    request_response::OutboundFailure::Io(e)
                        if e.kind() == std::io::ErrorKind::InvalidData =>
                    {
                        self.penalize(peer, "sync response over the size limit");
                    }
                    // A dropped link or a timeout is nobody's fault. A peer that
                    // restarted can be back on a new connection before the request on
                    // its old one fails: try again on the next tick rather than wait
                    // for the next round.
                    _ => {
                        self.syncs.remove(&peer);
                        // One quick retry per peer per round, so a peer that keeps
                        // failing is asked no more often than the round asks everyone.
                        let now = Instant::now();
                        let last = self.sync_retried.get(&peer).copied();
                        if last.is_none_or(|t| now.duration_since(t) >= TICK * SYNC_EVERY) {
                            self.sync_retried.insert(peer, now);
                            self.sync_retry.insert(peer);
                        }
                    }
                }
            }
            request_response::Event::OutboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "a stale sync request failed");
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "sync request from a peer failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Counts one reconcile or peer-exchange request from `peer` in `reconciled`;
    /// whether it is over `MAX_RECONCILES_PER_WINDOW` in the current `RECONCILE_WINDOW`.
    fn over_reconcile_budget(
        reconciled: &mut HashMap<PeerId, (Instant, u32)>,
        peer: PeerId,
    ) -> bool {
        let now = Instant::now();
        let (start, count) = reconciled.entry(peer).or_insert((now, 0));
        if now.duration_since(*start) >= RECONCILE_WINDOW {
            (*start, *count) = (now, 0);
        }
        *count += 1;
        *count > MAX_RECONCILES_PER_WINDOW
    }

    /// The responder's side: stateless per message.
    fn answer_sync(&mut self, peer: PeerId, request: &[u8]) -> sync::Response {
        if self.engine.is_none() {
            return sync::Response::refused("not in a hood");
        }
        match sync::Request::decode(request) {
            Ok(sync::Request::Reconcile(query)) => {
                if Self::over_reconcile_budget(&mut self.reconciled, peer) {
                    return sync::Response::refused("too many reconcile requests; slow down");
                }
                let storage = match self.sync_set() {
                    Ok(s) => s,
                    Err(e) => return sync::Response::refused(&e),
                };
                match sync::respond(&storage, &query) {
                    Ok(reply) => sync::Response::Reconcile(reply),
                    Err(e) => {
                        self.penalize(peer, "malformed reconcile message");
                        sync::Response::refused(&e.to_string())
                    }
                }
            }
            Ok(sync::Request::Fetch(ids)) => {
                let now = std::time::Instant::now();
                match self.meter.check(peer, now) {
                    crate::meter::Verdict::Serve => {}
                    crate::meter::Verdict::SlowDown => {
                        return sync::Response::refused(
                            "over this node's byte budget for your fetches; slow down",
                        );
                    }
                    crate::meter::Verdict::Penalize => {
                        self.penalize(peer, "kept fetching over its byte budget");
                        return sync::Response::refused("over the byte budget");
                    }
                }
                match self.engine.as_ref().map(|e| e.fetch(&ids)) {
                    Some(Ok(elements)) => {
                        let bytes = elements.iter().map(|e| e.len() + 16).sum();
                        self.meter.spent(peer, bytes, now);
                        sync::Response::Items(elements)
                    }
                    Some(Err(e)) => sync::Response::refused(&e.to_string()),
                    None => sync::Response::refused("not in a hood"),
                }
            }
            Ok(sync::Request::Peers) => {
                if Self::over_reconcile_budget(&mut self.reconciled, peer) {
                    return sync::Response::refused("too many sync requests; slow down");
                }
                sync::Response::Peers(self.peer_book(peer))
            }
            Err(e) => {
                self.penalize(peer, "malformed sync request");
                sync::Response::refused(&e.to_string())
            }
        }
    }

    async fn on_sync_response(&mut self, peer: PeerId, bytes: &[u8]) {
        if !self.syncs.contains_key(&peer) {
            tracing::debug!(%peer, "unsolicited sync response dropped");
            return;
        }
        match sync::Response::decode(bytes) {
            Ok(sync::Response::Reconcile(reply)) => {
                let Some(session) = self.syncs.get_mut(&peer) else {
                    return;
                };
                let Some(initiator) = session.initiator.as_mut() else {
                    return self.penalize(peer, "reconcile answer after reconciliation ended");
                };
                match initiator.step(&reply) {
                    Ok(Some(next)) => self.send_in_session(peer, &sync::Request::Reconcile(next)),
                    Ok(None) => {
                        let mut need = initiator.take_need();
                        session.initiator = None;
                        // What we saw and dropped on purpose (expired, retracted) stays gone.
                        need.retain(|id| !self.store.seen(&ItemId(*id)).unwrap_or(false));
                        session.need = need.into();
                        self.fetch_next(peer);
                    }
                    Err(e) => self.penalize(peer, &e.to_string()),
                }
            }
            Ok(sync::Response::Items(elements)) => {
                let Some(session) = self.syncs.get(&peer) else {
                    return;
                };
                // An operation's id is its hash; an item's is its inner item's, known once
                // the envelope is opened, so items are checked as they are ingested.
                let unasked_op = elements.iter().any(|e| {
                    matches!(e, sync::Element::Op(b)
                        if !session.requested.contains(&porchlight_proto::OpId::of(b).0))
                });
                if unasked_op || elements.len() > session.requested.len() {
                    return self.penalize(peer, "sent items that were not asked for");
                }
                let requested = session.requested.clone();
                self.sync_stats.fetched += elements.len() as u64;
                if self.ingest_elements(elements, &requested).await {
                    return self.penalize(peer, "sent items that were not asked for");
                }
                self.fetch_next(peer);
            }
            Ok(sync::Response::Refused(why)) => {
                tracing::debug!(%peer, why, "peer refused sync");
                self.syncs.remove(&peer);
            }
            Ok(sync::Response::Peers(_)) => self.penalize(peer, "peers sent unasked"),
            Err(_) => self.penalize(peer, "malformed sync response"),
        }
    }

    /// Applies fetched elements: operations first (over as many passes as make progress,
    /// so a join arrives before the operations of the member it admits), then items.
    /// Applies fetched operations, then items. Returns whether an item that was not
    /// asked for arrived (a valid item is kept all the same: it is the hood's).
    async fn ingest_elements(
        &mut self,
        elements: Vec<sync::Element>,
        requested: &HashSet<[u8; 32]>,
    ) -> bool {
        let mut ops = Vec::new();
        let mut envelopes = Vec::new();
        for element in elements {
            match element {
                sync::Element::Op(b) => ops.push(b),
                sync::Element::Envelope(b) => envelopes.push(b),
            }
        }
        // One pass: an operation whose parents or author's join come later in the batch
        // waits in the engine and is applied when they are (`Engine::ingest_op`).
        let mut applied_ops = false;
        if let Some(engine) = &mut self.engine {
            for op in ops {
                match engine.ingest_op(&op, crate::now()) {
                    Ok(Ingest::NewOp(_)) => applied_ops = true,
                    Ok(Ingest::Rejected(reason)) => {
                        tracing::info!(%reason, "synced operation rejected")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "could not store a synced operation"),
                }
            }
        }
        if applied_ops {
            self.after_roster_change(false);
        }
        let mut unasked = false;
        for envelope in envelopes {
            match self.ingest(&envelope) {
                Ok(Ingest::New(a)) => unasked |= !requested.contains(&a.id.0),
                Ok(Ingest::Rejected(reason)) => tracing::debug!(%reason, "synced item rejected"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not store a synced item"),
            }
        }
        // Nothing here was acknowledged to anyone: flush off the event loop, one flush at
        // a time (a flush started later covers these writes too).
        if self.sync_flush.as_ref().is_none_or(|f| f.is_finished()) {
            let store = self.store.clone();
            self.sync_flush = Some(tokio::spawn(async move {
                if let Err(e) = store.flush().await {
                    tracing::warn!(error = %e, "flush after sync failed");
                }
            }));
        }
        unasked
    }

    async fn on_join(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        let request_response::Event::Message {
            peer,
            message:
                request_response::Message::Request {
                    request, channel, ..
                },
            ..
        } = event
        else {
            return;
        };
        if self.outsiders.contains_key(&peer) {
            self.joining_outsiders.insert(peer);
        }
        let response = match self.admit(&peer, &request).await {
            Ok(welcome) => {
                tracing::info!(%peer, "admitted a new member");
                JoinResponse::Welcome(Box::new(welcome))
            }
            Err(why) => {
                match self.join_refusals.take(std::time::Instant::now()) {
                    crate::logs::Take::Log { suppressed: 0 } => {
                        tracing::info!(%peer, %why, "refused a join request");
                    }
                    crate::logs::Take::Log { suppressed } => {
                        tracing::info!(%peer, %why, suppressed, "refused a join request (and `suppressed` more since the last such line)");
                    }
                    crate::logs::Take::Quiet => {}
                }
                JoinResponse::refused(&why)
            }
        };
        let admitted = matches!(response, JoinResponse::Welcome(_));
        if self
            .swarm
            .behaviour_mut()
            .join
            .send_response(channel, response.encode())
            .is_err()
        {
            tracing::debug!(%peer, "joiner went away before the welcome");
        }
        if admitted {
            self.after_roster_change(false);
            self.flush_outbox();
        }
    }

    async fn admit(
        &mut self,
        peer: &PeerId,
        request: &[u8],
    ) -> Result<porchlight_proto::Welcome, String> {
        let engine = self.engine.as_mut().ok_or("this node is not in a hood")?;
        let request =
            JoinRequest::decode(request).map_err(|e| format!("malformed request: {e}"))?;
        if net::peer_id(&request.joiner) != Some(*peer) {
            return Err("the request is not from the connected peer".into());
        }
        engine
            .admit(&request, crate::now(), &mut crate::rng())
            .await
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_outsider_makes_room_and_one_presenting_a_ticket_does_not() {
        let now = Instant::now();
        let (old, older, fresh) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut deadlines = HashMap::new();
        // Connected 10 s, 20 s and 1 s ago.
        deadlines.insert(old, now + OUTSIDER_GRACE - Duration::from_secs(10));
        deadlines.insert(older, now + OUTSIDER_GRACE - Duration::from_secs(20));
        deadlines.insert(fresh, now + OUTSIDER_GRACE - Duration::from_secs(1));
        let mut joining = HashSet::new();
        assert_eq!(idlest_outsider(&deadlines, &joining, now), Some(older));
        joining.insert(older);
        assert_eq!(idlest_outsider(&deadlines, &joining, now), Some(old));
        joining.insert(old);
        // Only one connected a second ago is left: not idle yet.
        assert_eq!(idlest_outsider(&deadlines, &joining, now), None);
    }

    #[test]
    fn only_a_ping_that_timed_out_closes_a_connection() {
        assert!(ping_timed_out(&ping::Failure::Timeout));
        let other = |kind| ping::Failure::Other {
            error: Box::new(std::io::Error::new(
                kind,
                "ping protocol negotiation timed out",
            )),
        };
        assert!(ping_timed_out(&other(std::io::ErrorKind::TimedOut)));
        assert!(!ping_timed_out(&other(std::io::ErrorKind::ConnectionReset)));
        assert!(!ping_timed_out(&other(std::io::ErrorKind::UnexpectedEof)));
        assert!(!ping_timed_out(&ping::Failure::Unsupported));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod dial_tests {
    use super::*;

    /// Start-up dials the most recently seen members first, at most `MAX_START_DIALS`,
    /// and members seen at the same time (or never) in an order that changes from start
    /// to start, not by peer id.
    #[test]
    fn start_up_dials_the_most_recently_seen_first_then_shuffled() {
        let peers: Vec<PeerId> = (0..MAX_START_DIALS + 20)
            .map(|_| PeerId::random())
            .collect();
        // Ten seen at distinct times, the rest never.
        let known = |peers: &[PeerId]| -> Vec<(u64, PeerId, Vec<Multiaddr>)> {
            peers
                .iter()
                .enumerate()
                .map(|(i, p)| (if i < 10 { 1000 + i as u64 } else { 0 }, *p, Vec::new()))
                .collect()
        };
        let mut orders = HashSet::new();
        for _ in 0..10 {
            let dials = start_dials(known(&peers), &mut crate::rng());
            assert_eq!(dials.len(), MAX_START_DIALS);
            let first: Vec<PeerId> = dials.iter().take(10).map(|d| d.0).collect();
            let expect: Vec<PeerId> = peers[..10].iter().rev().copied().collect();
            assert_eq!(first, expect, "the most recently seen first, newest first");
            orders.insert(dials.iter().skip(10).map(|d| d.0).collect::<Vec<_>>());
        }
        assert!(orders.len() > 1, "the never-seen are shuffled");
    }
}
