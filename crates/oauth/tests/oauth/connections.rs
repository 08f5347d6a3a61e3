//! The connection lifecycle end to end against the in-process emulator of the identity platform:
//! connecting (authorization code with PKCE and a browser binding), refreshing with rotation,
//! revocation and transient failures of the token endpoint, several instances, key rotation.
//! Each test gets a database of its own from the kit (SQLite, and PostgreSQL when
//! `KBSYNC_TEST_DATABASE_URL` is set) and looks under the store with `TestDb::text_rows`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use kbsync_core::datasource::{AccessToken, DatasourceError, DatasourceKind};
use kbsync_core::{Clock, KbId, KbType, ManualClock, Role, SeededRandom, SyncStatus, UserId};
use kbsync_kit::TestDb as Db;
use kbsync_oauth::{
    CallbackErrorKind, ClientSecret, ConnectionManager, OAuthClientConfig, OAuthError, RefreshSettings,
};
use kbsync_store::{Store, StoreError, TokenCipher};
use msgraph_emulator::{ClientRegistration, Emulator, FaultAction, FaultRule, RetryAfter, RunningEmulator};
use sha2::Digest;
use uuid::Uuid;

const CLIENT_ID: &str = "kbsync-test-client";
const CLIENT_SECRET: &str = "kbsync-test-client-secret";
const REDIRECT_URI: &str = "http://127.0.0.1:9/api/v1/datasources/onedrive/auth/callback";
const SECRET_KEY: &str = "the kbsync secret key of these tests";
const TOKEN_ROUTE: &str = "POST /{id}/oauth2/v2.0/token";
const TOKEN_PATH_GLOB: &str = "/*/oauth2/v2.0/token";

kbsync_kit::on_both_databases!(run = kbsync_kit::with_test_db, workers = 4;
    full_flow_stores_the_refresh_token_encrypted_and_refresh_rotates_it,
    revoked_refresh_token_marks_needs_reauth_until_the_user_connects_again,
    a_refused_access_token_marks_only_the_connection_it_came_from,
    server_errors_from_the_token_endpoint_are_transient_and_never_need_reauth,
    token_endpoint_timeout_is_transient_and_never_needs_reauth,
    refused_client_secret_is_misconfiguration_not_needs_reauth,
    replayed_expired_forged_and_missing_states_are_refused,
    state_of_one_kb_cannot_complete_for_another,
    a_callback_without_the_starting_browsers_binding_is_refused_and_spends_the_state,
    two_instances_refresh_once_and_store_the_rotated_token,
    previous_secret_key_still_decrypts_after_rotation,
    status_forget_and_unconfigured_datasource,
);

// --- harness ---------------------------------------------------------------------------------

struct Harness {
    db: Db,
    emu: RunningEmulator,
    store: Arc<dyn Store>,
    clock: ManualClock,
    manager: ConnectionManager,
    owner: UserId,
    kb: KbId,
    /// The browser binding of each started flow, by state (what the starting browser keeps).
    bindings: std::sync::Mutex<HashMap<String, String>>,
}

