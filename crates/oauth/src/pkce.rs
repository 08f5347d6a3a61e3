//! The random values of an authorization request: `state` and the PKCE verifier (RFC 7636).

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

/// How a state is stored and looked up: SHA-256, lower-case hex.
pub(crate) fn state_hash(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
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
}
