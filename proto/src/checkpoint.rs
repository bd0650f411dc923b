//! The compact `Welcome`'s checkpoint: the state the admitter's fold reached over a set
//! of operations, for a joiner to start from while sync brings the log itself.
//!
//! A hood's log grows with every rekey (one wrap per member), so after a thousand rekeys
//! in a hood of a thousand the whole log is about a hundred megabytes: no joiner could
//! start from it. A checkpoint is what the fold derives (members, removals, used tickets,
//! epochs and who holds them): 0.38 MiB for that hood. The joiner relies on it only
//! provisionally: it reads, but neither posts nor changes the roster, until sync has
//! brought every operation the checkpoint covers; then it folds them and checks the
//! claim (`docs/protocol.md` § Joining).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError, check_text};
use crate::identity::{ExchangeKey, MemberId};
use crate::ids::OpId;
use crate::invite::TicketId;
use crate::keys::EpochId;
use crate::limits::{MAX_MEMBERS, MAX_NAME_BYTES, MAX_OPS, MAX_WELCOME_BYTES};
use crate::membership::{Epoch, Member, MembershipError, State};

/// Most (epoch, holder) pairs a checkpoint's clean epochs may name together: twice the
/// hood issue #14 designs for (1000 members after 1000 rekeys, none removed). Each pair
/// is a set entry in the joiner's roster, held in several copies while it folds; without
/// a bound, 8 MiB of bitmaps (4000 members, 14,000 made-up epochs) asked for 56 million, about 6 GB.
/// An honest roster names far fewer: a removal taints every epoch its target held, so
/// only epochs since the last removal keep a bitmap.
pub const MAX_CHECKPOINT_HOLDERS: usize = 2_000_000;

/// The state of the fold over `covered`, as the admitter computed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Every operation the state is the fold of, in increasing id order.
    pub covered: Vec<OpId>,
    /// The heads of that set, in increasing id order.
    pub heads: Vec<OpId>,
    /// The members, in increasing id order.
    pub members: Vec<CheckpointMember>,
    /// Removed members, in increasing id order.
    pub removed: Vec<MemberId>,
    /// Each used ticket and whom it admitted, in increasing ticket order.
    pub tickets: Vec<(TicketId, MemberId)>,
    /// Every epoch, in increasing id order.
    pub epochs: Vec<CheckpointEpoch>,
    /// How many operations took effect (the seniority the next joiner gets).
    pub effective: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMember {
    pub id: MemberId,
    pub exchange_key: ExchangeKey,
    pub name: String,
    pub admin: bool,
    pub joined_at: u64,
    pub invited_by: Option<MemberId>,
    pub seniority: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointEpoch {
    pub id: EpochId,
    pub generation: u64,
    pub created_at: u64,
    pub holders: Holders,
}

/// Who holds an epoch's key. Everyone who ever held one is a member or removed, and a
/// removed member never returns, so an epoch is either clean (all its holders are
/// members) or tainted for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Holders {
    /// A clean epoch: one bit per member, in the order of `members`, least significant
    /// bit of the first byte first.
    Members(Vec<u8>),
    /// A removed member who holds the key: the epoch is never sealed under again, and who
    /// else holds it no longer matters.
    Tainted(MemberId),
}

fn bad(what: &'static str) -> MembershipError {
    MembershipError::BadCheckpoint(what)
}

fn increasing<T: Ord>(items: impl IntoIterator<Item = T>) -> bool {
    let mut last: Option<T> = None;
    for item in items {
        if last.as_ref().is_some_and(|l| *l >= item) {
            return false;
        }
        last = Some(item);
    }
    true
}

impl Checkpoint {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, CodecError> {
        codec::decode(bytes, MAX_WELCOME_BYTES)
    }
}

impl State {
    /// The checkpoint of this state, the fold over `covered` whose heads are `heads`.
    pub(crate) fn checkpoint(
        &self,
        covered: impl IntoIterator<Item = OpId>,
        heads: impl IntoIterator<Item = OpId>,
    ) -> Checkpoint {
        let index: BTreeMap<&MemberId, usize> = self
            .members
            .keys()
            .enumerate()
            .map(|(i, id)| (id, i))
            .collect();
        let epochs = self
            .epochs
            .values()
            .map(|e| {
                let holders = match e.holders.iter().find(|h| !self.members.contains_key(h)) {
                    Some(outsider) => Holders::Tainted(*outsider),
                    None => {
                        let mut bits = vec![0u8; self.members.len().div_ceil(8)];
                        for h in &e.holders {
                            if let Some(&i) = index.get(h) {
                                bits[i / 8] |= 1 << (i % 8);
                            }
                        }
                        Holders::Members(bits)
                    }
                };
                CheckpointEpoch {
                    id: e.id,
                    generation: e.generation,
                    created_at: e.created_at,
                    holders,
                }
            })
            .collect();
        Checkpoint {
            covered: covered.into_iter().collect(),
            heads: heads.into_iter().collect(),
            members: self
                .members
                .values()
                .map(|m| CheckpointMember {
                    id: m.id,
                    exchange_key: m.exchange_key,
                    name: m.name.clone(),
                    admin: m.admin,
                    joined_at: m.joined_at,
                    invited_by: m.invited_by,
                    seniority: self.seniority.get(&m.id).copied().unwrap_or_default() as u64,
                })
                .collect(),
            removed: self.removed.iter().copied().collect(),
            tickets: self.tickets.iter().map(|(t, m)| (*t, *m)).collect(),
            epochs,
            effective: (self.offset + self.effective.len()) as u64,
        }
    }

