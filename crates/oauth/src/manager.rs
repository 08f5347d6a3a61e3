//! [`ConnectionManager`]: connecting a knowledge base, and the access tokens of its connection.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use kbsync_core::datasource::{AccessToken, DatasourceError, DatasourceKind, TokenSource};
use kbsync_core::{Clock, KbId, Random, UserId};
use kbsync_core::{Connection, ConnectionCredentials, StoredAccessToken};
use kbsync_store::{NewConnection, NewOAuthState, RefreshedTokens, Store, StoreError, TokenCipher};
use serde::Serialize;
use tracing::{info, instrument, warn};

use crate::app_only::AppOnlyTokens;
use crate::config::OAuthClientConfig;
use crate::errors::{CallbackError, CallbackErrorKind, OAuthError};
use crate::pkce;
use crate::token_endpoint::{self, EndpointError};

/// How long a pending authorization (state + verifier + binding) may be completed.
const STATE_TTL: chrono::Duration = chrono::Duration::minutes(10);

/// An access token is used until this long before it expires, then refreshed.
const EXPIRY_MARGIN_MINUTES: i64 = 5;

/// Timing of token requests and of the cross-instance refresh lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshSettings {
    /// Timeout of every request to a token endpoint.
    pub request_timeout: Duration,
    /// How long (real time) a caller waits for another instance's refresh before it answers
    /// `Transient`.
    pub lease_wait: Duration,
    /// How often a waiting caller looks at the database for the other instance's result.
    pub poll_interval: Duration,
    /// How long a refresh lease lasts (on the injected clock): an instance that dies while
    /// refreshing blocks others for at most this long. Longer than `request_timeout`.
    pub lease_duration: chrono::Duration,
}

impl Default for RefreshSettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(20),
            lease_wait: Duration::from_secs(30),
            poll_interval: Duration::from_millis(100),
            lease_duration: chrono::Duration::seconds(60),
        }
    }
}

/// What the API shows about a knowledge base's connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionStatus {
    pub datasource: DatasourceKind,
    pub has_stored_token: bool,
    pub token_stored_at: Option<DateTime<Utc>>,
    pub last_refreshed_at: Option<DateTime<Utc>>,
    pub needs_reauth: bool,
    /// The knowledge base syncs as the organisation's application (no user's delegation, no refresh token).
    pub app_only: bool,
}

/// An access token held in memory with its expiry.
struct CachedToken {
    token: AccessToken,
    expires_at: DateTime<Utc>,
}

struct Inner {
    store: Arc<dyn Store>,
    http: reqwest::Client,
    cipher: TokenCipher,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    oauth_clients: Vec<OAuthClientConfig>,
    /// This instance's name as the holder of refresh leases.
    instance_id: String,
    cache: Mutex<HashMap<KbId, CachedToken>>,
    /// One lock per connection: at most one task of this instance refreshes it at a time.
    flights: Mutex<HashMap<KbId, Arc<tokio::sync::Mutex<()>>>>,
}

/// Connects knowledge bases to datasources and hands out their access tokens. Clones share the
/// in-memory token cache; create one per process.
#[derive(Clone)]
pub struct ConnectionManager {
    inner: Arc<Inner>,
    settings: RefreshSettings,
    /// The app-only token source per datasource, where the operator configured one.
    app_only: Arc<Vec<(DatasourceKind, AppOnlyTokens)>>,
}

impl fmt::Debug for ConnectionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionManager")
            .field("instance_id", &self.inner.instance_id)
            .field("oauth_clients", &self.inner.oauth_clients)
            .field("cipher", &self.inner.cipher)
            .field("settings", &self.settings)
            .field("app_only", &self.app_only)
            .finish_non_exhaustive()
    }
}

