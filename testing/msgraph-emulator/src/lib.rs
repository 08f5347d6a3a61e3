//! An emulator of the Microsoft Graph v1.0 drive API and the Microsoft identity platform v2.0, for kbsync's
//! tests, demo and benchmarks. Its behaviour follows Microsoft's documentation of those services (see the crate README
//! for the mapping and the choices made where the documentation is silent).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use msgraph_emulator::Emulator;
//! let emu = Emulator::builder().seed(1).auto_consent(true).start().await?;
//! let ctl = emu.control();
//! let drive = ctl.default_drive_id();
//! ctl.put_file(&drive, "/Docs/hello.txt", "hello world")?;
//! let token = ctl.mint_access_token(&ctl.default_user_id(), &["Files.Read.All"])?;
//! // GET {emu.graph_url()}/drives/{drive}/root/delta with `Authorization: Bearer {token}` …
//! emu.shutdown().await;
//! # Ok(()) }
//! ```

mod access;
pub mod app_only;
mod auth;
mod clock;
mod control;
mod delta;
mod directory;
mod discovery;
mod download;
mod error;
pub mod generate;
mod graph;
mod identity;
mod ids;
pub mod lazy;
pub mod quickxorhash;
mod render;
mod scopes;
mod sharepoint;
mod signing;
mod store;
mod subscriptions;
mod traffic;

pub use auth::{
    ClientRegistration, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_REDIRECT_URI, GROUPS_CLAIM_LIMIT,
    GroupMembershipClaims, IdTokenOverrides, TokenResponse, pkce_s256,
};
pub use clock::http_date;
pub use control::{
    Control, DriveInfo, EmulatorInfo, GroupInfo, ItemInfo, NewDrive, NewGroup, NewSite, NewUser,
    PermissionSpec, SiteInfo, UserInfo, UserPatch,
};
pub use lazy::DeltaPageCounts;
pub use signing::SigningKeyInfo;
pub use store::{DeltaBehaviour, DriveType, LinkUser, ResyncCode, StoreError};
pub use subscriptions::{
    MAX_EXPIRATION_MINUTES, NotificationDelivery, NotificationPolicy, SLOW_ANSWER_MS, SubscriptionInfo,
};
pub use traffic::{
    AuthorizationLeak, FaultAction, FaultRule, FaultTrigger, InstalledFault, LogEntry, RequestLog,
    RetryAfter, glob_match, resource_units, route_key,
};

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use store::{DriveOwner, NewDriveSpec, Site, Store};
use tokio_util::sync::CancellationToken;

/// State shared by every handler.
pub(crate) struct Shared {
    pub base_url: String,
    pub graph_url: String,
    pub seed: u64,
    pub clock: clock::EmulatorClock,
    pub store: RwLock<Store>,
    pub initial: Mutex<Option<Store>>,
    pub traffic: Mutex<traffic::Traffic>,
    pub request_counter: AtomicU64,
    pub auto_consent: AtomicBool,
    pub initial_auto_consent: bool,
    pub download_key: [u8; 32],
    pub download_lifetime_secs: i64,
    /// Outgoing HTTP (subscription validation and notifications), loopback in tests.
    pub http: reqwest::Client,
    /// How notifications are delivered and retried (changeable at run time).
    pub notification_policy: Mutex<subscriptions::NotificationPolicy>,
    pub initial_notification_policy: subscriptions::NotificationPolicy,
    /// Notifications being delivered or waiting for a retry.
    pub deliveries_in_flight: AtomicUsize,
    /// Cancelled when the emulator stops: pending deliveries give up.
    pub stop: CancellationToken,
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
    generate_bytes: Option<u64>,
    generate_lazily: Option<u64>,
    bind: SocketAddr,
    public_base_url: Option<String>,
    start_time: Option<DateTime<Utc>>,
    frozen_clock: bool,
    delta: DeltaBehaviour,
    download_url_lifetime_secs: i64,
    notification_policy: subscriptions::NotificationPolicy,
}

