//! A kbsync server on port 0 with a typed-enough client, for the API tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use kbsync_core::datasource::Datasource;
use kbsync_core::{ManualClock, OsRandom, Role};
use kbsync_ingest::{Extractor, IngestConfig};
use kbsync_oauth::{ConnectionManager, OAuthClientConfig};
use kbsync_server::{AppState, Datasources, LoginThrottle, ServerSettings, service::users};
use kbsync_store::{BlobStore, SqliteStore, Store, TokenCipher};
use kbsync_sync::{SyncRuntime, SyncSettings};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const PASSWORD: &str = "correct horse battery";

pub use kbsync_kit::Db;

pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    pub clock: ManualClock,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The PostgreSQL schema, dropped with the server (also when a test panics).
    pg_schema: Option<kbsync_kit::PgSchema>,
    pub emulator: Option<msgraph_emulator::RunningEmulator>,
    /// The emulated Google Drive ([`Options::gdrive`]).
    pub gdrive_emulator: Option<gdrive_emulator::RunningEmulator>,
    /// The emulated Entra people sign in with ([`Options::oidc`]).
    pub sign_in: Option<msgraph_emulator::RunningEmulator>,
    /// The real OpenID provider people sign in with ([`OidcTest::real_provider`]).
    pub peer: Option<kbsync_kit::oidc_peer::OidcPeer>,
    _dir: tempfile::TempDir,
}

pub struct Options {
    pub max_upload_bytes: u64,
    pub throttle: LoginThrottle,
    pub ingest: IngestConfig,
    pub oauth_clients: Vec<OAuthClientConfig>,
    pub datasources: Vec<Arc<dyn Datasource>>,
    pub public_url: String,
    /// Start an emulated OneDrive and configure the datasource against it.
    pub onedrive: Option<OneDriveTest>,
    /// Start an emulated Google Drive and configure the datasource against it.
    pub gdrive: Option<GDriveTest>,
    /// Run the scheduler loop (off: only manual runs, so tests decide when syncs happen).
    pub scheduler: bool,
    /// Changes any other server setting before the server starts.
    pub adjust: fn(&mut ServerSettings),
    /// Sign people in through an emulated Entra (an emulator of its own, its clock frozen at the
    /// server's start).
    pub oidc: Option<OidcTest>,
    /// Publish into this Open WebUI.
    pub openwebui: Option<OpenWebUiTest>,
    /// Start the emulated OneDrive's clock at the server's start time (it then follows real time
    /// and `advance_clock`), so times the server sends it (subscription expiries) are judged on the
    /// same time line.
    pub emulator_at_server_time: bool,
}

/// Where and how the server publishes into Open WebUI.
#[derive(Clone)]
pub struct OpenWebUiTest {
    pub url: String,
    pub api_key: String,
    /// Run the publisher's loop (publishes follow requests by themselves); off, the test calls
    /// [`TestServer::publisher`]'s `tick` itself.
    pub background: bool,
    /// The lease owner this server publishes as.
    pub instance_id: &'static str,
}

/// How the server signs people in with the emulated Entra.
#[derive(Clone, Default)]
pub struct OidcTest {
    /// The issuer's tenant segment: `None` for the emulated tenant itself (a single-tenant set-up),
    /// or e.g. `Some("organizations")`.
    pub tenant: Option<&'static str>,
    pub allowed_domains: Vec<String>,
    pub admin_groups: Vec<String>,
    /// Sign in with the real OpenID provider (`kbsync_kit::oidc_peer`) instead of the emulated Entra.
    pub real_provider: bool,
    /// With the real provider: its strict default, where `email` and `name` are only at the userinfo endpoint.
    pub claims_in_userinfo_only: bool,
}

/// The client id kbsync signs people in with at the emulated Entra.
pub const SIGN_IN_CLIENT: &str = "kbsync-sign-in";

#[derive(Clone, Copy)]
pub struct OneDriveTest {
    /// Whether the OAuth client secret is configured (without it, connecting answers 501).
    pub with_secret: bool,
}

