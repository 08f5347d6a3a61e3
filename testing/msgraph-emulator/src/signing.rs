//! The keys that sign ID tokens (RS256, RSA 2048) and the JWKS that publishes them, with rotation.
//!
//! Entra publishes its signing keys at `/{tenant}/discovery/v2.0/keys` and rotates them: for a while the new
//! and the previous key are both listed, then the previous one goes. The emulator keeps every key it ever
//! had, each `published` or not, so a test can also make it sign with a key that is no longer listed (or never
//! was: the forger key) and prove that a client refuses such a token.
//!
//! The first key and the forger key are fixed (bundled test keys), so tokens are reproducible for a seed (RSA
//! PKCS#1 v1.5 signatures are deterministic); keys made by a rotation are fresh random keys.

use crate::store::StoreError;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine as _;
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject as _;
use serde::{Deserialize, Serialize};
use sha1::Digest as _;
use std::sync::Arc;

/// The key that signs ID tokens until the first rotation. A test key: it protects nothing.
const FIRST_KEY_PEM: &str = include_str!("testdata/id-token-key.pem");
/// A key that is never published: ID tokens signed with it have a bad signature.
const FORGER_KEY_PEM: &str = include_str!("testdata/forged-id-token-key.pem");

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// One RSA signing key and its key id.
#[derive(Clone)]
pub struct SigningKey {
    /// `base64url(SHA-1(modulus ‖ exponent))`: a 27-character thumbprint, shaped like Entra's key ids.
    pub kid: String,
    /// Listed in the JWKS.
    pub published: bool,
    pair: Arc<KeyPair>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("published", &self.published)
            .finish()
    }
}

impl SigningKey {
    fn new(pair: KeyPair, published: bool) -> Self {
        let public = pair.public_key();
        let mut h = sha1::Sha1::new();
        h.update(public.modulus().big_endian_without_leading_zero());
        h.update(public.exponent().big_endian_without_leading_zero());
        Self {
            kid: b64(&h.finalize()),
            published,
            pair: Arc::new(pair),
        }
    }

    fn from_pem(pem: &str, published: bool) -> Result<Self, StoreError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| StoreError::Invalid(format!("signing key PEM: {e}")))?;
        let pair = KeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|e| StoreError::Invalid(format!("signing key: {e}")))?;
        Ok(Self::new(pair, published))
    }

    /// The key as a JWK (`kty`, `use`, `kid`, `n`, `e`), with the issuer Entra adds to v2.0 keys.
    fn jwk(&self, issuer: &str) -> serde_json::Value {
        let public = self.pair.public_key();
        serde_json::json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "n": b64(public.modulus().big_endian_without_leading_zero()),
            "e": b64(public.exponent().big_endian_without_leading_zero()),
            "issuer": issuer,
        })
    }

    /// A compact JWS (`header.payload.signature`) over `payload`, with header `{typ, alg: RS256, kid}`;
    /// `kid` names the key the header claims (the forger lies about it).
    fn sign(&self, kid: &str, payload: &serde_json::Value) -> Result<String, StoreError> {
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": kid});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(payload.to_string().as_bytes())
        );
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| StoreError::Invalid("cannot sign the ID token".into()))?;
        Ok(format!("{input}.{}", b64(&sig)))
    }
}

/// What the control API tells about a signing key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SigningKeyInfo {
    pub kid: String,
    /// The key that signs new ID tokens.
    pub current: bool,
    /// Listed in the JWKS.
    pub published: bool,
}

/// Every signing key the emulator had, oldest first; the last one signs. The default has none (a state
/// that never issues ID tokens); [`SigningKeys::bundled`] is what an emulator starts with.
#[derive(Debug, Clone, Default)]
pub struct SigningKeys {
    keys: Vec<SigningKey>,
    forger: Option<SigningKey>,
}

impl SigningKeys {
    /// The first (published) key and the forger key, both fixed.
    pub fn bundled() -> Result<Self, StoreError> {
        Ok(Self {
            keys: vec![SigningKey::from_pem(FIRST_KEY_PEM, true)?],
            forger: Some(SigningKey::from_pem(FORGER_KEY_PEM, false)?),
        })
    }

    fn current(&self) -> Result<&SigningKey, StoreError> {
        self.keys
            .last()
            .ok_or_else(|| StoreError::Invalid("no signing key".into()))
    }

    pub fn current_kid(&self) -> Result<String, StoreError> {
        Ok(self.current()?.kid.clone())
    }

    pub fn infos(&self) -> Vec<SigningKeyInfo> {
        let last = self.keys.len().saturating_sub(1);
        self.keys
            .iter()
            .enumerate()
            .map(|(i, k)| SigningKeyInfo {
                kid: k.kid.clone(),
                current: i == last,
                published: k.published,
            })
            .collect()
    }

    /// The JWKS document: the published keys, newest first.
    pub fn jwks(&self, issuer: &str) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .keys
            .iter()
            .rev()
            .filter(|k| k.published)
            .map(|k| k.jwk(issuer))
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Makes a fresh 2048-bit key (slow-ish: do it outside the state lock).
    pub fn generate() -> Result<SigningKey, StoreError> {
        let pair = KeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| StoreError::Invalid("cannot generate an RSA key".into()))?;
        Ok(SigningKey::new(pair, true))
    }

    /// `key` signs from now on; the previous keys stay as they are (published ones stay listed).
    pub fn rotate_to(&mut self, key: SigningKey) -> String {
        let kid = key.kid.clone();
        self.keys.push(key);
        kid
    }

    /// Takes a key out of the JWKS (it can still sign when asked to by kid). The current key cannot go.
    pub fn retire(&mut self, kid: &str) -> Result<(), StoreError> {
        let current = self.current_kid()?;
        if kid == current {
            return Err(StoreError::Invalid(format!(
                "key {kid} signs new ID tokens: rotate before retiring it"
            )));
        }
        let key = self
            .keys
            .iter_mut()
            .find(|k| k.kid == kid)
            .ok_or_else(|| StoreError::NotFound(format!("signing key {kid}")))?;
        key.published = false;
        Ok(())
    }

    /// Retires every key but the current one; returns their ids.
    pub fn retire_previous(&mut self) -> Vec<String> {
        let last = self.keys.len().saturating_sub(1);
        let mut retired = Vec::new();
        for k in self.keys.iter_mut().take(last).filter(|k| k.published) {
            k.published = false;
            retired.push(k.kid.clone());
        }
        retired
    }

    /// Signs with the current key, or with the key `kid` names (published or not), or, when `forged`, with a
    /// key that was never published while the header names the key it would otherwise claim.
    pub fn sign(
        &self,
        payload: &serde_json::Value,
        kid: Option<&str>,
        forged: bool,
    ) -> Result<String, StoreError> {
        let key = match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid == kid)
                .ok_or_else(|| StoreError::NotFound(format!("signing key {kid}")))?,
            None => self.current()?,
        };
        if forged {
            self.forger
                .as_ref()
                .ok_or_else(|| StoreError::Invalid("no forger key".into()))?
                .sign(&key.kid, payload)
        } else {
            key.sign(&key.kid, payload)
        }
    }
}
