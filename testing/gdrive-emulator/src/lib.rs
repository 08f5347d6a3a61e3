//! An emulator of the Google Drive API v3 and Google's OAuth 2.0 endpoints, for kbsync's tests, demo and
//! benchmarks. Its behaviour follows Google's documentation (see the crate README for the mapping and the
//! choices made where the documentation leaves room). State lives in memory and follows from the seed.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use gdrive_emulator::Emulator;
//! let emu = Emulator::builder().seed(1).auto_consent(true).generate(20).start().await?;
//! let ctl = emu.control();
//! let id = ctl.create_file(&ctl.root_id(), "hello.txt", "hello world")?;
//! let tokens = ctl.mint_tokens(&ctl.default_user_id(), "https://www.googleapis.com/auth/drive.readonly")?;
//! // GET {emu.api_url()}/files/{id}?alt=media with `Authorization: Bearer {tokens.access_token}` …
//! # let _ = (id, tokens);
//! emu.shutdown().await;
//! # Ok(()) }
//! ```

mod api;
mod clock;
mod control;
mod error;
mod fields;
pub mod generate;
mod ids;
mod oauth;
mod query;
mod render;
mod store;
mod traffic;

pub use control::{Control, DriveInfo, EmulatorInfo, FileInfo, NewContent, NewFile, UserInfo, mime_for_name};
pub use oauth::{ACCESS_TOKEN_LIFETIME_SECS, ConsentMode, TokenResponse, pkce_s256};
pub use store::{
    ClientRegistration, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_REDIRECT_URI, DocBody, FOLDER,
    GOOGLE_DOC, GOOGLE_SHEET, GOOGLE_SLIDES, Grant, Grantee, SHORTCUT, StoreError,
};
pub use traffic::{
    FaultAction, FaultRule, FaultTrigger, InstalledFault, LogEntry, RequestLog, glob_match, route_key,
};

use axum::Router;
use axum::routing::{any, get, post};
use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The scope kbsync asks for.
pub const DRIVE_READONLY_SCOPE: &str = "https://www.googleapis.com/auth/drive.readonly";

/// State shared by every handler.
pub(crate) struct Shared {
    pub base_url: String,
    pub seed: u64,
    pub clock: clock::EmulatorClock,
    pub store: RwLock<store::Store>,
    pub traffic: Mutex<traffic::Traffic>,
    pub consent: Mutex<ConsentMode>,
}

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot set the initial state up: {0}")]
    Setup(#[from] StoreError),
}

/// Entry point: `Emulator::builder()`.
pub struct Emulator;

impl Emulator {
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder::default()
    }
}

/// Configures an emulator before it starts.
#[derive(Debug, Clone)]
pub struct EmulatorBuilder {
    seed: u64,
    auto_consent: bool,
    clients: Vec<ClientRegistration>,
    generate: usize,
    bind: SocketAddr,
    public_base_url: Option<String>,
    start_time: Option<DateTime<Utc>>,
    frozen_clock: bool,
}

impl Default for EmulatorBuilder {
    fn default() -> Self {
        Self {
            seed: 1,
            auto_consent: false,
            clients: Vec::new(),
            generate: 0,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_base_url: None,
            start_time: None,
            frozen_clock: false,
        }
    }
}

impl EmulatorBuilder {
    /// Seed of every id, token, generated file and random choice (default 1).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Approve authorize requests at once instead of showing the consent page.
    pub fn auto_consent(mut self, on: bool) -> Self {
        self.auto_consent = on;
        self
    }
    /// Registers a confidential client (without any, [`ClientRegistration::default`] is registered).
    pub fn client(mut self, reg: ClientRegistration) -> Self {
        self.clients.push(reg);
        self
    }
    /// Fills the domain with `n` generated files (see [`generate`]).
    pub fn generate(mut self, n: usize) -> Self {
        self.generate = n;
        self
    }
    /// Address to listen on (default `127.0.0.1:0`).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }
    /// The base URL to advertise, when clients reach the emulator under another name.
    pub fn public_base_url(mut self, url: impl Into<String>) -> Self {
        self.public_base_url = Some(url.into());
        self
    }
    /// Where the emulator clock starts (default: the real current time, whole seconds).
    pub fn start_time(mut self, t: DateTime<Utc>) -> Self {
        self.start_time = Some(t);
        self
    }
    /// Stop the emulator clock from following real time; it then moves only by `advance_clock`.
    pub fn frozen_clock(mut self, on: bool) -> Self {
        self.frozen_clock = on;
        self
    }