/// A started authorization: where to send the user, and the secret that binds it to the browser
/// that started it. The caller hands `binding` to that browser only (kbsync: an `HttpOnly` cookie
/// named after `flow_id`), and passes it back to [`ConnectionManager::claim`].
pub struct Initiated {
    /// The authorization server's authorize URL.
    pub auth_url: String,
    /// Tells this flow apart from others the same browser may have in flight; derived from the
    /// state ([`flow_id`]), so the callback can compute it. Not secret.
    pub flow_id: String,
    /// A fresh random secret (256 bits, URL-safe); only its SHA-256 is stored.
    pub binding: String,
    /// How long the authorization may be completed.
    pub ttl: chrono::Duration,
}

impl fmt::Debug for Initiated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Initiated")
            .field("flow_id", &self.flow_id)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// The flow id ([`Initiated::flow_id`]) of the authorization a callback's `state` belongs to.
pub fn flow_id(state: &str) -> String {
    pkce::flow_id(state)
}

/// A pending authorization the callback has consumed and found bound to its browser; finish it
/// with [`ConnectionManager::complete`].
#[derive(Debug)]
pub struct PendingAuthorization(kbsync_store::OAuthState);

impl PendingAuthorization {
    /// The knowledge base being connected.
    pub fn kb_id(&self) -> KbId {
        self.0.kb_id
    }

    /// The user who started connecting.
    pub fn user_id(&self) -> UserId {
        self.0.user_id
    }
}

/// Whether a callback's binding (from its cookie) is the one the pending authorization was
/// started with; compared as hashes, in constant time.
fn bound(pending: &kbsync_store::OAuthState, binding: Option<&str>) -> bool {
    binding.is_some_and(|b| pkce::constant_time_eq(&pkce::state_hash(b), &pending.binding_hash))
}

pub(crate) fn fresh(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    expires_at - chrono::Duration::minutes(EXPIRY_MARGIN_MINUTES) > now
}

fn not_connected(e: StoreError) -> OAuthError {
    match e {
        StoreError::NotFound => OAuthError::NotConnected,
        other => OAuthError::Store(other),
    }
}

/// A claim of a JWT access token, when it is one and the claim is a plain identifier (letters,
/// digits, `-` and `.`, at most 64 characters). Read without verifying the signature: the token
/// came straight from the token endpoint in answer to this client.
fn claim_of(access_token: &str, name: &str) -> Option<String> {
    let payload = access_token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let value = claims.get(name)?.as_str()?;
    let valid = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    valid.then(|| value.to_owned())
}

/// The tenant (`tid` claim) of a JWT access token: only displayed.
fn tenant_of(access_token: &str) -> Option<String> {
    claim_of(access_token, "tid")
}

impl ConnectionManager {
    /// `random` supplies the states, PKCE verifiers and this instance's lease-holder id (two
    /// managers sharing a database must not be given identically seeded generators).
    pub fn new(
        store: Arc<dyn Store>,
        http: reqwest::Client,
        cipher: TokenCipher,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
        oauth_clients: Vec<OAuthClientConfig>,
    ) -> Self {
        let instance_id = format!("instance-{}", random.uuid().simple());
        Self {
            inner: Arc::new(Inner {
                store,
                http,
                cipher,
                clock,
                random,
                oauth_clients,
                instance_id,
                cache: Mutex::new(HashMap::new()),
                flights: Mutex::new(HashMap::new()),
            }),
            settings: RefreshSettings::default(),
            app_only: Arc::new(Vec::new()),
        }
    }

    /// Lets knowledge bases of `kind` connect as the organisation's application, with `tokens`.
    pub fn with_app_only(mut self, kind: DatasourceKind, tokens: AppOnlyTokens) -> Self {
        let mut all: Vec<(DatasourceKind, AppOnlyTokens)> = self
            .app_only
            .iter()
            .filter(|(k, _)| *k != kind)
            .cloned()
            .collect();
        all.push((kind, tokens));
        self.app_only = Arc::new(all);
        self
    }

    /// The app-only token source of a datasource; `None` when app-only access is not configured.
    pub fn app_only(&self, kind: DatasourceKind) -> Option<&AppOnlyTokens> {
        self.app_only.iter().find(|(k, _)| *k == kind).map(|(_, t)| t)
    }

