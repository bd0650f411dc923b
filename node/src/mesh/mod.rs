//! The mesh: the libp2p side. This file holds the composed behaviour, the transports,
//! the join protocol's codec, conversions between member ids and peer ids, and the
//! address rules peer exchange applies. Its parts:
//! - [`gate`]: `MembersOnly<B>` runs a protocol only on connections to current members.
//! - [`quiet`]: `Quiet<B>`, gossipsub's heartbeat-free idle.
//! - [`links`]: every open connection per peer, to renew a member's replaced link.
//! - [`meter`]: each member's byte budget for our fetch answers and clip chunks.
//! - [`instrument`]: process-wide byte and gossip counters for benchmarks.
//!
//! Routing lives in the event loop (`crate::node`); rules live in `proto`.

pub mod gate;
pub mod instrument;
pub mod links;
pub mod meter;
pub mod quiet;

use std::collections::HashSet;
use std::convert::Infallible;
use std::io;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, PortUse};
use libp2p::core::{Endpoint, Transport, upgrade};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, autonat, connection_limits, dcutr, gossipsub,
    identify, identity, mdns, noise, ping, relay, request_response, tcp, yamux,
};
use porchlight_proto::limits::{MAX_ENVELOPE_BYTES, MAX_WELCOME_BYTES};
use porchlight_proto::membership::MAX_JOIN_REQUEST_BYTES;
use porchlight_proto::{ItemId, MemberId, MemberKeys};

use crate::mesh::gate::MembersOnly;
use crate::mesh::instrument::Counted;
use crate::mesh::quiet::Quiet;

pub const JOIN_PROTOCOL: StreamProtocol = StreamProtocol::new("/porchlight/join/2");
/// Sync and clip messages are framed (a 4-byte length first) since `/3` and `/2`: a
/// stream cut short (a connection closed on purpose resets its open streams, and yamux
/// reports a reset as the end of the stream) is then a failed request, never a
/// malformed message its sender is blamed for. Nodes also speak the unframed versions
/// before them, offered second, so a hood can upgrade one node at a time.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/porchlight/sync/3");
pub const SYNC_PROTOCOL_UNFRAMED: StreamProtocol = StreamProtocol::new("/porchlight/sync/2");
pub const CLIP_PROTOCOL: StreamProtocol = StreamProtocol::new("/porchlight/clip/2");
pub const CLIP_PROTOCOL_UNFRAMED: StreamProtocol = StreamProtocol::new("/porchlight/clip/1");
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// One clip chunk (256 KiB) must arrive within this.
pub const CLIP_TIMEOUT: Duration = Duration::from_secs(30);
pub const IDENTIFY_PROTOCOL: &str = "/porchlight/id/1";
/// Connections are kept this long without traffic: neighborhoods are quiet.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
pub const MAX_CONNECTIONS: u32 = 256;
pub const MAX_CONNECTIONS_PER_PEER: u32 = 4;
pub const MAX_PENDING_INCOMING: u32 = 32;
/// Every connection is pinged this often, and a ping not answered within
/// `PING_TIMEOUT` fails; the node closes a connection on its second timeout in a row
/// (libp2p's ping lets the first pass silently), about a minute after the other end went
/// silent. Without it a TCP connection whose other end lost power or its network looks
/// open until TCP gives up on a write (many minutes), and a node that comes back meets
/// it (`links`). The timeout is libp2p's default: a pong can wait behind a sync answer
/// of megabytes on a slow home uplink.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);
pub const PING_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("transport: {0}")]
    Transport(String),
    #[error("gossipsub configuration: {0}")]
    Gossipsub(String),
}

/// The libp2p key of a member: the same ed25519 key.
pub fn keypair(keys: &MemberKeys) -> identity::Keypair {
    let (secret, _) = keys.to_secrets();
    identity::Keypair::ed25519_from_bytes(*secret)
        .expect("a 32-byte ed25519 secret is always a valid libp2p ed25519 key")
}

pub fn peer_id(member: &MemberId) -> Option<PeerId> {
    let key = identity::ed25519::PublicKey::try_from_bytes(&member.0).ok()?;
    Some(PeerId::from_public_key(&identity::PublicKey::from(key)))
}

/// The member behind a peer id (ed25519 peer ids embed the key).
pub fn member_id(peer: &PeerId) -> Option<MemberId> {
    let mh: libp2p::multihash::Multihash<64> = (*peer).into();
    if mh.code() != 0x00 {
        return None;
    }
    let key = identity::PublicKey::try_decode_protobuf(mh.digest()).ok()?;
    Some(MemberId(key.try_into_ed25519().ok()?.to_bytes()))
}

