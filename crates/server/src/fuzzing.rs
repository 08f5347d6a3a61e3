//! Entry points for fuzzing what the server takes from anyone on the internet: the OAuth
//! callback's query string and multipart uploads, each sent through the real router in-process.
//! The cargo-fuzz targets (`fuzz/`, nightly) and the bounded runs on stable
//! (`tests/server/fuzz.rs`) call these same functions. Not part of the crate's API.
//!
//! The app is built once per process ([`app`]): a SQLite database and a blob directory under the
//! system's temporary directory (`kbsync-fuzz-<pid>`, emptied first; [`remove_app_files`] deletes
//! it), a signed-in admin and one local knowledge base, on a runtime of its own. Call these
//! functions from outside any tokio runtime.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use chrono::Duration;
use kbsync_core::{Clock, KbId, OsRandom, Random, Role, SystemClock};
use kbsync_ingest::{Extractor, IngestConfig};
use kbsync_oauth::ConnectionManager;
use kbsync_store::{BlobStore, SqliteStore, Store, TokenCipher};
use kbsync_sync::{SyncRuntime, SyncSettings};
use tower::ServiceExt;

use crate::{AppState, Datasources, ServerSettings, auth::token_hash, router, service};

/// The in-process server the entry points send requests to.
pub struct App {
    runtime: tokio::runtime::Runtime,
    router: Router,
    /// A session token of an admin, who owns [`App::kb`].
    token: String,
    kb: KbId,
    dir: PathBuf,
}

/// The app, built at the first call; `None` (with the reason on stderr) when it cannot be built.
pub fn app() -> Option<&'static App> {
    static APP: OnceLock<Option<App>> = OnceLock::new();
    APP.get_or_init(|| match build() {
        Ok(app) => Some(app),
        Err(e) => {
            eprintln!("the fuzzing app could not be built: {e}");
            None
        }
    })
    .as_ref()
}

/// Deletes the app's database and blobs (the app answers errors afterwards).
pub fn remove_app_files() {
    if let Some(app) = app() {
        let _ = std::fs::remove_dir_all(&app.dir);
    }
}

fn build() -> Result<App, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("kbsync-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (router, token, kb) = runtime.block_on(start(&dir))?;
    Ok(App {
        runtime,
        router,
        token,
        kb,
        dir,
    })
}

async fn start(dir: &std::path::Path) -> Result<(Router, String, KbId), String> {
    let url = format!("sqlite://{}", dir.join("kbsync.sqlite").display());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::connect(&url).await.map_err(|e| e.to_string())?);
    store.migrate().await.map_err(|e| e.to_string())?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let random: Arc<dyn Random> = Arc::new(OsRandom);
    let blobs = BlobStore::new(dir.join("blobs"));
    let extractor = Extractor::new(IngestConfig {
        max_concurrent: 1,
        ..IngestConfig::default()
    });
    let cipher = TokenCipher::new("kbsync-fuzzing-secret-key", None).map_err(|e| e.to_string())?;
    let datasources = Datasources::new(
        ConnectionManager::new(
            store.clone(),
            reqwest::Client::new(),
            cipher,
            clock.clone(),
            random.clone(),
            Vec::new(),
        ),
        Vec::new(),
    );
    let sync = SyncRuntime::new(
        store.clone(),
        blobs.clone(),
        extractor.clone(),
        clock.clone(),
        random.clone(),
        Arc::new(datasources.clone()),
        SyncSettings {
            scheduler: None,
            ..SyncSettings::default()
        },
    );
    let settings = ServerSettings {
        max_upload_bytes: 1024 * 1024,
        ..ServerSettings::default()
    };
    let state = AppState::new(
        store.clone(),
        blobs,
        extractor,
        datasources,
        sync,
        clock.clone(),
        random.clone(),
        settings,
    );
    let now = clock.now();
    let admin = service::users::create_user(
        store.as_ref(),
        random.as_ref(),
        now,
        "fuzz@example.com",
        "fuzzing password",
        Role::Admin,
    )
    .await
    .map_err(|e| format!("{e:?}"))?;
    let token = format!("fuzz-session-{}", random.uuid().simple());
    store
        .create_session(&token_hash(&token), admin.id, now, now + Duration::days(365))
        .await
        .map_err(|e| e.to_string())?;
    let kb = service::knowledge::create(&state, &admin, "Fuzzed uploads", None, None)
        .await
        .map_err(|e| format!("{e:?}"))?
        .kb
        .id;
    Ok((router(state), token, kb))
}

impl App {
    fn send(&self, request: Request<Body>) -> StatusCode {
        self.runtime.block_on(async {
            match self.router.clone().oneshot(request).await {
                Ok(response) => {
                    let status = response.status();
                    // The whole answer is produced, as a client reading it would make it.
                    let _ = axum::body::to_bytes(response.into_body(), usize::MAX).await;
                    status
                }
                Err(never) => match never {},
            }
        })
    }

    /// Whether the app still answers its readiness check.
    pub fn ready(&self) -> bool {
        Request::get("/readyz")
            .body(Body::empty())
            .is_ok_and(|r| self.send(r) == StatusCode::OK)
    }
}

/// `GET /api/v1/datasources/onedrive/auth/callback?{query}`: the status, or `None` when the
/// bytes cannot be a request's query (no client could send them).
pub fn callback_query(query: &[u8]) -> Option<StatusCode> {
    let app = app()?;
    let query = std::str::from_utf8(query).ok()?;
    let request = Request::get(format!("/api/v1/datasources/onedrive/auth/callback?{query}"))
        .body(Body::empty())
        .ok()?;
    Some(app.send(request))
}

/// An upload (`POST /api/v1/knowledge/{id}/files`, signed in as the knowledge base's owner) with
/// this `Content-Type` and body: the status, or `None` when the content type cannot be a header.
pub fn multipart_upload(content_type: &[u8], body: &[u8]) -> Option<StatusCode> {
    let app = app()?;
    let request = Request::post(format!("/api/v1/knowledge/{}/files", app.kb))
        .header(header::AUTHORIZATION, format!("Bearer {}", app.token))
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body.to_vec()))
        .ok()?;
    Some(app.send(request))
}

/// The `multipart_upload` fuzz target's input: the content type up to the first newline, the body
/// after it; without a newline, a `multipart/form-data` content type with the boundary `b`.
pub fn multipart_input(data: &[u8]) -> Option<StatusCode> {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => multipart_upload(&data[..i], &data[i + 1..]),
        None => multipart_upload(b"multipart/form-data; boundary=b", data),
    }
}
