//! Signing people in with OpenID Connect (Entra ID or any provider): discovery, the authorization
//! code flow with PKCE S256, `state` and `nonce`, and the verification of the ID token.
//!
//! - **Discovery**: the provider's metadata comes from `{issuer}/.well-known/openid-configuration`
//!   and its `issuer` must be the configured one (Entra's multi-tenant endpoints answer with an
//!   `{tenantid}` template, which then must match each token's `tid`).
//! - **Flow secrets**: a sign-in has a random `state` and a random browser *binding* (kept only in
//!   the starting browser's cookie). The PKCE verifier and the `nonce` are derived from both, so
//!   the server stores neither: the callback recomputes them from the state it is given and the
//!   cookie of the browser it reaches, and nothing useful is left for anyone who sees one of them.
//! - **ID token**: the signature is checked by the `jsonwebtoken` crate against the provider's
//!   JWKS (asymmetric algorithms only, cached, fetched again when a token names a key the cache
//!   does not hold, at most once per [`OidcConfig::jwks_refetch_interval`]); then `iss`, `aud`
//!   (and `azp`), `exp`/`iat`/`nbf` against the injected clock with [`OidcConfig::clock_skew`],
//!   the `nonce`, and, for a single-tenant Entra set-up, `tid`.
//!
//! Nothing here logs or returns a code, verifier, token or secret.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use kbsync_core::{Clock, Random};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::ClientSecret;
use crate::pkce::{constant_time_eq, random_url_safe, s256_challenge, state_hash};
use crate::token_endpoint::{self, EndpointError};

/// How kbsync is registered with an OpenID provider.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer exactly as the provider names itself (a trailing slash included), e.g.
    /// `https://login.microsoftonline.com/{tenant id}/v2.0`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: ClientSecret,
    /// The scopes asked for; `openid` is added when missing.
    pub scopes: Vec<String>,
    /// `{public URL}/auth/oidc/callback`, exactly as registered with the provider.
    pub redirect_uri: String,
    /// What the sign-in button says after "Sign in with".
    pub display_name: String,
    /// How far token times may be off the local clock.
    pub clock_skew: chrono::Duration,
    /// How long fetched signing keys are used before they are fetched again.
    pub jwks_ttl: Duration,
    /// The least time between two fetches of the keys caused by tokens naming unknown keys (so
    /// forged key ids cannot make kbsync hammer the provider).
    pub jwks_refetch_interval: Duration,
    /// The timeout of each request to the provider.
    pub request_timeout: Duration,
}

impl OidcConfig {
    /// The settings for `issuer` and a client, with the defaults: scopes `openid email profile`, a
    /// display name guessed from the issuer, 60 s of clock skew, keys kept an hour.
    pub fn new(issuer: &str, client_id: &str, client_secret: ClientSecret, redirect_uri: &str) -> Self {
        let issuer = issuer.trim().to_owned();
        Self {
            display_name: default_display_name(&issuer),
            issuer,
            client_id: client_id.to_owned(),
            client_secret,
            scopes: ["openid", "email", "profile"].map(str::to_owned).to_vec(),
            redirect_uri: redirect_uri.to_owned(),
            clock_skew: chrono::Duration::seconds(60),
            jwks_ttl: Duration::from_secs(3600),
            jwks_refetch_interval: Duration::from_secs(10),
            request_timeout: Duration::from_secs(15),
        }
    }

    /// The Entra tenant this set-up is limited to: the issuer's tenant segment
    /// (`…/{tenant}/v2.0`), unless it is one of the multi-tenant names (`common`,
    /// `organizations`, `consumers`). `None` for issuers of another shape.
    pub fn entra_tenant(&self) -> Option<&str> {
        let path = self.issuer.trim_end_matches('/').strip_suffix("/v2.0")?;
        let tenant = path.rsplit('/').next()?;
        let multi = ["common", "organizations", "consumers"]
            .iter()
            .any(|m| tenant.eq_ignore_ascii_case(m));
        (!tenant.is_empty() && !tenant.contains(':') && !multi).then_some(tenant)
    }

