//! Wiring: builds what `kbsync serve` runs from the resolved settings. Read top to bottom, it is
//! the list of parts of a running kbsync: the datasources (OneDrive / SharePoint, Google Drive) and
//! the OAuth connection manager ([`datasources`]), the extractor, the sync runtime (engine, runner, scheduler settings), the Open WebUI
//! publisher and the server's state ([`app_state`]). This is the only place that names concrete
//! implementations.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use kbsync_core::datasource::{Datasource, DatasourceKind, OAuthSpec};
use kbsync_core::{Clock, Random};
use kbsync_gdrive::{GDriveConfig, GoogleDrive, google_oauth};
use kbsync_ingest::{Extractor, IngestConfig, Isolation, WorkerCommand};
use kbsync_msgraph::{GRAPH_RESOURCE, GraphConfig, OneDrive, TokioSleeper};
use kbsync_oauth::{
    AppOnlyConfig, AppOnlyTokens, ClientCertificate, ClientCredential, ClientSecret, ConnectionManager,
    OAuthClientConfig, OidcClient, OidcConfig,
};
use kbsync_openwebui::{OpenWebUiClient, OpenWebUiConfig};
use kbsync_server::publishing::{Publisher, PublisherSettings};
use kbsync_server::{
    AppState, Datasources, HousekeepingSettings, ServerSettings, service::oidc::OidcSignIn,
    service::webhooks::WebhookSettings,
};
use kbsync_store::{AddressLimit, BlobStore, Store, TokenCipher};
use kbsync_sync::{
    PermissionPolicy, SyncLimits, SyncRuntime, SyncSettings, runner::RunnerSettings,
    scheduler::SchedulerSettings,
};

use crate::config::{AppOnlyCredential, ExtractIsolation, Settings};

/// The server's state over an open store: datasources, blob store, extractor, the sync runtime
/// that the server serves, and the server's own settings.
pub fn app_state(
    settings: &Settings,
    store: Arc<dyn Store>,
    cipher: TokenCipher,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
) -> anyhow::Result<AppState> {
    let datasources = datasources(settings, store.clone(), cipher, clock.clone(), random.clone())?;
    let blobs = BlobStore::new(settings.data_dir.join("blobs"));
    let extractor = extractor(settings)?;
    let sync = SyncRuntime::new(
        store.clone(),
        blobs.clone(),
        extractor.clone(),
        clock.clone(),
        random.clone(),
        Arc::new(datasources.clone()),
        sync_settings(settings),
    );
    let state = AppState::new(
        store,
        blobs,
        extractor,
        datasources,
        sync,
        clock.clone(),
        random,
        server_settings(settings),
    );
    let state = match openwebui_publisher(settings, &state)? {
        Some(publisher) => state.with_openwebui(publisher),
        None => state,
    };
    Ok(match oidc_sign_in(settings, clock)? {
        Some(oidc) => state.with_oidc(oidc),
        None => state,
    })
}