fn datasource(emu: &RunningEmulator) -> OAuthClientConfig {
    OAuthClientConfig {
        kind: DatasourceKind::OneDrive,
        client_id: CLIENT_ID.into(),
        client_secret: ClientSecret::new(CLIENT_SECRET),
        authorize_url: emu.authorize_url(),
        token_url: emu.token_url(),
        scopes: vec![
            "https://graph.microsoft.com/Files.Read.All".into(),
            "offline_access".into(),
        ],
        redirect_uri: REDIRECT_URI.into(),
        extra_authorize_params: Vec::new(),
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

impl Harness {
    async fn new(db: Db) -> Self {
        let emu = Emulator::builder()
            .auto_consent(true)
            .client(ClientRegistration {
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.into(),
                redirect_uris: vec![REDIRECT_URI.into()],
                ..ClientRegistration::default()
            })
            .start()
            .await
            .unwrap();
        let store = db.open().await;
        let clock = ManualClock::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
        let owner = kbsync_kit::fixtures::user(store.as_ref(), Role::User, clock.now()).await;
        let mut h = Self {
            manager: ConnectionManager::new(
                store.clone(),
                http(),
                TokenCipher::new(SECRET_KEY, None).unwrap(),
                Arc::new(clock.clone()),
                Arc::new(SeededRandom::new(1)),
                vec![datasource(&emu)],
            ),
            db,
            emu,
            store,
            clock,
            owner,
            kb: Uuid::nil(),
            bindings: std::sync::Mutex::new(HashMap::new()),
        };
        h.kb = h.new_kb().await;
        h
    }

    async fn new_kb(&self) -> KbId {
        let (store, owner, now) = (self.store.as_ref(), self.owner, self.clock.now());
        kbsync_kit::fixtures::kb(store, owner, "Team drive", KbType::OneDrive, now).await
    }

    /// Another manager ("instance") on `store`, with its own randomness and settings.
    fn manager_on(&self, store: Arc<dyn Store>, cipher: TokenCipher, seed: u64) -> ConnectionManager {
        ConnectionManager::new(
            store,
            http(),
            cipher,
            Arc::new(self.clock.clone()),
            Arc::new(SeededRandom::new(seed)),
            vec![datasource(&self.emu)],
        )
    }

    /// Starts connecting `kb` and lets the emulator consent: returns the authorize URL's query
    /// and the `state` and `code` of the redirect back.
    async fn authorize(
        &self,
        manager: &ConnectionManager,
        kb: KbId,
    ) -> (HashMap<String, String>, String, String) {
        let started = manager
            .initiate(DatasourceKind::OneDrive, kb, self.owner)
            .await
            .unwrap();
        let url = started.auth_url;
        let query: HashMap<String, String> = url::Url::parse(&url)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap();
        let resp = browser.get(&url).send().await.unwrap();
        assert_eq!(
            resp.status(),
            reqwest::StatusCode::FOUND,
            "{}",
            resp.text().await.unwrap()
        );
        let location = resp.headers()[reqwest::header::LOCATION]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(location.starts_with(REDIRECT_URI), "{location}");
        let back: HashMap<String, String> = url::Url::parse(&location)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        assert_eq!(started.flow_id, kbsync_oauth::flow_id(&back["state"]));
        self.bindings
            .lock()
            .unwrap()
            .insert(back["state"].clone(), started.binding);
        (query, back["state"].clone(), back["code"].clone())
    }

    /// The binding the browser that started the flow of `state` kept, if any.
    fn binding(&self, state: &str) -> Option<String> {
        self.bindings.lock().unwrap().get(state).cloned()
    }

    /// The callback in the browser that started the flow: claim with its binding, then complete.
    async fn complete(&self, state: &str, code: &str) -> Result<KbId, kbsync_oauth::CallbackError> {
        let pending = self.manager.claim(state, self.binding(state).as_deref()).await?;
        self.manager.complete(pending, code).await
    }

    /// An error callback in the browser that started the flow of `state`.
    async fn abandon(&self, state: &str) -> Option<KbId> {
        self.manager.abandon(state, self.binding(state).as_deref()).await
    }

    async fn connect(&self, kb: KbId) {
        let (_, state, code) = self.authorize(&self.manager, kb).await;
        assert_eq!(self.complete(&state, &code).await.unwrap(), kb);
    }

    fn token_calls(&self) -> u64 {
        self.emu.control().request_counts().count(TOKEN_ROUTE)
    }

    /// The stored refresh token, decrypted.
    async fn stored_refresh_token(&self, kb: KbId) -> String {
        let c = self.store.get_connection(kb).await.unwrap();
        TokenCipher::new(SECRET_KEY, None)
            .unwrap()
            .open(c.refresh_token.as_ref().unwrap())
            .unwrap()
    }

    /// Lets the access tokens run out (on the injected clock).
    fn expire_access_tokens(&self) {
        self.clock.advance(chrono::Duration::hours(2));
    }

    fn fail_token_endpoint(&self, action: FaultAction) {
        self.emu
            .control()
            .add_fault(FaultRule::new("POST", TOKEN_PATH_GLOB, action));
    }

    /// The Graph API accepts the token.
    async fn graph_accepts(&self, token: &AccessToken) -> bool {
        http()
            .get(format!("{}/me/drive", self.emu.graph_url()))
            .bearer_auth(token.secret())
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    }
}

fn sha256_hex(s: &str) -> String {
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn flatten(rows: Vec<Vec<Option<String>>>) -> String {
    rows.into_iter().flatten().flatten().collect::<Vec<_>>().join("|")
}

// --- tests -----------------------------------------------------------------------------------

async fn full_flow_stores_the_refresh_token_encrypted_and_refresh_rotates_it(db: Db) {
    let h = Harness::new(db).await;
    let (query, state, code) = h.authorize(&h.manager, h.kb).await;
    for (k, v) in [
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT_URI),
        ("code_challenge_method", "S256"),
        ("prompt", "consent"),
        ("response_mode", "query"),
    ] {
        assert_eq!(query[k], v, "{k}");
    }
    assert!(
        query["scope"].split(' ').any(|s| s == "offline_access"),
        "{}",
        query["scope"]
    );
    assert!(query["state"].len() >= 43 && query["code_challenge"].len() == 43);

    // The pending state and the browser binding are stored only hashed, the verifier only
    // encrypted.
    let binding = h.binding(&state).unwrap();
    assert!(binding.len() >= 43 && binding != state, "{binding}");
    let pending = h
        .db
        .text_rows("SELECT state_hash, kb_id, user_id, datasource, code_verifier_ciphertext, code_verifier_key_id, binding_hash FROM oauth_states")
        .await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0][0].as_deref(), Some(sha256_hex(&state).as_str()));
    assert_eq!(pending[0][6].as_deref(), Some(sha256_hex(&binding).as_str()));
    let stored = flatten(pending);
    assert!(!stored.contains(&state) && !stored.contains(&binding));

    let calls = h.token_calls();
    assert_eq!(h.complete(&state, &code).await.unwrap(), h.kb);
    assert_eq!(h.token_calls(), calls + 1, "one code redemption");
    assert!(
        h.db.text_rows("SELECT state_hash FROM oauth_states")
            .await
            .is_empty(),
        "the state is consumed"
    );

    let status = h.manager.status(h.kb).await.unwrap().unwrap();
    assert_eq!(status.datasource, DatasourceKind::OneDrive);
    assert!(status.has_stored_token && !status.needs_reauth);
    assert_eq!(status.token_stored_at, Some(h.clock.now()));
    assert_eq!(status.last_refreshed_at, None);
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["datasource"], "onedrive");
    // The account that connected is this user at the source: its directory id is theirs.
    let oid = format!("user:{}", h.emu.control().default_user_id());
    assert!(
        h.store.user_principals(h.owner).await.unwrap().contains(&oid),
        "{oid}"
    );

    // The stored row holds no token in plaintext.
    let first_refresh = h.stored_refresh_token(h.kb).await;
    let first_access = h.manager.access_token(h.kb).await.unwrap();
    assert_eq!(
        h.token_calls(),
        calls + 1,
        "the access token of the code redemption is reused"
    );
    let row = flatten(
        h.db.text_rows(
            "SELECT kb_id, datasource, refresh_token_ciphertext, refresh_token_key_id, access_token_ciphertext, \
             access_token_key_id, tenant, refresh_lease_owner FROM connections",
        )
        .await,
    );
    assert!(row.contains("gAAAAA"), "Fernet ciphertext expected: {row}");
    assert!(
        !row.contains(&first_refresh),
        "the refresh token is stored in plaintext"
    );
    assert!(
        !row.contains(first_access.secret()),
        "the access token is stored in plaintext"
    );
    assert!(h.graph_accepts(&first_access).await);
    let tenant = h.store.get_connection(h.kb).await.unwrap().tenant;
    assert_eq!(tenant, Some(h.emu.control().tenant_id()));

    // Expiry: one refresh, which stores the rotated refresh token.
    h.expire_access_tokens();
    let second_access = h.manager.access_token(h.kb).await.unwrap();
    assert_ne!(second_access, first_access);
    assert_eq!(h.token_calls(), calls + 2);
    let second_refresh = h.stored_refresh_token(h.kb).await;
    assert_ne!(
        second_refresh, first_refresh,
        "the rotated refresh token replaced the old one"
    );
    let status = h.manager.status(h.kb).await.unwrap().unwrap();
    assert_eq!(status.last_refreshed_at, Some(h.clock.now()));
    assert!(h.graph_accepts(&second_access).await);

    // Cached in memory now.
    for _ in 0..3 {
        assert_eq!(h.manager.access_token(h.kb).await.unwrap(), second_access);
    }
    assert_eq!(h.token_calls(), calls + 2);

    // A rejected token forces a refresh (once), through the datasource interface.
    let tokens = h.manager.tokens(h.kb);
    assert_eq!(tokens.access_token().await.unwrap(), second_access);
    let third_access = tokens.refresh(&second_access).await.unwrap();
    assert_ne!(third_access, second_access);
    assert_eq!(h.token_calls(), calls + 3);
    assert_ne!(h.stored_refresh_token(h.kb).await, second_refresh);
    // Refusing an older token than the current one does not refresh again.
    assert_eq!(tokens.refresh(&second_access).await.unwrap(), third_access);
    assert_eq!(h.token_calls(), calls + 3);
    h.emu.shutdown().await;
}

