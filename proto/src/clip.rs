//! Clip transfer: how a member fetches a doorbell clip from the member whose report
//! carries its hash, in bounded chunks, and checks every byte against that hash.
//!
//! The messages travel on a members-only request-response protocol (the node's
//! `MembersOnly` gate), inside the connection's Noise encryption. The owner decides per
//! request by its policy (`members`, `ask`, `never`); only clips referenced by the
//! owner's own live reports are ever served, so a clip that is only in the library (a
//! draft's, say) never leaves home.
//!
//! [`Download`] is the requester's state machine: it takes each response, says what to
//! write where, and refuses anything that does not fit the `ClipRef` (size, order) or,
//! at the end, the SHA-256.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::codec::{self, CodecError};

/// Bytes in one chunk (the last one may be shorter).
pub const CHUNK_BYTES: usize = 256 * 1024;
/// The largest clip the protocol moves: seconds of doorbell video, not hours.
pub const MAX_CLIP_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Largest request on the wire.
pub const MAX_REQUEST_BYTES: usize = 64;
/// Largest response on the wire: a full chunk and its header.
pub const MAX_RESPONSE_BYTES: usize = CHUNK_BYTES + 64;

/// "Send me the bytes of the clip with this hash, from `offset`."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub sha256: [u8; 32],
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Bytes `offset .. offset + bytes.len()` of a clip of `total` bytes.
    Chunk {
        total: u64,
        offset: u64,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// The owner's policy is `ask` and the owner has not allowed this request yet.
    Pending,
    /// The owner does not share this clip with this member.
    Refused,
    /// The owner has no such clip in any of its live reports.
    NotFound,
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Request, CodecError> {
        let request: Request = codec::decode(bytes, MAX_REQUEST_BYTES)?;
        if request.offset >= MAX_CLIP_BYTES {
            return Err(CodecError::Field(codec::FieldError::Invalid {
                what: "offset",
                why: "beyond the largest clip",
            }));
        }
        Ok(request)
    }
}

impl Response {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes and checks the chunk's own bounds (size, range within `total`).
    pub fn decode(bytes: &[u8]) -> Result<Response, CodecError> {
        let response: Response = codec::decode(bytes, MAX_RESPONSE_BYTES)?;
        if let Response::Chunk {
            total,
            offset,
            bytes,
        } = &response
        {
            let invalid = |why| {
                Err(CodecError::Field(codec::FieldError::Invalid {
                    what: "chunk",
                    why,
                }))
            };
            if *total > MAX_CLIP_BYTES {
                return invalid("clip larger than the limit");
            }
            if bytes.len() > CHUNK_BYTES {
                return invalid("chunk larger than the limit");
            }
            if offset
                .checked_add(bytes.len() as u64)
                .is_none_or(|end| end > *total)
            {
                return invalid("chunk beyond the end of the clip");
            }
        }
        Ok(response)
    }

    /// The chunk of `clip` (all of its bytes, or a window read by the caller) that
    /// answers a request at `offset`: `read(offset, len)` returns those bytes.
    pub fn chunk(total: u64, offset: u64, read: impl FnOnce(u64, usize) -> Vec<u8>) -> Response {
        let len = total.saturating_sub(offset).min(CHUNK_BYTES as u64) as usize;
        Response::Chunk {
            total,
            offset,
            bytes: read(offset, len),
        }
    }
}

/// Why a download stops.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownloadError {
    #[error("the owner sent a chunk at {got}, expected {expected}")]
    OutOfOrder { expected: u64, got: u64 },
    #[error("the owner says the clip is {got} bytes, the report says {expected}")]
    WrongSize { expected: u64, got: u64 },
    #[error("the owner sent an empty chunk before the end")]
    Empty,
    #[error("the bytes received do not match the clip's SHA-256: discarded")]
    HashMismatch,
    #[error("the owner does not share this clip")]
    Refused,
    #[error("the owner has no such clip in its live reports")]
    NotFound,
}

/// What to do after a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Append these bytes (already hashed), then ask for `next`.
    Write { bytes: Vec<u8>, next: u64 },
    /// Every byte is in and the hash matches.
    Done,
    /// The owner must allow the request first; ask again later from `next`.
    Wait { next: u64 },
}

/// The requester's side of one transfer.
#[derive(Debug, Clone)]
pub struct Download {
    sha256: [u8; 32],
    size: u64,
    received: u64,
    hasher: Sha256,
}