/// One message a stream direction, bounded in each direction: framed (a 4-byte
/// big-endian length, then the message) on `SYNC_PROTOCOL` and `CLIP_PROTOCOL`, raw up
/// to the end of the stream on the others (join, and the unframed versions).
#[derive(Debug, Clone)]
pub struct BytesCodec {
    max_request: u64,
    max_response: u64,
}

impl BytesCodec {
    pub fn sync() -> BytesCodec {
        BytesCodec {
            max_request: porchlight_proto::sync::MAX_REQUEST_BYTES as u64,
            max_response: porchlight_proto::sync::MAX_RESPONSE_BYTES as u64 + 1024,
        }
    }

    pub fn clip() -> BytesCodec {
        BytesCodec {
            max_request: porchlight_proto::clip::MAX_REQUEST_BYTES as u64,
            max_response: porchlight_proto::clip::MAX_RESPONSE_BYTES as u64,
        }
    }

    pub fn join() -> BytesCodec {
        BytesCodec {
            max_request: MAX_JOIN_REQUEST_BYTES as u64,
            max_response: MAX_WELCOME_BYTES as u64 + 1024,
        }
    }
}

/// Whether messages on `protocol` are framed.
fn framed(protocol: &StreamProtocol) -> bool {
    *protocol == SYNC_PROTOCOL || *protocol == CLIP_PROTOCOL
}

/// Reads one framed message of at most `max` bytes. A stream that ends within the frame
/// is `UnexpectedEof` (cut short: nobody's fault); a length over `max` is
/// `InvalidData` (the sender's), read no further.
async fn read_framed<T: AsyncRead + Unpin + Send>(io: &mut T, max: u64) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u64::from(u32::from_be_bytes(len));
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message over the size limit",
        ));
    }
    let mut buf = Vec::new();
    io.take(len).read_to_end(&mut buf).await?;
    if (buf.len() as u64) < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the stream ended within a message",
        ));
    }
    Ok(buf)
}

async fn write_framed<T: AsyncWrite + Unpin + Send>(io: &mut T, message: &[u8]) -> io::Result<()> {
    let len = u32::try_from(message.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(message).await
}

/// Reads one unframed message: everything up to the end of the stream, at most `max`
/// bytes.
///
/// A stream that ends before any byte is `UnexpectedEof`, not an empty message: no
/// message of ours is empty, and it is what an honest peer's stream looks like when
/// the peer drops a request unanswered (its node stopping, or its handler giving up) and
/// yamux reports the reset as the end of the stream. An empty "answer" is then a failed
/// request, not a malformed one the peer would be cut off for. (A stream cut after some
/// bytes cannot be told from a short message here: the framed protocols can.)
async fn read_bounded<T: AsyncRead + Unpin + Send>(io: &mut T, max: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(max + 1).read_to_end(&mut buf).await?;
    if buf.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the stream ended before a message",
        ));
    }
    if buf.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message over the size limit",
        ));
    }
    Ok(buf)
}

impl request_response::Codec for BytesCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, p: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        if framed(p) {
            read_framed(io, self.max_request).await
        } else {
            read_bounded(io, self.max_request).await
        }
    }

    async fn read_response<T>(&mut self, p: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        if framed(p) {
            read_framed(io, self.max_response).await
        } else {
            read_bounded(io, self.max_response).await
        }
    }

    async fn write_request<T>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        if framed(p) {
            write_framed(io, &req).await
        } else {
            io.write_all(&req).await
        }
    }

    async fn write_response<T>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        if framed(p) {
            write_framed(io, &res).await
        } else {
            io.write_all(&res).await
        }
    }
}

/// Refuses connections from removed members, from peers this node blocked, and (until
/// the time given) from peers penalized for misbehaving.
#[derive(Debug, Default)]
pub struct Gate {
    pub denied: HashSet<PeerId>,
    pub blocked: HashSet<PeerId>,
    pub penalized: std::collections::HashMap<PeerId, std::time::Instant>,
}

#[derive(Debug)]
pub struct Denied(PeerId);

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "peer {} is removed, blocked or penalized", self.0)
    }
}

impl std::error::Error for Denied {}

impl Gate {
    /// Whether `peer` is cut off for misbehaving now.
    pub fn is_penalized(&self, peer: &PeerId) -> bool {
        self.penalized
            .get(peer)
            .is_some_and(|until| *until > std::time::Instant::now())
    }