    fn scope_param(&self) -> String {
        let mut scopes: Vec<&str> = self.scopes.iter().flat_map(|s| s.split_whitespace()).collect();
        if !scopes.contains(&"openid") {
            scopes.insert(0, "openid");
        }
        scopes.join(" ")
    }
}

/// "Microsoft" for Entra issuers, otherwise the issuer's host.
fn default_display_name(issuer: &str) -> String {
    let host = url::Url::parse(issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| issuer.to_owned());
    if host.ends_with("microsoftonline.com") || host.ends_with("microsoftonline.us") {
        "Microsoft".to_owned()
    } else {
        host
    }
}

/// Why a sign-in could not be completed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached, timed out or answered 5xx: try again later.
    #[error("the sign-in provider could not be reached: {0}")]
    Unavailable(String),
    /// The provider's metadata or keys do not fit the configuration, or it refused kbsync's client:
    /// the operator must act.
    #[error("the sign-in provider is not set up as configured: {0}")]
    Misconfigured(String),
    /// The provider refused the sign-in (the code was refused, or the user declined).
    #[error("the sign-in was refused: {0}")]
    Refused(String),
    /// The ID token failed verification.
    #[error("the sign-in could not be verified: {0}")]
    InvalidToken(String),
}

/// The secrets of one sign-in: `state` travels through the provider, `binding` stays in the
/// browser's cookie. Both are random; the PKCE verifier and the nonce derive from them. `Debug`
/// shows neither.
#[derive(Clone)]
pub struct SignInFlow {
    pub state: String,
    pub binding: String,
}

impl fmt::Debug for SignInFlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SignInFlow(***)")
    }
}

impl SignInFlow {
    /// A new flow with 256 random bits in each part.
    pub fn new(random: &dyn Random) -> Self {
        Self {
            state: random_url_safe(random),
            binding: random_url_safe(random),
        }
    }

    /// How the flow is stored and looked up: the SHA-256 of its state.
    pub fn state_hash(&self) -> String {
        state_hash(&self.state)
    }

    /// How the browser binding is stored: its SHA-256.
    pub fn binding_hash(&self) -> String {
        state_hash(&self.binding)
    }

    /// Whether `binding_hash` (as stored) is this flow's binding.
    pub fn binding_matches(&self, binding_hash: &str) -> bool {
        constant_time_eq(&self.binding_hash(), binding_hash)
    }

    /// The PKCE verifier: 43 URL-safe characters.
    pub fn code_verifier(&self) -> String {
        self.derive("kbsync-oidc-pkce")
    }

    /// The `nonce` the ID token must carry.
    pub fn nonce(&self) -> String {
        self.derive("kbsync-oidc-nonce")
    }

    fn derive(&self, purpose: &str) -> String {
        let digest = Sha256::new()
            .chain_update(purpose.as_bytes())
            .chain_update([0])
            .chain_update(self.binding.as_bytes())
            .chain_update([0])
            .chain_update(self.state.as_bytes())
            .finalize();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    }
}

/// What kbsync uses of a provider's discovery document.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
}

/// The claims of a verified ID token that kbsync uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    /// The token's issuer (for Entra multi-tenant, the signing-in tenant's).
    pub issuer: String,
    /// The user's id at the issuer (`sub`): with the issuer, what an account is linked by.
    pub subject: String,
    pub email: Option<String>,
    /// Whether the provider vouches for `email` (`email_verified`).
    pub email_verified: bool,
    pub name: Option<String>,
    pub preferred_username: Option<String>,
    /// Entra: the user's object id, the id drives' sharing names them by.
    pub oid: Option<String>,
    /// Entra: the directory (tenant) the user signed in from.
    pub tid: Option<String>,
    /// Entra: whether `tid` is the tenant this set-up is limited to.
    pub tenant_configured: bool,
    /// The group ids the token lists, when it lists any (`None` when it has no `groups` claim or
    /// the provider left them out because there were too many).
    pub groups: Option<Vec<String>>,
}