impl Download {
    /// A transfer of the clip a report references as (`sha256`, `size`).
    pub fn new(sha256: [u8; 32], size: u64) -> Download {
        Download {
            sha256,
            size,
            received: 0,
            hasher: Sha256::new(),
        }
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The next request to send.
    pub fn request(&self) -> Request {
        Request {
            sha256: self.sha256,
            offset: self.received,
        }
    }

    /// Takes one response.
    pub fn accept(&mut self, response: Response) -> Result<Step, DownloadError> {
        match response {
            Response::Pending => Ok(Step::Wait {
                next: self.received,
            }),
            Response::Refused => Err(DownloadError::Refused),
            Response::NotFound => Err(DownloadError::NotFound),
            Response::Chunk {
                total,
                offset,
                bytes,
            } => {
                if total != self.size {
                    return Err(DownloadError::WrongSize {
                        expected: self.size,
                        got: total,
                    });
                }
                if offset != self.received {
                    return Err(DownloadError::OutOfOrder {
                        expected: self.received,
                        got: offset,
                    });
                }
                if bytes.is_empty() && self.received < self.size {
                    return Err(DownloadError::Empty);
                }
                let end = self.received.saturating_add(bytes.len() as u64);
                if end > self.size {
                    return Err(DownloadError::WrongSize {
                        expected: self.size,
                        got: end,
                    });
                }
                self.hasher.update(&bytes);
                self.received = end;
                if self.received == self.size {
                    let digest: [u8; 32] = self.hasher.clone().finalize().into();
                    if digest != self.sha256 {
                        return Err(DownloadError::HashMismatch);
                    }
                    if bytes.is_empty() {
                        return Ok(Step::Done);
                    }
                }
                Ok(Step::Write {
                    bytes,
                    next: self.received,
                })
            }
        }
    }

    /// True once every byte is in and matched the hash.
    pub fn is_done(&self) -> bool {
        self.received == self.size && {
            let digest: [u8; 32] = self.hasher.clone().finalize().into();
            digest == self.sha256
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(len: usize) -> (Vec<u8>, [u8; 32]) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
        let sha: [u8; 32] = Sha256::digest(&bytes).into();
        (bytes, sha)
    }

    fn serve(bytes: &[u8], offset: u64) -> Response {
        Response::chunk(bytes.len() as u64, offset, |o, n| {
            bytes[o as usize..o as usize + n].to_vec()
        })
    }

    /// Runs a whole transfer through the wire encoding; returns what was written.
    fn transfer(bytes: &[u8], sha: [u8; 32], size: u64) -> Result<Vec<u8>, DownloadError> {
        let mut d = Download::new(sha, size);
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let request = Request::decode(&d.request().encode()).unwrap();
            let response = Response::decode(&serve(bytes, request.offset).encode()).unwrap();
            match d.accept(response)? {
                Step::Write { bytes, .. } => out.extend_from_slice(&bytes),
                Step::Done => return Ok(out),
                Step::Wait { .. } => unreachable!(),
            }
            if d.is_done() {
                return Ok(out);
            }
        }
        panic!("transfer did not end")
    }

    #[test]
    fn a_clip_arrives_whole_in_chunks_and_matches_its_hash() {
        for len in [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, 3 * CHUNK_BYTES + 17] {
            let (bytes, sha) = clip(len);
            assert_eq!(transfer(&bytes, sha, len as u64).unwrap(), bytes, "{len}");
        }
    }

    #[test]
    fn a_wrong_hash_or_size_is_refused() {
        let (bytes, sha) = clip(CHUNK_BYTES + 5);
        let mut wrong = sha;
        wrong[0] ^= 1;
        assert_eq!(
            transfer(&bytes, wrong, bytes.len() as u64),
            Err(DownloadError::HashMismatch)
        );
        assert!(matches!(
            transfer(&bytes, sha, bytes.len() as u64 + 1),
            Err(DownloadError::WrongSize { .. })
        ));
    }

    #[test]
    fn out_of_order_empty_and_oversize_chunks_are_refused() {
        let (bytes, sha) = clip(2 * CHUNK_BYTES);
        let size = bytes.len() as u64;
        let mut d = Download::new(sha, size);
        assert!(matches!(
            d.accept(serve(&bytes, CHUNK_BYTES as u64)),
            Err(DownloadError::OutOfOrder { .. })
        ));
        let mut d = Download::new(sha, size);
        let empty = Response::Chunk {
            total: size,
            offset: 0,
            bytes: vec![],
        };
        assert_eq!(d.accept(empty), Err(DownloadError::Empty));
        // On the wire: a chunk past its own end, or bigger than a chunk, does not decode.
        let past = Response::Chunk {
            total: 10,
            offset: 5,
            bytes: vec![0; 6],
        };
        assert!(Response::decode(&past.encode()).is_err());
        let big = Response::Chunk {
            total: u64::MAX,
            offset: 0,
            bytes: vec![0; 1],
        };
        assert!(Response::decode(&big.encode()).is_err());
        assert!(Request::decode(&[0xff; 65]).is_err());
    }

    #[test]
    fn pending_waits_and_refusals_end_the_download() {
        let mut d = Download::new([1; 32], 10);
        assert_eq!(d.accept(Response::Pending), Ok(Step::Wait { next: 0 }));
        assert_eq!(d.accept(Response::Refused), Err(DownloadError::Refused));
        assert_eq!(d.accept(Response::NotFound), Err(DownloadError::NotFound));
    }
}
