//! kbsync's HTTP server: the JSON API under `/api/v1`, health and metrics routes.
//!
//! The binary builds an [`AppState`] from its configuration and calls [`serve`]; tests do the
//! same on port 0.

pub mod api;
pub mod auth;
pub mod error;
pub mod metrics_layer;
pub mod pipeline;
pub mod router;
pub mod service;

use std::{collections::HashMap, future::Future, sync::Arc};

use chrono::Duration;
use kbsync_core::{
    Clock, Random,
    datasource::{Datasource, DatasourceKind},
};
use kbsync_ingest::Extractor;
use kbsync_oauth::ConnectionManager;
use kbsync_store::{BlobStore, Store};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

pub use pipeline::Pipeline;
pub use router::router;
pub use service::users::LoginThrottle;

/// Settings the server needs at run time (the binary maps its configuration onto these).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The address users reach kbsync at, e.g. `https://kb.example.com`.
    pub public_url: String,
    /// The largest file an upload may carry.
    pub max_upload_bytes: u64,
    /// How long an API token from `POST /auth/login` stays valid.
    pub session_ttl: Duration,
    pub login_throttle: LoginThrottle,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:8080".to_owned(),
            max_upload_bytes: 100 * 1024 * 1024,
            session_ttl: service::users::default_session_ttl(),
            login_throttle: LoginThrottle::default(),
        }
    }
}

/// The datasources this server can connect to, and the connections of knowledge bases.
#[derive(Clone)]
pub struct Connectors {
    pub manager: ConnectionManager,
    datasources: Arc<HashMap<DatasourceKind, Arc<dyn Datasource>>>,
}

impl Connectors {
    pub fn new(manager: ConnectionManager, datasources: Vec<Arc<dyn Datasource>>) -> Self {
        let datasources = datasources.into_iter().map(|d| (d.kind(), d)).collect();
        Self {
            manager,
            datasources: Arc::new(datasources),
        }
    }

    /// The datasource of a kind, when this server has one.
    pub fn datasource(&self, kind: DatasourceKind) -> Option<&Arc<dyn Datasource>> {
        self.datasources.get(&kind)
    }
}

/// Everything a request handler may use; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub blobs: BlobStore,
    pub pipeline: Pipeline,
    pub connectors: Connectors,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
    pub settings: Arc<ServerSettings>,
    pub metrics: PrometheusHandle,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        blobs: BlobStore,
        extractor: Extractor,
        connectors: Connectors,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
        settings: ServerSettings,
    ) -> Self {
        let pipeline = Pipeline::new(store.clone(), blobs.clone(), extractor, clock.clone());
        Self {
            store,
            blobs,
            pipeline,
            connectors,
            clock,
            random,
            settings: Arc::new(settings),
            metrics: metrics_layer::prometheus_handle(),
        }
    }
}

/// Serves until `shutdown` resolves, then stops accepting, finishes open requests and waits for
/// queued ingestion to finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Err(e) = state.pipeline.resume_pending().await {
        tracing::warn!(error = %e, "could not resume pending documents; they will be retried at the next start");
    }
    let pipeline = state.pipeline.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    pipeline.drain().await;
    Ok(())
}
