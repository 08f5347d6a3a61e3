//! App-only access (the OAuth 2.0 client credentials grant): kbsync acts as the organisation's application,
//! without any user's delegation, with a client secret or a certificate.
//!
//! As the identity platform documents it (learn.microsoft.com/entra/identity-platform/
//! v2-oauth2-client-creds-grant-flow and …/certificate-credentials):
//! - `scope` is one resource followed by `/.default` (`https://graph.microsoft.com/.default`, or a SharePoint
//!   origin such as `https://contoso.sharepoint.com/.default`); the token carries the application permissions
//!   an administrator consented to;
//! - with a certificate, the client sends `client_assertion_type=urn:ietf:params:oauth:grant-type:jwt-bearer`
//!   and a `client_assertion`: a JWT signed RS256 with the certificate's key, its header naming the
//!   certificate by `x5t#S256` (and `x5t`), its claims `aud` = the token endpoint, `iss` = `sub` = the client
//!   id, a unique `jti`, `nbf`/`iat` = now and a short `exp` (RFC 7523);
//! - there is no refresh token: a new access token is simply requested again.
//!
//! SharePoint REST refuses app-only tokens that were obtained with a client secret ("Unsupported app only
//! token."): reading SharePoint site groups app-only needs the certificate.
//!
//! [`AppOnlyTokens`] caches one access token per resource in memory until 5 minutes before it expires (never
//! in the database, never logged) and requests at most one at a time per resource.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use kbsync_core::datasource::{AccessToken, DatasourceError, TokenSource};
use kbsync_core::{Clock, Random};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest as _;
use tracing::{info, instrument, warn};

use crate::config::ClientSecret;
use crate::manager::fresh;
use crate::token_endpoint::{self, EndpointError};

/// The `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How long a client assertion is valid (the identity platform asks for a short one: 5 to 10 minutes).
const ASSERTION_LIFETIME: chrono::Duration = chrono::Duration::minutes(10);

/// Why a certificate credential cannot be loaded. Never shows key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("the certificate is not a PEM certificate: {0}")]
    Certificate(String),
    #[error("the private key is not a PEM RSA key (PKCS#8 or PKCS#1): {0}")]
    Key(String),
}

