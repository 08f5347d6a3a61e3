//! The resolved settings of a kbsync process, as the rest of the binary uses them.

use std::{net::SocketAddr, path::PathBuf};

use url::Url;

/// The OneDrive / SharePoint datasource's settings.
#[derive(Clone)]
pub struct OneDriveSettings {
    pub client_id: String,
    /// `None` when no secret is configured: connecting then answers 501.
    pub client_secret: Option<String>,
    pub authorize_url: String,
    pub token_url: String,
    pub graph_url: String,
    pub scopes: Vec<String>,
    /// Set when knowledge bases may connect as the organisation's application (`KBSYNC_ONEDRIVE_APP_ONLY`).
    pub app_only: Option<AppOnlySettings>,
}

/// App-only access to OneDrive / SharePoint: the client credentials of the application in one tenant.
#[derive(Clone)]
pub struct AppOnlySettings {
    /// The organisation's tenant (id or domain; never `common`).
    pub tenant: String,
    /// The token endpoint of that tenant.
    pub token_url: String,
    pub credential: AppOnlyCredential,
}

/// How the application authenticates for app-only tokens.
#[derive(Clone)]
pub enum AppOnlyCredential {
    /// The client secret (SharePoint REST refuses app-only tokens obtained this way, so SharePoint site
    /// groups cannot be expanded with it).
    Secret(String),
    /// A certificate registered for the application and its private key, both PEM (already checked).
    Certificate {
        certificate_pem: Vec<u8>,
        key_pem: Vec<u8>,
    },
}

impl std::fmt::Debug for AppOnlySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let credential = match &self.credential {
            AppOnlyCredential::Secret(_) => "client secret (***)",
            AppOnlyCredential::Certificate { .. } => "certificate (key ***)",
        };
        f.debug_struct("AppOnlySettings")
            .field("tenant", &self.tenant)
            .field("token_url", &self.token_url)
            .field("credential", &credential)
            .finish()
    }
}

impl std::fmt::Debug for OneDriveSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneDriveSettings")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .field("authorize_url", &self.authorize_url)
            .field("token_url", &self.token_url)
            .field("graph_url", &self.graph_url)
            .field("scopes", &self.scopes)
            .field("app_only", &self.app_only)
            .finish()
    }
}

/// The Google Drive datasource's settings (`KBSYNC_GDRIVE_*`).
#[derive(Clone)]
pub struct GDriveSettings {
    /// The OAuth client's id (a "Web application" client of a Google Cloud project).
    pub client_id: String,
    /// `None` when no secret is configured: connecting then answers 501.
    pub client_secret: Option<String>,
    pub authorize_url: String,
    pub token_url: String,
    /// The Drive API v3's base URL.
    pub api_url: String,
}

impl std::fmt::Debug for GDriveSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GDriveSettings")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .field("authorize_url", &self.authorize_url)
            .field("token_url", &self.token_url)
            .field("api_url", &self.api_url)
            .finish()
    }
}

/// Publishing knowledge bases into Open WebUI (`KBSYNC_OPENWEBUI_*`).
#[derive(Clone)]
pub struct OpenWebUiSettings {
    /// Where kbsync reaches Open WebUI, e.g. `http://openwebui:8080`.
    pub url: String,
    /// An Open WebUI admin's API key (`sk-…`) or token; never logged.
    pub api_key: String,
    /// Where people open Open WebUI (links in the UI); `url` when not set.
    pub public_url: String,
    /// Files uploaded at once during a publish.
    pub upload_concurrency: usize,
    /// How long Open WebUI may take to process one uploaded file.
    pub processing_timeout_secs: u32,
}

impl std::fmt::Debug for OpenWebUiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenWebUiSettings")
            .field("url", &self.url)
            .field("api_key", &"***")
            .field("public_url", &self.public_url)
            .field("upload_concurrency", &self.upload_concurrency)
            .field("processing_timeout_secs", &self.processing_timeout_secs)
            .finish()
    }
}

/// Signing people in with an OpenID provider (`KBSYNC_OIDC_*`).
#[derive(Clone)]
pub struct OidcSettings {
    /// The issuer, e.g. `https://login.microsoftonline.com/{tenant id}/v2.0`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub scopes: Vec<String>,
    /// Lower-case email domains allowed to sign in; empty allows every domain.
    pub allowed_domains: Vec<String>,
    /// Group ids (the ID token's `groups` claim) whose members are admins, decided at each sign-in.
    pub admin_groups: Vec<String>,
    /// What the sign-in button names; `None` guesses from the issuer ("Microsoft" for Entra).
    pub display_name: Option<String>,
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("scopes", &self.scopes)
            .field("allowed_domains", &self.allowed_domains)
            .field("admin_groups", &self.admin_groups)
            .field("display_name", &self.display_name)
            .finish()
    }
}

pub const DEFAULT_AUTHORITY_URL: &str = "https://login.microsoftonline.com";
pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com/v1.0";
/// Files, SharePoint sites (for the picker), group members (for per-document access; GroupMember.Read.All needs
/// admin consent) and a refresh token: the same list as `kbsync_msgraph::DEFAULT_SCOPES`.
pub const DEFAULT_SCOPES: &str = "https://graph.microsoft.com/Files.Read.All https://graph.microsoft.com/Sites.Read.All https://graph.microsoft.com/GroupMember.Read.All offline_access";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where document parsers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtractIsolation {
    /// In `kbsync extract-worker` processes, killed at the time limit and capped in memory.
    Process,
    /// On the server's own threads (a parser that loops or aborts can hurt the server).
    Thread,
}