    /// The state a checkpoint describes, after checking that it is one a fold could
    /// reach: sorted, bounded, consistent. (Whether it is *the* fold of its operations
    /// is checked once they are all here.)
    pub(crate) fn from_checkpoint(c: &Checkpoint) -> Result<State, MembershipError> {
        if c.covered.is_empty() || c.covered.len() > MAX_OPS || !increasing(&c.covered) {
            return Err(bad("its operation list is empty, too long or out of order"));
        }
        if c.heads.is_empty()
            || !increasing(&c.heads)
            || c.heads.iter().any(|h| c.covered.binary_search(h).is_err())
        {
            return Err(bad("its heads are not among its operations"));
        }
        if c.members.is_empty()
            || c.members.len() > MAX_MEMBERS
            || !increasing(c.members.iter().map(|m| m.id))
        {
            return Err(bad("its member list is empty, too long or out of order"));
        }
        if c.removed.len() > MAX_OPS || !increasing(&c.removed) {
            return Err(bad("its removed list is too long or out of order"));
        }
        if c.tickets.len() > MAX_OPS || !increasing(c.tickets.iter().map(|(t, _)| *t)) {
            return Err(bad("its ticket list is too long or out of order"));
        }
        if c.epochs.is_empty()
            || c.epochs.len() > MAX_OPS
            || !increasing(c.epochs.iter().map(|e| e.id))
        {
            return Err(bad("its epoch list is empty, too long or out of order"));
        }
        if c.effective > c.covered.len() as u64 {
            return Err(bad("more operations took effect than it covers"));
        }
        let removed: BTreeSet<MemberId> = c.removed.iter().copied().collect();
        let mut state = State {
            removed,
            offset: c.effective as usize,
            ..State::default()
        };
        for m in &c.members {
            check_text("member name", &m.name, MAX_NAME_BYTES, false)
                .map_err(MembershipError::Field)?;
            if !m.exchange_key.is_usable() {
                return Err(MembershipError::BadExchangeKey);
            }
            if state.removed.contains(&m.id) {
                return Err(bad("it lists a member as removed"));
            }
            state.seniority.insert(m.id, m.seniority as usize);
            state.members.insert(
                m.id,
                Member {
                    id: m.id,
                    exchange_key: m.exchange_key,
                    name: m.name.clone(),
                    admin: m.admin,
                    joined_at: m.joined_at,
                    invited_by: m.invited_by,
                },
            );
        }
        for (ticket, joiner) in &c.tickets {
            if !state.members.contains_key(joiner) && !state.removed.contains(joiner) {
                return Err(bad("a ticket admitted someone it does not list"));
            }
            state.tickets.insert(*ticket, *joiner);
        }
        let ids: Vec<MemberId> = state.members.keys().copied().collect();
        let mut held = 0usize;
        for e in &c.epochs {
            if e.generation == 0 {
                return Err(bad("an epoch has generation 0"));
            }
            let holders = match &e.holders {
                Holders::Tainted(who) if state.removed.contains(who) => BTreeSet::from([*who]),
                Holders::Tainted(_) => return Err(bad("a tainted epoch names no removed member")),
                Holders::Members(bits) => {
                    if bits.len() != ids.len().div_ceil(8)
                        || (!ids.len().is_multiple_of(8)
                            && bits.last().is_some_and(|b| b >> (ids.len() % 8) != 0))
                    {
                        return Err(bad("an epoch's holder bitmap has the wrong length"));
                    }
                    held += bits.iter().map(|b| b.count_ones() as usize).sum::<usize>();
                    if held > MAX_CHECKPOINT_HOLDERS {
                        return Err(bad("its epochs name too many holders"));
                    }
                    ids.iter()
                        .enumerate()
                        .filter(|(i, _)| bits[i / 8] & (1 << (i % 8)) != 0)
                        .map(|(_, id)| *id)
                        .collect()
                }
            };
            state.epochs.insert(
                e.id,
                Epoch {
                    id: e.id,
                    generation: e.generation,
                    created_at: e.created_at,
                    holders,
                },
            );
        }
        Ok(state)
    }
}
