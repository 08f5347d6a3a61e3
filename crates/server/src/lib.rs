//! kbsync's HTTP server: the JSON API under `/api/v1`, the web UI, health and metrics routes.
//!
//! The binary builds the sync runtime and an [`AppState`] from its configuration and calls
//! [`serve`]; tests do the same on port 0. The server serves the sync runtime it is given; it
//! does not build one.

pub mod admission;
pub mod api;
pub mod auth;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics_layer;
pub mod openapi;
pub mod pipeline;
pub mod publishing;
pub mod router;
pub mod service;
pub mod ui;

mod datasources;

use std::{future::Future, sync::Arc};

use chrono::Duration;
use kbsync_core::{Clock, Random};
use kbsync_ingest::Extractor;
use kbsync_store::{AddressLimit, BlobStore, Store};
use kbsync_sync::{SyncRuntime, SyncSettings, events::SyncEvents, runner::SyncRunner, scheduler::Scheduler};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use datasources::Datasources;
pub use pipeline::Pipeline;
pub use router::router;
pub use service::{housekeeping::HousekeepingSettings, users::LoginThrottle};

/// Settings the server needs at run time (the binary maps its configuration onto these).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The address users reach kbsync at, e.g. `https://kb.example.com`.
    pub public_url: String,
    /// The largest file an upload may carry.
    pub max_upload_bytes: u64,
    /// How long an API token from `POST /auth/login` stays valid.
    pub session_ttl: Duration,
    /// How failed sign-ins to one account slow further attempts down.
    pub login_throttle: LoginThrottle,
    /// How many failed sign-ins one client address (the TCP peer) may make per window.
    pub login_address_limit: AddressLimit,
    /// How long a failed sign-in counts against its account; older ones are forgotten (and
    /// purged by housekeeping).
    pub login_failure_retention: Duration,
    /// Password hashes computed at once (argon2 takes ~19 MiB and a core each); further sign-ins
    /// wait for a turn.
    pub password_hash_concurrency: usize,
    /// The longest a sign-in waits for a turn to hash before it is answered 503 (busy).
    pub password_hash_wait: std::time::Duration,
    /// The periodic purge of expired sessions, old login failures and old run records; `None`
    /// runs none on this instance.
    pub housekeeping: Option<HousekeepingSettings>,
    /// How often an event stream re-reads the stored sync state (runs on other instances).
    pub sse_poll_interval: std::time::Duration,
    /// Whether people may sign in with an email and password (`false` leaves only the OpenID
    /// provider, when one is configured).
    pub password_login: bool,
    /// Change notifications (subscriptions at the sources, the webhook endpoints); `None` when
    /// off (knowledge bases are only polled).
    pub webhooks: Option<service::webhooks::WebhookSettings>,
    /// API and web UI reads (GET, HEAD) handled at once; further ones wait their turn. Below the
    /// store's pool size (SQLite 8, PostgreSQL 10), so that clients never take every database
    /// connection from the sync runs of this instance (see [`admission`]).
    pub api_concurrency: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:8080".to_owned(),
            max_upload_bytes: 100 * 1024 * 1024,
            session_ttl: service::users::default_session_ttl(),
            login_throttle: LoginThrottle::default(),
            login_address_limit: AddressLimit {
                max_failures: 50,
                window: Duration::minutes(15),
            },
            login_failure_retention: Duration::hours(24),
            password_hash_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            password_hash_wait: std::time::Duration::from_secs(10),
            housekeeping: Some(HousekeepingSettings::default()),
            sse_poll_interval: std::time::Duration::from_secs(1),
            password_login: true,
            webhooks: None,
            api_concurrency: 4,
        }
    }
}