async fn revoked_refresh_token_marks_needs_reauth_until_the_user_connects_again(db: Db) {
    let h = Harness::new(db).await;
    h.connect(h.kb).await;
    let control = h.emu.control();
    assert!(control.revoke_refresh_tokens(&control.default_user_id()).unwrap() >= 1);
    h.expire_access_tokens();
    let err = h.manager.access_token(h.kb).await.unwrap_err();
    assert!(matches!(err, OAuthError::NeedsReauth), "{err:?}");
    let status = h.manager.status(h.kb).await.unwrap().unwrap();
    assert!(status.needs_reauth && status.has_stored_token);
    assert_eq!(
        h.store.get_kb(h.kb).await.unwrap().sync_status,
        SyncStatus::NeedsReauth
    );
    let conn = h.store.get_connection(h.kb).await.unwrap();
    assert_eq!(conn.refresh_lease, None);

    // Further requests do not hammer the token endpoint, and datasources see Unauthorized.
    let calls = h.token_calls();
    let err = h.manager.tokens(h.kb).access_token().await.unwrap_err();
    assert!(matches!(err, DatasourceError::Unauthorized(_)), "{err:?}");
    assert_eq!(h.token_calls(), calls);

    // Connecting again clears it.
    h.connect(h.kb).await;
    let status = h.manager.status(h.kb).await.unwrap().unwrap();
    assert!(!status.needs_reauth);
    assert_eq!(h.store.get_kb(h.kb).await.unwrap().sync_status, SyncStatus::Idle);
    h.manager.access_token(h.kb).await.unwrap();
    h.emu.shutdown().await;
}