    /// Binds, builds the initial state and starts serving.
    pub async fn start(self) -> Result<RunningEmulator, StartError> {
        let bound = emulator_kit::Listener::bind(self.bind, self.public_base_url.as_deref())
            .await
            .map_err(|source| StartError::Bind {
                addr: self.bind,
                source,
            })?;
        let (addr, base_url) = (bound.addr, bound.base_url.clone());
        let start = self.start_time.unwrap_or_else(clock::wall_clock_whole_seconds);
        let clock = clock::EmulatorClock::new(start, self.frozen_clock);
        let mut s = store::Store::new(self.seed);
        let now = clock.now();
        generate::base_domain(&mut s, now);
        if self.clients.is_empty() {
            let c = ClientRegistration::default();
            s.clients.insert(c.client_id.clone(), c);
        }
        for c in &self.clients {
            s.clients.insert(c.client_id.clone(), c.clone());
        }
        generate::generate(&mut s, self.generate, self.seed, now)?;
        let shared = Arc::new(Shared {
            base_url,
            seed: self.seed,
            clock,
            store: RwLock::new(s),
            traffic: Mutex::new(traffic::Traffic::new(self.seed)),
            consent: Mutex::new(if self.auto_consent {
                ConsentMode::Auto
            } else {
                ConsentMode::Page
            }),
        });
        let stop = CancellationToken::new();
        let router = app(shared.clone());
        let task = bound.serve(router, stop.clone());
        Ok(RunningEmulator {
            shared,
            addr,
            stop,
            task: Some(task),
        })
    }
}

async fn not_found() -> axum::response::Response {
    error::ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "global",
        "notFound",
        "Not Found",
    )
    .into_response()
}

use axum::response::IntoResponse as _;

fn app(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/drive/v3/{*rest}", any(api::handle))
        .route(
            "/o/oauth2/v2/auth",
            get(oauth::authorize_get).post(oauth::authorize_post),
        )
        .route("/token", post(oauth::token))
        .route("/revoke", post(oauth::revoke))
        .merge(control::router())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            traffic::layer,
        ))
        .with_state(shared)
}

/// A running emulator. Dropping it stops the server too; [`RunningEmulator::shutdown`] also waits for that.
pub struct RunningEmulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for RunningEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningEmulator")
            .field("base_url", &self.shared.base_url)
            .finish()
    }
}

impl RunningEmulator {
    /// The socket the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }
    /// `{base}/drive/v3`, what `https://www.googleapis.com/drive/v3` is for Google.
    pub fn api_url(&self) -> String {
        format!("{}/drive/v3", self.shared.base_url)
    }
    /// `{base}/o/oauth2/v2/auth`.
    pub fn authorize_url(&self) -> String {
        format!("{}/o/oauth2/v2/auth", self.shared.base_url)
    }
    /// `{base}/token`.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.shared.base_url)
    }
    /// `{base}/revoke`.
    pub fn revoke_url(&self) -> String {
        format!("{}/revoke", self.shared.base_url)
    }
    /// `{base}/_emulator`.
    pub fn control_url(&self) -> String {
        format!("{}/_emulator", self.shared.base_url)
    }
    /// The typed control handle.
    pub fn control(&self) -> Control {
        Control {
            shared: self.shared.clone(),
        }
    }
    /// Stops accepting, lets requests in flight finish and waits for the server task.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
