//! The [`Node`] handle: a cloneable sender of commands on a bounded channel, each with
//! a `oneshot` reply; [`Node::start`], which opens the data dir and spawns the event
//! loop; [`run`]; and the task that acknowledges posts once they are durable.

use super::*;

/// Posts stored and published, waiting for the flush that makes them durable.
pub(super) const ACK_QUEUE: usize = COMMAND_QUEUE;

pub(super) type PendingAck = (ItemId, Reply<ItemId>);

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
pub(super) enum Command {
    Post(Box<Body>, Reply<ItemId>),
    Invite(Duration, Reply<String>),
    Remove(MemberId, Reply<crate::engine::Removal>),
    /// Mutes (`true`) or unmutes a member on this node; answers whether it changed.
    Mute(MemberId, bool, Reply<bool>),
    Promote(MemberId, Reply<()>),
    Rename(String, Reply<()>),
    /// This node's person has seen a neighbor's report that asked (`seen`).
    Seen(ItemId, Reply<crate::engine::Acked>),
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
    /// Sets the owner's clip policy from now on (the caller saved it to the config).
    SetClipPolicy(ClipPolicy, Reply<ClipPolicy>),
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
        let mut swarm = mesh::swarm(&keys, &topic.hash(), config.mdns)?;
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
            store_check: None,
            // A node that stopped before it repaired a bad wrap repairs at start.
            keys_due: locked_out,
            muted,
            history_watch: None,
            last_item_at,
            events: events.clone(),
            outsiders: Outsiders::default(),
            last_seen,
            join_refusals: crate::logs::Budget::new(JOIN_REFUSAL_LOGS, LOG_WINDOW),
            addresses: HashMap::new(),
            join: None,
            listen: Vec::new(),
            syncs: Syncs::default(),
            peer_asks: PeerAsks::default(),
            links: Links::default(),
            renewals: Renewals::default(),
            remote: HashMap::new(),
            bootstrap: config.bootstrap.clone(),
            ignored: PeerWindows::default(),
            cut_off: HashMap::new(),
            stuck: Default::default(),
            data_dir: config.data_dir.clone(),
            sharing: Sharing::open(config.clip_policy, &config.data_dir),
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

    /// Acknowledges that this node's person has seen `report`, a neighbor's report that
    /// asked who has seen it: sends the ack once (`seen`).
    pub async fn seen(&self, report: ItemId) -> Result<crate::engine::Acked, NodeError> {
        self.ask(|r| Command::Seen(report, r)).await
    }

    /// Renames this member in the hood (a signed operation every neighbor applies).
    pub async fn rename(&self, name: String) -> Result<(), NodeError> {
        self.ask(|r| Command::Rename(name, r)).await
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

    /// Sets the owner's clip policy for the running node (the page's settings; the
    /// caller writes it to porchlight.toml for the next start).
    pub async fn set_clip_policy(&self, policy: ClipPolicy) -> Result<ClipPolicy, NodeError> {
        self.ask(|r| Command::SetClipPolicy(policy, r)).await
    }

    /// Whether the store takes writes, members connected, the last item's arrival.
    pub async fn health(&self) -> Result<Health, NodeError> {
        self.ask(Command::Health).await
    }

    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }
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
