//! Catch-up sync: the messages two members exchange to find and fetch what one of them
//! misses, and the reconciliation state machine around negentropy (range-based set
//! reconciliation, Doug Hoyte's protocol, `negentropy` crate).
//!
//! The set a node reconciles is every live item it holds (by envelope id) and every
//! membership operation (by op id), each stamped with its signed `created_at`, so the same
//! element sorts the same everywhere. Two nodes in sync exchange one small message each
//! way; differences cost messages proportional to the difference, not the set.

use negentropy::{Id, Negentropy, NegentropyStorageVector};

/// The sealed set negentropy reconciles.
pub type NegentropyStorage = NegentropyStorageVector;
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError, FieldError};

/// negentropy's frame size limit for the initiator's messages (requests).
pub const FRAME_LIMIT: u64 = 60_000;
/// The responder's frames may be larger (responses are bounded by `MAX_RESPONSE_BYTES`):
/// a node that missed much gets the ids it needs in few rounds.
pub const RESPONSE_FRAME_LIMIT: u64 = 1_000_000;
/// Most ids in one fetch request.
pub const MAX_FETCH_IDS: usize = 512;
/// Largest sync request on the wire (a reconcile frame, or a fetch of `MAX_FETCH_IDS`).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Largest sync response on the wire; a responder stops adding items before this.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Most reconciliation rounds in one session.
pub const MAX_ROUNDS: usize = 64;
/// What a session between two nodes already in sync costs at most, in request and
/// response bytes together (checked by a test at 10,000 elements).
pub const IN_SYNC_BYTES: usize = 512;
/// Most elements a node reconciles (live items plus operations).
pub const MAX_SET: usize = 1_000_000;
/// Most members in one peer-exchange answer.
pub const MAX_PEERS: usize = 32;
/// Most addresses given for one member.
pub const MAX_PEER_ADDRS: usize = 4;
/// Longest address text (a multiaddr).
pub const MAX_ADDR_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A negentropy message from the session's initiator.
    Reconcile(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Ids the initiator wants: envelope ids or op ids.
    Fetch(Vec<[u8; 32]>),
    /// Peer exchange: where the responder last reached other members.
    Peers,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Reconcile(#[serde(with = "serde_bytes")] Vec<u8>),
    Items(Vec<Element>),
    Refused(String),
    /// The answer to `Request::Peers`: at most `MAX_PEERS` members.
    Peers(Vec<PeerAddrs>),
}

/// A member and the addresses (multiaddr text) it was reached at. Hearsay: the receiver
/// checks that `member` is a member, parses the addresses, and the transport's handshake
/// proves the key of whoever answers there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerAddrs {
    pub member: [u8; 32],
    pub addrs: Vec<String>,
}

