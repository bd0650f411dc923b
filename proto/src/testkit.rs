//! Deterministic randomness for tests, the protocol's test vectors and fuzzing.
//! SHA-256 in counter mode over a seed: reproducible, and not for real keys.

use std::convert::Infallible;

use rand_core::{TryCryptoRng, TryRng};
use sha2::{Digest, Sha256};

/// A reproducible byte stream from a `u64` seed.
#[derive(Debug, Clone)]
pub struct SeededRng {
    seed: u64,
    counter: u64,
    buffer: [u8; 32],
    used: usize,
}

impl SeededRng {
    pub fn new(seed: u64) -> SeededRng {
        SeededRng {
            seed,
            counter: 0,
            buffer: [0; 32],
            used: 32,
        }
    }

    /// `N` bytes from the stream.
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        self.fill(&mut out);
        out
    }

    fn fill(&mut self, dst: &mut [u8]) {
        for byte in dst {
            if self.used == 32 {
                self.buffer = Sha256::new()
                    .chain_update(b"porchlight-testkit\0")
                    .chain_update(self.seed.to_le_bytes())
                    .chain_update(self.counter.to_le_bytes())
                    .finalize()
                    .into();
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.buffer[self.used];
            self.used += 1;
        }
    }
}

impl TryRng for SeededRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(u32::from_le_bytes(self.bytes()))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(u64::from_le_bytes(self.bytes()))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.fill(dst);
        Ok(())
    }
}

impl TryCryptoRng for SeededRng {}
