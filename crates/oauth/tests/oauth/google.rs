//! Connecting a knowledge base to Google Drive, against the in-process emulator of Google's OAuth
//! 2.0 endpoints: the authorize URL carries the datasource's extra parameters (`access_type=offline`,
//! `prompt=consent`) once each and no `offline_access` scope (Google refuses it), PKCE through the
//! emulator's automatic consent, the code exchange, refreshes that keep the stored refresh token
//! (Google does not rotate it), and a revoked grant (`invalid_grant`) that needs re-authorization.
//! On SQLite, and PostgreSQL when `KBSYNC_TEST_DATABASE_URL` is set.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::DateTime;
use kbsync_core::datasource::{AccessToken, DatasourceError, DatasourceKind};
use kbsync_core::{Clock, KbId, KbType, ManualClock, Role, SeededRandom, SyncStatus, UserId};
use kbsync_kit::TestDb as Db;
use kbsync_oauth::{ClientSecret, ConnectionManager, OAuthClientConfig, OAuthError};
use kbsync_store::{Store, TokenCipher};

use gdrive_emulator::{ClientRegistration, Emulator, RunningEmulator};

const CLIENT_ID: &str = "kbsync-test.apps.googleusercontent.com";
const CLIENT_SECRET: &str = "GOCSPX-kbsync-test";
const REDIRECT_URI: &str = "http://127.0.0.1:9/api/v1/datasources/gdrive/auth/callback";
const SECRET_KEY: &str = "the kbsync secret key of these tests";
const TOKEN_ROUTE: &str = "POST /token";

kbsync_kit::on_both_databases!(run = kbsync_kit::with_test_db, workers = 4;
    google_connect_sends_offline_access_once_and_a_refresh_keeps_the_stored_refresh_token,
    google_revoked_grant_needs_reauth_until_the_user_connects_again,
);

struct Harness {
    emu: RunningEmulator,
    store: Arc<dyn Store>,
    clock: ManualClock,
    manager: ConnectionManager,
    owner: UserId,
    kb: KbId,
    /// The binding each started flow gave its browser, by state.
    bindings: std::sync::Mutex<HashMap<String, String>>,
    _db: Db,
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
            })
            .start()
            .await
            .unwrap();
        // The registration as kbsync's wiring makes it: from the datasource's own OAuth specification.
        let spec = kbsync_gdrive::google_oauth(&emu.authorize_url(), &emu.token_url());
        let client = OAuthClientConfig::from_spec(
            DatasourceKind::GDrive,
            &spec,
            CLIENT_ID,
            ClientSecret::new(CLIENT_SECRET),
            REDIRECT_URI,
        );
        let store = db.open().await;
        let clock = ManualClock::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
        let owner = kbsync_kit::fixtures::user(store.as_ref(), Role::User, clock.now()).await;
        let kb = kbsync_kit::fixtures::kb(store.as_ref(), owner, "Drive", KbType::GDrive, clock.now()).await;
        Self {
            manager: ConnectionManager::new(
                store.clone(),
                http(),
                TokenCipher::new(SECRET_KEY, None).unwrap(),
                Arc::new(clock.clone()),
                Arc::new(SeededRandom::new(7)),
                vec![client],
            ),
            emu,
            store,
            clock,
            owner,
            kb,
            bindings: std::sync::Mutex::new(HashMap::new()),
            _db: db,
        }
    }

    /// Starts connecting and lets the emulator consent: the authorize URL's parameters (each name
    /// with every value it was given) and the `state` and `code` of the redirect back.
    async fn authorize(&self) -> (HashMap<String, Vec<String>>, String, String) {
        let started = self
            .manager
            .initiate(DatasourceKind::GDrive, self.kb, self.owner)
            .await
            .unwrap();
        let mut query: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in url::Url::parse(&started.auth_url).unwrap().query_pairs() {
            query.entry(k.into_owned()).or_default().push(v.into_owned());
        }
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap();
        let resp = browser.get(&started.auth_url).send().await.unwrap();
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
        self.bindings
            .lock()
            .unwrap()
            .insert(back["state"].clone(), started.binding);
        (query, back["state"].clone(), back["code"].clone())
    }

    async fn complete(&self, state: &str, code: &str) -> KbId {
        let binding = self.bindings.lock().unwrap().get(state).cloned();
        let pending = self.manager.claim(state, binding.as_deref()).await.unwrap();
        self.manager.complete(pending, code).await.unwrap()
    }

    async fn connect(&self) {
        let (_, state, code) = self.authorize().await;
        assert_eq!(self.complete(&state, &code).await, self.kb);
    }

    fn token_calls(&self) -> u64 {
        self.emu.control().traffic().count(TOKEN_ROUTE)
    }

    async fn stored_refresh_token(&self) -> String {
        let c = self.store.get_connection(self.kb).await.unwrap();
        TokenCipher::new(SECRET_KEY, None)
            .unwrap()
            .open(c.refresh_token.as_ref().unwrap())
            .unwrap()
    }

    /// Lets the access tokens run out on the manager's clock.
    fn expire_access_tokens(&self) {
        self.clock.advance(chrono::Duration::hours(2));
    }

    /// The Drive API accepts the token.
    async fn drive_accepts(&self, token: &AccessToken) -> bool {
        http()
            .get(format!("{}/about?fields=user", self.emu.api_url()))
            .bearer_auth(token.secret())
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    }
}