/// A datasource that refuses a fresh access token (the sync runner reports it) marks the
/// connection the token came from, and only that one: not one renewed since, not one being
/// refreshed elsewhere.
async fn a_refused_access_token_marks_only_the_connection_it_came_from(db: Db) {
    let h = Harness::new(db).await;
    h.connect(h.kb).await;
    h.manager.access_token(h.kb).await.unwrap();
    let stored_at = h
        .manager
        .status(h.kb)
        .await
        .unwrap()
        .unwrap()
        .token_stored_at
        .unwrap();

    // Another instance is refreshing: what it gets decides.
    let now = h.clock.now();
    assert!(
        h.store
            .try_acquire_refresh_lease(h.kb, "other", now, now + chrono::Duration::minutes(1))
            .await
            .unwrap()
    );
    assert!(!h.manager.mark_needs_reauth(h.kb, stored_at).await.unwrap());
    h.store.release_refresh_lease(h.kb, "other").await.unwrap();
    // A connection stored at another time is not the one the run used.
    let other_time = stored_at - chrono::Duration::seconds(1);
    assert!(!h.manager.mark_needs_reauth(h.kb, other_time).await.unwrap());
    assert!(!h.manager.status(h.kb).await.unwrap().unwrap().needs_reauth);

    assert!(h.manager.mark_needs_reauth(h.kb, stored_at).await.unwrap());
    let status = h.manager.status(h.kb).await.unwrap().unwrap();
    assert!(status.needs_reauth && status.has_stored_token);
    assert_eq!(
        h.store.get_kb(h.kb).await.unwrap().sync_status,
        SyncStatus::NeedsReauth
    );
    assert_eq!(h.store.get_connection(h.kb).await.unwrap().refresh_lease, None);
    // The cached access token goes with it, and marking twice marks nothing more.
    let err = h.manager.access_token(h.kb).await.unwrap_err();
    assert!(matches!(err, OAuthError::NeedsReauth), "{err:?}");
    assert!(!h.manager.mark_needs_reauth(h.kb, stored_at).await.unwrap());

    // Once the user connects again, a late report about the old connection marks nothing.
    h.clock.advance(chrono::Duration::minutes(1));
    h.connect(h.kb).await;
    assert!(!h.manager.mark_needs_reauth(h.kb, stored_at).await.unwrap());
    assert!(!h.manager.status(h.kb).await.unwrap().unwrap().needs_reauth);
    h.emu.shutdown().await;
}

