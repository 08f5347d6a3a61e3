//! The random values of an authorization request: `state`, the PKCE verifier (RFC 7636) and the
//! secret that binds the request to the browser that started it.

use base64::Engine as _;
use kbsync_core::Random;
use sha2::{Digest, Sha256};

/// Random bytes in a state or verifier: 256 bits, 43 URL-safe characters.
const RANDOM_BYTES: usize = 32;

/// A URL-safe random string of [`RANDOM_BYTES`] bytes (also a valid PKCE verifier: 43 characters
/// of the unreserved set).
pub(crate) fn random_url_safe(random: &dyn Random) -> String {
    let mut bytes = [0u8; RANDOM_BYTES];
    random.fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The S256 code challenge of a verifier: `BASE64URL(SHA256(verifier))`.
pub(crate) fn s256_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// How a state (and a browser binding) is stored and looked up: SHA-256, lower-case hex.
pub(crate) fn state_hash(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

/// Characters of a flow id: 64 bits of a hash, enough to tell one browser's flows apart.
const FLOW_ID_CHARS: usize = 16;

/// A short name of an authorization flow, derived from its state (so the callback can compute
/// it), in a hash domain of its own (so it says nothing about the stored state hash). Not secret.
pub(crate) fn flow_id(state: &str) -> String {
    let mut id = hex::encode(Sha256::digest(format!("kbsync-flow:{state}").as_bytes()));
    id.truncate(FLOW_ID_CHARS);
    id
}

/// Compares two hashes in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbsync_core::SeededRandom;

    #[test]
    fn challenge_matches_rfc_7636_appendix_b() {
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn random_values_are_43_url_safe_characters_and_differ() {
        let r = SeededRandom::new(1);
        let a = random_url_safe(&r);
        let b = random_url_safe(&r);
        assert_eq!(a.len(), 43);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{a}"
        );
        assert_ne!(a, b);
        assert_eq!(state_hash(&a).len(), 64);
    }

    #[test]
    fn flow_id_is_short_hex_stable_per_state_and_unlike_the_state_hash() {
        let id = flow_id("state-a");
        assert_eq!(id.len(), 16);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
        assert_eq!(id, flow_id("state-a"));
        assert_ne!(id, flow_id("state-b"));
        assert!(!state_hash("state-a").starts_with(&id));
    }

    #[test]
    fn constant_time_eq_needs_the_same_length_and_bytes() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
        assert!(!constant_time_eq("", "abc"));
    }
}