/// One fetched element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Element {
    /// A membership operation: its signed item bytes.
    Op(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A live item: its envelope bytes.
    Envelope(#[serde(with = "serde_bytes")] Vec<u8>),
}

impl Element {
    pub fn len(&self) -> usize {
        match self {
            Element::Op(b) | Element::Envelope(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Request, CodecError> {
        let request: Request = codec::decode(bytes, MAX_REQUEST_BYTES)?;
        if let Request::Fetch(ids) = &request
            && ids.len() > MAX_FETCH_IDS
        {
            return Err(CodecError::Field(FieldError::TooLong {
                what: "fetch ids",
                len: ids.len(),
                max: MAX_FETCH_IDS,
            }));
        }
        Ok(request)
    }
}

impl Response {
    pub fn refused(why: &str) -> Response {
        Response::Refused(codec::refusal(why))
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Response, CodecError> {
        let response: Response = codec::decode(bytes, MAX_RESPONSE_BYTES + 1024)?;
        match &response {
            Response::Refused(why) => codec::check_refusal(why)?,
            Response::Peers(peers) => check_peers(peers)?,
            _ => {}
        }
        Ok(response)
    }
}

fn check_peers(peers: &[PeerAddrs]) -> Result<(), CodecError> {
    let too_long = |what, len, max| CodecError::Field(FieldError::TooLong { what, len, max });
    if peers.len() > MAX_PEERS {
        return Err(too_long("peers", peers.len(), MAX_PEERS));
    }
    for peer in peers {
        if peer.addrs.len() > MAX_PEER_ADDRS {
            return Err(too_long("peer addresses", peer.addrs.len(), MAX_PEER_ADDRS));
        }
        for addr in &peer.addrs {
            if addr.len() > MAX_ADDR_LEN {
                return Err(too_long("peer address", addr.len(), MAX_ADDR_LEN));
            }
            if !addr.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(CodecError::Field(FieldError::Invalid {
                    what: "peer address",
                    why: "only printable ASCII without spaces",
                }));
            }
        }
    }
    Ok(())
}

/// Why a sync session failed. Peer faults say so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("the peer sent a malformed reconciliation message: {0}")]
    PeerMalformed(String),
    #[error("the peer kept the session going past {MAX_ROUNDS} rounds")]
    TooManyRounds,
    #[error("the set has {0} elements, over the limit")]
    SetTooLarge(usize),
    #[error("reconciliation failed: {0}")]
    Local(String),
}

/// A sealed, sorted set of `(created_at, id)` for negentropy.
pub fn storage(
    elements: impl IntoIterator<Item = (u64, [u8; 32])>,
) -> Result<NegentropyStorageVector, SyncError> {
    let mut storage = NegentropyStorageVector::new();
    let mut n = 0;
    for (created_at, id) in elements {
        n += 1;
        if n > MAX_SET {
            return Err(SyncError::SetTooLarge(n));
        }
        storage
            .insert(created_at, Id::from_byte_array(id))
            .map_err(|e| SyncError::Local(e.to_string()))?;
    }
    storage
        .seal()
        .map_err(|e| SyncError::Local(e.to_string()))?;
    Ok(storage)
}

/// Answers one reconciliation message (the responder keeps no state between messages).
pub fn respond(storage: &NegentropyStorageVector, query: &[u8]) -> Result<Vec<u8>, SyncError> {
    let mut neg = Negentropy::borrowed(storage, RESPONSE_FRAME_LIMIT)
        .map_err(|e| SyncError::Local(e.to_string()))?;
    neg.reconcile(query)
        .map_err(|e| SyncError::PeerMalformed(e.to_string()))
}

/// The initiating side of a session: it drives the rounds and learns which ids it needs.
pub struct Initiator {
    neg: Negentropy<'static, NegentropyStorageVector>,
    rounds: usize,
    need: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiator")
            .field("rounds", &self.rounds)
            .field("need", &self.need.len())
            .finish_non_exhaustive()
    }
}

impl Initiator {
    /// Starts a session over `storage`; returns the first message to send.
    pub fn start(storage: NegentropyStorageVector) -> Result<(Initiator, Vec<u8>), SyncError> {
        let mut neg =
            Negentropy::owned(storage, FRAME_LIMIT).map_err(|e| SyncError::Local(e.to_string()))?;
        let first = neg
            .initiate()
            .map_err(|e| SyncError::Local(e.to_string()))?;
        Ok((
            Initiator {
                neg,
                rounds: 0,
                need: Vec::new(),
            },
            first,
        ))
    }

    /// Takes the responder's answer; returns the next message, or `None` when the sets
    /// are reconciled.
    pub fn step(&mut self, reply: &[u8]) -> Result<Option<Vec<u8>>, SyncError> {
        self.rounds += 1;
        if self.rounds > MAX_ROUNDS {
            return Err(SyncError::TooManyRounds);
        }
        let mut have = Vec::new();
        let mut need = Vec::new();
        let next = self
            .neg
            .reconcile_with_ids(reply, &mut have, &mut need)
            .map_err(|e| SyncError::PeerMalformed(e.to_string()))?;
        if self.need.len() + need.len() > MAX_SET {
            return Err(SyncError::SetTooLarge(self.need.len() + need.len()));
        }
        self.need.extend(need.iter().map(|id| *id.as_bytes()));
        Ok(next)
    }

    /// Ids the peer has and we lack, found so far.
    pub fn take_need(&mut self) -> Vec<[u8; 32]> {
        std::mem::take(&mut self.need)
    }

    pub fn rounds(&self) -> usize {
        self.rounds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(range: std::ops::Range<u32>) -> Vec<(u64, [u8; 32])> {
        range
            .map(|i| {
                let mut id = [0u8; 32];
                id[..4].copy_from_slice(&i.to_be_bytes());
                id[31] = 7;
                (u64::from(i) * 10, id)
            })
            .collect()
    }

    /// Runs a whole session; returns (needed ids, bytes exchanged).
    fn session(mine: &[(u64, [u8; 32])], theirs: &[(u64, [u8; 32])]) -> (Vec<[u8; 32]>, usize) {
        let their_storage = storage(theirs.iter().copied()).unwrap();
        let (mut init, mut message) =
            Initiator::start(storage(mine.iter().copied()).unwrap()).unwrap();
        let mut bytes = 0;
        loop {
            bytes += Request::Reconcile(message.clone()).encode().len();
            let reply = respond(&their_storage, &message).unwrap();
            bytes += Response::Reconcile(reply.clone()).encode().len();
            match init.step(&reply).unwrap() {
                Some(next) => message = next,
                None => break,
            }
        }
        let mut need = init.take_need();
        need.sort();
        (need, bytes)
    }

    #[test]
    fn initiator_learns_exactly_what_it_misses() {
        let mine = set(0..900);
        let theirs = set(100..1000);
        let (need, _) = session(&mine, &theirs);
        let mut expected: Vec<[u8; 32]> = set(900..1000).into_iter().map(|(_, id)| id).collect();
        expected.sort();
        assert_eq!(need, expected);
    }

    #[test]
    fn sets_in_sync_cost_two_small_messages() {
        let all = set(0..10_000);
        let (need, bytes) = session(&all, &all);
        assert!(need.is_empty());
        // One frame each way: 16 range fingerprints out, one "all done" back.
        assert!(bytes < IN_SYNC_BYTES, "{bytes} bytes");
    }

    #[test]
    fn garbage_from_the_peer_is_an_error_not_a_panic() {
        let (mut init, _) = Initiator::start(storage(set(0..10)).unwrap()).unwrap();
        // (`[0x61]` alone is a valid, empty answer: "nothing more to reconcile".)
        for garbage in [&b""[..], &[0x00; 40], &[0x70, 0x00], &[0x61, 0x00, 0x05]] {
            assert!(init.step(garbage).is_err(), "{garbage:?}");
        }
        let storage = storage(set(0..10)).unwrap();
        assert!(respond(&storage, &[0x61, 0x02, 0xff]).is_err());
    }

    #[test]
    fn responder_that_never_converges_is_cut_off_after_max_rounds() {
        // A hostile responder answers every round with the answer to the first message
        // against an unrelated large set: fingerprints never match, rounds never end.
        let hostile = storage(set(5_000..9_000)).unwrap();
        let (mut init, first) = Initiator::start(storage(set(0..4_000)).unwrap()).unwrap();
        let reply = respond(&hostile, &first).unwrap();
        let mut rounds = 0;
        let err = loop {
            rounds += 1;
            assert!(rounds <= MAX_ROUNDS + 1, "the initiator did not stop");
            match init.step(&reply) {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("a never-converging peer was taken as in sync"),
                Err(e) => break e,
            }
        };
        assert_eq!(err, SyncError::TooManyRounds);
    }

    #[test]
    fn oversize_fetch_is_refused_by_the_codec() {
        let request = Request::Fetch(vec![[0u8; 32]; MAX_FETCH_IDS + 1]);
        assert!(Request::decode(&request.encode()).is_err());
        let ok = Request::Fetch(vec![[0u8; 32]; MAX_FETCH_IDS]);
        assert_eq!(Request::decode(&ok.encode()), Ok(ok));
    }

    #[test]
    fn peer_exchange_answers_are_bounded_by_the_codec() {
        let peer = |addrs: Vec<String>| PeerAddrs {
            member: [7; 32],
            addrs,
        };
        let addr = "/ip4/127.0.0.1/tcp/4001".to_owned();
        let ok = Response::Peers(vec![peer(vec![addr.clone(); MAX_PEER_ADDRS]); MAX_PEERS]);
        assert_eq!(Response::decode(&ok.encode()), Ok(ok));
        assert_eq!(
            Request::decode(&Request::Peers.encode()),
            Ok(Request::Peers)
        );
        for bad in [
            Response::Peers(vec![peer(vec![addr.clone()]); MAX_PEERS + 1]),
            Response::Peers(vec![peer(vec![addr.clone(); MAX_PEER_ADDRS + 1])]),
            Response::Peers(vec![peer(vec![
                "/dns/".to_owned() + &"a".repeat(MAX_ADDR_LEN),
            ])]),
            Response::Peers(vec![peer(vec!["/ip4/1.2.3.4/tcp/1 x".to_owned()])]),
            Response::Peers(vec![peer(vec!["/ip4/1.2.3.4\n".to_owned()])]),
        ] {
            assert!(Response::decode(&bad.encode()).is_err(), "{bad:?}");
        }
    }
}
