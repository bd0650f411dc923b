//! A member's display name, changed: a `Rename` operation sets its author's name, as
//! neighbors read it (`members`, the feed's author names, the page). Like `Rotate` it
//! has no target, so a member can rename only itself, and it is signed by its identity
//! like every other operation. The name is what the fold gives at the end of its order:
//! two renames an author signed concurrently are settled the same at every node (by the
//! fold's order), and each costs the author an operation of its budget
//! ([`crate::limits::MAX_OPS_PER_MEMBER`]), so renames cannot flood the log.
//!
//! Names are not unique in a hood (nor were they at joining): a member can take a
//! neighbor's name. Neighbors tell members apart by fingerprint, which every view of a
//! member shows beside the name (docs/threat-model.md).

use serde::{Deserialize, Serialize};

use crate::codec::{FieldError, check_text};
use crate::identity::{MemberId, MemberKeys};
use crate::ids::OpId;
use crate::limits::MAX_NAME_BYTES;
use crate::membership::{MembershipError, Op, Roster, State};
use crate::signed::Item;

/// A member's new display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rename {
    pub parents: Vec<OpId>,
    pub created_at: u64,
    pub name: String,
}

/// Structure: a name by the same rules as a joiner's (length, no control or invisible
/// reordering characters), and not blank: a member renamed to nothing would be a
/// fingerprint only.
pub(crate) fn verify(r: &Rename) -> Result<(), MembershipError> {
    check_name(&r.name).map_err(MembershipError::Field)
}

/// Whether `name` may be a member's new name (what [`Roster::rename`] and validation
/// check), for callers that say so before asking.
pub fn check_name(name: &str) -> Result<(), FieldError> {
    check_text("name", name, MAX_NAME_BYTES, false)?;
    if name.trim().is_empty() {
        return Err(FieldError::Empty { what: "name" });
    }
    Ok(())
}

/// Applies a rename (its author a member: `State::check` saw to it).
pub(crate) fn apply(state: &mut State, author: &MemberId, r: &Rename) {
    if let Some(m) = state.members.get_mut(author) {
        m.name = r.name.clone();
    }
}

impl Roster {
    /// Makes a `Rename` of `keys`' member to `name`, refused before signing if the name
    /// breaks the rules or the member may not act (not a member, or removed).
    pub fn rename(&self, keys: &MemberKeys, name: &str, now: u64) -> Result<Item, MembershipError> {
        self.ensure_settled()?;
        let op = Rename {
            parents: self.parents_for(&keys.id()),
            created_at: now,
            name: name.to_owned(),
        };
        verify(&op)?;
        self.sign_allowed(keys, Op::Rename(op))
    }
}