async fn google_connect_sends_offline_access_once_and_a_refresh_keeps_the_stored_refresh_token(db: Db) {
    let h = Harness::new(db).await;
    let (query, state, code) = h.authorize().await;
    for (name, values) in &query {
        assert_eq!(
            values.len(),
            1,
            "{name} is sent {} times: {values:?}",
            values.len()
        );
    }
    let one = |name: &str| query.get(name).map(|v| v[0].as_str());
    assert_eq!(one("access_type"), Some("offline"));
    assert_eq!(one("prompt"), Some("consent"));
    assert_eq!(one("scope"), Some(gdrive_emulator::DRIVE_READONLY_SCOPE));
    assert_eq!(one("code_challenge_method"), Some("S256"));
    assert_eq!(one("client_id"), Some(CLIENT_ID));
    assert_eq!(one("redirect_uri"), Some(REDIRECT_URI));

    let calls = h.token_calls();
    assert_eq!(h.complete(&state, &code).await, h.kb);
    assert_eq!(h.token_calls(), calls + 1, "one code redemption");
    let status = h.manager.status(h.kb).await.unwrap().unwrap();
    assert_eq!(status.datasource, DatasourceKind::GDrive);
    assert!(status.has_stored_token && !status.needs_reauth);
    let refresh_token = h.stored_refresh_token().await;
    let first = h.manager.access_token(h.kb).await.unwrap();
    assert_eq!(
        h.token_calls(),
        calls + 1,
        "the code's access token is used first"
    );
    assert!(h.drive_accepts(&first).await);

    // Google answers a refresh without `refresh_token`: the stored one stays, and keeps working.
    for round in 1..=2 {
        h.expire_access_tokens();
        let fresh = h.manager.access_token(h.kb).await.unwrap();
        assert_ne!(fresh, first, "round {round}");
        assert_eq!(h.token_calls(), calls + 1 + round, "round {round}");
        assert_eq!(
            h.stored_refresh_token().await,
            refresh_token,
            "round {round}: the refresh token was not kept"
        );
        assert!(h.drive_accepts(&fresh).await, "round {round}");
        let status = h.manager.status(h.kb).await.unwrap().unwrap();
        assert_eq!(status.last_refreshed_at, Some(h.clock.now()));
        assert!(!status.needs_reauth);
    }
    h.emu.shutdown().await;
}

async fn google_revoked_grant_needs_reauth_until_the_user_connects_again(db: Db) {
    let h = Harness::new(db).await;
    h.connect().await;
    // The user removes kbsync's access: Google's revocation endpoint, with the refresh token.
    let revoked = http()
        .post(h.emu.revoke_url())
        .query(&[("token", h.stored_refresh_token().await)])
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success(), "{}", revoked.status());
    h.expire_access_tokens();
    let err = h.manager.access_token(h.kb).await.unwrap_err();
    assert!(matches!(err, OAuthError::NeedsReauth), "{err:?}");
    let status = h.manager.status(h.kb).await.unwrap().unwrap();
    assert!(status.needs_reauth && status.has_stored_token);
    assert_eq!(
        h.store.get_kb(h.kb).await.unwrap().sync_status,
        SyncStatus::NeedsReauth
    );
    // No more token requests, and the datasource sees Unauthorized.
    let calls = h.token_calls();
    let err = h.manager.tokens(h.kb).access_token().await.unwrap_err();
    assert!(matches!(err, DatasourceError::Unauthorized(_)), "{err:?}");
    assert_eq!(h.token_calls(), calls);

    // Connecting again (consent forced, so Google issues a new refresh token) clears it.
    h.connect().await;
    assert!(!h.manager.status(h.kb).await.unwrap().unwrap().needs_reauth);
    assert_eq!(h.store.get_kb(h.kb).await.unwrap().sync_status, SyncStatus::Idle);
    let token = h.manager.access_token(h.kb).await.unwrap();
    assert!(h.drive_accepts(&token).await);
    h.emu.shutdown().await;
}
