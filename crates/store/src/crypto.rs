//! Encryption of stored credentials (refresh and access tokens, PKCE verifiers).
//!
//! Fernet (AES-128-CBC + HMAC-SHA256) under a key derived as URL-safe base64 of SHA-256 of the
//! configured secret key string: the scheme of the original Python system, so the tokens it stored
//! stay readable. Every ciphertext is stored with the id of the key that made it, so that the key
//! can be rotated: rows written under the previous key still decrypt while it is configured as
//! the previous key, and every new write uses the current key.

use std::fmt;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use kbsync_core::Encrypted;

/// Why a value could not be encrypted or decrypted. Never carries key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The secret key is unusable (empty): fix the configuration.
    #[error("the secret key is empty")]
    EmptyKey,
    /// The value was written under a key that is neither the current nor the previous one:
    /// configure that key as the previous key, or have the user connect again.
    #[error("the value was encrypted with an unknown key (key id {0})")]
    UnknownKey(String),
    /// The key is right but the value does not verify (corrupted or tampered with), or the
    /// plaintext is not UTF-8.
    #[error("the encrypted value is corrupt or was not made with key {0}")]
    Invalid(String),
}

struct Key {
    fernet: fernet::Fernet,
    id: String,
}

impl Key {
    fn derive(secret: &str) -> Result<Self, CryptoError> {
        if secret.is_empty() {
            return Err(CryptoError::EmptyKey);
        }
        let raw = Sha256::digest(secret.as_bytes());
        let encoded = base64::engine::general_purpose::URL_SAFE.encode(raw);
        let id = hex::encode(Sha256::digest(raw))[..16].to_owned();
        // A 32-byte key always makes a valid Fernet key; the error is for completeness.
        let fernet = fernet::Fernet::new(&encoded).ok_or_else(|| CryptoError::Invalid(id.clone()))?;
        Ok(Self { fernet, id })
    }

    fn decrypt(&self, ciphertext: &str) -> Result<String, CryptoError> {
        let bytes = self
            .fernet
            .decrypt(ciphertext)
            .map_err(|_| CryptoError::Invalid(self.id.clone()))?;
        String::from_utf8(bytes).map_err(|_| CryptoError::Invalid(self.id.clone()))
    }
}

/// Encrypts and decrypts stored credentials with the current key, and decrypts with the previous
/// key what was written under it. `Debug` shows only the key ids.
pub struct TokenCipher {
    current: Key,
    previous: Option<Key>,
}

impl TokenCipher {
    /// `current` and `previous` are secret key strings as configured (`KBSYNC_SECRET_KEY`,
    /// `KBSYNC_SECRET_KEY_PREVIOUS`), not Fernet keys.
    pub fn new(current: &str, previous: Option<&str>) -> Result<Self, CryptoError> {
        Ok(Self {
            current: Key::derive(current)?,
            previous: previous.map(Key::derive).transpose()?,
        })
    }

    /// The id of the key new values are encrypted with (not secret: a hash of a hash of the key).
    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    /// The id of the previous key, when one is configured.
    pub fn previous_key_id(&self) -> Option<&str> {
        self.previous.as_ref().map(|k| k.id.as_str())
    }

    /// Encrypts with the current key.
    pub fn encrypt(&self, plaintext: &str) -> Encrypted {
        Encrypted {
            ciphertext: self.current.fernet.encrypt(plaintext.as_bytes()),
            key_id: self.current.id.clone(),
        }
    }

    /// Decrypts a value written under the key `key_id` names (the current or the previous key).
    /// An empty `key_id` (a row written before key ids existed) tries both keys.
    pub fn decrypt(&self, ciphertext: &str, key_id: &str) -> Result<String, CryptoError> {
        if key_id.is_empty() {
            return match self.current.decrypt(ciphertext) {
                Ok(v) => Ok(v),
                Err(e) => match &self.previous {
                    Some(p) => p.decrypt(ciphertext),
                    None => Err(e),
                },
            };
        }
        if key_id == self.current.id {
            return self.current.decrypt(ciphertext);
        }
        match &self.previous {
            Some(p) if key_id == p.id => p.decrypt(ciphertext),
            _ => Err(CryptoError::UnknownKey(key_id.to_owned())),
        }
    }

    /// [`decrypt`](Self::decrypt) of a stored value.
    pub fn open(&self, value: &Encrypted) -> Result<String, CryptoError> {
        self.decrypt(&value.ciphertext, &value.key_id)
    }
}