/// The resolved settings of one kbsync process.
#[derive(Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub bind: SocketAddr,
    pub database_url: String,
    /// `None` when neither the environment nor the file gives one: a key is then generated
    /// once and kept in the data directory.
    pub secret_key: Option<String>,
    /// The key that encrypted older rows, while keys are being rotated.
    pub secret_key_previous: Option<String>,
    pub public_url: Url,
    pub admin: Option<(String, String)>,
    pub max_upload_bytes: u64,
    pub chunk_size: usize,
    pub chunk_overlap: usize,
    pub ingest_concurrency: usize,
    pub ingest_timeout_secs: u64,
    /// Where parsers run (default: worker processes).
    pub extract_isolation: ExtractIsolation,
    /// The address-space limit of one extraction worker, in MiB.
    pub extract_memory_mb: u64,
    /// API and web UI reads (GET, HEAD) handled at once; more wait their turn, so that clients
    /// never take every database connection from this instance's sync runs.
    pub api_concurrency: usize,
    pub log_format: LogFormat,
    /// Minutes between scheduled runs of a knowledge base (a knowledge base may set its own).
    pub sync_interval_minutes: u32,
    /// Files downloaded and extracted at once within one run.
    pub sync_concurrency: usize,
    /// A run that finds more files than this in a knowledge base stops with `file_limit_exceeded`.
    pub max_files_per_kb: u64,
    /// Larger files are skipped with a reason.
    pub max_file_size_bytes: u64,
    /// Whether organisation-wide and anonymous sharing links let every kbsync user read the
    /// documents they open.
    pub sync_link_grants: bool,
    /// The longest a knowledge base goes without reading every permission of its sources again
    /// (items whose sharing the drive reports as changed are read at the next run anyway).
    pub sharing_refresh_minutes: u32,
    /// The longest the expanded members of a group are used before they are read again.
    pub group_refresh_minutes: u32,
    /// Whether this instance runs the scheduler (off: only manual runs start here).
    pub scheduler: bool,
    /// Seconds between the scheduler's looks for due knowledge bases.
    pub scheduler_tick_secs: u64,
    /// Seconds a run's lease lasts without renewal: how long a knowledge base whose instance died
    /// mid-run waits before another instance takes it over.
    pub sync_lease_secs: u64,
    /// Failed sign-ins one client address (the TCP peer; an IPv6 /64) may make per window before
    /// it gets 429 until the window ends.
    pub login_address_max_failures: u32,
    /// The length of that window, in minutes.
    pub login_address_window_minutes: u32,
    /// Hours a failed sign-in counts against its account before it is forgotten and purged.
    pub login_failure_retention_hours: u32,
    /// Minutes between housekeeping purges (expired sessions, old login failures, old runs).
    pub housekeeping_minutes: u32,
    /// Days a finished sync run's record is kept ...
    pub run_retention_days: u32,
    /// ... beyond each knowledge base's this many most recent runs, which are always kept.
    pub run_keep_latest: u32,
    /// Minutes a stored file no document references is kept before housekeeping removes it
    /// (docs/storage.md): an upload or sync of the same bytes in that time uses it again.
    pub blob_grace_minutes: u32,
    /// Hours a knowledge base may need re-authorization before the read access sync gave from its
    /// sources' sharing is withdrawn (manual grants stay).
    pub reauth_grace_hours: u32,
    /// `None` when no client id is configured: the OneDrive datasource is then unavailable.
    pub onedrive: Option<OneDriveSettings>,
    /// `None` when no client id is configured: the Google Drive datasource is then unavailable.
    pub gdrive: Option<GDriveSettings>,
    /// `None` when no issuer is configured: people sign in with passwords only.
    pub oidc: Option<OidcSettings>,
    /// `None` when no Open WebUI URL is configured: knowledge bases cannot be published.
    pub openwebui: Option<OpenWebUiSettings>,
    /// Whether people may sign in with an email and password (`KBSYNC_PASSWORD_LOGIN`).
    pub password_login: bool,
    /// Whether kbsync subscribes to the sources' change notifications (`KBSYNC_WEBHOOKS`: `auto`,
    /// the default, turns them on when the public URL is https; `on`; `off`).
    pub webhooks: bool,
    /// Hours before its expiry a subscription is renewed.
    pub webhook_renew_before_hours: u32,
    /// Milliseconds a notified knowledge base waits for more notifications before it runs.
    pub webhook_debounce_ms: u64,
    /// Seconds between two looks at the subscriptions (creation, renewal, removal).
    pub webhook_tick_secs: u64,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("data_dir", &self.data_dir)
            .field("bind", &self.bind)
            .field(
                "database",
                &if self.database_url.starts_with("sqlite:") {
                    "sqlite"
                } else {
                    "postgres"
                },
            )
            .field("secret_key", &self.secret_key.as_ref().map(|_| "***"))
            .field("public_url", &self.public_url.as_str())
            .field("admin", &self.admin.as_ref().map(|(email, _)| email))
            .field("onedrive", &self.onedrive)
            .field("gdrive", &self.gdrive)
            .field("oidc", &self.oidc)
            .field("openwebui", &self.openwebui)
            .field("password_login", &self.password_login)
            .field("webhooks", &self.webhooks)
            .finish_non_exhaustive()
    }
}

/// Values given on the command line (they win over everything else).
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub data_dir: Option<PathBuf>,
    pub bind: Option<String>,
}

/// Minimum length of `KBSYNC_SECRET_KEY`, so that a typo like "x" is not accepted as a key.
pub const MIN_SECRET_KEY_CHARS: usize = 16;