impl Default for EmulatorBuilder {
    fn default() -> Self {
        Self {
            seed: 1,
            auto_consent: false,
            clients: Vec::new(),
            generate: 0,
            generate_bytes: None,
            generate_lazily: None,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_base_url: None,
            start_time: None,
            frozen_clock: false,
            delta: DeltaBehaviour::default(),
            download_url_lifetime_secs: 300,
            notification_policy: subscriptions::NotificationPolicy::default(),
        }
    }
}

impl EmulatorBuilder {
    /// Seed of every id, token, generated file and random choice (default 1).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Approve authorize requests at once instead of showing the consent form.
    pub fn auto_consent(mut self, on: bool) -> Self {
        self.auto_consent = on;
        self
    }
    /// Registers a confidential client (without any, [`ClientRegistration::default`] is registered).
    pub fn client(mut self, reg: ClientRegistration) -> Self {
        self.clients.push(reg);
        self
    }
    /// Fills the default drive with `n` generated files.
    pub fn generate(mut self, n: usize) -> Self {
        self.generate = n;
        self.generate_bytes = None;
        self
    }
    /// Fills the default drive with `n` generated files totalling about `total_bytes`: the same folders,
    /// names and types as `generate(n)`, with every file's text scaled by one factor (deterministic by seed;
    /// see [`generate::generate_drive_sized`]).
    pub fn generate_sized(mut self, n: usize, total_bytes: u64) -> Self {
        self.generate = n;
        self.generate_bytes = Some(total_bytes);
        self
    }
    /// Makes the default drive a generated drive of `n` items (folders and mostly small text files) that are
    /// computed on demand, so that even a million items cost no memory (see [`lazy`]). Replaces `generate`.
    pub fn generate_lazily(mut self, n: u64) -> Self {
        self.generate_lazily = Some(n);
        self.generate = 0;
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
    /// How delta rounds are paged and shuffled.
    pub fn delta_behaviour(mut self, b: DeltaBehaviour) -> Self {
        self.delta = b;
        self
    }
    /// Lifetime of pre-authenticated download URLs on the emulator clock (default 300 s).
    pub fn download_url_lifetime_secs(mut self, secs: i64) -> Self {
        self.download_url_lifetime_secs = secs;
        self
    }

    /// How change and lifecycle notifications are delivered: answer timeout and retry schedule (default
    /// [`NotificationPolicy::default`]; [`Control::set_notification_policy`] changes it later).
    pub fn notification_policy(mut self, p: NotificationPolicy) -> Self {
        self.notification_policy = p;
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
        let store = initial_store(&self, &base_url, clock.now())?;
        let mut key_gen = ids::IdGen::new(self.seed ^ 0xd0_a4_10_ad);
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            graph_url: format!("{base_url}/v1.0"),
            base_url,
            seed: self.seed,
            clock,
            initial: Mutex::new(Some(store.clone())),
            store: RwLock::new(store),
            traffic: Mutex::new(traffic::Traffic::new(self.seed)),
            request_counter: AtomicU64::new(0),
            auto_consent: AtomicBool::new(self.auto_consent),
            initial_auto_consent: self.auto_consent,
            download_key: key_gen.bytes::<32>(),
            download_lifetime_secs: self.download_url_lifetime_secs,
            http: reqwest::Client::builder().no_proxy().build().unwrap_or_default(),
            notification_policy: Mutex::new(self.notification_policy),
            initial_notification_policy: self.notification_policy,
            deliveries_in_flight: AtomicUsize::new(0),
            stop: stop.clone(),
        });
        let router = app(shared.clone());
        let task = tokio::spawn(serve(bound.listener, router, stop.clone()));
        Ok(RunningEmulator {
            shared,
            addr,
            stop,
            task: Some(task),
        })
    }
}