    /// Replaces the default timing (tests shorten the request timeout).
    pub fn with_settings(mut self, settings: RefreshSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The OAuth client this server has for a datasource; `None` when it is not configured.
    pub fn oauth_client(&self, kind: DatasourceKind) -> Option<&OAuthClientConfig> {
        self.inner.oauth_clients.iter().find(|p| p.kind == kind)
    }

    // --- connect ---------------------------------------------------------------------------

    /// Starts connecting a knowledge base: creates a random `state` (256 bits, URL-safe), a PKCE
    /// S256 verifier and a browser binding secret, stores them (the state and the binding only
    /// hashed, the verifier encrypted) for 10 minutes, and returns the authorize URL to send the
    /// user to (`response_type=code`, `client_id`, `redirect_uri`, `scope`, `state`,
    /// `code_challenge`, `code_challenge_method=S256`, `response_mode=query`, `prompt=consent`
    /// unless the datasource names another prompt, and the datasource's extra parameters, each
    /// parameter once) together with the binding the starting browser must keep.
    #[instrument(skip_all, fields(kb.id = %kb_id, datasource = %kind))]
    pub async fn initiate(
        &self,
        kind: DatasourceKind,
        kb_id: KbId,
        user_id: UserId,
    ) -> Result<Initiated, OAuthError> {
        let datasource = self.oauth_client(kind).ok_or(OAuthError::NotConfigured(kind))?;
        let mut url = url::Url::parse(&datasource.authorize_url)
            .map_err(|e| OAuthError::Misconfigured(format!("the authorize URL is invalid: {e}")))?;
        let params = datasource.authorize_params().map_err(OAuthError::Misconfigured)?;
        let state = pkce::random_url_safe(&*self.inner.random);
        let verifier = pkce::random_url_safe(&*self.inner.random);
        let binding = pkce::random_url_safe(&*self.inner.random);
        let now = self.inner.clock.now();
        if let Err(e) = self.inner.store.delete_expired_oauth_states(now).await {
            warn!(error = %e, "could not delete expired OAuth states");
        }
        self.inner
            .store
            .create_oauth_state(NewOAuthState {
                state_hash: pkce::state_hash(&state),
                kb_id,
                user_id,
                datasource: kind,
                code_verifier: self.inner.cipher.encrypt(&verifier),
                binding_hash: pkce::state_hash(&binding),
                created_at: now,
                expires_at: now + STATE_TTL,
            })
            .await?;
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in &params {
                query.append_pair(name, value);
            }
            query
                .append_pair("state", &state)
                .append_pair("code_challenge", &pkce::s256_challenge(&verifier))
                .append_pair("code_challenge_method", "S256");
        }
        info!(user.id = %user_id, "authorization started");
        Ok(Initiated {
            auth_url: url.into(),
            flow_id: pkce::flow_id(&state),
            binding,
            ttl: STATE_TTL,
        })
    }

    /// The first step of the callback: consumes the state exactly once, whatever follows, and
    /// checks that the callback came back to the browser that started the authorization (its
    /// `binding`, from the cookie, hashes to the stored hash). Nothing is redeemed or stored yet;
    /// the caller may check more (that the user may still connect the knowledge base) before
    /// [`complete`](Self::complete).
    #[instrument(skip_all)]
    pub async fn claim(
        &self,
        state: &str,
        binding: Option<&str>,
    ) -> Result<PendingAuthorization, CallbackError> {
        let pending = self.take_state(state).await?;
        if !bound(&pending, binding) {
            warn!(
                kb.id = %pending.kb_id,
                user.id = %pending.user_id,
                cookie = binding.is_some(),
                "authorization callback from a browser that did not start it"
            );
            return Err(CallbackError::wrong_browser());
        }
        Ok(PendingAuthorization(pending))
    }