impl fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCipher")
            .field("key_id", &self.current.id)
            .field("previous_key_id", &self.previous.as_ref().map(|k| &k.id))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// Made by Python's `cryptography` (48.0.0) with the original system's key scheme:
    ///
    /// ```text
    /// python3 -c "import base64, hashlib; from cryptography.fernet import Fernet; \
    ///   key = base64.urlsafe_b64encode(hashlib.sha256(b'some secret').digest()); \
    ///   print(Fernet(key).encrypt(b'1.AXkAexample-refresh-token-from-python').decode())"
    /// ```
    const PYTHON_TOKEN: &str = "gAAAAABrBFKbclrrZmQ56O_RSrsVhlSmCZUzSomrdFgExjrKLiMTfhIIzEIL92LC7c46QI_pxGHchCEIjFpuR5ONSg4danNG4XJ7liXpS3WdP91AqOGQVGz2L8pA17oHyvladlDBx8A9";

    #[test]
    fn decrypts_a_token_made_by_python_cryptography() {
        let c = TokenCipher::new("some secret", None).unwrap();
        // hashlib.sha256(hashlib.sha256(b"some secret").digest()).hexdigest()[:16]
        assert_eq!(c.key_id(), "1467695ecc6378f3");
        assert_eq!(
            c.decrypt(PYTHON_TOKEN, c.key_id()).unwrap(),
            "1.AXkAexample-refresh-token-from-python"
        );
        // Legacy rows without a key id are tried against the configured keys.
        assert_eq!(
            c.decrypt(PYTHON_TOKEN, "").unwrap(),
            "1.AXkAexample-refresh-token-from-python"
        );
    }

    #[test]
    fn round_trips_and_ciphertext_differs_from_plaintext_each_time() {
        let c = TokenCipher::new("some secret", None).unwrap();
        let a = c.encrypt("refresh-token-value");
        let b = c.encrypt("refresh-token-value");
        assert_ne!(a.ciphertext, b.ciphertext, "a fresh IV every time");
        assert!(!a.ciphertext.contains("refresh-token-value"));
        assert_eq!(a.key_id, c.key_id());
        assert_eq!(c.open(&a).unwrap(), "refresh-token-value");
    }

    #[test]
    fn previous_key_decrypts_rows_written_under_it() {
        let old = TokenCipher::new("old secret", None).unwrap();
        let row = old.encrypt("written before rotation");
        let rotated = TokenCipher::new("new secret", Some("old secret")).unwrap();
        assert_ne!(rotated.key_id(), old.key_id());
        assert_eq!(rotated.previous_key_id(), Some(old.key_id()));
        assert_eq!(rotated.open(&row).unwrap(), "written before rotation");
        // New writes use the new key.
        assert_eq!(rotated.encrypt("x").key_id, rotated.key_id());
        // Without the previous key the row is unreadable, and the error says which key it needs.
        let forgot = TokenCipher::new("new secret", None).unwrap();
        assert_eq!(
            forgot.open(&row),
            Err(CryptoError::UnknownKey(old.key_id().to_owned()))
        );
    }

    #[test]
    fn tampered_or_mislabelled_values_are_refused() {
        let c = TokenCipher::new("k1", Some("k2")).unwrap();
        let mut v = c.encrypt("secret");
        let flipped = if v.ciphertext.as_bytes()[30] == b'A' {
            "B"
        } else {
            "A"
        };
        v.ciphertext.replace_range(30..31, flipped);
        assert!(matches!(c.open(&v), Err(CryptoError::Invalid(_))));
        let other = TokenCipher::new("k2", None).unwrap().encrypt("secret");
        // Right ciphertext, wrong label.
        assert!(matches!(
            c.decrypt(&other.ciphertext, c.key_id()),
            Err(CryptoError::Invalid(_))
        ));
        assert_eq!(TokenCipher::new("", None).err(), Some(CryptoError::EmptyKey));
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let c = TokenCipher::new("very secret key", Some("older secret key")).unwrap();
        let d = format!("{c:?}");
        assert!(d.contains(c.key_id()), "{d}");
        assert!(!d.contains("very secret") && !d.contains("older secret"), "{d}");
        let derived = base64::engine::general_purpose::URL_SAFE.encode(Sha256::digest(b"very secret key"));
        assert!(!d.contains(&derived), "{d}");
    }
}
