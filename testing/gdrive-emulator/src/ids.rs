//! Seeded identifiers shaped like Google's: file ids (`1` + 32 URL-safe characters), shared drive ids
//! (`0A…Uk9PVA`), numeric permission ids, `4/0A…` codes, `ya29.…` access tokens and `1//0…` refresh tokens.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const URL_SAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

#[derive(Debug, Clone)]
pub(crate) struct IdGen {
    rng: StdRng,
}

impl IdGen {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed ^ 0x0609_d21e),
        }
    }
    fn chars(&mut self, n: usize, alphabet: &[u8]) -> String {
        (0..n)
            .map(|_| char::from(alphabet[self.rng.random_range(0..alphabet.len())]))
            .collect()
    }
    pub fn file_id(&mut self) -> String {
        format!("1{}", self.chars(32, URL_SAFE))
    }
    pub fn root_id(&mut self) -> String {
        format!("0A{}Uk9PVA", self.chars(11, &URL_SAFE[..62]))
    }
    pub fn drive_id(&mut self) -> String {
        format!("0A{}Uk9PVA", self.chars(11, &URL_SAFE[..62]))
    }
    pub fn numeric(&mut self, n: usize) -> String {
        let first = self.chars(1, b"123456789");
        format!("{first}{}", self.chars(n - 1, b"0123456789"))
    }
    pub fn code(&mut self) -> String {
        format!("4/0A{}", self.chars(70, URL_SAFE))
    }
    pub fn access_token(&mut self) -> String {
        format!("ya29.a0{}", self.chars(150, URL_SAFE))
    }
    pub fn refresh_token(&mut self) -> String {
        format!("1//0{}", self.chars(98, URL_SAFE))
    }
}

/// A stable numeric id derived from a text (group and domain grantees keep one id on every file).
pub(crate) fn derived_numeric(text: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(text.as_bytes());
    let mut n: u64 = 0;
    for b in d.iter().take(8) {
        n = (n << 8) | u64::from(*b);
    }
    (n % 9_000_000_000_000_000_000 + 1_000_000_000_000_000_000).to_string()
}