    /// Finishes connecting a claimed authorization: redeems the code at the token endpoint with
    /// the client secret, the PKCE verifier and the redirect URI, and stores the refresh token
    /// (and the access token that came with it) encrypted, replacing any earlier connection and
    /// clearing `needs_reauth`. Returns the knowledge base the state was for.
    #[instrument(skip_all, fields(kb.id = %pending.0.kb_id))]
    pub async fn complete(&self, pending: PendingAuthorization, code: &str) -> Result<KbId, CallbackError> {
        let PendingAuthorization(pending) = pending;
        let kb_id = pending.kb_id;
        let fail = |kind: CallbackErrorKind, reason: &str| CallbackError::new(kind, Some(kb_id), reason);
        if code.is_empty() {
            return Err(fail(
                CallbackErrorKind::TokenExchange,
                "The sign-in returned no authorization code. Start connecting again.",
            ));
        }
        let Some(datasource) = self.oauth_client(pending.datasource) else {
            return Err(fail(
                CallbackErrorKind::NotConfigured,
                "This datasource is not configured on the server any more.",
            ));
        };
        let verifier = self.inner.cipher.open(&pending.code_verifier).map_err(|e| {
            warn!(kb.id = %kb_id, error = %e, "cannot decrypt the PKCE verifier");
            fail(
                CallbackErrorKind::Internal,
                "kbsync could not read the pending sign-in. Start connecting again.",
            )
        })?;
        let set = token_endpoint::redeem_code(
            &self.inner.http,
            datasource,
            code,
            &verifier,
            self.settings.request_timeout,
        )
        .await
        .map_err(|e| {
            warn!(kb.id = %kb_id, error = ?e, "authorization code not redeemed");
            match e {
                EndpointError::GrantRefused(why) => fail(
                    CallbackErrorKind::TokenExchange,
                    &format!("The sign-in could not be completed: the authorization code was refused ({why}). Start connecting again."),
                ),
                EndpointError::Transient(_) => fail(
                    CallbackErrorKind::Transient,
                    "The sign-in service could not be reached. Start connecting again in a moment.",
                ),
                EndpointError::Misconfigured(why) => fail(
                    CallbackErrorKind::Misconfigured,
                    &format!("The sign-in service refused kbsync's registration ({why}). An administrator must check the OAuth settings."),
                ),
            }
        })?;
        let Some(refresh_token) = set.refresh_token.as_deref() else {
            return Err(fail(
                CallbackErrorKind::TokenExchange,
                "The sign-in did not grant offline access (no refresh token), so kbsync cannot sync on its own.",
            ));
        };
        let now = self.inner.clock.now();
        let expires_at = now + chrono::Duration::seconds(set.expires_in);
        let stored = self
            .inner
            .store
            .upsert_connection(
                NewConnection {
                    kb_id,
                    datasource: pending.datasource,
                    credentials: ConnectionCredentials::Delegated,
                    refresh_token: Some(self.inner.cipher.encrypt(refresh_token)),
                    access_token: Some(StoredAccessToken {
                        token: self.inner.cipher.encrypt(&set.access_token),
                        expires_at,
                    }),
                    tenant: tenant_of(&set.access_token),
                },
                now,
            )
            .await
            .map_err(|e| {
                warn!(kb.id = %kb_id, error = %e, "cannot store the connection");
                match e {
                    StoreError::Unavailable(_) => fail(
                        CallbackErrorKind::Transient,
                        "kbsync could not save the connection right now. Start connecting again in a moment.",
                    ),
                    StoreError::InvalidReference(_) => fail(
                        CallbackErrorKind::Internal,
                        "The knowledge base no longer exists.",
                    ),
                    _ => fail(
                        CallbackErrorKind::Internal,
                        "kbsync could not save the connection.",
                    ),
                }
            })?;
        // The account that connected is this kbsync user at the source: permissions that name it
        // by its directory id (`oid`) reach them even without an address.
        if let Some(oid) = claim_of(&set.access_token, "oid")
            && let Err(e) = self
                .inner
                .store
                .add_user_principal(pending.user_id, &format!("user:{oid}"))
                .await
        {
            warn!(kb.id = %kb_id, error = %e, "could not record the connected account's id at the source");
        }
        self.remember(kb_id, AccessToken::new(set.access_token), expires_at);
        info!(
            kb.id = %kb_id,
            user.id = %pending.user_id,
            datasource = %pending.datasource,
            tenant = stored.tenant.as_deref().unwrap_or(""),
            "connection stored"
        );
        Ok(kb_id)
    }

