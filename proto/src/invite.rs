//! One-time invite tickets and their text form.
//!
//! A ticket lets its holder *ask* to join; it holds no key. Text form: bech32m with the
//! human-readable part `porchlight`, so every code starts `porchlight1`, uses only
//! lowercase letters and digits, and carries a BCH checksum that catches typos. Upper
//! case (as a QR code in alphanumeric mode gives) is accepted too; mixed case is not.

use std::fmt;

use bech32::primitives::decode::{CheckedHrpstring, CheckedHrpstringError};
use bech32::{Bech32m, Hrp};
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError, FieldError, check_len, check_text};
use crate::domain;
use crate::hood::HoodId;
use crate::identity::{MemberId, MemberKeys, Signature};
use crate::limits::MAX_NAME_BYTES;

pub const PREFIX: &str = "porchlight1";
const HRP: &str = "porchlight";
/// Bech32m codes are at most 1023 characters: this keeps a ticket well inside.
pub const MAX_TICKET_BYTES: usize = 600;
pub const MAX_BOOTSTRAP_ADDRS: usize = 4;
pub const MAX_ADDR_BYTES: usize = 80;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TicketId(pub [u8; 16]);

impl fmt::Debug for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TicketId({})", codec::hex(&self.0))
    }
}

/// What a ticket says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub hood: HoodId,
    pub hood_name: String,
    pub inviter: MemberId,
    pub id: TicketId,
    pub expires_at: u64,
    /// Where to reach the hood: multiaddrs without `/p2p/` (the inviter's peer id is
    /// derived from `inviter`). Opaque text to `proto`; the node parses them.
    pub bootstrap: Vec<String>,
}

impl Ticket {
    fn check(&self) -> Result<(), FieldError> {
        check_text("hood name", &self.hood_name, MAX_NAME_BYTES, false)?;
        check_len(
            "bootstrap addresses",
            self.bootstrap.len(),
            MAX_BOOTSTRAP_ADDRS,
        )?;
        for addr in &self.bootstrap {
            check_text("bootstrap address", addr, MAX_ADDR_BYTES, false)?;
            if addr.chars().any(char::is_whitespace) {
                return Err(FieldError::Invalid {
                    what: "bootstrap address",
                    why: "holds whitespace",
                });
            }
        }
        Ok(())
    }
}

/// A ticket as it travels: the exact body bytes and the inviter's signature over
/// `TICKET ‖ body`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTicket {
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub signature: Signature,
}

/// Why an invite was refused. Each says what a person can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    #[error("not a Porchlight invite: it should start with `porchlight1`")]
    WrongPrefix,
    #[error("the invite has a typo (checksum mismatch): check it character by character")]
    Checksum,
    #[error("the invite is not well formed: {0}")]
    Format(String),
    #[error("the invite is damaged: {0}")]
    Malformed(CodecError),
    #[error("the invite has an invalid field: {0}")]
    Field(FieldError),
    #[error("the invite's signature does not verify: it was altered or forged")]
    BadSignature,
    #[error("the invite expired at {expired_at} (Unix time); ask for a new one")]
    Expired { expired_at: u64 },
    #[error("the invite is {0} bytes, over the limit: fewer or shorter addresses")]
    TooLarge(usize),
    #[error("the signing key is not the ticket's inviter")]
    WrongInviter,
}

impl SignedTicket {
    /// Signs `ticket` as its inviter.
    pub fn issue(keys: &MemberKeys, ticket: &Ticket) -> Result<SignedTicket, InviteError> {
        if keys.id() != ticket.inviter {
            return Err(InviteError::WrongInviter);
        }
        ticket.check().map_err(InviteError::Field)?;
        let body = codec::encode(ticket);
        let signature = keys.sign(&[domain::TICKET, &body]);
        let signed = SignedTicket { body, signature };
        let len = codec::encode(&signed).len();
        if len > MAX_TICKET_BYTES {
            return Err(InviteError::TooLarge(len));
        }
        Ok(signed)
    }

    /// Decodes and checks the body and the inviter's signature (not the expiry).
    pub fn open(&self) -> Result<Ticket, InviteError> {
        let ticket: Ticket =
            codec::decode(&self.body, MAX_TICKET_BYTES).map_err(InviteError::Malformed)?;
        ticket.check().map_err(InviteError::Field)?;
        if !ticket
            .inviter
            .verify(&[domain::TICKET, &self.body], &self.signature)
        {
            return Err(InviteError::BadSignature);
        }
        Ok(ticket)
    }

    /// The `porchlight1…` code.
    pub fn to_code(&self) -> String {
        let hrp = Hrp::parse(HRP).expect("`porchlight` is a valid human-readable part");
        bech32::encode_lower::<Bech32m>(hrp, &codec::encode(self))
            .expect("a ticket of at most MAX_TICKET_BYTES fits a bech32m code")
    }

    /// Parses a code into the signed ticket, without checking it.
    pub fn from_code(code: &str) -> Result<SignedTicket, InviteError> {
        let code = code.trim();
        if !code.to_ascii_lowercase().starts_with(PREFIX) {
            return Err(InviteError::WrongPrefix);
        }
        let checked = CheckedHrpstring::new::<Bech32m>(code).map_err(|e| match e {
            CheckedHrpstringError::Checksum(_) => InviteError::Checksum,
            other => InviteError::Format(other.to_string()),
        })?;
        if checked.hrp().as_str().to_ascii_lowercase() != HRP {
            return Err(InviteError::WrongPrefix);
        }
        let bytes: Vec<u8> = checked.byte_iter().collect();
        codec::decode(&bytes, MAX_TICKET_BYTES).map_err(InviteError::Malformed)
    }
}