async fn server_errors_from_the_token_endpoint_are_transient_and_never_need_reauth(db: Db) {
    let h = Harness::new(db).await;
    h.connect(h.kb).await;
    let before = h.stored_refresh_token(h.kb).await;
    h.expire_access_tokens();
    for action in [
        FaultAction::Throttle {
            status: 503,
            retry_after: RetryAfter::Seconds(1),
            rate_limit_headers: false,
        },
        FaultAction::ServerError { status: 500 },
        FaultAction::DropConnection,
    ] {
        h.emu.control().clear_faults();
        h.fail_token_endpoint(action.clone());
        let err = h.manager.access_token(h.kb).await.unwrap_err();
        assert!(matches!(err, OAuthError::Transient(_)), "{action:?}: {err:?}");
        let err = h.manager.tokens(h.kb).access_token().await.unwrap_err();
        assert!(
            matches!(err, DatasourceError::Transient(_)),
            "{action:?}: {err:?}"
        );
        let conn = h.store.get_connection(h.kb).await.unwrap();
        assert!(!conn.needs_reauth, "{action:?}");
        assert_eq!(conn.refresh_lease, None, "{action:?}: the lease is released");
        assert_eq!(h.store.get_kb(h.kb).await.unwrap().sync_status, SyncStatus::Idle);
    }
    assert_eq!(h.stored_refresh_token(h.kb).await, before);
    // Once the endpoint recovers, the next request refreshes.
    h.emu.control().clear_faults();
    let token = h.manager.access_token(h.kb).await.unwrap();
    assert!(h.graph_accepts(&token).await);
    assert_ne!(h.stored_refresh_token(h.kb).await, before);
    h.emu.shutdown().await;
}