/// The publisher of knowledge bases into Open WebUI, when one is configured. It shares the
/// server's store, blobs, clock and events, and leases publishes as this instance.
pub fn openwebui_publisher(settings: &Settings, state: &AppState) -> anyhow::Result<Option<Publisher>> {
    let Some(o) = &settings.openwebui else {
        return Ok(None);
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the HTTP client")?;
    let base_url = url::Url::parse(&o.url).context("KBSYNC_OPENWEBUI_URL")?;
    let mut config = OpenWebUiConfig::new(base_url, o.api_key.clone());
    config.upload_concurrency = o.upload_concurrency;
    config.processing_timeout = Duration::from_secs(u64::from(o.processing_timeout_secs));
    Ok(Some(Publisher::new(
        OpenWebUiClient::new(config, http, state.clock.clone()),
        o.public_url.clone(),
        state.store.clone(),
        state.blobs.clone(),
        state.clock.clone(),
        state.random.clone(),
        state.sync_events.clone(),
        PublisherSettings {
            instance_id: state.sync_settings.instance_id.clone(),
            ..PublisherSettings::default()
        },
    )))
}

/// The OpenID provider people sign in with, when one is configured.
pub fn oidc_sign_in(settings: &Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Option<OidcSignIn>> {
    let Some(o) = &settings.oidc else {
        return Ok(None);
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the HTTP client")?;
    let mut config = OidcConfig::new(
        &o.issuer,
        &o.client_id,
        ClientSecret::new(o.client_secret.clone()),
        &format!("{}/auth/oidc/callback", settings.public_origin()),
    );
    config.scopes = o.scopes.clone();
    if let Some(name) = &o.display_name {
        config.display_name = name.clone();
    }
    Ok(Some(OidcSignIn {
        client: OidcClient::new(config, http, clock),
        allowed_domains: o.allowed_domains.clone(),
        admin_groups: o.admin_groups.clone(),
    }))
}

/// The datasources this process can use, and the connection manager that holds their
/// credentials. A datasource without a client secret can browse nothing: connecting to it
/// answers 501.
pub fn datasources(
    settings: &Settings,
    store: Arc<dyn Store>,
    cipher: TokenCipher,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
) -> anyhow::Result<Datasources> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the HTTP client")?;
    let mut oauth_clients = Vec::new();
    let mut app_only = None;
    let mut datasources: Vec<Arc<dyn Datasource>> = Vec::new();
    if let Some(od) = &settings.onedrive {
        let graph = GraphConfig {
            graph_url: od.graph_url.clone(),
            ..GraphConfig::default()
        };
        let graph_http = graph.http_client().context("building the Graph HTTP client")?;
        let oauth = OAuthSpec {
            authorize_url: od.authorize_url.clone(),
            token_url: od.token_url.clone(),
            scopes: od.scopes.clone(),
            extra_authorize_params: Vec::new(),
        };
        match &od.client_secret {
            Some(secret) => oauth_clients.push(OAuthClientConfig::from_spec(
                DatasourceKind::OneDrive,
                &oauth,
                od.client_id.clone(),
                ClientSecret::new(secret.clone()),
                settings.redirect_uri(DatasourceKind::OneDrive),
            )),
            None => tracing::warn!(
                "KBSYNC_ONEDRIVE_CLIENT_SECRET is not set: knowledge bases cannot connect to OneDrive"
            ),
        }
        datasources.push(Arc::new(
            OneDrive::new(graph, oauth, graph_http, Arc::new(TokioSleeper)).with_random(random.clone()),
        ));
        if let Some(a) = &od.app_only {
            let credential = match &a.credential {
                AppOnlyCredential::Secret(secret) => {
                    tracing::warn!(
                        "app-only access uses the client secret: SharePoint REST refuses such tokens, so \
                         SharePoint site groups cannot be expanded; configure a certificate"
                    );
                    ClientCredential::Secret(ClientSecret::new(secret.clone()))
                }
                AppOnlyCredential::Certificate {
                    certificate_pem,
                    key_pem,
                } => ClientCredential::Certificate(
                    ClientCertificate::from_pem(certificate_pem, key_pem)
                        .context("reading the app-only certificate")?,
                ),
            };
            app_only = Some(AppOnlyTokens::new(
                AppOnlyConfig {
                    client_id: od.client_id.clone(),
                    token_url: a.token_url.clone(),
                    credential,
                    tenant: Some(a.tenant.clone()),
                    default_resource: GRAPH_RESOURCE.to_owned(),
                },
                http.clone(),
                clock.clone(),
                random.clone(),
                Duration::from_secs(20),
            ));
        }
    }
    if let Some(gd) = &settings.gdrive {
        let config = GDriveConfig {
            api_url: gd.api_url.clone(),
            ..GDriveConfig::default()
        };
        let drive_http = config.http_client().context("building the Drive HTTP client")?;
        let oauth = google_oauth(&gd.authorize_url, &gd.token_url);
        match &gd.client_secret {
            Some(secret) => oauth_clients.push(OAuthClientConfig::from_spec(
                DatasourceKind::GDrive,
                &oauth,
                gd.client_id.clone(),
                ClientSecret::new(secret.clone()),
                settings.redirect_uri(DatasourceKind::GDrive),
            )),
            None => tracing::warn!(
                "KBSYNC_GDRIVE_CLIENT_SECRET is not set: knowledge bases cannot connect to Google Drive"
            ),
        }
        datasources.push(Arc::new(
            GoogleDrive::new(config, oauth, drive_http, Arc::new(TokioSleeper))
                .with_random(random.clone())
                .with_clock(clock.clone()),
        ));
    }
    let mut manager = ConnectionManager::new(store, http, cipher, clock, random, oauth_clients);
    if let Some(tokens) = app_only {
        manager = manager.with_app_only(DatasourceKind::OneDrive, tokens);
    }
    Ok(Datasources::new(manager, datasources))
}

/// Text extraction and chunking, for uploads and synced files alike. In process isolation (the
/// default) parsers run in `kbsync extract-worker` processes started from this very executable,
/// never on the server's threads.
fn extractor(settings: &Settings) -> anyhow::Result<Extractor> {
    let cfg = IngestConfig {
        max_concurrent: settings.ingest_concurrency,
        per_file_timeout: Duration::from_secs(settings.ingest_timeout_secs),
        chunk_size: settings.chunk_size,
        chunk_overlap: settings.chunk_overlap,
        ..IngestConfig::default()
    };
    let isolation = match settings.extract_isolation {
        ExtractIsolation::Thread => Isolation::Thread,
        ExtractIsolation::Process => {
            let exe = std::env::current_exe()
                .context("finding kbsync's own executable to start extraction workers")?;
            Isolation::Process(
                WorkerCommand::new(exe, ["extract-worker"]).memory_limit_mb(settings.extract_memory_mb),
            )
        }
    };
    Ok(Extractor::with_isolation(cfg, isolation))
}

/// Limits of runs, what permissions grant, leases, the default interval and the scheduler loop.
fn sync_settings(settings: &Settings) -> SyncSettings {
    let defaults = SyncSettings::default();
    SyncSettings {
        limits: SyncLimits {
            max_files: settings.max_files_per_kb,
            max_file_size: settings.max_file_size_bytes,
            concurrency: settings.sync_concurrency,
            ..defaults.limits
        },
        permissions: PermissionPolicy {
            link_grants: settings.sync_link_grants,
            refresh: Duration::from_secs(u64::from(settings.sharing_refresh_minutes) * 60),
            group_refresh: Duration::from_secs(u64::from(settings.group_refresh_minutes) * 60),
        },
        runner: RunnerSettings {
            default_interval: chrono::Duration::minutes(i64::from(settings.sync_interval_minutes)),
            lease_ttl: chrono::Duration::seconds(i64::try_from(settings.sync_lease_secs).unwrap_or(86_400)),
            ..defaults.runner
        },
        scheduler: settings.scheduler.then(|| SchedulerSettings {
            tick: Duration::from_secs(settings.scheduler_tick_secs),
            reauth_grace: chrono::Duration::hours(i64::from(settings.reauth_grace_hours)),
            ..SchedulerSettings::default()
        }),
        ..defaults
    }
}

/// The HTTP side: public URL, uploads, sign-in limits and housekeeping.
fn server_settings(settings: &Settings) -> ServerSettings {
    ServerSettings {
        public_url: settings.public_origin(),
        max_upload_bytes: settings.max_upload_bytes,
        login_address_limit: AddressLimit {
            max_failures: settings.login_address_max_failures,
            window: chrono::Duration::minutes(i64::from(settings.login_address_window_minutes)),
        },
        login_failure_retention: chrono::Duration::hours(i64::from(settings.login_failure_retention_hours)),
        housekeeping: Some(HousekeepingSettings {
            interval: Duration::from_secs(u64::from(settings.housekeeping_minutes) * 60),
            run_retention: chrono::Duration::days(i64::from(settings.run_retention_days)),
            keep_runs_per_kb: settings.run_keep_latest,
            blob_grace: chrono::Duration::minutes(i64::from(settings.blob_grace_minutes)),
        }),
        password_login: settings.password_login,
        api_concurrency: settings.api_concurrency,
        webhooks: settings.webhooks.then(|| WebhookSettings {
            tick: Duration::from_secs(settings.webhook_tick_secs),
            renew_before: chrono::Duration::hours(i64::from(settings.webhook_renew_before_hours)),
            debounce: chrono::Duration::milliseconds(
                i64::try_from(settings.webhook_debounce_ms).unwrap_or(i64::MAX),
            ),
            ..WebhookSettings::default()
        }),
        ..ServerSettings::default()
    }
}