impl VerifiedIdentity {
    /// The email address an account can be created with, linked by, and matched to sharing by:
    /// `email` when the provider says it is verified; for a single-tenant Entra set-up `email`,
    /// else `preferred_username` (the UPN). Entra does not send `email_verified`; addresses in
    /// one's own tenant are set by that tenant's administrators, while in another tenant anyone
    /// administering it could claim an address of any domain, so only the configured tenant's are
    /// trusted.
    pub fn trusted_email(&self) -> Option<&str> {
        let email = self.email.as_deref().filter(|e| e.contains('@'));
        if self.email_verified && email.is_some() {
            return email;
        }
        if self.tenant_configured {
            return email.or(self.preferred_username.as_deref().filter(|u| u.contains('@')));
        }
        None
    }
}

#[derive(Deserialize)]
struct IdTokenClaims {
    iss: String,
    sub: String,
    #[serde(default)]
    aud: Audience,
    #[serde(default)]
    azp: Option<String>,
    exp: Option<i64>,
    iat: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
    #[serde(default)]
    oid: Option<String>,
    #[serde(default)]
    tid: Option<String>,
    #[serde(default)]
    groups: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
    #[default]
    None,
}

impl Audience {
    fn list(&self) -> Vec<&str> {
        match self {
            Audience::One(a) => vec![a.as_str()],
            Audience::Many(list) => list.iter().map(String::as_str).collect(),
            Audience::None => Vec::new(),
        }
    }
}

/// Algorithms an ID token may be signed with: asymmetric ones only (never `none` or an HMAC keyed
/// with the client secret).
const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

struct Cached<T> {
    value: T,
    fetched_at: DateTime<Utc>,
}

#[derive(Default)]
struct KeyCache {
    keys: Option<Cached<JwkSet>>,
    /// When a token naming an unknown key last caused a fetch.
    last_forced: Option<DateTime<Utc>>,
}

/// A configured OpenID provider: builds authorize URLs and verifies what comes back. Shared by every
/// request (metadata and keys are cached inside).
pub struct OidcClient {
    config: OidcConfig,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    metadata: tokio::sync::Mutex<Option<Cached<Arc<ProviderMetadata>>>>,
    keys: tokio::sync::Mutex<KeyCache>,
}

impl fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcClient")
            .field("issuer", &self.config.issuer)
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

/// How long discovery metadata is used before it is fetched again.
const METADATA_TTL: Duration = Duration::from_secs(24 * 3600);

