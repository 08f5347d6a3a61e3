//! Seeded generation of the identifiers and secrets the emulator hands out. Shapes follow what Graph returns:
//! business drives `b!…` (64 base64url characters after the prefix), business items `01…` (34 characters of
//! base32), personal drives 16 hex digits and personal items `D4648F06C91D9D3D!123`.

use base64::Engine as _;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// The single source of randomness for one emulator state; deterministic for a seed.
#[derive(Clone, Debug)]
pub struct IdGen {
    rng: StdRng,
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

impl IdGen {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        self.rng.fill_bytes(&mut b);
        b
    }

    pub fn guid(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.bytes::<16>())
            .into_uuid()
            .to_string()
    }

    pub fn business_drive_id(&mut self) -> String {
        let raw = self.bytes::<48>();
        format!(
            "b!{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        )
    }

    pub fn business_item_id(&mut self) -> String {
        let mut s = String::with_capacity(34);
        s.push_str("01");
        for _ in 0..32 {
            let i = self.rng.random_range(0..32usize);
            s.push(char::from(BASE32[i]));
        }
        s
    }

    pub fn personal_drive_id(&mut self) -> String {
        hex::encode(self.bytes::<8>())
    }

    /// An opaque token of `len` url-safe characters.
    pub fn token(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        (0..len)
            .map(|_| char::from(ALPHABET[self.rng.random_range(0..ALPHABET.len())]))
            .collect()
    }

    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random_bool(p.clamp(0.0, 1.0))
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { self.rng.random_range(0..n) }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }
}

/// A cheap deterministic mix (splitmix64), used for request ids and per-item content seeds.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A GUID-shaped id derived from two numbers (request ids, correlation ids).
pub fn derived_guid(a: u64, b: u64) -> String {
    let hi = mix(a ^ mix(b));
    let lo = mix(hi ^ b);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi.to_be_bytes());
    bytes[8..].copy_from_slice(&lo.to_be_bytes());
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}
