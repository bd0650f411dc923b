//! The running node: a cloneable [`Node`] handle that sends commands on a bounded channel
//! to one event loop, which owns the swarm and the engine. The event loop routes; the
//! rules are `porchlight_proto`'s and the state changes are the engine's.
//!
//! # Layout
//! - this file: the node's bounds, errors, [`Config`], what the handle returns, and the
//!   `EventLoop`'s state (every field says which part uses it).
//! - `handle`: the [`Node`] handle, [`Node::start`] and [`run`].
//! - `router`: the event loop's run, tick and swarm events, routed to the parts below.
//! - `commands`: the handle's commands as the event loop answers them.
//! - `mesh`: peers and links, gossip verdicts, peer exchange, penalties;
//!   `peer_exchange`: `PeerAsks`, what peer exchange remembers about its asks;
//!   `outsiders`: `Outsiders`, connected non-members and their deadlines;
//!   `budgets`: `PeerWindows`, per-peer counts in windows (reconciles, ignored
//!   messages); `renewals`: `Renewals`, members whose replaced links are being made
//!   again.
//! - `catch_up`: catch-up sync sessions, as initiator and as responder.
//! - `clip_requests`: clip transfer on the swarm, both sides.
//! - `join`: joining with a ticket, and admitting those who present one.
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, PublishError};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
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

use crate::clips::sharing::{ClipAsk, ClipPolicy, Sharing, SharingError};
use crate::engine::{Engine, EngineError, Ingest};
use crate::identity::{self, IdentityError};
use crate::mesh::links::Links;
use crate::mesh::{self, Behaviour, BehaviourEvent, NetError};
use crate::store::{Store, StoreError};

mod budgets;
mod catch_up;
mod clip_requests;
mod commands;
mod handle;
mod join;
mod outsiders;
mod peer_exchange;
mod peers;
mod renewals;
mod router;
mod syncs;

use budgets::PeerWindows;
use handle::{Command, PendingAck};
pub use handle::{Node, run};
use outsiders::{Arrival, Outsiders};
use peer_exchange::PeerAsks;
use renewals::Renewals;
use syncs::Syncs;

/// Lifetime of a report when the request does not say: the design's default. The API
/// and the hub both post with it.
pub const DEFAULT_TTL_SECS: u64 = 72 * 3600;

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
    /// Where the page is served to phones on the home LAN, over TLS (`None`: nowhere,
    /// the default). The binary starts it with the API.
    pub web_lan: Option<std::net::SocketAddr>,
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
            web_lan: None,
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
    /// Our own report that asked who has seen it: who has (`seen`). `None` for every
    /// other item, and on the event stream.
    pub seen: Option<crate::seen::SeenBy>,
    /// A neighbor's report that asked who has seen it: whether this member said so.
    pub acknowledged: bool,
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
    /// threshold (`PeerScoreThresholds::default()`, see `mesh::gossipsub`) gossipsub drops
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
    /// Connected non-members, their deadlines, and which asked to join (`outsiders`).
    outsiders: Outsiders,
    /// Log lines about refused join requests: anyone who reaches the port can send
    /// those, so a few a minute are logged and the rest counted.
    join_refusals: crate::logs::Budget,
    /// When each member was last connected or last sent an item (members only).
    last_seen: HashMap<MemberId, u64>,
    /// Addresses peers told us they listen on (identify), bounded by connected peers.
    addresses: HashMap<PeerId, Vec<Multiaddr>>,
    join: Option<JoinState>,
    listen: Vec<Multiaddr>,
    /// Catch-up sync: sessions, retries, the kept sync set, reconcile budgets (`syncs`).
    syncs: Syncs,
    /// Peer exchange: who was asked, the asks outstanding, the asks lost with a
    /// closing connection (`peer_exchange`).
    peer_asks: PeerAsks,
    /// Every open connection per peer, oldest first: tells a member that came back while
    /// its old connection lingered (`links`).
    links: Links,
    /// Members whose links are being renewed, and when each was last (`renewals`).
    renewals: Renewals,
    /// The remote address of each connected peer's latest connection: what reach of
    /// addresses peer exchange may tell it (`mesh::Scope`).
    remote: HashMap<PeerId, Multiaddr>,
    /// The configured bootstrap addresses, dialed at start and when alone.
    bootstrap: Vec<Multiaddr>,
    /// Per connected peer: the start of its ignore window and how many messages it
    /// relayed there that were ignored (`IGNORE_BUDGET`).
    ignored: PeerWindows,
    /// Removed members still connected, and when to cut them off (`REMOVAL_NOTICE`).
    cut_off: HashMap<PeerId, Instant>,
    /// Outbox entries gossipsub refused with full queues (bounded by `MAX_OUTBOX`).
    stuck: HashSet<u64>,
    data_dir: PathBuf,
    /// The owner's side of clip sharing.
    sharing: Sharing,
    /// Each member's byte budget for our fetch answers and clip chunks.
    meter: crate::mesh::meter::Meter,
    /// How often to tell systemd's watchdog the loop runs, and when it was last told.
    watchdog: Option<(Duration, Instant)>,
    /// Outstanding clip requests we sent (bounded by the behaviour's timeout and by the
    /// API's concurrent fetches).
    clip_replies: HashMap<request_response::OutboundRequestId, Reply<clip::Response>>,
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
    use super::peers::start_dials;
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