fn initial_store(b: &EmulatorBuilder, base_url: &str, now: DateTime<Utc>) -> Result<Store, StoreError> {
    let mut s = Store::new(b.seed, base_url.to_string());
    s.delta = b.delta.clone();
    s.signing = signing::SigningKeys::bundled()?;
    let user = s.create_user("Adele Vance", Some("adele.vance@contoso.onmicrosoft.com"), None);
    let site_id = new_site_id(&mut s);
    let drive = s.create_drive(
        NewDriveSpec {
            drive_type: DriveType::Business,
            name: "OneDrive".into(),
            owner: DriveOwner::User(user.id.clone()),
            site_id: Some(site_id),
            created_by: user.id.clone(),
        },
        now,
    )?;
    add_owner_permission(&mut s, &drive, &user.id)?;
    s.default_user_id = user.id.clone();
    s.default_drive_id = drive.clone();
    create_site(
        &mut s,
        &NewSite {
            display_name: "Contoso Team".into(),
            name: Some("team".into()),
            libraries: Vec::new(),
        },
        now,
    )?;
    if b.clients.is_empty() {
        s.register_client(ClientRegistration::default());
    }
    for c in &b.clients {
        s.register_client(c.clone());
    }
    if let Some(n) = b.generate_lazily {
        let lazy = Arc::new(lazy::LazyDrive::new(n, b.seed, &drive));
        s.drive_mut(&drive)?.lazy = Some(lazy);
    }
    generate::generate_drive_sized(
        &mut s,
        &drive,
        b.generate,
        b.generate_bytes,
        b.seed,
        &user.id,
        now,
    )?;
    Ok(s)
}

pub(crate) fn new_site_id(s: &mut Store) -> String {
    let a = s.ids.guid();
    let b = s.ids.guid();
    format!("contoso-my.sharepoint.com,{a},{b}")
}

pub(crate) fn add_owner_permission(s: &mut Store, drive_id: &str, user_id: &str) -> Result<(), StoreError> {
    let p = control::build_permission(s, drive_id, PermissionSpec::user(user_id, &["owner"]))?;
    let d = s.drive_mut(drive_id)?;
    let root = d.root_id.clone();
    if let Some(r) = d.items.get_mut(&root) {
        r.permissions.push(p);
    }
    Ok(())
}

pub(crate) fn create_site(s: &mut Store, new: &NewSite, now: DateTime<Utc>) -> Result<Site, StoreError> {
    let name = new.name.clone().unwrap_or_else(|| {
        new.display_name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_lowercase()
    });
    if s.sites.values().any(|x| x.name.eq_ignore_ascii_case(&name)) {
        return Err(StoreError::Conflict(format!("a site named {name:?} exists")));
    }
    let id = format!("contoso.sharepoint.com,{},{}", s.ids.guid(), s.ids.guid());
    let libraries = if new.libraries.is_empty() {
        vec!["Documents".to_string()]
    } else {
        new.libraries.clone()
    };
    let creator = s.default_user_id.clone();
    let mut drive_ids = Vec::new();
    for lib in libraries {
        let d = s.create_drive(
            NewDriveSpec {
                drive_type: DriveType::DocumentLibrary,
                name: lib,
                owner: DriveOwner::Site(id.clone()),
                site_id: Some(id.clone()),
                created_by: creator.clone(),
            },
            now,
        )?;
        let groups = [
            ("3", "Owners", "owner"),
            ("5", "Members", "write"),
            ("4", "Visitors", "read"),
        ];
        let mut perms = Vec::new();
        for (gid, suffix, role) in groups {
            perms.push(control::build_permission(
                s,
                &d,
                PermissionSpec::SiteGroup {
                    site_group_id: Some(gid.into()),
                    display_name: format!("{} {suffix}", new.display_name),
                    roles: vec![role.into()],
                },
            )?);
        }
        let drive = s.drive_mut(&d)?;
        let root = drive.root_id.clone();
        if let Some(r) = drive.items.get_mut(&root) {
            r.permissions = perms;
        }
        drive_ids.push(d);
    }
    // The creator is in the site's Owners group, so the libraries are readable by them.
    s.access
        .site_group_members
        .entry((id.clone(), "3".to_string()))
        .or_default()
        .insert(creator.clone());
    let site = Site {
        id: id.clone(),
        name: name.clone(),
        display_name: new.display_name.clone(),
        web_url: format!("{}/sites/{name}", s.web_base),
        created_at: now,
        drive_ids,
    };
    s.sites.insert(id, site.clone());
    Ok(site)
}