    /// Whether a connection with `peer` would be refused now.
    pub fn refuses(&self, peer: &PeerId) -> bool {
        self.denied.contains(peer) || self.blocked.contains(peer) || self.is_penalized(peer)
    }

    fn check(&self, peer: PeerId) -> Result<THandler<Self>, ConnectionDenied> {
        if self.refuses(&peer) {
            return Err(ConnectionDenied::new(Denied(peer)));
        }
        Ok(dummy::ConnectionHandler)
    }
}

impl NetworkBehaviour for Gate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check(peer)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check(peer)
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

/// Field order matters: connection checks run in this order, so the gate comes first.
#[derive(NetworkBehaviour)]
#[allow(missing_debug_implementations)]
pub struct Behaviour {
    pub gate: Gate,
    pub limits: connection_limits::Behaviour,
    pub gossipsub: MembersOnly<gossipsub::Behaviour>,
    // The behaviours below have work to do on a connection now and then, not on every
    // gossip message: `Quiet` polls their handlers only when they were woken (all but
    // the relay client's, see `quiet`), and boxes their events.
    pub join: Quiet<request_response::Behaviour<BytesCodec>>,
    pub sync: Quiet<MembersOnly<request_response::Behaviour<BytesCodec>>>,
    /// Clip transfer: members only, like sync.
    pub clips: Quiet<MembersOnly<request_response::Behaviour<BytesCodec>>>,
    pub identify: Quiet<identify::Behaviour>,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub relay_client: Quiet<relay::client::Behaviour>,
    pub dcutr: Quiet<dcutr::Behaviour>,
    pub autonat: Quiet<autonat::Behaviour>,
    pub ping: Quiet<ping::Behaviour>,
}

/// Gossipsub as the design asks: anonymous (no author, source or seqno on the wire),
/// content-addressed ids, the application validates every message, peer scoring on.
/// Public so that benchmarks compare against plain gossipsub with exactly these settings.
pub fn gossipsub(topic: &gossipsub::TopicHash) -> Result<gossipsub::Behaviour, NetError> {
    let config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(ItemId::of_envelope(&m.data).0.to_vec())
        })
        .validate_messages()
        .max_transmit_size(MAX_ENVELOPE_BYTES + 4096)
        .heartbeat_interval(Duration::from_secs(1))
        // Neighborhoods are small: a mesh of 6 reaches tens of nodes in two hops.
        .mesh_n(6)
        .mesh_n_low(4)
        .mesh_n_high(12)
        .mesh_outbound_min(2)
        .build()
        .map_err(|e| NetError::Gossipsub(e.to_string()))?;
    let mut behaviour =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config)
            .map_err(|e| NetError::Gossipsub(e.to_string()))?;
    let mut params = gossipsub::PeerScoreParams::default();
    params.topics.insert(
        topic.clone(),
        gossipsub::TopicScoreParams {
            topic_weight: 1.0,
            // Quiet hoods send few messages: do not punish peers for delivering few.
            mesh_message_deliveries_weight: 0.0,
            mesh_failure_penalty_weight: 0.0,
            // Every Reject verdict costs the peer that sent it.
            invalid_message_deliveries_weight: -100.0,
            invalid_message_deliveries_decay: 0.5,
            ..Default::default()
        },
    );
    // Many members may share a NAT'd address, and tests run on loopback.
    params.ip_colocation_factor_weight = 0.0;
    behaviour
        .with_peer_score(params, gossipsub::PeerScoreThresholds::default())
        .map_err(NetError::Gossipsub)?;
    Ok(behaviour)
}