    /// For a callback that carries an error instead of a code: consumes the state (when valid)
    /// and says which knowledge base it was for, only to the browser that started it.
    #[instrument(skip_all)]
    pub async fn abandon(&self, state: &str, binding: Option<&str>) -> Option<KbId> {
        let pending = self.take_state(state).await.ok()?;
        info!(kb.id = %pending.kb_id, "authorization abandoned");
        bound(&pending, binding).then_some(pending.kb_id)
    }

    async fn take_state(&self, state: &str) -> Result<kbsync_store::OAuthState, CallbackError> {
        if state.is_empty() {
            return Err(CallbackError::invalid_state());
        }
        let now = self.inner.clock.now();
        match self
            .inner
            .store
            .take_oauth_state(&pkce::state_hash(state), now)
            .await
        {
            Ok(p) => Ok(p),
            Err(StoreError::NotFound) => Err(CallbackError::invalid_state()),
            Err(e) => {
                warn!(error = %e, "cannot read the pending authorization");
                Err(CallbackError::new(
                    CallbackErrorKind::Transient,
                    None,
                    "kbsync could not read the pending sign-in right now. Start connecting again in a moment.",
                ))
            }
        }
    }

    // --- the stored connection -------------------------------------------------------------

    /// The connection of a knowledge base as the API shows it; `None` when it has none.
    pub async fn status(&self, kb_id: KbId) -> Result<Option<ConnectionStatus>, OAuthError> {
        match self.inner.store.get_connection(kb_id).await {
            Ok(c) => Ok(Some(ConnectionStatus {
                datasource: c.datasource,
                has_stored_token: true,
                token_stored_at: Some(c.stored_at),
                last_refreshed_at: c.last_refreshed_at,
                needs_reauth: c.needs_reauth,
                app_only: c.credentials == ConnectionCredentials::AppOnly,
            })),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Connects a knowledge base as the organisation's application: no redirect and no user's tokens; the
    /// connection only records that the knowledge base syncs app-only (replacing any earlier connection and
    /// clearing `needs_reauth`). `NotConfigured` when app-only access is not configured for `kind`.
    #[instrument(skip_all, fields(kb.id = %kb_id, datasource = %kind))]
    pub async fn connect_app_only(&self, kind: DatasourceKind, kb_id: KbId) -> Result<(), OAuthError> {
        let tokens = self.app_only(kind).ok_or(OAuthError::NotConfigured(kind))?;
        self.drop_cached(kb_id);
        self.inner
            .store
            .upsert_connection(
                NewConnection {
                    kb_id,
                    datasource: kind,
                    credentials: ConnectionCredentials::AppOnly,
                    refresh_token: None,
                    access_token: None,
                    tenant: tokens.config().tenant.clone(),
                },
                self.inner.clock.now(),
            )
            .await?;
        info!("connected as the organisation's application");
        Ok(())
    }

    /// The token source of a knowledge base's connection as `status` describes it: the app-only source for
    /// an app-only connection, the stored refresh token's otherwise.
    pub fn token_source(
        &self,
        kb_id: KbId,
        status: &ConnectionStatus,
    ) -> Result<Arc<dyn TokenSource>, OAuthError> {
        if status.app_only {
            let tokens = self
                .app_only(status.datasource)
                .ok_or(OAuthError::NotConfigured(status.datasource))?;
            return Ok(Arc::new(tokens.clone()));
        }
        Ok(self.tokens(kb_id))
    }

    /// Forgets the stored tokens of a knowledge base (automatic sync stops). Succeeds when there
    /// was nothing to forget. Other instances may keep using an access token they cached until it
    /// expires (at most its lifetime, about an hour).
    #[instrument(skip_all, fields(kb.id = %kb_id))]
    pub async fn forget(&self, kb_id: KbId) -> Result<(), OAuthError> {
        self.drop_cached(kb_id);
        match self.inner.store.delete_connection(kb_id).await {
            Ok(()) => {
                info!("connection forgotten");
                Ok(())
            }
            Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The datasource refused an access token of the connection stored at `stored_at` although
    /// the token was fresh (the token endpoint did not refuse the refresh token, or that would
    /// have marked it already): marks that connection as needing re-authorization, so that
    /// automatic sync stops until the user connects again. Marks nothing when the connection was
    /// renewed since (another `stored_at`), is marked already, or is being refreshed on this
    /// instance or another (what that refresh gets decides). The mark is made under the
    /// connection's refresh lease, as a refused refresh is. Returns whether it marked it.
    #[instrument(skip_all, fields(kb.id = %kb_id))]
    pub async fn mark_needs_reauth(&self, kb_id: KbId, stored_at: DateTime<Utc>) -> Result<bool, OAuthError> {
        let flight = self.flight(kb_id);
        // A refresh of this connection is running here: what it gets decides.
        let Ok(_in_flight) = flight.try_lock() else {
            return Ok(false);
        };
        let store = &self.inner.store;
        let owner = self.inner.instance_id.as_str();
        let is_current = |conn: &Connection| !conn.needs_reauth && conn.stored_at == stored_at;
        match store.get_connection(kb_id).await {
            Ok(conn) if is_current(&conn) => {}
            Ok(_) | Err(StoreError::NotFound) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let now = self.inner.clock.now();
        match store
            .try_acquire_refresh_lease(kb_id, owner, now, now + self.settings.lease_duration)
            .await
        {
            Ok(true) => {}
            // Another instance is refreshing: what it gets decides.
            Ok(false) | Err(StoreError::NotFound) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        // Read again under the lease: the user may have connected again meanwhile.
        let marked = match store.get_connection(kb_id).await {
            Ok(conn) if is_current(&conn) => store.mark_needs_reauth(kb_id, owner, now).await,
            Ok(_) | Err(StoreError::NotFound) => Ok(false),
            Err(e) => Err(e),
        };
        if matches!(marked, Ok(true)) {
            // Marking gave the lease back.
            self.drop_cached(kb_id);
            return Ok(true);
        }
        if let Err(e) = store.release_refresh_lease(kb_id, owner).await {
            warn!(error = %e, "cannot release the refresh lease; it expires on its own");
        }
        Ok(marked?)
    }

    /// The [`TokenSource`] of a knowledge base's stored connection.
    pub fn tokens(&self, kb_id: KbId) -> Arc<dyn TokenSource> {
        Arc::new(KbTokens {
            manager: self.clone(),
            kb_id,
        })
    }

    /// A usable access token of a knowledge base's connection (refreshing it when needed).
    pub async fn access_token(&self, kb_id: KbId) -> Result<AccessToken, OAuthError> {
        self.token(kb_id, None).await
    }

    // --- access tokens ---------------------------------------------------------------------

    fn remember(&self, kb_id: KbId, token: AccessToken, expires_at: DateTime<Utc>) {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(kb_id, CachedToken { token, expires_at });
    }

    fn drop_cached(&self, kb_id: KbId) {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&kb_id);
    }

    /// The cached token when it is fresh and not the one the remote refused.
    fn cached(&self, kb_id: KbId, rejected: Option<&AccessToken>) -> Option<AccessToken> {
        let now = self.inner.clock.now();
        let mut cache = self.inner.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = cache.get(&kb_id)?;
        if fresh(entry.expires_at, now) && rejected != Some(&entry.token) {
            return Some(entry.token.clone());
        }
        cache.remove(&kb_id);
        None
    }

    fn flight(&self, kb_id: KbId) -> Arc<tokio::sync::Mutex<()>> {
        self.inner
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(kb_id)
            .or_default()
            .clone()
    }

    /// The stored access token when it is fresh and not the one the remote refused (another
    /// instance may have put it there).
    fn stored_token(
        &self,
        conn: &Connection,
        rejected: Option<&AccessToken>,
    ) -> Result<Option<(AccessToken, DateTime<Utc>)>, OAuthError> {
        let Some(stored) = &conn.access_token else {
            return Ok(None);
        };
        if !fresh(stored.expires_at, self.inner.clock.now()) {
            return Ok(None);
        }
        let token = AccessToken::new(self.inner.cipher.open(&stored.token)?);
        if rejected == Some(&token) {
            return Ok(None);
        }
        Ok(Some((token, stored.expires_at)))
    }

    /// An access token: from memory, else from the database, else by a refresh that only one
    /// instance at a time performs (the others wait for its result).
    #[instrument(skip_all, fields(kb.id = %kb_id, forced = rejected.is_some()))]
    #[expect(
        clippy::disallowed_methods,
        reason = "lease_wait bounds real waiting time, whatever the injected clock says"
    )]
    async fn token(&self, kb_id: KbId, rejected: Option<&AccessToken>) -> Result<AccessToken, OAuthError> {
        if let Some(t) = self.cached(kb_id, rejected) {
            return Ok(t);
        }
        let flight = self.flight(kb_id);
        let _in_flight = flight.lock().await;
        if let Some(t) = self.cached(kb_id, rejected) {
            return Ok(t);
        }
        let deadline = tokio::time::Instant::now() + self.settings.lease_wait;
        loop {
            let conn = self
                .inner
                .store
                .get_connection(kb_id)
                .await
                .map_err(not_connected)?;
            if conn.needs_reauth {
                return Err(OAuthError::NeedsReauth);
            }
            if let Some((token, expires_at)) = self.stored_token(&conn, rejected)? {
                self.remember(kb_id, token.clone(), expires_at);
                return Ok(token);
            }
            let now = self.inner.clock.now();
            let leased = self
                .inner
                .store
                .try_acquire_refresh_lease(
                    kb_id,
                    &self.inner.instance_id,
                    now,
                    now + self.settings.lease_duration,
                )
                .await
                .map_err(not_connected)?;
            if leased && let Some(token) = self.refresh_under_lease(kb_id, rejected).await? {
                return Ok(token);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(OAuthError::Transient(
                    "another instance is still refreshing the access token".to_owned(),
                ));
            }
            tokio::time::sleep(self.settings.poll_interval).await;
        }
    }

    /// Refreshes while holding the lease, and always gives the lease back. `None`: the lease was
    /// lost or the connection changed meanwhile; look again.
    async fn refresh_under_lease(
        &self,
        kb_id: KbId,
        rejected: Option<&AccessToken>,
    ) -> Result<Option<AccessToken>, OAuthError> {
        let outcome = self.refresh_steps(kb_id, rejected).await;
        // After a successful store or mark the lease is already free and this does nothing.
        if let Err(e) = self
            .inner
            .store
            .release_refresh_lease(kb_id, &self.inner.instance_id)
            .await
        {
            warn!(error = %e, "cannot release the refresh lease; it expires on its own");
        }
        outcome
    }

    async fn refresh_steps(
        &self,
        kb_id: KbId,
        rejected: Option<&AccessToken>,
    ) -> Result<Option<AccessToken>, OAuthError> {
        let owner = self.inner.instance_id.as_str();
        // Read again under the lease: another instance may have refreshed (and rotated the
        // refresh token) since the last look.
        let conn = self
            .inner
            .store
            .get_connection(kb_id)
            .await
            .map_err(not_connected)?;
        if conn.needs_reauth {
            return Err(OAuthError::NeedsReauth);
        }
        if let Some((token, expires_at)) = self.stored_token(&conn, rejected)? {
            self.remember(kb_id, token.clone(), expires_at);
            return Ok(Some(token));
        }
        let datasource = self
            .oauth_client(conn.datasource)
            .ok_or(OAuthError::NotConfigured(conn.datasource))?;
        let Some(stored_refresh) = &conn.refresh_token else {
            return Err(OAuthError::Misconfigured(
                "an app-only connection has no refresh token: its tokens come from the application's credentials"
                    .to_owned(),
            ));
        };
        let refresh_token = self.inner.cipher.open(stored_refresh)?;
        let result = token_endpoint::refresh(
            &self.inner.http,
            datasource,
            &refresh_token,
            self.settings.request_timeout,
        )
        .await;
        let outcome = match &result {
            Ok(_) => "refreshed",
            Err(EndpointError::GrantRefused(_)) => "refused",
            Err(EndpointError::Transient(_)) => "transient_error",
            Err(EndpointError::Misconfigured(_)) => "misconfigured",
        };
        metrics::counter!("kbsync_token_refreshes_total", "outcome" => outcome).increment(1);
        match result {
            Ok(set) => {
                let now = self.inner.clock.now();
                let expires_at = now + chrono::Duration::seconds(set.expires_in);
                let tokens = RefreshedTokens {
                    refresh_token: set.refresh_token.as_deref().map(|r| self.inner.cipher.encrypt(r)),
                    access_token: StoredAccessToken {
                        token: self.inner.cipher.encrypt(&set.access_token),
                        expires_at,
                    },
                };
                // The rotated refresh token is durable before the access token is used.
                if !self
                    .inner
                    .store
                    .store_refreshed_tokens(kb_id, owner, tokens, now)
                    .await?
                {
                    warn!("the refresh lease was lost before the tokens were stored; looking again");
                    return Ok(None);
                }
                let token = AccessToken::new(set.access_token);
                self.remember(kb_id, token.clone(), expires_at);
                info!(rotated = set.refresh_token.is_some(), "access token refreshed");
                Ok(Some(token))
            }
            Err(EndpointError::GrantRefused(why)) => {
                if !self
                    .inner
                    .store
                    .mark_needs_reauth(kb_id, owner, self.inner.clock.now())
                    .await?
                {
                    warn!("the connection changed while its refresh was refused; looking again");
                    return Ok(None);
                }
                self.drop_cached(kb_id);
                warn!(reason = %why, "refresh token refused; the knowledge base needs re-authorization");
                Err(OAuthError::NeedsReauth)
            }
            Err(EndpointError::Transient(why)) => {
                warn!(reason = %why, "token refresh failed; will retry later");
                Err(OAuthError::Transient(why))
            }
            Err(EndpointError::Misconfigured(why)) => {
                tracing::error!(reason = %why, "token refresh refused kbsync's OAuth configuration");
                Err(OAuthError::Misconfigured(why))
            }
        }
    }
}

/// The token source of one knowledge base's stored connection.
struct KbTokens {
    manager: ConnectionManager,
    kb_id: KbId,
}

impl fmt::Debug for KbTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KbTokens").field("kb_id", &self.kb_id).finish()
    }
}

#[async_trait]
impl TokenSource for KbTokens {
    async fn access_token(&self) -> Result<AccessToken, DatasourceError> {
        Ok(self.manager.token(self.kb_id, None).await?)
    }

    async fn refresh(&self, rejected: &AccessToken) -> Result<AccessToken, DatasourceError> {
        Ok(self.manager.token(self.kb_id, Some(rejected)).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_is_read_from_a_jwt_access_token_only() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"tid":"72f988bf-86f1-41af-91ab-2d7cd011db47","oid":"x"}"#);
        assert_eq!(
            tenant_of(&format!("eyJ0eXAiOiJKV1QifQ.{payload}.sig")).as_deref(),
            Some("72f988bf-86f1-41af-91ab-2d7cd011db47")
        );
        assert_eq!(tenant_of("opaque-token"), None);
        assert_eq!(
            claim_of(&format!("eyJ0eXAiOiJKV1QifQ.{payload}.sig"), "oid").as_deref(),
            Some("x")
        );
        let evil = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"tid":"<script>"}"#);
        assert_eq!(tenant_of(&format!("a.{evil}.c")), None);
    }

    #[test]
    fn tokens_are_fresh_until_five_minutes_before_expiry() {
        let now = DateTime::from_timestamp(1_750_000_000, 0).unwrap_or_default();
        assert!(fresh(now + chrono::Duration::seconds(301), now));
        assert!(!fresh(now + chrono::Duration::seconds(300), now));
    }
}