async fn not_found() -> axum::response::Response {
    (
        axum::http::StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"error": {"code": "itemNotFound", "message": "Resource not found"}})),
    )
        .into_response()
}

fn app(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1.0/{*rest}", any(graph::handle))
        .route("/_download/{token}", get(download::handle))
        .route("/sites/{site}/_api/{*rest}", get(sharepoint::handle))
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            get(identity::authorize_get).post(identity::authorize_post),
        )
        .route("/{tenant}/oauth2/v2.0/token", post(identity::token))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(discovery::openid_configuration),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(discovery::keys))
        .route(
            "/{tenant}/oauth2/v2.0/logout",
            get(discovery::logout).post(discovery::logout),
        )
        .merge(control::router())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            traffic::layer,
        ))
        .with_state(shared)
}

/// Accepts connections until stopped. Each connection gets a kill switch the fault layer uses to drop it.
async fn serve(listener: tokio::net::TcpListener, router: Router, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else { continue };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let kill = CancellationToken::new();
            let kill_for_requests = kill.clone();
            let service =
                hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(traffic::ConnectionKill(kill_for_requests.clone()));
                    let router = router.clone();
                    async move { tower::ServiceExt::oneshot(router, req.map(axum::body::Body::new)).await }
                });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                () = kill.cancelled() => {}
                () = stop.cancelled() => {}
            }
        });
    }
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
    /// Graph's base URL: `{base}/v1.0`.
    pub fn graph_url(&self) -> &str {
        &self.shared.graph_url
    }
    /// The identity platform authority for the default tenant: `{base}/{tenant-id}` (`/common` and
    /// `/organizations` work too).
    pub fn authority_url(&self) -> String {
        format!("{}/{}", self.shared.base_url, self.control().tenant_id())
    }
    /// `{authority}/oauth2/v2.0/authorize`.
    pub fn authorize_url(&self) -> String {
        format!("{}/oauth2/v2.0/authorize", self.authority_url())
    }
    /// `{authority}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> String {
        format!("{}/oauth2/v2.0/token", self.authority_url())
    }
    /// The OpenID issuer of the default tenant, `{base}/{tenant-id}/v2.0`: what `KBSYNC_OIDC_ISSUER` is set to,
    /// and the `iss` of its ID tokens. Discovery is at `{issuer}/.well-known/openid-configuration`.
    pub fn issuer_url(&self) -> String {
        format!("{}/v2.0", self.authority_url())
    }
    /// `{authority}/discovery/v2.0/keys`, the JWKS.
    pub fn jwks_url(&self) -> String {
        format!("{}/discovery/v2.0/keys", self.authority_url())
    }
    /// `{authority}/oauth2/v2.0/logout`, the end-session endpoint.
    pub fn logout_url(&self) -> String {
        format!("{}/oauth2/v2.0/logout", self.authority_url())
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
    /// Stops accepting, closes every connection and waits for the server task.
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

/// A self-signed certificate and its RSA key (PEM, PKCS#8) for tests of certificate credentials, plus a
/// second pair that is never registered. They protect nothing: never use them outside tests.
pub mod test_certificates {
    /// The certificate tests register for the client ([`Control::add_client_certificate`]).
    pub const APP_CERT_PEM: &str = include_str!("testdata/app-cert.pem");
    /// The private key of [`APP_CERT_PEM`].
    pub const APP_KEY_PEM: &str = include_str!("testdata/app-key.pem");
    /// A certificate no client registers.
    pub const OTHER_CERT_PEM: &str = include_str!("testdata/other-cert.pem");
    /// The private key of [`OTHER_CERT_PEM`].
    pub const OTHER_KEY_PEM: &str = include_str!("testdata/other-key.pem");
}