/// TCP (no Nagle) with Noise and yamux, as libp2p's `with_tcp` builds it, with the raw
/// socket's bytes counted in [`crate::mesh::instrument::traffic`].
pub fn tcp_transport(
    key: &identity::Keypair,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, Box<dyn std::error::Error + Send + Sync>> {
    Ok(
        tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
            .map(|stream, _| Counted::new(stream))
            .upgrade(upgrade::Version::V1Lazy)
            .authenticate(noise::Config::new(key)?)
            .multiplex(yamux::Config::default())
            .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
            .boxed(),
    )
}

/// Builds the swarm for `keys`, gossiping on `topic`.
pub fn swarm(
    keys: &MemberKeys,
    topic: &gossipsub::TopicHash,
    mdns: bool,
) -> Result<Swarm<Behaviour>, NetError> {
    let transport = |e: &dyn std::fmt::Display| NetError::Transport(e.to_string());
    let topic = topic.clone();
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair(keys))
        .with_tokio()
        .with_quic()
        .with_other_transport(tcp_transport)
        .map_err(|e| transport(&e))?
        .with_dns()
        .map_err(|e| transport(&e))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| transport(&e))?
        .with_behaviour(|key, relay_client| {
            let peer = key.public().to_peer_id();
            let mdns = if mdns {
                Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer)?)
            } else {
                None
            };
            Ok(Behaviour {
                gate: Gate::default(),
                limits: connection_limits::Behaviour::new(
                    connection_limits::ConnectionLimits::default()
                        .with_max_established(Some(MAX_CONNECTIONS))
                        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
                        .with_max_pending_incoming(Some(MAX_PENDING_INCOMING)),
                ),
                gossipsub: MembersOnly::new(crate::mesh::instrument::with_gossip_metrics(
                    gossipsub(&topic)
                        .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?,
                    peer.to_string(),
                )),
                join: Quiet::new(request_response::Behaviour::with_codec(
                    BytesCodec::join(),
                    [(JOIN_PROTOCOL, request_response::ProtocolSupport::Full)],
                    request_response::Config::default().with_request_timeout(JOIN_TIMEOUT),
                )),
                sync: Quiet::new(MembersOnly::new(request_response::Behaviour::with_codec(
                    BytesCodec::sync(),
                    [
                        (SYNC_PROTOCOL, request_response::ProtocolSupport::Full),
                        (
                            SYNC_PROTOCOL_UNFRAMED,
                            request_response::ProtocolSupport::Full,
                        ),
                    ],
                    request_response::Config::default()
                        .with_request_timeout(SYNC_TIMEOUT)
                        .with_max_concurrent_streams(16),
                ))),
                clips: Quiet::new(MembersOnly::new(request_response::Behaviour::with_codec(
                    BytesCodec::clip(),
                    [
                        (CLIP_PROTOCOL, request_response::ProtocolSupport::Full),
                        (
                            CLIP_PROTOCOL_UNFRAMED,
                            request_response::ProtocolSupport::Full,
                        ),
                    ],
                    request_response::Config::default()
                        .with_request_timeout(CLIP_TIMEOUT)
                        .with_max_concurrent_streams(8),
                ))),
                identify: Quiet::new(identify::Behaviour::new(
                    identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                        .with_agent_version(format!("porchlight/{}", env!("CARGO_PKG_VERSION"))),
                )),
                mdns: Toggle::from(mdns),
                // Its handler needs polls nothing wakes it for: boxed events only.
                relay_client: Quiet::eager(relay_client),
                dcutr: Quiet::new(dcutr::Behaviour::new(peer)),
                autonat: Quiet::new(autonat::Behaviour::new(peer, autonat::Config::default())),
                // Eager: after answering a ping, its handler waits for the next one on a
                // future it has not polled yet (no waker registered).
                ping: Quiet::eager(ping::Behaviour::new(
                    ping::Config::new()
                        .with_interval(PING_INTERVAL)
                        .with_timeout(PING_TIMEOUT),
                )),
            })
        })
        .map_err(|e| transport(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build();
    Ok(swarm)
}

/// How far an address reaches: this machine, a private network, or anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Loopback,
    Private,
    Public,
}

/// The reach of an address, by its IP (a DNS name counts as public).
pub fn scope(addr: &Multiaddr) -> Scope {
    for p in addr.iter() {
        match p {
            Protocol::Ip4(ip) if ip.is_loopback() => return Scope::Loopback,
            Protocol::Ip4(ip) if ip.is_private() || ip.is_link_local() => return Scope::Private,
            Protocol::Ip6(ip) if ip.is_loopback() => return Scope::Loopback,
            // Unique local (fc00::/7) and link-local (fe80::/10).
            Protocol::Ip6(ip)
                if (ip.segments()[0] & 0xfe00) == 0xfc00
                    || (ip.segments()[0] & 0xffc0) == 0xfe80 =>
            {
                return Scope::Private;
            }
            Protocol::Ip4(_) | Protocol::Ip6(_) => return Scope::Public,
            Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) => return Scope::Public,
            _ => {}
        }
    }
    Scope::Public
}