impl OidcClient {
    pub fn new(config: OidcConfig, http: reqwest::Client, clock: Arc<dyn Clock>) -> Self {
        Self {
            config,
            http,
            clock,
            metadata: tokio::sync::Mutex::new(None),
            keys: tokio::sync::Mutex::new(KeyCache::default()),
        }
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// The provider's metadata, fetched once and then kept for a day (a failed fetch is not kept).
    pub async fn metadata(&self) -> Result<Arc<ProviderMetadata>, OidcError> {
        let mut cached = self.metadata.lock().await;
        if let Some(c) = cached.as_ref()
            && self.younger_than(c.fetched_at, METADATA_TTL)
        {
            return Ok(c.value.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let metadata: ProviderMetadata = self.get_json(&url, "discovery document").await?;
        let issuer_fits = metadata.issuer == self.config.issuer
            || (metadata.issuer.contains("{tenantid}") && self.config.entra_tenant().is_none());
        if !issuer_fits {
            return Err(OidcError::Misconfigured(format!(
                "the discovery document names the issuer {:?}, not the configured {:?}",
                metadata.issuer, self.config.issuer
            )));
        }
        let metadata = Arc::new(metadata);
        *cached = Some(Cached {
            value: metadata.clone(),
            fetched_at: self.clock.now(),
        });
        Ok(metadata)
    }

    /// Where to send the browser to sign in for `flow`.
    pub async fn authorize_url(&self, flow: &SignInFlow) -> Result<String, OidcError> {
        let metadata = self.metadata().await?;
        let mut url = url::Url::parse(&metadata.authorization_endpoint)
            .map_err(|e| OidcError::Misconfigured(format!("the authorization endpoint is not a URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.config.client_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", &self.config.redirect_uri)
            .append_pair("response_mode", "query")
            .append_pair("scope", &self.config.scope_param())
            .append_pair("state", &flow.state)
            .append_pair("nonce", &flow.nonce())
            .append_pair("code_challenge", &s256_challenge(&flow.code_verifier()))
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    /// Redeems the callback's `code` for `flow` and verifies the ID token that comes back.
    pub async fn complete(&self, flow: &SignInFlow, code: &str) -> Result<VerifiedIdentity, OidcError> {
        let metadata = self.metadata().await?;
        let tokens = token_endpoint::redeem_sign_in_code(
            &self.http,
            &metadata.token_endpoint,
            (&self.config.client_id, self.config.client_secret.expose()),
            code,
            &self.config.redirect_uri,
            &flow.code_verifier(),
            self.config.request_timeout,
        )
        .await
        .map_err(|e| match e {
            EndpointError::GrantRefused(m) => OidcError::Refused(m),
            EndpointError::Transient(m) => OidcError::Unavailable(m),
            EndpointError::Misconfigured(m) => OidcError::Misconfigured(m),
        })?;
        let id_token = tokens.id_token.ok_or_else(|| {
            OidcError::Misconfigured("the token endpoint answered without an ID token".to_owned())
        })?;
        let mut identity = self.verify_id_token(&id_token, &flow.nonce()).await?;
        // Providers may keep the profile claims out of the ID token (OpenID Connect Core 5.4): ask
        // the userinfo endpoint for what the token lacks.
        if identity.email.is_none()
            && let Some(endpoint) = metadata.userinfo_endpoint.as_deref()
        {
            self.add_userinfo(endpoint, &tokens.access_token, &mut identity)
                .await?;
        }
        Ok(identity)
    }

    /// Fills what the ID token left out from the userinfo endpoint. Its `sub` must be the ID token's
    /// (OpenID Connect Core 5.3.2), or the answer is someone else's and the sign-in fails.
    async fn add_userinfo(
        &self,
        endpoint: &str,
        access_token: &str,
        identity: &mut VerifiedIdentity,
    ) -> Result<(), OidcError> {
        #[derive(Deserialize)]
        struct UserInfo {
            sub: String,
            #[serde(default)]
            email: Option<String>,
            #[serde(default)]
            email_verified: Option<serde_json::Value>,
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            preferred_username: Option<String>,
        }
        let response = self
            .http
            .get(endpoint)
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.config.request_timeout)
            .send()
            .await
            .map_err(|e| {
                OidcError::Unavailable(format!("asking the userinfo endpoint: {}", e.without_url()))
            })?;
        let status = response.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(OidcError::Unavailable(format!(
                "the userinfo endpoint answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(OidcError::Misconfigured(format!(
                "the userinfo endpoint answered {status}"
            )));
        }
        let info: UserInfo = response
            .json()
            .await
            .map_err(|e| OidcError::Misconfigured(format!("the userinfo answer is not readable: {e}")))?;
        if info.sub != identity.subject {
            return Err(OidcError::InvalidToken(
                "the userinfo endpoint answered for another subject than the ID token's".to_owned(),
            ));
        }
        if let Some(email) = info.email.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()) {
            identity.email = Some(email);
            identity.email_verified = is_true(info.email_verified.as_ref());
        }
        if identity.name.is_none() {
            identity.name = info.name.filter(|n| !n.trim().is_empty());
        }
        if identity.preferred_username.is_none() {
            identity.preferred_username = info.preferred_username;
        }
        Ok(())
    }

    /// Verifies an ID token that must carry `nonce`.
    pub async fn verify_id_token(&self, token: &str, nonce: &str) -> Result<VerifiedIdentity, OidcError> {
        let invalid = |m: String| OidcError::InvalidToken(m);
        let metadata = self.metadata().await?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| invalid(format!("the ID token is not a signed JWT: {e}")))?;
        let allowed = self.allowed_algorithms(&metadata);
        if !allowed.contains(&header.alg) {
            return Err(invalid(format!(
                "the ID token is signed with {:?}, which is not accepted",
                header.alg
            )));
        }
        let key = self
            .signing_key(&metadata, header.kid.as_deref(), header.alg)
            .await?;
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[self.config.client_id.as_str()]);
        // Times are checked below against the injected clock; the issuer too (Entra's template).
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims = ["iss", "sub", "aud"].map(str::to_owned).into_iter().collect();
        let claims = jsonwebtoken::decode::<IdTokenClaims>(token, &key, &validation)
            .map_err(|e| invalid(describe_jwt_error(&e)))?
            .claims;
        self.check_claims(&metadata, claims, nonce)
    }

    fn check_claims(
        &self,
        metadata: &ProviderMetadata,
        claims: IdTokenClaims,
        nonce: &str,
    ) -> Result<VerifiedIdentity, OidcError> {
        let invalid = |m: String| Err(OidcError::InvalidToken(m));
        let expected_issuer = match (&claims.tid, metadata.issuer.contains("{tenantid}")) {
            (Some(tid), true) => metadata.issuer.replace("{tenantid}", tid),
            _ => metadata.issuer.clone(),
        };
        if claims.iss != expected_issuer {
            return invalid(format!("the ID token was issued by {:?}", claims.iss));
        }
        let audiences = claims.aud.list();
        if !audiences.contains(&self.config.client_id.as_str()) {
            return invalid("the ID token is not for this application".to_owned());
        }
        let azp_needed = audiences.len() > 1;
        match claims.azp.as_deref() {
            Some(azp) if azp != self.config.client_id => {
                return invalid("the ID token was issued to another application (azp)".to_owned());
            }
            None if azp_needed => {
                return invalid("the ID token names several audiences but no azp".to_owned());
            }
            _ => {}
        }
        let now = self.clock.now();
        let skew = self.config.clock_skew;
        let at = |secs: i64| DateTime::<Utc>::from_timestamp(secs, 0);
        match claims.exp.and_then(at) {
            Some(exp) if exp + skew > now => {}
            Some(_) => return invalid("the ID token has expired".to_owned()),
            None => return invalid("the ID token has no valid exp".to_owned()),
        }
        match claims.iat.and_then(at) {
            Some(iat) if iat <= now + skew => {}
            Some(_) => return invalid("the ID token was issued in the future (iat)".to_owned()),
            None => return invalid("the ID token has no valid iat".to_owned()),
        }
        if let Some(nbf) = claims.nbf
            && at(nbf).is_none_or(|nbf| nbf > now + skew)
        {
            return invalid("the ID token is not valid yet (nbf)".to_owned());
        }
        match claims.nonce.as_deref() {
            Some(n) if constant_time_eq(n, nonce) => {}
            Some(_) => return invalid("the ID token's nonce is not this sign-in's".to_owned()),
            None => return invalid("the ID token carries no nonce".to_owned()),
        }
        let tenant_configured = match self.config.entra_tenant() {
            Some(tenant) => match claims.tid.as_deref() {
                Some(tid) if tid.eq_ignore_ascii_case(tenant) => true,
                Some(tid) => {
                    return invalid(format!(
                        "the account belongs to another tenant ({tid}) than the configured one"
                    ));
                }
                // An issuer of Entra's shape whose tokens carry no tenant: not Entra.
                None => false,
            },
            None => false,
        };
        let email_verified = is_true(claims.email_verified.as_ref());
        Ok(VerifiedIdentity {
            issuer: claims.iss,
            subject: claims.sub,
            email: claims
                .email
                .map(|e| e.trim().to_owned())
                .filter(|e| !e.is_empty()),
            email_verified,
            name: claims.name.filter(|n| !n.trim().is_empty()),
            preferred_username: claims.preferred_username,
            oid: claims.oid,
            tid: claims.tid,
            tenant_configured,
            groups: claims.groups,
        })
    }

    /// The provider's end-session URL that returns to `post_logout_redirect_uri`, when it has one.
    pub async fn end_session_url(&self, post_logout_redirect_uri: &str) -> Option<String> {
        let metadata = self.metadata().await.ok()?;
        let mut url = url::Url::parse(metadata.end_session_endpoint.as_deref()?).ok()?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.config.client_id)
            .append_pair("post_logout_redirect_uri", post_logout_redirect_uri);
        Some(url.into())
    }