/// A certificate registered for the application, with its private key: it signs client assertions.
/// `Debug` shows only the thumbprint.
pub struct ClientCertificate {
    key: aws_lc_rs::rsa::KeyPair,
    /// Base64url SHA-256 of the certificate's DER (`x5t#S256`).
    x5t_s256: String,
    /// Base64url SHA-1 of the certificate's DER (`x5t`), for services that only know that one.
    x5t: String,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("x5t#S256", &self.x5t_s256)
            .finish_non_exhaustive()
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl ClientCertificate {
    /// Reads the certificate (PEM) and its RSA private key (PEM: `PRIVATE KEY` or `RSA PRIVATE KEY`).
    pub fn from_pem(certificate_pem: &[u8], key_pem: &[u8]) -> Result<Self, CertificateError> {
        let cert = CertificateDer::from_pem_slice(certificate_pem)
            .map_err(|e| CertificateError::Certificate(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertificateError::Key(e.to_string()))?;
        let key = match &key {
            PrivateKeyDer::Pkcs8(k) => aws_lc_rs::rsa::KeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => aws_lc_rs::rsa::KeyPair::from_der(k.secret_pkcs1_der()),
            _ => {
                return Err(CertificateError::Key(
                    "only RSA keys can sign the RS256 client assertion".to_owned(),
                ));
            }
        }
        .map_err(|e| CertificateError::Key(e.to_string()))?;
        Ok(Self {
            key,
            x5t_s256: b64url(&sha2::Sha256::digest(cert.as_ref())),
            x5t: b64url(&sha1::Sha1::digest(cert.as_ref())),
        })
    }

    /// The certificate's SHA-256 thumbprint (base64url), as the assertion names it.
    pub fn thumbprint(&self) -> &str {
        &self.x5t_s256
    }

    /// A signed client assertion for `client_id` at `token_url`.
    fn assertion(
        &self,
        client_id: &str,
        token_url: &str,
        now: DateTime<Utc>,
        jti: &str,
    ) -> Result<String, DatasourceError> {
        let header = serde_json::json!({
            "alg": "RS256", "typ": "JWT", "x5t#S256": self.x5t_s256, "x5t": self.x5t,
        });
        let claims = serde_json::json!({
            "aud": token_url, "iss": client_id, "sub": client_id, "jti": jti,
            "nbf": now.timestamp(), "iat": now.timestamp(),
            "exp": (now + ASSERTION_LIFETIME).timestamp(),
        });
        let signed = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let mut signature = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                signed.as_bytes(),
                &mut signature,
            )
            .map_err(|_| DatasourceError::Permanent("the client assertion could not be signed".into()))?;
        Ok(format!("{signed}.{}", b64url(&signature)))
    }
}

/// How the application proves its identity to the token endpoint.
#[derive(Debug)]
pub enum ClientCredential {
    Secret(ClientSecret),
    Certificate(ClientCertificate),
}

/// The application registration used for app-only access.
#[derive(Debug)]
pub struct AppOnlyConfig {
    /// The application (client) id.
    pub client_id: String,
    /// The token endpoint of the organisation's tenant (not `common`: app-only tokens belong to one tenant),
    /// e.g. `https://login.microsoftonline.com/{tenant id}/oauth2/v2.0/token`.
    pub token_url: String,
    pub credential: ClientCredential,
    /// The organisation's tenant (id or domain), recorded on its connections.
    pub tenant: Option<String>,
    /// The resource [`TokenSource::access_token`] is for: `https://graph.microsoft.com`.
    pub default_resource: String,
}

/// One cached access token.
struct Cached {
    token: AccessToken,
    expires_at: DateTime<Utc>,
}

/// The [`TokenSource`] of app-only connections: client credentials tokens, one per resource, cached in memory
/// until 5 minutes before they expire. Clones share the cache.
#[derive(Clone)]
pub struct AppOnlyTokens {
    inner: Arc<Inner>,
}

struct Inner {
    config: AppOnlyConfig,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    request_timeout: Duration,
    cache: Mutex<HashMap<String, Cached>>,
    /// One lock per resource: at most one token request per resource at a time.
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl fmt::Debug for AppOnlyTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppOnlyTokens")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// `https://contoso.sharepoint.com/` and `https://contoso.sharepoint.com` are one resource.
fn resource_key(resource: &str) -> String {
    resource.trim().trim_end_matches('/').to_owned()
}

impl AppOnlyTokens {
    /// `random` makes the assertions' `jti`; `clock` decides expiry.
    pub fn new(
        config: AppOnlyConfig,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
        request_timeout: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                http,
                clock,
                random,
                request_timeout,
                cache: Mutex::new(HashMap::new()),
                flights: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn config(&self) -> &AppOnlyConfig {
        &self.inner.config
    }

    fn cached(&self, resource: &str, rejected: Option<&AccessToken>) -> Option<AccessToken> {
        let now = self.inner.clock.now();
        let mut cache = self.inner.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = cache.get(resource)?;
        if fresh(entry.expires_at, now) && rejected != Some(&entry.token) {
            return Some(entry.token.clone());
        }
        cache.remove(resource);
        None
    }

    fn flight(&self, resource: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.inner
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(resource.to_owned())
            .or_default()
            .clone()
    }

    /// A token for `resource`: the cached one while fresh (and not `rejected`), else a new one.
    #[instrument(skip_all, fields(resource = %resource, forced = rejected.is_some()))]
    async fn token(
        &self,
        resource: &str,
        rejected: Option<&AccessToken>,
    ) -> Result<AccessToken, DatasourceError> {
        let resource = resource_key(resource);
        if let Some(t) = self.cached(&resource, rejected) {
            return Ok(t);
        }
        let flight = self.flight(&resource);
        let _in_flight = flight.lock().await;
        if let Some(t) = self.cached(&resource, rejected) {
            return Ok(t);
        }
        let config = &self.inner.config;
        let now = self.inner.clock.now();
        let assertion;
        let client_auth: Vec<(&str, &str)> = match &config.credential {
            ClientCredential::Secret(secret) => vec![("client_secret", secret.expose())],
            ClientCredential::Certificate(cert) => {
                let jti = self.inner.random.uuid().to_string();
                assertion = cert.assertion(&config.client_id, &config.token_url, now, &jti)?;
                vec![
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", assertion.as_str()),
                ]
            }
        };
        let scope = format!("{resource}/.default");
        let result = token_endpoint::client_credentials(
            &self.inner.http,
            &config.token_url,
            &config.client_id,
            &client_auth,
            &scope,
            self.inner.request_timeout,
        )
        .await;
        let outcome = match &result {
            Ok(_) => "issued",
            Err(EndpointError::GrantRefused(_)) => "refused",
            Err(EndpointError::Transient(_)) => "transient_error",
            Err(EndpointError::Misconfigured(_)) => "misconfigured",
        };
        metrics::counter!("kbsync_app_only_tokens_total", "outcome" => outcome).increment(1);
        match result {
            Ok(set) => {
                let expires_at = self.inner.clock.now() + chrono::Duration::seconds(set.expires_in);
                let token = AccessToken::new(set.access_token);
                self.inner
                    .cache
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(
                        resource.clone(),
                        Cached {
                            token: token.clone(),
                            expires_at,
                        },
                    );
                info!(expires_in = set.expires_in, "app-only access token issued");
                Ok(token)
            }
            Err(EndpointError::Transient(why)) => {
                warn!(reason = %why, "app-only token request failed; will retry later");
                Err(DatasourceError::Transient(why))
            }
            Err(EndpointError::GrantRefused(why)) => {
                warn!(reason = %why, "app-only token request refused");
                Err(DatasourceError::Unauthorized(format!(
                    "the organisation's application was refused a token: {why}"
                )))
            }
            Err(EndpointError::Misconfigured(why)) => {
                tracing::error!(reason = %why, "app-only token request refused kbsync's registration");
                Err(DatasourceError::Permanent(format!(
                    "the identity platform refused the organisation's application ({why}); an administrator must check its registration, credentials and consented permissions"
                )))
            }
        }
    }
}

#[async_trait]
impl TokenSource for AppOnlyTokens {
    async fn access_token(&self) -> Result<AccessToken, DatasourceError> {
        let resource = self.inner.config.default_resource.clone();
        self.token(&resource, None).await
    }

    async fn refresh(&self, rejected: &AccessToken) -> Result<AccessToken, DatasourceError> {
        let resource = self.inner.config.default_resource.clone();
        self.token(&resource, Some(rejected)).await
    }

    async fn access_token_for(&self, resource: &str) -> Result<AccessToken, DatasourceError> {
        self.token(resource, None).await
    }
}