/// Whether an address heard by peer exchange is one a node should dial: an IP or DNS
/// name (not unspecified), then TCP or QUIC, optionally through a relay; nothing else.
pub fn dialable(addr: &Multiaddr) -> bool {
    let mut host = false;
    let mut transport = false;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(ip) if !ip.is_unspecified() && !ip.is_broadcast() => host = true,
            Protocol::Ip6(ip) if !ip.is_unspecified() => host = true,
            Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) => host = true,
            Protocol::Tcp(port) if port != 0 => transport = true,
            Protocol::Udp(port) if port != 0 => {}
            Protocol::QuicV1 => transport = true,
            Protocol::P2p(_) | Protocol::P2pCircuit => {}
            _ => return false,
        }
    }
    host && transport
}

#[cfg(test)]
mod tests {
    use super::*;
    use porchlight_proto::testkit::SeededRng;

    #[test]
    fn a_framed_message_cut_short_is_nobodys_fault_and_one_over_its_bound_is_refused() {
        let read = |bytes: &[u8], max: u64| {
            futures::executor::block_on(read_framed(&mut futures::io::Cursor::new(bytes), max))
        };
        let frame = |message: &[u8]| {
            let mut out = Vec::new();
            futures::executor::block_on(write_framed(&mut out, message)).unwrap();
            out
        };
        let whole = frame(b"hello");
        assert_eq!(whole[..4], [0, 0, 0, 5]);
        assert_eq!(read(&whole, 8).unwrap(), b"hello");
        // Cut anywhere (before the length is whole, or within the message).
        for cut in 0..whole.len() {
            let e = read(&whole[..cut], 8).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}");
        }
        // A length over the bound is refused before anything more is read.
        let e = read(&frame(&[7; 9]), 8).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let e = read(&[0xff, 0xff, 0xff, 0xff], 8).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // An empty frame is a message (a malformed one: the sender's fault).
        assert_eq!(read(&frame(&[]), 8).unwrap(), Vec::<u8>::new());
        assert!(framed(&SYNC_PROTOCOL) && framed(&CLIP_PROTOCOL));
        assert!(!framed(&SYNC_PROTOCOL_UNFRAMED) && !framed(&JOIN_PROTOCOL));
    }

    #[test]
    fn a_message_is_never_empty_and_never_over_its_bound() {
        let read = |bytes: &[u8], max: u64| {
            futures::executor::block_on(read_bounded(&mut futures::io::Cursor::new(bytes), max))
        };
        let eof = read(&[], 8).unwrap_err();
        assert_eq!(eof.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(read(&[1], 8).unwrap(), vec![1]);
        assert_eq!(read(&[7; 8], 8).unwrap(), vec![7; 8]);
        let over = read(&[7; 9], 8).unwrap_err();
        assert_eq!(over.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn address_scope_and_dialability() {
        let a = |s: &str| s.parse::<Multiaddr>().unwrap();
        assert_eq!(scope(&a("/ip4/127.0.0.1/tcp/1")), Scope::Loopback);
        assert_eq!(scope(&a("/ip4/192.168.1.9/tcp/1")), Scope::Private);
        assert_eq!(scope(&a("/ip4/10.0.0.2/udp/1/quic-v1")), Scope::Private);
        assert_eq!(scope(&a("/ip6/fd00::1/tcp/1")), Scope::Private);
        assert_eq!(scope(&a("/ip6/::1/tcp/1")), Scope::Loopback);
        assert_eq!(scope(&a("/ip4/203.0.113.7/tcp/1")), Scope::Public);
        assert_eq!(scope(&a("/dns4/example.org/tcp/1")), Scope::Public);
        for ok in [
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/203.0.113.7/udp/4001/quic-v1",
            "/dns4/example.org/tcp/4001/p2p/12D3KooWQLK9T3zqGsZ2iwUthNpGXRcCzeKqkNyvUZaFPdQcFxw2",
        ] {
            assert!(dialable(&a(ok)), "{ok}");
        }
        for bad in [
            "/ip4/0.0.0.0/tcp/4001",
            "/ip4/127.0.0.1/tcp/0",
            "/ip4/127.0.0.1/udp/4001",
            "/tcp/4001",
            "/ip4/127.0.0.1/tcp/80/http",
            "/ip4/127.0.0.1/tcp/4001/ws",
            "/unix/tmp%2Fsock",
        ] {
            assert!(!dialable(&a(bad)), "{bad}");
        }
    }

    #[test]
    fn member_and_peer_ids_convert_both_ways() {
        let keys = MemberKeys::generate(&mut SeededRng::new(1));
        let peer = keypair(&keys).public().to_peer_id();
        assert_eq!(peer_id(&keys.id()), Some(peer));
        assert_eq!(member_id(&peer), Some(keys.id()));
    }
}
