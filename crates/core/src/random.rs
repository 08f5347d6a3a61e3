//! Randomness is a parameter: ids, tokens and OAuth state come from a [`Random`] so that tests can
//! make them deterministic.

use rand::{RngCore, SeedableRng, rngs::StdRng};
use std::sync::{Mutex, PoisonError};
use uuid::Uuid;

/// A source of random bytes, and the values kbsync derives from them.
pub trait Random: Send + Sync + 'static {
    fn fill(&self, buf: &mut [u8]);

    /// A version-4 UUID.
    fn uuid(&self) -> Uuid {
        let mut bytes = [0u8; 16];
        self.fill(&mut bytes);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    /// `n` random bytes as lowercase hex (2n characters), for bearer tokens and secrets.
    fn token_hex(&self, n: usize) -> String {
        let mut bytes = vec![0u8; n];
        self.fill(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The operating system's CSPRNG.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&self, buf: &mut [u8]) {
        rand::rng().fill_bytes(buf);
    }
}

/// A deterministic generator for tests and reproducible fixtures.
#[derive(Debug)]
pub struct SeededRandom {
    rng: Mutex<StdRng>,
}

impl SeededRandom {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }
}

impl Random for SeededRandom {
    fn fill(&self, buf: &mut [u8]) {
        self.rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fill_bytes(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_random_repeats_for_the_same_seed_and_differs_across_seeds() {
        let a = SeededRandom::new(7);
        let b = SeededRandom::new(7);
        let c = SeededRandom::new(8);
        let (ua, ub, uc) = (a.uuid(), b.uuid(), c.uuid());
        assert_eq!(ua, ub);
        assert_ne!(ua, uc);
        assert_eq!(ua.get_version_num(), 4);
    }

    #[test]
    fn token_hex_has_two_characters_per_byte() {
        let t = OsRandom.token_hex(32);
        assert_eq!(t.len(), 64);
        assert!(t.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