/// Everything a request handler may use; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub blobs: BlobStore,
    pub pipeline: Pipeline,
    pub datasources: Datasources,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
    pub settings: Arc<ServerSettings>,
    pub metrics: PrometheusHandle,
    /// Starts, cancels and tracks the sync runs of this instance.
    pub sync: SyncRunner,
    pub sync_events: SyncEvents,
    /// The settings the sync runtime was built with (the scheduler loop among them).
    pub sync_settings: Arc<SyncSettings>,
    /// Cancelled when the server starts shutting down, so that endless responses (event
    /// streams) end and graceful shutdown can finish.
    pub shutting_down: CancellationToken,
    /// Turns to compute a password hash (see `ServerSettings::password_hash_concurrency`).
    pub password_hashing: Arc<tokio::sync::Semaphore>,
    /// The OpenID provider people sign in with, when one is configured ([`AppState::with_oidc`]).
    pub oidc: Option<Arc<service::oidc::OidcSignIn>>,
    /// Publishes knowledge bases into Open WebUI, when one is configured ([`AppState::with_openwebui`]).
    pub openwebui: Option<Arc<publishing::Publisher>>,
    /// Wakes this instance's drive subscription maintenance (a lifecycle event asked for it).
    pub webhook_wake: Arc<tokio::sync::Notify>,
    /// Turns to handle a read (see `ServerSettings::api_concurrency`).
    pub api_admission: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// `sync` is the sync runtime this server serves (built by the caller over the same store,
    /// blob store and datasources); `extractor` ingests uploads.
    #[expect(
        clippy::too_many_arguments,
        reason = "the parts of a server, each built by the caller"
    )]
    pub fn new(
        store: Arc<dyn Store>,
        blobs: BlobStore,
        extractor: Extractor,
        datasources: Datasources,
        sync: SyncRuntime,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
        settings: ServerSettings,
    ) -> Self {
        let pipeline = Pipeline::new(store.clone(), blobs.clone(), extractor, clock.clone());
        Self {
            sync: sync.runner,
            sync_events: sync.events,
            sync_settings: sync.settings,
            shutting_down: CancellationToken::new(),
            password_hashing: Arc::new(tokio::sync::Semaphore::new(
                settings.password_hash_concurrency.max(1),
            )),
            api_admission: Arc::new(tokio::sync::Semaphore::new(settings.api_concurrency.max(1))),
            store,
            blobs,
            pipeline,
            datasources,
            clock,
            random,
            settings: Arc::new(settings),
            metrics: metrics_layer::prometheus_handle(),
            oidc: None,
            openwebui: None,
            webhook_wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// This state with knowledge bases published into Open WebUI by `publisher` (its loop runs
    /// beside the server in [`serve`]).
    pub fn with_openwebui(mut self, publisher: publishing::Publisher) -> Self {
        self.openwebui = Some(Arc::new(publisher));
        self
    }

    /// This state with people signing in through `oidc`.
    pub fn with_oidc(mut self, oidc: service::oidc::OidcSignIn) -> Self {
        self.oidc = Some(Arc::new(oidc));
        self
    }
}

/// Serves until `shutdown` resolves (with housekeeping, the Open WebUI publisher and drive subscription maintenance
/// running beside it), then stops accepting,
/// finishes open requests, stops the scheduler (runs of this instance are cancelled and their
/// leases released for another instance) and housekeeping, and waits for queued ingestion to
/// finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Err(e) = state.pipeline.resume_pending().await {
        tracing::warn!(error = %e, "could not resume pending documents; they will be retried at the next start");
    }
    // The sharing policy may have changed with the settings: every knowledge base reads its
    // sharing again on its next run.
    if let Err(e) = state.store.forget_sharing_reads(None).await {
        tracing::warn!(error = %e, "could not mark the knowledge bases' sharing for re-reading");
    }
    let pipeline = state.pipeline.clone();
    let runner = state.sync.clone();
    let stop_scheduler = CancellationToken::new();
    let scheduler = state
        .sync_settings
        .scheduler
        .clone()
        .map(|settings| Scheduler::new(runner.clone(), settings).spawn(stop_scheduler.clone()));
    let housekeeping = state
        .settings
        .housekeeping
        .clone()
        .map(|settings| service::housekeeping::spawn(state.clone(), settings, stop_scheduler.clone()));
    let publisher = state
        .openwebui
        .clone()
        .map(|publisher| publisher.spawn(stop_scheduler.clone()));
    let subscriptions = state
        .settings
        .webhooks
        .clone()
        .map(|settings| service::webhooks::spawn(state.clone(), settings, stop_scheduler.clone()));
    let shutting_down = state.shutting_down.clone();
    // The peer address reaches handlers (`ConnectInfo`): sign-in failures are limited per client.
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            shutting_down.cancel();
        })
        .await;
    stop_scheduler.cancel();
    match scheduler {
        Some(handle) => {
            if let Err(e) = handle.await {
                tracing::error!(error = %e, "the scheduler task ended abnormally");
            }
        }
        None => runner.shutdown().await,
    }
    if let Some(handle) = housekeeping
        && let Err(e) = handle.await
    {
        tracing::error!(error = %e, "the housekeeping task ended abnormally");
    }
    if let Some(handle) = publisher
        && let Err(e) = handle.await
    {
        tracing::error!(error = %e, "the Open WebUI publisher ended abnormally");
    }
    if let Some(handle) = subscriptions
        && let Err(e) = handle.await
    {
        tracing::error!(error = %e, "the drive subscription maintenance ended abnormally");
    }
    pipeline.drain().await;
    served
}
