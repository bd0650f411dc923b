//! The one codec: postcard over serde, with a size cap checked before any work and
//! trailing bytes rejected, so that every message has exactly one encoding we accept.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why bytes could not be decoded. Always the sender's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("message is {len} bytes, over the {max}-byte limit")]
    Oversize { len: usize, max: usize },
    #[error("malformed message: {0}")]
    Malformed(postcard::Error),
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    #[error("message is not in canonical encoding")]
    NonCanonical,
    #[error("invalid field: {0}")]
    Field(FieldError),
}

/// Encodes a value. Our types have no unsized sequences, so this cannot fail.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("postcard encoding of a sized type into a Vec cannot fail")
}

/// Decodes exactly one `T` from `bytes`: at most `max` bytes, no trailing bytes.
///
/// Decoding is canonical: bytes that decode but are not exactly what `encode` gives for
/// the value (an overlong varint, say) are refused, so one value has one accepted encoding
/// and content-addressed ids cannot be varied by re-encoding.
pub fn decode<T: Serialize + DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, CodecError> {
    if bytes.len() > max {
        return Err(CodecError::Oversize {
            len: bytes.len(),
            max,
        });
    }
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(CodecError::Malformed)?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes(rest.len()));
    }
    if encode(&value) != bytes {
        return Err(CodecError::NonCanonical);
    }
    Ok(value)
}

/// Serde for byte arrays longer than 32, encoded as a tuple: exactly `N` raw bytes on the
/// wire, no length prefix (postcard's encoding of `[u8; N]` for `N <= 32`, made uniform).
pub(crate) mod fixed {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::ser::SerializeTuple;
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(N)?;
        for byte in bytes {
            tuple.serialize_element(byte)?;
        }
        tuple.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        deserializer: D,
    ) -> Result<[u8; N], D::Error> {
        struct ArrayVisitor<const N: usize>;
        impl<'de, const N: usize> Visitor<'de> for ArrayVisitor<N> {
            type Value = [u8; N];
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "{N} bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; N], A::Error> {
                let mut out = [0u8; N];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| Error::invalid_length(i, &self))?;
                }
                Ok(out)
            }
        }
        deserializer.deserialize_tuple(N, ArrayVisitor::<N>)
    }
}

/// Lower-case hex, for ids in logs, docs and the API.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

/// Parses exactly `N` bytes of hex (either case).
pub fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != N * 2 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = (nibble(s[2 * i])? << 4) | nibble(s[2 * i + 1])?;
    }
    Some(out)
}

/// A `Vec` length check shared by every bounded field.
pub(crate) fn check_len(what: &'static str, len: usize, max: usize) -> Result<(), FieldError> {
    if len > max {
        Err(FieldError::TooLong { what, len, max })
    } else {
        Ok(())
    }
}

/// Invisible characters that reorder or hide text (bidi overrides and isolates, zero-width
/// characters, the BOM): refused so that a report cannot display as something else.
fn is_deceptive(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// A text field a person wrote: bounded, and free of control characters so that it cannot
/// drive a neighbor's terminal (ANSI escapes) or forge extra lines in a log, and of
/// invisible reordering characters.
pub(crate) fn check_text(
    what: &'static str,
    text: &str,
    max: usize,
    allow_newlines: bool,
) -> Result<(), FieldError> {
    check_len(what, text.len(), max)?;
    if text
        .chars()
        .any(|c| (c.is_control() && !(allow_newlines && c == '\n')) || is_deceptive(c))
    {
        return Err(FieldError::ControlCharacter { what });
    }
    Ok(())
}

/// Longest refusal reason a peer may send (join and sync answers).
pub const MAX_REFUSAL_BYTES: usize = 200;

/// A refusal reason fit for the wire: control and invisible characters replaced by
/// spaces, cut to [`MAX_REFUSAL_BYTES`] on a character boundary, so that it always passes
/// [`check_refusal`] on the other side.
pub fn refusal(why: &str) -> String {
    let mut out = String::new();
    for c in why.chars() {
        let c = if c.is_control() || is_deceptive(c) {
            ' '
        } else {
            c
        };
        if out.len() + c.len_utf8() > MAX_REFUSAL_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

/// The check a received refusal reason must pass.
pub fn check_refusal(why: &str) -> Result<(), CodecError> {
    check_text("refusal", why, MAX_REFUSAL_BYTES, false).map_err(CodecError::Field)
}

/// A field that breaks a bound or a rule of its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("{what} is {len} long, over the limit of {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what} holds a control or invisible formatting character")]
    ControlCharacter { what: &'static str },
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what}: {why}")]
    Invalid {
        what: &'static str,
        why: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encode(&(7u32, [1u8; 4]));
        bytes.push(0);
        assert_eq!(
            decode::<(u32, [u8; 4])>(&bytes, 100),
            Err(CodecError::TrailingBytes(1))
        );
    }

    #[test]
    fn overlong_varint_is_rejected() {
        // 5 as a two-byte varint (0x85 0x00) instead of 0x05.
        assert_eq!(
            decode::<u32>(&[0x85, 0x00], 10),
            Err(CodecError::NonCanonical)
        );
        assert_eq!(decode::<u32>(&[0x05], 10), Ok(5));
    }

    #[test]
    fn oversize_is_rejected_before_decoding() {
        let bytes = vec![0u8; 101];
        assert_eq!(
            decode::<Vec<u8>>(&bytes, 100),
            Err(CodecError::Oversize { len: 101, max: 100 })
        );
    }

    #[test]
    fn hex_round_trips() {
        let b = [0u8, 1, 0xab, 0xff];
        assert_eq!(hex(&b), "0001abff");
        assert_eq!(parse_hex::<4>("0001ABff"), Some(b));
        assert_eq!(parse_hex::<4>("0001abf"), None);
        assert_eq!(parse_hex::<4>("0001abfg"), None);
    }
}