/// Parses and checks an invite code as a person pasted it: format, checksum, signature
/// and expiry at `now`. Whether the ticket was already used is for the roster to say.
pub fn parse(code: &str, now: u64) -> Result<(SignedTicket, Ticket), InviteError> {
    let signed = SignedTicket::from_code(code)?;
    let ticket = signed.open()?;
    if ticket.expires_at < now {
        return Err(InviteError::Expired {
            expired_at: ticket.expires_at,
        });
    }
    Ok((signed, ticket))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::SeededRng;

    fn sample(rng: &mut SeededRng) -> (MemberKeys, Ticket) {
        let keys = MemberKeys::generate(rng);
        let ticket = Ticket {
            hood: HoodId(rng.bytes()),
            hood_name: "Elm Street".into(),
            inviter: keys.id(),
            id: TicketId(rng.bytes()),
            expires_at: 10_000,
            bootstrap: vec![
                "/ip4/127.0.0.1/tcp/4001".into(),
                "/ip4/127.0.0.1/udp/4001/quic-v1".into(),
            ],
        };
        (keys, ticket)
    }

    #[test]
    fn code_round_trips_and_is_lowercase_alphanumeric() {
        let mut rng = SeededRng::new(5);
        let (keys, ticket) = sample(&mut rng);
        let code = SignedTicket::issue(&keys, &ticket).unwrap().to_code();
        assert!(code.starts_with(PREFIX));
        assert!(
            code.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        let (_, back) = parse(&code, 9_999).unwrap();
        assert_eq!(back, ticket);
        // A QR scanner in alphanumeric mode gives upper case.
        assert_eq!(parse(&code.to_uppercase(), 9_999).unwrap().1, ticket);
    }

    #[test]
    fn typo_is_caught_by_the_checksum() {
        let mut rng = SeededRng::new(5);
        let (keys, ticket) = sample(&mut rng);
        let code = SignedTicket::issue(&keys, &ticket).unwrap().to_code();
        let mut chars: Vec<char> = code.chars().collect();
        let i = chars.len() / 2;
        chars[i] = if chars[i] == 'q' { 'p' } else { 'q' };
        let typo: String = chars.into_iter().collect();
        assert_eq!(parse(&typo, 0), Err(InviteError::Checksum));
    }

    #[test]
    fn wrong_prefix_and_mixed_case_are_refused() {
        assert_eq!(
            parse("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", 0),
            Err(InviteError::WrongPrefix)
        );
        let mut rng = SeededRng::new(5);
        let (keys, ticket) = sample(&mut rng);
        let code = SignedTicket::issue(&keys, &ticket).unwrap().to_code();
        let mixed = format!("{}{}", &code[..20], code[20..].to_uppercase());
        assert!(matches!(parse(&mixed, 0), Err(InviteError::Format(_))));
    }

    #[test]
    fn expired_ticket_is_refused() {
        let mut rng = SeededRng::new(5);
        let (keys, ticket) = sample(&mut rng);
        let code = SignedTicket::issue(&keys, &ticket).unwrap().to_code();
        assert_eq!(
            parse(&code, 10_001),
            Err(InviteError::Expired { expired_at: 10_000 })
        );
    }

    #[test]
    fn forged_ticket_is_refused() {
        let mut rng = SeededRng::new(5);
        let (keys, mut ticket) = sample(&mut rng);
        let mallory = MemberKeys::generate(&mut rng);
        // Mallory signs a ticket that names Alice as the inviter.
        let body = codec::encode(&ticket);
        let forged = SignedTicket {
            body,
            signature: mallory.sign(&[domain::TICKET, &codec::encode(&ticket)]),
        };
        assert_eq!(parse(&forged.to_code(), 0), Err(InviteError::BadSignature));
        // A genuine ticket with a field changed after signing.
        let mut signed = SignedTicket::issue(&keys, &ticket).unwrap();
        ticket.expires_at = u64::MAX;
        signed.body = codec::encode(&ticket);
        assert_eq!(parse(&signed.to_code(), 0), Err(InviteError::BadSignature));
    }

    #[test]
    fn largest_allowed_ticket_fits_a_code_and_longer_fields_are_refused() {
        let mut rng = SeededRng::new(5);
        let (keys, mut ticket) = sample(&mut rng);
        ticket.bootstrap = vec!["/dns4/".to_string() + &"a".repeat(MAX_ADDR_BYTES - 6); 4];
        ticket.hood_name = "n".repeat(MAX_NAME_BYTES);
        ticket.expires_at = u64::MAX;
        let code = SignedTicket::issue(&keys, &ticket).unwrap().to_code();
        assert_eq!(parse(&code, 0).unwrap().1, ticket);
        ticket.bootstrap = vec!["x".repeat(MAX_ADDR_BYTES + 1)];
        assert!(matches!(
            SignedTicket::issue(&keys, &ticket),
            Err(InviteError::Field(FieldError::TooLong { .. }))
        ));
    }
}