/// The client id kbsync connects to the emulated Google Drive with.
pub const GDRIVE_CLIENT: &str = "kbsync-test.apps.googleusercontent.com";

#[derive(Clone, Copy)]
pub struct GDriveTest {
    /// Whether the OAuth client secret is configured (without it, connecting answers 501).
    pub with_secret: bool,
    /// `pageSize` of the datasource's listings: small, so that browsing and syncing page.
    pub page_size: u32,
}

impl Default for GDriveTest {
    fn default() -> Self {
        Self {
            with_secret: true,
            page_size: 2,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_upload_bytes: 10 * 1024 * 1024,
            throttle: LoginThrottle::default(),
            ingest: IngestConfig {
                max_concurrent: 2,
                ..IngestConfig::default()
            },
            oauth_clients: Vec::new(),
            datasources: Vec::new(),
            public_url: "http://127.0.0.1".into(),
            onedrive: None,
            gdrive: None,
            scheduler: false,
            adjust: |_| {},
            oidc: None,
            openwebui: None,
            emulator_at_server_time: false,
        }
    }
}

impl TestServer {
    /// Starts a server; `None` when the backend is PostgreSQL and no test database is configured.
    pub async fn start(db: Db, options: Options) -> Option<TestServer> {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut pg_schema = None;
        let store: Arc<dyn Store> = match db {
            Db::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("kbsync.sqlite").display());
                Arc::new(SqliteStore::connect(&url).await.unwrap())
            }
            Db::Postgres => {
                let schema = kbsync_kit::PgSchema::from_env("api_test")?;
                let store = schema.store().await;
                pg_schema = Some(schema);
                store
            }
        };
        store.migrate().await.unwrap();
        let start: DateTime<Utc> = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let clock = ManualClock::new(start);
        users::create_user(
            store.as_ref(),
            &OsRandom,
            start,
            ADMIN_EMAIL,
            PASSWORD,
            Role::Admin,
        )
        .await
        .unwrap();

        let clock_arc: Arc<dyn kbsync_core::Clock> = Arc::new(clock.clone());
        let mut oauth_clients = options.oauth_clients;
        let mut datasources = options.datasources;
        let mut public_url = options.public_url.clone();
        let mut emulator = None;
        if let Some(od) = options.onedrive {
            public_url = base.clone();
            let redirect_uri = format!("{base}/api/v1/datasources/onedrive/auth/callback");
            let mut builder = msgraph_emulator::Emulator::builder();
            if options.emulator_at_server_time {
                builder = builder.start_time(start);
            }
            let emu = builder
                .seed(3)
                .auto_consent(true)
                .client(msgraph_emulator::ClientRegistration {
                    client_id: "kbsync-test".into(),
                    client_secret: "kbsync-test-secret".into(),
                    redirect_uris: vec![redirect_uri.clone()],
                    display_name: "kbsync test".into(),
                    spa: false,
                })
                .start()
                .await
                .unwrap();
            let scopes: Vec<String> = vec![
                "https://graph.microsoft.com/Files.Read.All".into(),
                "offline_access".into(),
            ];
            let graph = kbsync_msgraph::GraphConfig {
                graph_url: emu.graph_url().to_owned(),
                ..Default::default()
            };
            let http = graph.http_client().unwrap();
            let spec = kbsync_core::datasource::OAuthSpec {
                authorize_url: emu.authorize_url(),
                token_url: emu.token_url(),
                scopes: scopes.clone(),
                extra_authorize_params: Vec::new(),
            };
            datasources.push(Arc::new(kbsync_msgraph::OneDrive::new(
                graph,
                spec,
                http,
                Arc::new(kbsync_msgraph::TokioSleeper),
            )));
            if od.with_secret {
                oauth_clients.push(OAuthClientConfig {
                    kind: kbsync_core::datasource::DatasourceKind::OneDrive,
                    client_id: "kbsync-test".into(),
                    client_secret: kbsync_oauth::ClientSecret::new("kbsync-test-secret"),
                    authorize_url: emu.authorize_url(),
                    token_url: emu.token_url(),
                    scopes,
                    redirect_uri,
                    extra_authorize_params: Vec::new(),
                });
            }
            emulator = Some(emu);
        }
        let mut gdrive_emulator = None;
        if let Some(gd) = options.gdrive {
            public_url = base.clone();
            let redirect_uri = format!("{base}/api/v1/datasources/gdrive/auth/callback");
            let emu = gdrive_emulator::Emulator::builder()
                .seed(4)
                .auto_consent(true)
                .client(gdrive_emulator::ClientRegistration {
                    client_id: GDRIVE_CLIENT.into(),
                    client_secret: "kbsync-gdrive-test-secret".into(),
                    redirect_uris: vec![redirect_uri.clone()],
                })
                .start()
                .await
                .unwrap();
            let config = kbsync_gdrive::GDriveConfig {
                api_url: emu.api_url(),
                page_size: gd.page_size,
                base_backoff: Duration::from_millis(10),
                max_retry_wait: Duration::from_millis(200),
                ..Default::default()
            };
            let http = config.http_client().unwrap();
            let spec = kbsync_gdrive::google_oauth(&emu.authorize_url(), &emu.token_url());
            datasources.push(Arc::new(kbsync_gdrive::GoogleDrive::new(
                config,
                spec.clone(),
                http,
                Arc::new(kbsync_gdrive::TokioSleeper),
            )));
            if gd.with_secret {
                oauth_clients.push(OAuthClientConfig::from_spec(
                    kbsync_core::datasource::DatasourceKind::GDrive,
                    &spec,
                    GDRIVE_CLIENT,
                    kbsync_oauth::ClientSecret::new("kbsync-gdrive-test-secret"),
                    redirect_uri,
                ));
            }
            gdrive_emulator = Some(emu);
        }
        let datasources = Datasources::new(
            ConnectionManager::new(
                store.clone(),
                reqwest::Client::new(),
                TokenCipher::new("api-test-secret-key", None).unwrap(),
                clock_arc.clone(),
                Arc::new(OsRandom),
                oauth_clients,
            ),
            datasources,
        );
        if options.oidc.is_some() {
            public_url = base.clone();
        }
        let mut settings = ServerSettings {
            public_url,
            max_upload_bytes: options.max_upload_bytes,
            login_throttle: options.throttle,
            sse_poll_interval: Duration::from_millis(100),
            ..ServerSettings::default()
        };
        (options.adjust)(&mut settings);
        let blobs = BlobStore::new(dir.path().join("blobs"));
        let extractor = Extractor::new(options.ingest);
        let sync = SyncRuntime::new(
            store.clone(),
            blobs.clone(),
            extractor.clone(),
            clock_arc.clone(),
            Arc::new(OsRandom),
            Arc::new(datasources.clone()),
            SyncSettings {
                scheduler: options
                    .scheduler
                    .then(kbsync_sync::scheduler::SchedulerSettings::default),
                ..SyncSettings::default()
            },
        );
        let mut state = AppState::new(
            store,
            blobs,
            extractor,
            datasources,
            sync,
            clock_arc.clone(),
            Arc::new(OsRandom),
            settings,
        );
        if let Some(o) = options.openwebui {
            let mut config = kbsync_openwebui::OpenWebUiConfig::new(o.url.parse().unwrap(), o.api_key);
            config.poll_interval = Duration::from_millis(100);
            config.upload_concurrency = 4;
            let publisher = kbsync_server::publishing::Publisher::new(
                kbsync_openwebui::OpenWebUiClient::new(config, reqwest::Client::new(), clock_arc.clone()),
                o.url.clone(),
                state.store.clone(),
                state.blobs.clone(),
                clock_arc.clone(),
                Arc::new(OsRandom),
                state.sync_events.clone(),
                kbsync_server::publishing::PublisherSettings {
                    // Without the loop, the first tick comes at the start and the next in a day.
                    tick: if o.background {
                        Duration::from_millis(100)
                    } else {
                        Duration::from_secs(86_400)
                    },
                    renew_every: Duration::from_millis(200),
                    instance_id: o.instance_id.to_owned(),
                    ..Default::default()
                },
            );
            state = state.with_openwebui(publisher);
        }
        let (mut sign_in, mut peer) = (None, None);
        if let Some(oidc) = options.oidc {
            let redirect_uri = format!("{base}/auth/oidc/callback");
            let (issuer, client_id, secret) = if oidc.real_provider {
                let started =
                    kbsync_kit::oidc_peer::OidcPeer::start_with(&redirect_uri, oidc.claims_in_userinfo_only)
                        .await?;
                let found = (
                    started.issuer().to_owned(),
                    started.client_id().to_owned(),
                    started.client_secret().to_owned(),
                );
                peer = Some(started);
                found
            } else {
                let emu = msgraph_emulator::Emulator::builder()
                    .seed(5)
                    .frozen_clock(true)
                    .start_time(start)
                    .auto_consent(true)
                    .client(msgraph_emulator::ClientRegistration {
                        client_id: SIGN_IN_CLIENT.into(),
                        client_secret: "kbsync-sign-in-secret".into(),
                        redirect_uris: vec![redirect_uri.clone()],
                        display_name: "kbsync sign-in".into(),
                        spa: false,
                    })
                    .start()
                    .await
                    .unwrap();
                let tenant = oidc
                    .tenant
                    .map_or_else(|| emu.control().tenant_id(), str::to_owned);
                let issuer = format!("{}/{tenant}/v2.0", emu.base_url());
                sign_in = Some(emu);
                (
                    issuer,
                    SIGN_IN_CLIENT.to_owned(),
                    "kbsync-sign-in-secret".to_owned(),
                )
            };
            let mut config = kbsync_oauth::OidcConfig::new(
                &issuer,
                &client_id,
                kbsync_oauth::ClientSecret::new(secret),
                &redirect_uri,
            );
            if !oidc.real_provider {
                // As for login.microsoftonline.com (the emulator's host is a loopback address).
                config.display_name = "Microsoft".into();
            }
            // The real provider's tokens carry real times; the emulator's follow the server's clock.
            let clock: Arc<dyn kbsync_core::Clock> = if oidc.real_provider {
                Arc::new(kbsync_core::SystemClock)
            } else {
                clock_arc
            };
            state = state.with_oidc(kbsync_server::service::oidc::OidcSignIn {
                client: kbsync_oauth::OidcClient::new(config, reqwest::Client::new(), clock),
                allowed_domains: oidc.allowed_domains,
                admin_groups: oidc.admin_groups,
            });
        }
        let (tx, rx) = oneshot::channel::<()>();
        let server_state = state.clone();
        let task = tokio::spawn(async move {
            kbsync_server::serve(listener, server_state, async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Some(TestServer {
            base,
            http: reqwest::Client::new(),
            clock,
            state,
            shutdown: Some(tx),
            task: Some(task),
            pg_schema,
            emulator,
            gdrive_emulator,
            sign_in,
            peer,
            _dir: dir,
        })
    }

    /// Stops the server and removes its PostgreSQL schema.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        if let Some(emulator) = self.emulator.take() {
            emulator.shutdown().await;
        }
        if let Some(emulator) = self.gdrive_emulator.take() {
            emulator.shutdown().await;
        }
        if let Some(emulator) = self.sign_in.take() {
            emulator.shutdown().await;
        }
        drop(self.pg_schema.take());
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.login(ADMIN_EMAIL, PASSWORD).await
    }

    /// Creates a user through the API and returns (id, token).
    pub async fn user(&self, admin: &str, email: &str) -> (String, String) {
        let (status, body) = self
            .post(
                "/api/v1/users",
                Some(admin),
                json!({"email": email, "password": PASSWORD, "role": "user"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["id"].as_str().unwrap().to_owned(),
            self.login(email, PASSWORD).await,
        )
    }

    pub async fn create_kb(&self, token: &str, name: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/knowledge",
                Some(token),
                json!({"name": name, "description": "d"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn upload(
        &self,
        token: Option<&str>,
        kb: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> (StatusCode, Value) {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
        );
        let mut req = self
            .http
            .post(format!("{}/api/v1/knowledge/{kb}/files", self.base))
            .multipart(form);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The Open WebUI publisher (the server must have been started with `openwebui`).
    pub fn publisher(&self) -> &kbsync_server::publishing::Publisher {
        self.state
            .openwebui
            .as_deref()
            .expect("started without openwebui")
    }

    /// The emulator's control handle (the server must have been started with `onedrive`).
    pub fn drive(&self) -> msgraph_emulator::Control {
        self.emulator
            .as_ref()
            .expect("started without onedrive")
            .control()
    }

    /// The emulated Google Drive's control handle (the server must have been started with `gdrive`).
    pub fn gdrive(&self) -> gdrive_emulator::Control {
        self.gdrive_emulator
            .as_ref()
            .expect("started without gdrive")
            .control()
    }

    /// Changes a user's role in the database directly (the API has no route for it): for tests
    /// of what someone who loses admin rights can still finish.
    pub async fn set_role_in_database(&self, user_id: &str, role: &str) {
        assert!(matches!(role, "admin" | "user"), "{role}");
        self.update_user_in_database(user_id, &format!("role = '{role}'"))
            .await;
    }

    /// Updates one account's row directly in the database: `UPDATE users SET {set} WHERE id = …`.
    async fn update_user_in_database(&self, user_id: &str, set: &str) {
        let done = match &self.pg_schema {
            Some(schema) => {
                let (url, schema) = (schema.url(), schema.name());
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {schema}.users SET {set} WHERE id = $1"
                )))
                .bind(user_id)
                .execute(&pool)
                .await
                .unwrap()
                .rows_affected()
            }
            None => {
                let url = format!("sqlite://{}", self._dir.path().join("kbsync.sqlite").display());
                let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE users SET {set} WHERE id = $1"
                )))
                .bind(user_id)
                .execute(&pool)
                .await
                .unwrap()
                .rows_affected()
            }
        };
        assert_eq!(done, 1, "no user {user_id}");
    }

    /// A processed document of `kb` mirroring the source item `item`, written as sync writes one.
    pub async fn synced(&self, kb: uuid::Uuid, item: &str, text: &str) -> uuid::Uuid {
        use kbsync_core::Clock as _;
        let doc = self
            .state
            .store
            .create_document(
                uuid::Uuid::new_v4(),
                kbsync_store::NewDocument {
                    kb_id: kb,
                    name: format!("{item}.txt"),
                    path: format!("/{item}.txt"),
                    mime: "text/plain".into(),
                    size: 10,
                    content_hash: format!("{:064x}", uuid::Uuid::new_v4().as_u128()),
                    source_item_id: Some(item.into()),
                    web_url: None,
                },
                self.clock.now(),
            )
            .await
            .unwrap();
        self.state
            .store
            .complete_document(doc.id, &[text.into()], self.clock.now())
            .await
            .unwrap();
        doc.id
    }

    /// Disables an account directly in the database (as an admin's action would).
    pub async fn disable_in_database(&self, user_id: &str) {
        self.update_user_in_database(user_id, "disabled_at = 1").await;
    }

    /// Starts connecting `kb` through the API: the status, the body and the flow's binding cookie
    /// as the browser would send it back (`name=value`), when one was set.
    pub async fn initiate(&self, token: Option<&str>, kb: &str) -> (StatusCode, Value, Option<String>) {
        self.initiate_at("/api/v1/datasources/onedrive", token, kb).await
    }

    /// [`initiate`](Self::initiate) through the routes under `prefix`, e.g.
    /// `/api/v1/connectors/gdrive`.
    pub async fn initiate_at(
        &self,
        prefix: &str,
        token: Option<&str>,
        kb: &str,
    ) -> (StatusCode, Value, Option<String>) {
        let mut req = self
            .http
            .get(format!("{}{prefix}/auth/initiate?knowledge_id={kb}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let cookie = binding_cookies(resp.headers()).into_iter().next().map(|c| {
            let pair = c.split(';').next().unwrap().to_owned();
            assert!(!pair.ends_with('='), "an empty binding cookie: {c}");
            pair
        });
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body, cookie)
    }

    /// Follows an authorize URL through the emulator's automatic consent and calls kbsync's
    /// callback with what comes back, carrying `cookie` (`name=value`) as the browser that kept
    /// it would. Returns the callback's status, page and URL.
    pub async fn consent(&self, auth_url: &str, cookie: Option<&str>) -> (StatusCode, String, String) {
        let (status, page, callback, _) = self.consent_with_headers(auth_url, cookie).await;
        (status, page, callback)
    }

    /// [`consent`](Self::consent), also returning the callback's `Set-Cookie` values.
    pub async fn consent_with_headers(
        &self,
        auth_url: &str,
        cookie: Option<&str>,
    ) -> (StatusCode, String, String, Vec<String>) {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let resp = http.get(auth_url).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FOUND, "{}", resp.text().await.unwrap());
        let callback = resp.headers()["location"].to_str().unwrap().to_owned();
        assert!(callback.starts_with(&self.base), "{callback}");
        let mut req = http.get(&callback);
        if let Some(c) = cookie {
            req = req.header(reqwest::header::COOKIE, c);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let set_cookies = binding_cookies(resp.headers());
        (status, resp.text().await.unwrap(), callback, set_cookies)
    }

    /// Connects a OneDrive knowledge base through initiate → consent → callback, keeping the
    /// binding cookie between initiate and the callback as a browser does.
    pub async fn connect(&self, token: &str, kb: &str) {
        let (status, body, cookie) = self.initiate(Some(token), kb).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, page, _) = self
            .consent(body["auth_url"].as_str().unwrap(), cookie.as_deref())
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page.contains("kbsync-auth-success"), "{page}");
    }

    /// Polls a file until it leaves `pending`, with a deadline.
    #[expect(clippy::disallowed_methods, reason = "polls against a real-time deadline")]
    pub async fn wait_processed(&self, token: &str, kb: &str, file: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = self
                .get(&format!("/api/v1/knowledge/{kb}/files/{file}"), Some(token))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            if body["status"] != "pending" {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "file {file} still pending: {body}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// A connected OneDrive knowledge base and its owner's token.
pub struct Kb {
    pub owner: String,
    pub id: String,
}

/// An owner with a connected OneDrive knowledge base.
pub async fn connected_kb(s: &TestServer) -> Kb {
    let admin = s.admin_token().await;
    let (_, owner) = s.user(&admin, "owner@example.com").await;
    let (status, body) = s
        .post(
            "/api/v1/knowledge",
            Some(&owner),
            json!({"name": "Drive", "type": "onedrive"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    s.connect(&owner, &id).await;
    Kb { owner, id }
}

/// Puts files under `/Team` in the emulated drive and returns the folder's picker item.
pub fn team_folder(s: &TestServer, files: &[(&str, &str)]) -> Value {
    let drive = s.drive();
    let drive_id = drive.default_drive_id();
    for (path, text) in files {
        drive
            .put_file(&drive_id, &format!("/Team/{path}"), text.as_bytes().to_vec())
            .unwrap();
    }
    let folder = drive.item_by_path(&drive_id, "/Team").unwrap();
    json!({"type": "folder", "drive_id": drive_id, "item_id": folder.id, "name": "Team", "path": "/Team"})
}

pub async fn add_sources(s: &TestServer, token: &str, kb: &str, items: Value) -> (StatusCode, Value) {
    s.post(
        &format!("/api/v1/knowledge/{kb}/sources"),
        Some(token),
        json!({"datasource": "onedrive", "items": items}),
    )
    .await
}

/// Polls the sync state until no run is going and a run has ended, with a deadline.
#[expect(clippy::disallowed_methods, reason = "polls against a real-time deadline")]
pub async fn wait_idle(s: &TestServer, token: &str, kb: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = s.get(&format!("/api/v1/knowledge/{kb}/sync"), Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["running"] == false && body["status"] != "syncing" && body["status"] != "idle" {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sync still running: {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The connect flows' binding cookies a response sets (whole `Set-Cookie` values).
pub fn binding_cookies(headers: &reqwest::header::HeaderMap) -> Vec<String> {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .filter(|c| c.starts_with("kbsync_oauth_binding_"))
        .collect()
}