#[expect(clippy::disallowed_methods, reason = "asserts the timeout fires in real time")]
async fn token_endpoint_timeout_is_transient_and_never_needs_reauth(db: Db) {
    let h = Harness::new(db).await;
    h.connect(h.kb).await;
    let manager = h.manager.clone().with_settings(RefreshSettings {
        request_timeout: Duration::from_millis(300),
        ..RefreshSettings::default()
    });
    h.expire_access_tokens();
    h.fail_token_endpoint(FaultAction::Delay { millis: 5_000 });
    let started = std::time::Instant::now();
    let err = manager.access_token(h.kb).await.unwrap_err();
    assert!(matches!(err, OAuthError::Transient(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let conn = h.store.get_connection(h.kb).await.unwrap();
    assert!(!conn.needs_reauth);
    assert_eq!(conn.refresh_lease, None);
    assert_eq!(h.store.get_kb(h.kb).await.unwrap().sync_status, SyncStatus::Idle);
    h.emu.control().clear_faults();
    manager.access_token(h.kb).await.unwrap();
    h.emu.shutdown().await;
}

async fn refused_client_secret_is_misconfiguration_not_needs_reauth(db: Db) {
    let h = Harness::new(db).await;
    h.connect(h.kb).await;
    h.emu.control().expire_client_secret(CLIENT_ID).unwrap();
    h.expire_access_tokens();
    let err = h.manager.access_token(h.kb).await.unwrap_err();
    assert!(matches!(err, OAuthError::Misconfigured(_)), "{err:?}");
    assert!(err.to_string().contains("invalid_client"), "{err}");
    assert!(!err.to_string().contains(CLIENT_SECRET));
    let err = h.manager.tokens(h.kb).access_token().await.unwrap_err();
    assert!(matches!(err, DatasourceError::Permanent(_)), "{err:?}");
    let conn = h.store.get_connection(h.kb).await.unwrap();
    assert!(!conn.needs_reauth);
    assert_eq!(conn.refresh_lease, None);

    // A wrong secret at the code redemption is reported to the user as the operator's problem.
    let other = h.new_kb().await;
    let (_, state, code) = h.authorize(&h.manager, other).await;
    let err = h.complete(&state, &code).await.unwrap_err();
    assert_eq!(err.kind, CallbackErrorKind::Misconfigured);
    assert_eq!(err.kb_id, Some(other));
    assert!(!err.reason.contains(CLIENT_SECRET) && !err.reason.contains(&code));
    assert!(h.manager.status(other).await.unwrap().is_none());
    h.emu.shutdown().await;
}

async fn replayed_expired_forged_and_missing_states_are_refused(db: Db) {
    let h = Harness::new(db).await;
    // Replayed.
    let (_, state, code) = h.authorize(&h.manager, h.kb).await;
    h.complete(&state, &code).await.unwrap();
    let err = h.complete(&state, &code).await.unwrap_err();
    assert_eq!((err.kind, err.kb_id), (CallbackErrorKind::InvalidState, None));

    // Expired (the state lives 10 minutes).
    let (_, state, code) = h.authorize(&h.manager, h.kb).await;
    h.clock.advance(chrono::Duration::minutes(11));
    let err = h.complete(&state, &code).await.unwrap_err();
    assert_eq!((err.kind, err.kb_id), (CallbackErrorKind::InvalidState, None));

    // Forged and missing: refused, and the genuine state is still usable afterwards.
    let (_, state, code) = h.authorize(&h.manager, h.kb).await;
    for forged in ["forged-state", "", &format!("{state}x"), &sha256_hex(&state)] {
        let err = h.complete(forged, &code).await.unwrap_err();
        assert_eq!(
            (err.kind, err.kb_id),
            (CallbackErrorKind::InvalidState, None),
            "{forged:?}"
        );
        assert!(h.abandon(forged).await.is_none());
    }
    assert_eq!(h.complete(&state, &code).await.unwrap(), h.kb);

    // An error callback consumes the state too.
    let (_, state, code) = h.authorize(&h.manager, h.kb).await;
    assert_eq!(h.abandon(&state).await, Some(h.kb));
    assert_eq!(h.abandon(&state).await, None);
    let err = h.complete(&state, &code).await.unwrap_err();
    assert_eq!(err.kind, CallbackErrorKind::InvalidState);

    // A state without a code is consumed and says which knowledge base it was for.
    let (_, state, _) = h.authorize(&h.manager, h.kb).await;
    let err = h.complete(&state, "").await.unwrap_err();
    assert_eq!(
        (err.kind, err.kb_id),
        (CallbackErrorKind::TokenExchange, Some(h.kb))
    );
    h.emu.shutdown().await;
}

async fn a_callback_without_the_starting_browsers_binding_is_refused_and_spends_the_state(db: Db) {
    let h = Harness::new(db).await;
    let (_, state_a, _) = h.authorize(&h.manager, h.kb).await;
    let (_, state_b, code_b) = h.authorize(&h.manager, h.kb).await;
    let binding_a = h.binding(&state_a).unwrap();
    let binding_b = h.binding(&state_b).unwrap();
    let calls = h.token_calls();
    for (case, binding) in [
        ("no cookie", None),
        ("another flow's cookie", Some(binding_a.clone())),
        ("the stored hash", Some(sha256_hex(&binding_b))),
        ("empty", Some(String::new())),
    ] {
        // A fresh flow each time: a refused claim spends its state.
        let (_, state, _) = h.authorize(&h.manager, h.kb).await;
        let err = h.manager.claim(&state, binding.as_deref()).await.unwrap_err();
        assert_eq!(
            (err.kind, err.kb_id),
            (CallbackErrorKind::WrongBrowser, None),
            "{case}"
        );
        let again = h
            .manager
            .claim(&state, h.binding(&state).as_deref())
            .await
            .unwrap_err();
        assert_eq!(again.kind, CallbackErrorKind::InvalidState, "{case}: spent");
    }
    // B's state with A's binding: refused and spent, so B's own browser cannot finish it either.
    let err = h.manager.claim(&state_b, Some(&binding_a)).await.unwrap_err();
    assert_eq!(err.kind, CallbackErrorKind::WrongBrowser);
    assert_eq!(
        h.complete(&state_b, &code_b).await.unwrap_err().kind,
        CallbackErrorKind::InvalidState
    );
    // An error callback from another browser spends the state and names no knowledge base.
    let (_, state, _) = h.authorize(&h.manager, h.kb).await;
    assert_eq!(h.manager.abandon(&state, Some(&binding_a)).await, None);
    assert_eq!(h.abandon(&state).await, None, "spent");
    assert_eq!(h.token_calls(), calls, "no code was redeemed");
    assert!(h.manager.status(h.kb).await.unwrap().is_none());
    h.emu.shutdown().await;
}

async fn state_of_one_kb_cannot_complete_for_another(db: Db) {
    let h = Harness::new(db).await;
    let kb_a = h.kb;
    let kb_b = h.new_kb().await;
    let (_, state_a, code_a) = h.authorize(&h.manager, kb_a).await;
    let (_, state_b, code_b) = h.authorize(&h.manager, kb_b).await;

    // A's state with B's code: the code was issued for B's PKCE challenge, so it is refused, and
    // the error names A (the state's knowledge base), never B.
    let err = h.complete(&state_a, &code_b).await.unwrap_err();
    assert_eq!(
        (err.kind, err.kb_id),
        (CallbackErrorKind::TokenExchange, Some(kb_a))
    );
    assert!(!err.reason.contains(&code_b));
    assert!(h.manager.status(kb_a).await.unwrap().is_none());
    assert!(h.manager.status(kb_b).await.unwrap().is_none());
    // A's state is spent; A's code cannot be attached to B's state either.
    assert_eq!(
        h.complete(&state_a, &code_a).await.unwrap_err().kind,
        CallbackErrorKind::InvalidState
    );
    let err = h.complete(&state_b, &code_a).await.unwrap_err();
    assert_eq!(err.kb_id, Some(kb_b));
    assert!(h.manager.status(kb_a).await.unwrap().is_none());
    assert!(h.manager.status(kb_b).await.unwrap().is_none());

    // A genuine pair connects exactly its own knowledge base.
    let (_, state_b, code_b) = h.authorize(&h.manager, kb_b).await;
    assert_eq!(h.complete(&state_b, &code_b).await.unwrap(), kb_b);
    assert!(h.manager.status(kb_b).await.unwrap().is_some());
    assert!(h.manager.status(kb_a).await.unwrap().is_none());
    h.emu.shutdown().await;
}

async fn two_instances_refresh_once_and_store_the_rotated_token(db: Db) {
    let h = Harness::new(db).await;
    h.connect(h.kb).await;
    let original = h.stored_refresh_token(h.kb).await;
    // Two instances: separate store handles (connection pools) on one database, separate caches.
    let a = h.manager_on(h.db.open().await, TokenCipher::new(SECRET_KEY, None).unwrap(), 11);
    let b = h.manager_on(h.db.open().await, TokenCipher::new(SECRET_KEY, None).unwrap(), 22);
    h.expire_access_tokens();
    h.emu.control().clear_request_log();

    let asks = (0..20).map(|i| {
        let m = if i % 2 == 0 { a.clone() } else { b.clone() };
        let kb = h.kb;
        tokio::spawn(async move { m.access_token(kb).await })
    });
    let tokens: Vec<AccessToken> = futures::future::join_all(asks)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert_eq!(
        h.token_calls(),
        1,
        "one refresh for all 20 requests of both instances"
    );
    assert!(
        tokens.iter().all(|t| *t == tokens[0]),
        "every caller got the refreshed token"
    );
    assert!(h.graph_accepts(&tokens[0]).await);

    // The refresh token stored is the one that single refresh returned.
    let rotated = h.stored_refresh_token(h.kb).await;
    assert_ne!(rotated, original);
    let conn = h.store.get_connection(h.kb).await.unwrap();
    assert!(conn.last_refreshed_at.is_some() && conn.refresh_lease.is_none());
    // … and it works: the next forced refresh (by the other instance) is made with it.
    let next = b.tokens(h.kb).refresh(&tokens[0]).await.unwrap();
    assert_ne!(next, tokens[0]);
    assert_eq!(h.token_calls(), 2);
    assert_ne!(h.stored_refresh_token(h.kb).await, rotated);
    // Instance a picks up b's token from the database once it refuses its cached one.
    assert_eq!(a.tokens(h.kb).refresh(&tokens[0]).await.unwrap(), next);
    assert_eq!(h.token_calls(), 2);
    h.emu.shutdown().await;
}

async fn previous_secret_key_still_decrypts_after_rotation(db: Db) {
    let h = Harness::new(db).await;
    h.connect(h.kb).await; // encrypted under SECRET_KEY
    let old_key_id = TokenCipher::new(SECRET_KEY, None).unwrap().key_id().to_owned();
    assert_eq!(
        h.store
            .get_connection(h.kb)
            .await
            .unwrap()
            .refresh_token
            .unwrap()
            .key_id,
        old_key_id
    );
    h.expire_access_tokens();

    // The key changed and the old one was not kept: the row cannot be read, nothing is marked.
    let forgot = h.manager_on(
        h.store.clone(),
        TokenCipher::new("a brand new secret key", None).unwrap(),
        5,
    );
    let err = forgot.access_token(h.kb).await.unwrap_err();
    assert!(matches!(err, OAuthError::Crypto(_)), "{err:?}");
    assert!(!h.store.get_connection(h.kb).await.unwrap().needs_reauth);

    // With the old key as the previous key, the refresh works and the new row uses the new key.
    let rotated_cipher = TokenCipher::new("a brand new secret key", Some(SECRET_KEY)).unwrap();
    let new_key_id = rotated_cipher.key_id().to_owned();
    let rotated = h.manager_on(h.store.clone(), rotated_cipher, 6);
    let token = rotated.access_token(h.kb).await.unwrap();
    assert!(h.graph_accepts(&token).await);
    let conn = h.store.get_connection(h.kb).await.unwrap();
    assert_eq!(conn.refresh_token.unwrap().key_id, new_key_id);
    assert_eq!(conn.access_token.unwrap().token.key_id, new_key_id);
    h.emu.shutdown().await;
}

async fn status_forget_and_unconfigured_datasource(db: Db) {
    let h = Harness::new(db).await;
    assert!(h.manager.status(h.kb).await.unwrap().is_none());
    assert!(matches!(
        h.manager.access_token(h.kb).await,
        Err(OAuthError::NotConnected)
    ));
    h.connect(h.kb).await;
    h.manager.access_token(h.kb).await.unwrap();
    h.manager.forget(h.kb).await.unwrap();
    assert!(h.manager.status(h.kb).await.unwrap().is_none());
    assert!(matches!(
        h.manager.access_token(h.kb).await,
        Err(OAuthError::NotConnected)
    ));
    let err = h.manager.tokens(h.kb).access_token().await.unwrap_err();
    assert!(matches!(err, DatasourceError::Unauthorized(_)), "{err:?}");
    h.manager.forget(h.kb).await.unwrap();

    let unconfigured = ConnectionManager::new(
        h.store.clone(),
        http(),
        TokenCipher::new(SECRET_KEY, None).unwrap(),
        Arc::new(h.clock.clone()),
        Arc::new(SeededRandom::new(9)),
        Vec::new(),
    );
    assert!(unconfigured.oauth_client(DatasourceKind::OneDrive).is_none());
    let err = unconfigured
        .initiate(DatasourceKind::OneDrive, h.kb, h.owner)
        .await
        .unwrap_err();
    assert!(
        matches!(err, OAuthError::NotConfigured(DatasourceKind::OneDrive)),
        "{err:?}"
    );

    // Initiating for a knowledge base that does not exist fails in the store.
    let err = h
        .manager
        .initiate(DatasourceKind::OneDrive, Uuid::new_v4(), h.owner)
        .await
        .unwrap_err();
    assert!(
        matches!(err, OAuthError::Store(StoreError::InvalidReference(_))),
        "{err:?}"
    );

    // Debug output of the manager shows no secret.
    let d = format!("{:?}", h.manager);
    assert!(!d.contains(CLIENT_SECRET) && !d.contains(SECRET_KEY), "{d}");
    h.emu.shutdown().await;
}