    fn allowed_algorithms(&self, metadata: &ProviderMetadata) -> Vec<Algorithm> {
        if metadata.id_token_signing_alg_values_supported.is_empty() {
            // The default of OpenID Connect Discovery.
            return vec![Algorithm::RS256];
        }
        ASYMMETRIC
            .iter()
            .copied()
            .filter(|alg| {
                metadata
                    .id_token_signing_alg_values_supported
                    .iter()
                    .any(|name| name == &format!("{alg:?}"))
            })
            .collect()
    }

    /// The key that signed a token: by `kid` from the cached key set, fetched again when the cache
    /// is old or does not hold that key (at most once per refetch interval for unknown keys).
    async fn signing_key(
        &self,
        metadata: &ProviderMetadata,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, OidcError> {
        let mut cache = self.keys.lock().await;
        let fresh = cache
            .keys
            .as_ref()
            .is_some_and(|k| self.younger_than(k.fetched_at, self.config.jwks_ttl));
        if !fresh {
            cache.keys = Some(self.fetch_keys(metadata).await?);
        }
        if let Some(key) = cache.keys.as_ref().and_then(|k| find_key(&k.value, kid, alg)) {
            return key;
        }
        let may_refetch = fresh
            && cache
                .last_forced
                .is_none_or(|at| !self.younger_than(at, self.config.jwks_refetch_interval));
        if may_refetch {
            cache.last_forced = Some(self.clock.now());
            cache.keys = Some(self.fetch_keys(metadata).await?);
            if let Some(key) = cache.keys.as_ref().and_then(|k| find_key(&k.value, kid, alg)) {
                return key;
            }
        }
        Err(OidcError::InvalidToken(format!(
            "the ID token is signed with a key the provider does not list ({})",
            kid.unwrap_or("no key id")
        )))
    }

    /// Whether `at` lies less than `age` before now (a time in the future counts as young).
    fn younger_than(&self, at: DateTime<Utc>, age: Duration) -> bool {
        let age = chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
        self.clock.now() - at < age
    }

    async fn fetch_keys(&self, metadata: &ProviderMetadata) -> Result<Cached<JwkSet>, OidcError> {
        let keys: JwkSet = self.get_json(&metadata.jwks_uri, "signing keys").await?;
        Ok(Cached {
            value: keys,
            fetched_at: self.clock.now(),
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str, what: &str) -> Result<T, OidcError> {
        let response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.config.request_timeout)
            .send()
            .await
            .map_err(|e| OidcError::Unavailable(format!("fetching the {what}: {}", e.without_url())))?;
        let status = response.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(OidcError::Unavailable(format!("the {what} answered {status}")));
        }
        if !status.is_success() {
            return Err(OidcError::Misconfigured(format!(
                "the {what} answered {status} ({url})"
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| OidcError::Unavailable(format!("reading the {what}: {}", e.without_url())))?;
        serde_json::from_slice(&body)
            .map_err(|e| OidcError::Misconfigured(format!("the {what} at {url} is not readable: {e}")))
    }
}

/// Whether a claim such as `email_verified` says yes: `true`, or (as some providers send it) `"true"`.
fn is_true(value: Option<&serde_json::Value>) -> bool {
    match value {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// The key of `set` that `kid` names and that can verify `alg` (without a `kid`, the only such key).
fn find_key(set: &JwkSet, kid: Option<&str>, alg: Algorithm) -> Option<Result<DecodingKey, OidcError>> {
    let fits = |jwk: &&jsonwebtoken::jwk::Jwk| {
        let family_fits = matches!(
            (&jwk.algorithm, alg),
            (
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_),
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ) | (
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_),
                Algorithm::ES256 | Algorithm::ES384
            ) | (
                jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_),
                Algorithm::EdDSA
            )
        );
        let for_signing = !matches!(
            jwk.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
        );
        family_fits && for_signing
    };
    let key = match kid {
        Some(kid) => set
            .keys
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid))
            .filter(fits),
        None => {
            let mut candidates = set.keys.iter().filter(fits);
            match (candidates.next(), candidates.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        }
    }?;
    Some(
        DecodingKey::from_jwk(key)
            .map_err(|e| OidcError::Misconfigured(format!("the provider's signing key cannot be used: {e}"))),
    )
}

fn describe_jwt_error(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature => "the ID token's signature does not verify".to_owned(),
        ErrorKind::InvalidAudience => "the ID token is not for this application".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the ID token has no {claim}"),
        ErrorKind::InvalidAlgorithm => "the ID token's algorithm does not fit its key".to_owned(),
        _ => format!("the ID token cannot be read: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbsync_core::SeededRandom;

    fn config(issuer: &str) -> OidcConfig {
        OidcConfig::new(
            issuer,
            "client",
            ClientSecret::new("s"),
            "https://kb.example/auth/oidc/callback",
        )
    }

    #[test]
    fn the_entra_tenant_is_the_issuers_tenant_segment_unless_it_is_multi_tenant() {
        let tid = "9188040d-6c67-4c5b-b112-36a304b66dad";
        assert_eq!(
            config(&format!("https://login.microsoftonline.com/{tid}/v2.0")).entra_tenant(),
            Some(tid)
        );
        for multi in ["common", "organizations", "consumers"] {
            let c = config(&format!("https://login.microsoftonline.com/{multi}/v2.0"));
            assert_eq!(c.entra_tenant(), None, "{multi}");
        }
        assert_eq!(config("https://accounts.example.org").entra_tenant(), None);
        assert_eq!(
            config("https://login.microsoftonline.com/t/v2.0/").entra_tenant(),
            Some("t")
        );
        assert_eq!(
            config(" https://id.example.org/ ").issuer,
            "https://id.example.org/"
        );
    }

    #[test]
    fn the_display_name_is_microsoft_for_entra_and_the_host_otherwise() {
        assert_eq!(
            config("https://login.microsoftonline.com/x/v2.0").display_name,
            "Microsoft"
        );
        assert_eq!(
            config("https://id.example.org/realms/a").display_name,
            "id.example.org"
        );
    }

    #[test]
    fn openid_is_always_asked_for() {
        let mut c = config("https://id.example.org");
        c.scopes = vec!["email profile".to_owned()];
        assert_eq!(c.scope_param(), "openid email profile");
        c.scopes = vec!["profile".to_owned(), "openid".to_owned()];
        assert_eq!(c.scope_param(), "profile openid");
    }

    #[test]
    fn a_flows_verifier_and_nonce_follow_from_its_state_and_binding_only() {
        let random = SeededRandom::new(7);
        let flow = SignInFlow::new(&random);
        let again = SignInFlow {
            state: flow.state.clone(),
            binding: flow.binding.clone(),
        };
        assert_eq!(flow.code_verifier(), again.code_verifier());
        assert_eq!(flow.nonce(), again.nonce());
        assert_ne!(flow.code_verifier(), flow.nonce());
        assert_eq!(flow.code_verifier().len(), 43);
        let other_browser = SignInFlow {
            state: flow.state.clone(),
            binding: SignInFlow::new(&random).binding,
        };
        assert_ne!(flow.code_verifier(), other_browser.code_verifier());
        assert!(flow.binding_matches(&again.binding_hash()));
        assert!(!flow.binding_matches(&other_browser.binding_hash()));
        assert!(!format!("{flow:?}").contains(&flow.state));
    }

    fn identity() -> VerifiedIdentity {
        VerifiedIdentity {
            issuer: "i".into(),
            subject: "s".into(),
            email: Some("pat@example.org".into()),
            email_verified: false,
            name: None,
            preferred_username: Some("pat@contoso.example".into()),
            oid: None,
            tid: None,
            tenant_configured: false,
            groups: None,
        }
    }

    #[test]
    fn only_verified_or_own_tenant_emails_are_trusted() {
        assert_eq!(identity().trusted_email(), None);
        let verified = VerifiedIdentity {
            email_verified: true,
            ..identity()
        };
        assert_eq!(verified.trusted_email(), Some("pat@example.org"));
        let own_tenant = VerifiedIdentity {
            tenant_configured: true,
            ..identity()
        };
        assert_eq!(own_tenant.trusted_email(), Some("pat@example.org"));
        let upn_only = VerifiedIdentity {
            tenant_configured: true,
            email: None,
            ..identity()
        };
        assert_eq!(upn_only.trusted_email(), Some("pat@contoso.example"));
        let foreign_upn = VerifiedIdentity {
            email: None,
            ..identity()
        };
        assert_eq!(foreign_upn.trusted_email(), None);
    }
}
