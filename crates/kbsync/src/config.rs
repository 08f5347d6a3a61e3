//! Configuration: command-line flags, then `KBSYNC_*` environment variables, then the optional
//! TOML file, then defaults. Every bad value stops start-up with a message naming the setting.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
};

use serde::Deserialize;
use url::Url;

/// The TOML file's shape; every key is optional and mirrors a `KBSYNC_*` variable.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub bind: Option<String>,
    pub database_url: Option<String>,
    pub secret_key: Option<String>,
    pub public_url: Option<String>,
    pub admin_email: Option<String>,
    pub admin_password: Option<String>,
    pub max_upload_mb: Option<u64>,
    pub chunk_size: Option<usize>,
    pub chunk_overlap: Option<usize>,
    pub ingest_concurrency: Option<usize>,
    pub ingest_timeout_secs: Option<u64>,
    pub log_format: Option<String>,
    pub secret_key_previous: Option<String>,
    pub sync_interval_minutes: Option<u32>,
    pub sync_concurrency: Option<usize>,
    pub max_files_per_kb: Option<u64>,
    pub max_file_size_mb: Option<u64>,
    pub sync_link_grants: Option<bool>,
    pub sharing_refresh_minutes: Option<u32>,
    pub scheduler: Option<bool>,
    pub scheduler_tick_secs: Option<u64>,
    pub sync_lease_secs: Option<u64>,
    pub login_address_max_failures: Option<u32>,
    pub login_address_window_minutes: Option<u32>,
    pub login_failure_retention_hours: Option<u32>,
    pub housekeeping_minutes: Option<u32>,
    pub run_retention_days: Option<u32>,
    pub run_keep_latest: Option<u32>,
    pub reauth_grace_hours: Option<u32>,
    pub onedrive: Option<OneDriveFileConfig>,
}

/// The `[onedrive]` table. The client secret itself is never read from this file: give it in
/// `KBSYNC_ONEDRIVE_CLIENT_SECRET` or point `client_secret_file` at a file holding it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneDriveFileConfig {
    pub client_id: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub tenant_id: Option<String>,
    pub authority_url: Option<String>,
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub graph_url: Option<String>,
    pub scopes: Option<String>,
}

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
            .finish()
    }
}

pub const DEFAULT_AUTHORITY_URL: &str = "https://login.microsoftonline.com";
pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com/v1.0";
pub const DEFAULT_SCOPES: &str = "https://graph.microsoft.com/Files.Read.All offline_access";

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("--config {}: cannot read the file: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| ConfigError(format!("--config {}: {e}", path.display())))
    }
}

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
    pub log_format: LogFormat,
    /// Minutes between scheduled runs of a knowledge base (a knowledge base may set its own).
    pub sync_interval_minutes: u32,
    /// Files downloaded and extracted at once within one run.
    pub sync_concurrency: usize,
    /// A run that finds more files than this in a knowledge base stops with `file_limit_exceeded`.
    pub max_files_per_kb: u64,
    /// Larger files are skipped with a reason.
    pub max_file_size_bytes: u64,
    /// Whether organisation-wide and anonymous sharing links make a synced knowledge base
    /// readable by every kbsync user.
    pub sync_link_grants: bool,
    /// The longest a knowledge base's sync grants go without reading its folders' sharing again
    /// (sooner when the drive reports a sharing change, or sources or users change).
    pub sharing_refresh_minutes: u32,
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
    /// Hours a knowledge base may need re-authorization before the read access sync gave from its
    /// sources' sharing is withdrawn (manual grants stay).
    pub reauth_grace_hours: u32,
    /// `None` when no client id is configured: the OneDrive datasource is then unavailable.
    pub onedrive: Option<OneDriveSettings>,
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

impl Settings {
    /// Resolves settings from flags, an environment lookup and the file.
    pub fn resolve(
        flags: &Flags,
        env: &dyn Fn(&str) -> Option<String>,
        file: FileConfig,
    ) -> Result<Self, ConfigError> {
        let text = |var: &str, from_file: Option<String>| env(var).filter(|v| !v.is_empty()).or(from_file);

        let data_dir = flags
            .data_dir
            .clone()
            .or_else(|| {
                env("KBSYNC_DATA_DIR")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./data"));

        let bind_text = flags
            .bind
            .clone()
            .or_else(|| text("KBSYNC_BIND", file.bind))
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let bind = SocketAddr::from_str(bind_text.trim()).map_err(|_| {
            ConfigError(format!(
                "KBSYNC_BIND / --bind: {bind_text:?} is not a socket address like 127.0.0.1:8080"
            ))
        })?;

        let database_url = match text("KBSYNC_DATABASE_URL", file.database_url) {
            Some(url) => {
                let valid = url.starts_with("sqlite:")
                    || url.starts_with("postgres://")
                    || url.starts_with("postgresql://");
                if !valid {
                    return Err(ConfigError(
                        "KBSYNC_DATABASE_URL: must start with postgres://, postgresql:// or sqlite:".into(),
                    ));
                }
                url
            }
            None => format!("sqlite://{}", data_dir.join("kbsync.sqlite").display()),
        };

        let secret_key = text("KBSYNC_SECRET_KEY", file.secret_key);
        if let Some(key) = &secret_key
            && key.chars().count() < MIN_SECRET_KEY_CHARS
        {
            return Err(ConfigError(format!(
                "KBSYNC_SECRET_KEY: must be at least {MIN_SECRET_KEY_CHARS} characters"
            )));
        }

        let secret_key_previous = text("KBSYNC_SECRET_KEY_PREVIOUS", file.secret_key_previous);

        let public_text =
            text("KBSYNC_PUBLIC_URL", file.public_url).unwrap_or_else(|| format!("http://{bind}"));
        let public_url = Url::parse(public_text.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                ConfigError(format!(
                    "KBSYNC_PUBLIC_URL: {public_text:?} is not an http(s) URL"
                ))
            })?;

        let admin = match (
            text("KBSYNC_ADMIN_EMAIL", file.admin_email),
            text("KBSYNC_ADMIN_PASSWORD", file.admin_password),
        ) {
            (Some(email), Some(password)) => Some((email, password)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError(
                    "KBSYNC_ADMIN_PASSWORD: required with KBSYNC_ADMIN_EMAIL".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError(
                    "KBSYNC_ADMIN_EMAIL: required with KBSYNC_ADMIN_PASSWORD".into(),
                ));
            }
        };

        let max_upload_mb: u64 = number(env, "KBSYNC_MAX_UPLOAD_MB", file.max_upload_mb, 100)?;
        positive("KBSYNC_MAX_UPLOAD_MB", max_upload_mb)?;
        let chunk_size: usize = number(env, "KBSYNC_CHUNK_SIZE", file.chunk_size, 1000)?;
        if chunk_size < 100 {
            return Err(ConfigError(
                "KBSYNC_CHUNK_SIZE: must be at least 100 characters".into(),
            ));
        }
        let chunk_overlap: usize = number(env, "KBSYNC_CHUNK_OVERLAP", file.chunk_overlap, 100)?;
        if chunk_overlap >= chunk_size / 2 {
            return Err(ConfigError(
                "KBSYNC_CHUNK_OVERLAP: must be less than half of KBSYNC_CHUNK_SIZE".into(),
            ));
        }
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let ingest_concurrency: usize =
            number(env, "KBSYNC_INGEST_CONCURRENCY", file.ingest_concurrency, cores)?;
        positive("KBSYNC_INGEST_CONCURRENCY", ingest_concurrency as u64)?;
        let ingest_timeout_secs: u64 =
            number(env, "KBSYNC_INGEST_TIMEOUT_SECS", file.ingest_timeout_secs, 60)?;
        positive("KBSYNC_INGEST_TIMEOUT_SECS", ingest_timeout_secs)?;

        let sync_interval_minutes: u32 = number(
            env,
            "KBSYNC_SYNC_INTERVAL_MINUTES",
            file.sync_interval_minutes,
            60,
        )?;
        positive("KBSYNC_SYNC_INTERVAL_MINUTES", u64::from(sync_interval_minutes))?;
        let sync_concurrency: usize = number(env, "KBSYNC_SYNC_CONCURRENCY", file.sync_concurrency, 8)?;
        positive("KBSYNC_SYNC_CONCURRENCY", sync_concurrency as u64)?;
        let max_files_per_kb: u64 = number(env, "KBSYNC_MAX_FILES_PER_KB", file.max_files_per_kb, 10_000)?;
        positive("KBSYNC_MAX_FILES_PER_KB", max_files_per_kb)?;
        let max_file_size_mb: u64 = number(env, "KBSYNC_MAX_FILE_SIZE_MB", file.max_file_size_mb, 100)?;
        positive("KBSYNC_MAX_FILE_SIZE_MB", max_file_size_mb)?;
        let sync_link_grants = boolean(env, "KBSYNC_SYNC_LINK_GRANTS", file.sync_link_grants, false)?;
        let sharing_refresh_minutes: u32 = number(
            env,
            "KBSYNC_SHARING_REFRESH_MINUTES",
            file.sharing_refresh_minutes,
            360,
        )?;
        positive(
            "KBSYNC_SHARING_REFRESH_MINUTES",
            u64::from(sharing_refresh_minutes),
        )?;
        let scheduler = boolean(env, "KBSYNC_SCHEDULER", file.scheduler, true)?;
        let scheduler_tick_secs: u64 =
            number(env, "KBSYNC_SCHEDULER_TICK_SECS", file.scheduler_tick_secs, 5)?;
        positive("KBSYNC_SCHEDULER_TICK_SECS", scheduler_tick_secs)?;
        let sync_lease_secs: u64 = number(env, "KBSYNC_SYNC_LEASE_SECS", file.sync_lease_secs, 120)?;
        if !(3..=86_400).contains(&sync_lease_secs) {
            return Err(ConfigError(
                "KBSYNC_SYNC_LEASE_SECS: must be between 3 (a lease is renewed every second) and 86400"
                    .into(),
            ));
        }
        let reauth_grace_hours: u32 = number(env, "KBSYNC_REAUTH_GRACE_HOURS", file.reauth_grace_hours, 72)?;
        positive("KBSYNC_REAUTH_GRACE_HOURS", u64::from(reauth_grace_hours))?;

        let login_address_max_failures: u32 = number(
            env,
            "KBSYNC_LOGIN_ADDRESS_MAX_FAILURES",
            file.login_address_max_failures,
            50,
        )?;
        positive(
            "KBSYNC_LOGIN_ADDRESS_MAX_FAILURES",
            u64::from(login_address_max_failures),
        )?;
        let login_address_window_minutes: u32 = number(
            env,
            "KBSYNC_LOGIN_ADDRESS_WINDOW_MINUTES",
            file.login_address_window_minutes,
            15,
        )?;
        positive(
            "KBSYNC_LOGIN_ADDRESS_WINDOW_MINUTES",
            u64::from(login_address_window_minutes),
        )?;
        let login_failure_retention_hours: u32 = number(
            env,
            "KBSYNC_LOGIN_FAILURE_RETENTION_HOURS",
            file.login_failure_retention_hours,
            24,
        )?;
        positive(
            "KBSYNC_LOGIN_FAILURE_RETENTION_HOURS",
            u64::from(login_failure_retention_hours),
        )?;
        let housekeeping_minutes: u32 =
            number(env, "KBSYNC_HOUSEKEEPING_MINUTES", file.housekeeping_minutes, 60)?;
        positive("KBSYNC_HOUSEKEEPING_MINUTES", u64::from(housekeeping_minutes))?;
        let run_retention_days: u32 = number(env, "KBSYNC_RUN_RETENTION_DAYS", file.run_retention_days, 90)?;
        positive("KBSYNC_RUN_RETENTION_DAYS", u64::from(run_retention_days))?;
        let run_keep_latest: u32 = number(env, "KBSYNC_RUN_KEEP_LATEST", file.run_keep_latest, 20)?;

        let log_format = match text("KBSYNC_LOG_FORMAT", file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError(format!(
                    "KBSYNC_LOG_FORMAT: {other:?} is not one of: text, json"
                )));
            }
        };

        let onedrive = onedrive_settings(&text, file.onedrive.unwrap_or_default())?;

        Ok(Settings {
            data_dir,
            bind,
            database_url,
            secret_key,
            secret_key_previous,
            public_url,
            admin,
            max_upload_bytes: max_upload_mb.saturating_mul(1024 * 1024),
            chunk_size,
            chunk_overlap,
            ingest_concurrency,
            ingest_timeout_secs,
            log_format,
            sync_interval_minutes,
            sync_concurrency,
            max_files_per_kb,
            max_file_size_bytes: max_file_size_mb.saturating_mul(1024 * 1024),
            sync_link_grants,
            sharing_refresh_minutes,
            scheduler,
            scheduler_tick_secs,
            sync_lease_secs,
            login_address_max_failures,
            login_address_window_minutes,
            login_failure_retention_hours,
            housekeeping_minutes,
            run_retention_days,
            run_keep_latest,
            reauth_grace_hours,
            onedrive,
        })
    }

    /// Where the identity platform sends the user back after consent.
    pub fn onedrive_redirect_uri(&self) -> String {
        format!(
            "{}/api/v1/connectors/onedrive/auth/callback",
            self.public_origin()
        )
    }

    /// The public URL without a trailing slash, as the server composes links with it.
    pub fn public_origin(&self) -> String {
        self.public_url.as_str().trim_end_matches('/').to_owned()
    }
}

fn onedrive_settings(
    text: &dyn Fn(&str, Option<String>) -> Option<String>,
    file: OneDriveFileConfig,
) -> Result<Option<OneDriveSettings>, ConfigError> {
    let Some(client_id) = text("KBSYNC_ONEDRIVE_CLIENT_ID", file.client_id) else {
        return Ok(None);
    };
    let secret_file = text(
        "KBSYNC_ONEDRIVE_CLIENT_SECRET_FILE",
        file.client_secret_file.map(|p| p.display().to_string()),
    );
    let client_secret = match (text("KBSYNC_ONEDRIVE_CLIENT_SECRET", None), secret_file) {
        (Some(secret), _) => Some(secret),
        (None, Some(path)) => {
            let secret = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError(format!(
                    "KBSYNC_ONEDRIVE_CLIENT_SECRET_FILE: cannot read {path}: {e}"
                ))
            })?;
            let secret = secret.trim().to_owned();
            if secret.is_empty() {
                return Err(ConfigError(format!(
                    "KBSYNC_ONEDRIVE_CLIENT_SECRET_FILE: {path} is empty"
                )));
            }
            Some(secret)
        }
        (None, None) => None,
    };
    let tenant = text("KBSYNC_ONEDRIVE_TENANT_ID", file.tenant_id).unwrap_or_else(|| "common".into());
    let authority = text("KBSYNC_ONEDRIVE_AUTHORITY_URL", file.authority_url)
        .unwrap_or_else(|| DEFAULT_AUTHORITY_URL.into());
    let authority = http_url("KBSYNC_ONEDRIVE_AUTHORITY_URL", &authority)?;
    let authorize_url = match text("KBSYNC_ONEDRIVE_AUTHORIZE_URL", file.authorize_url) {
        Some(u) => http_url("KBSYNC_ONEDRIVE_AUTHORIZE_URL", &u)?,
        None => format!("{authority}/{tenant}/oauth2/v2.0/authorize"),
    };
    let token_url = match text("KBSYNC_ONEDRIVE_TOKEN_URL", file.token_url) {
        Some(u) => http_url("KBSYNC_ONEDRIVE_TOKEN_URL", &u)?,
        None => format!("{authority}/{tenant}/oauth2/v2.0/token"),
    };
    let graph_url =
        text("KBSYNC_ONEDRIVE_GRAPH_URL", file.graph_url).unwrap_or_else(|| DEFAULT_GRAPH_URL.into());
    let graph_url = http_url("KBSYNC_ONEDRIVE_GRAPH_URL", &graph_url)?;
    let scopes: Vec<String> = text("KBSYNC_ONEDRIVE_SCOPES", file.scopes)
        .unwrap_or_else(|| DEFAULT_SCOPES.into())
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if !scopes.iter().any(|s| s == "offline_access") {
        return Err(ConfigError(
            "KBSYNC_ONEDRIVE_SCOPES: must include offline_access, or no refresh token is issued".into(),
        ));
    }
    Ok(Some(OneDriveSettings {
        client_id,
        client_secret,
        authorize_url,
        token_url,
        graph_url,
        scopes,
    }))
}

/// An http(s) URL without a trailing slash.
fn http_url(var: &str, value: &str) -> Result<String, ConfigError> {
    Url::parse(value.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .map(|u| u.as_str().trim_end_matches('/').to_owned())
        .ok_or_else(|| ConfigError(format!("{var}: {value:?} is not an http(s) URL")))
}

fn number<T: FromStr + Copy>(
    env: &dyn Fn(&str) -> Option<String>,
    var: &str,
    from_file: Option<T>,
    default: T,
) -> Result<T, ConfigError> {
    match env(var).filter(|v| !v.is_empty()) {
        Some(text) => text
            .trim()
            .parse()
            .map_err(|_| ConfigError(format!("{var}: {text:?} is not a valid whole number"))),
        None => Ok(from_file.unwrap_or(default)),
    }
}

fn boolean(
    env: &dyn Fn(&str) -> Option<String>,
    var: &str,
    from_file: Option<bool>,
    default: bool,
) -> Result<bool, ConfigError> {
    match env(var).filter(|v| !v.is_empty()) {
        Some(text) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ConfigError(format!("{var}: {text:?} is not one of: true, false"))),
        },
        None => Ok(from_file.unwrap_or(default)),
    }
}

fn positive(var: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        Err(ConfigError(format!("{var}: must be greater than 0")))
    } else {
        Ok(())
    }
}

/// A documented configuration file with every setting at its default.
pub const EXAMPLE: &str = r#"# kbsync configuration. Every key is optional; the KBSYNC_<KEY> environment variable
# (upper-cased) overrides it, and --data-dir / --bind override those.

# Where the SQLite database, stored files and the generated secret key live.
data_dir = "./data"

# The address the HTTP server listens on.
bind = "127.0.0.1:8080"

# The database. Default: a SQLite file in data_dir. postgres://user@host/db selects PostgreSQL,
# which lets several kbsync instances share the work.
# database_url = "postgres://kbsync@127.0.0.1:5432/kbsync"

# Encrypts stored refresh tokens. Prefer the KBSYNC_SECRET_KEY environment variable; when neither
# is set, a key is generated once and kept in data_dir/secret_key (mode 0600).
# secret_key = "at least 16 characters"

# The address users reach kbsync at (used for OAuth redirects). Default: http://<bind>.
public_url = "http://127.0.0.1:8080"

# The first admin, created at start-up when the database has no user yet.
# admin_email = "admin@example.com"
# admin_password = "change me please"

# The largest file an upload may carry, in MiB.
max_upload_mb = 100

# Chunking of extracted text for search, in characters.
chunk_size = 1000
chunk_overlap = 100

# How many files are extracted at once (default: the number of CPU cores), and for how long
# one file may take before it is marked failed.
# ingest_concurrency = 2
ingest_timeout_secs = 60

# Log lines as "text" or "json". The level comes from RUST_LOG (default: info).
log_format = "text"

# Sync: minutes between scheduled runs of each knowledge base, files fetched at once per run, the
# most files one knowledge base may hold (a run finding more stops with file_limit_exceeded), and
# the largest file synced, in MiB (larger ones are skipped).
sync_interval_minutes = 60
sync_concurrency = 8
max_files_per_kb = 10000
max_file_size_mb = 100

# Whether a folder shared through an organisation-wide or anonymous link makes its knowledge base
# readable by every kbsync user. Off: only people the drive names (by email) get read access.
sync_link_grants = false

# Minutes a knowledge base's read access may go without reading its folders' sharing again. A run
# reads it sooner when the drive reports a sharing change (business drives), after a full
# enumeration, and when sources or users are added or removed; otherwise a run that finds nothing
# changed costs one request per folder source.
sharing_refresh_minutes = 360

# Whether this instance runs the scheduler; turn it off on instances that should only serve.
scheduler = true
# Seconds between the scheduler's looks for due knowledge bases.
scheduler_tick_secs = 5
# Seconds a running sync's lease lasts without renewal (renewed every second): after a crash, the
# knowledge base is taken over by another instance, or this one after a restart, once it expires.
sync_lease_secs = 120
# Hours a knowledge base may need re-authorization (its owner must sign in again) before the read
# access that sync gave from its folders' sharing is withdrawn; manual grants stay.
reauth_grace_hours = 72

# Sign-in limits. Failed sign-ins to one account are slowed down (five free, then a delay that
# doubles); besides, one client address (the TCP peer: behind a reverse proxy, the proxy; IPv6 per
# /64) may fail this many times per window of this many minutes before it is refused (429) until the
# window ends. A failed sign-in counts against its account for login_failure_retention_hours.
login_address_max_failures = 50
login_address_window_minutes = 15
login_failure_retention_hours = 24

# Housekeeping, every housekeeping_minutes (at start-up first): deletes expired sessions, forgotten
# login failures, and finished sync run records older than run_retention_days, but always keeps each
# knowledge base's run_keep_latest most recent runs. Safe to run on every instance.
housekeeping_minutes = 60
run_retention_days = 90
run_keep_latest = 20

# While rotating KBSYNC_SECRET_KEY: the previous key, so rows it encrypted stay readable.
# secret_key_previous = "the old key"

# OneDrive / SharePoint (Microsoft Graph). Without client_id the datasource is off. The client
# secret is never read from this file: set KBSYNC_ONEDRIVE_CLIENT_SECRET or client_secret_file.
# The app registration's redirect URI is <public_url>/api/v1/connectors/onedrive/auth/callback.
[onedrive]
# client_id = "00000000-0000-0000-0000-000000000000"
# client_secret_file = "/run/secrets/onedrive_client_secret"
tenant_id = "common"
authority_url = "https://login.microsoftonline.com"
# authorize_url and token_url default to <authority_url>/<tenant_id>/oauth2/v2.0/{authorize,token};
# set them to use any standards-compliant authorization server.
graph_url = "https://graph.microsoft.com/v1.0"
scopes = "https://graph.microsoft.com/Files.Read.All offline_access"
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn example_config_parses_and_resolves_to_the_defaults() {
        let file: FileConfig = toml::from_str(EXAMPLE).unwrap();
        let from_example = Settings::resolve(&Flags::default(), &env_of(&[]), file).unwrap();
        let defaults = Settings::resolve(&Flags::default(), &env_of(&[]), FileConfig::default()).unwrap();
        assert_eq!(from_example.bind, defaults.bind);
        assert_eq!(from_example.data_dir, defaults.data_dir);
        assert_eq!(from_example.public_url, defaults.public_url);
        assert_eq!(from_example.max_upload_bytes, 100 * 1024 * 1024);
        assert_eq!((from_example.chunk_size, from_example.chunk_overlap), (1000, 100));
        assert!(from_example.database_url.starts_with("sqlite://"));
        assert_eq!(
            (
                from_example.login_address_max_failures,
                from_example.login_address_window_minutes,
                from_example.login_failure_retention_hours,
            ),
            (
                defaults.login_address_max_failures,
                defaults.login_address_window_minutes,
                defaults.login_failure_retention_hours,
            )
        );
        assert_eq!(
            (
                from_example.housekeeping_minutes,
                from_example.run_retention_days,
                from_example.run_keep_latest,
            ),
            (60, 90, 20)
        );
        assert_eq!(
            (
                defaults.housekeeping_minutes,
                defaults.run_retention_days,
                defaults.run_keep_latest
            ),
            (60, 90, 20)
        );
        assert_eq!(from_example.reauth_grace_hours, 72);
        assert_eq!(defaults.reauth_grace_hours, 72);
    }

    #[test]
    fn reauth_grace_hours_come_from_the_environment_and_must_be_positive() {
        let s = Settings::resolve(
            &Flags::default(),
            &env_of(&[("KBSYNC_REAUTH_GRACE_HOURS", "12")]),
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(s.reauth_grace_hours, 12);
        let file = FileConfig {
            reauth_grace_hours: Some(24),
            ..Default::default()
        };
        assert_eq!(
            Settings::resolve(&Flags::default(), &env_of(&[]), file)
                .unwrap()
                .reauth_grace_hours,
            24
        );
    }

    #[test]
    fn flags_beat_environment_which_beats_the_file() {
        let file = FileConfig {
            bind: Some("127.0.0.1:1".into()),
            chunk_size: Some(500),
            ..Default::default()
        };
        let env = env_of(&[("KBSYNC_BIND", "127.0.0.1:2"), ("KBSYNC_CHUNK_SIZE", "700")]);
        let s = Settings::resolve(&Flags::default(), &env, file).unwrap();
        assert_eq!(s.bind.port(), 2);
        assert_eq!(s.chunk_size, 700);
        let flags = Flags {
            bind: Some("127.0.0.1:3".into()),
            ..Default::default()
        };
        let s = Settings::resolve(&flags, &env, FileConfig::default()).unwrap();
        assert_eq!(s.bind.port(), 3);
        assert_eq!(s.public_url.as_str(), "http://127.0.0.1:3/");
    }

    #[test]
    fn bad_values_name_the_setting() {
        let cases = [
            ("KBSYNC_BIND", "nonsense"),
            ("KBSYNC_DATABASE_URL", "mysql://x"),
            ("KBSYNC_SECRET_KEY", "short"),
            ("KBSYNC_PUBLIC_URL", "ftp://x"),
            ("KBSYNC_MAX_UPLOAD_MB", "lots"),
            ("KBSYNC_MAX_UPLOAD_MB", "0"),
            ("KBSYNC_CHUNK_SIZE", "10"),
            ("KBSYNC_CHUNK_OVERLAP", "900"),
            ("KBSYNC_LOG_FORMAT", "xml"),
            ("KBSYNC_ADMIN_EMAIL", "a@b.c"),
            ("KBSYNC_LOGIN_ADDRESS_MAX_FAILURES", "0"),
            ("KBSYNC_LOGIN_ADDRESS_WINDOW_MINUTES", "0"),
            ("KBSYNC_LOGIN_FAILURE_RETENTION_HOURS", "0"),
            ("KBSYNC_HOUSEKEEPING_MINUTES", "0"),
            ("KBSYNC_RUN_RETENTION_DAYS", "-1"),
            ("KBSYNC_RUN_KEEP_LATEST", "many"),
            ("KBSYNC_REAUTH_GRACE_HOURS", "0"),
            ("KBSYNC_REAUTH_GRACE_HOURS", "soon"),
        ];
        for (var, value) in cases {
            let err = Settings::resolve(&Flags::default(), &env_of(&[(var, value)]), FileConfig::default())
                .unwrap_err();
            assert!(err.0.contains(var), "{var}={value}: {err}");
        }
    }

    #[test]
    fn onedrive_urls_derive_from_authority_and_tenant_unless_overridden() {
        let env = env_of(&[
            ("KBSYNC_ONEDRIVE_CLIENT_ID", "app"),
            ("KBSYNC_ONEDRIVE_TENANT_ID", "contoso"),
        ]);
        let s = Settings::resolve(&Flags::default(), &env, FileConfig::default()).unwrap();
        let od = s.onedrive.clone().unwrap();
        assert_eq!(
            od.authorize_url,
            "https://login.microsoftonline.com/contoso/oauth2/v2.0/authorize"
        );
        assert_eq!(
            od.token_url,
            "https://login.microsoftonline.com/contoso/oauth2/v2.0/token"
        );
        assert_eq!(od.graph_url, DEFAULT_GRAPH_URL);
        assert_eq!(od.client_secret, None);
        assert_eq!(
            s.onedrive_redirect_uri(),
            "http://127.0.0.1:8080/api/v1/connectors/onedrive/auth/callback"
        );

        let dir = tempfile::tempdir().unwrap();
        let secret_path = dir.path().join("secret");
        std::fs::write(&secret_path, "s3cret\n").unwrap();
        let env = env_of(&[
            ("KBSYNC_ONEDRIVE_CLIENT_ID", "app"),
            (
                "KBSYNC_ONEDRIVE_CLIENT_SECRET_FILE",
                secret_path.to_str().unwrap(),
            ),
            ("KBSYNC_ONEDRIVE_TOKEN_URL", "https://auth.example.com/token/"),
        ]);
        let od = Settings::resolve(&Flags::default(), &env, FileConfig::default())
            .unwrap()
            .onedrive
            .unwrap();
        assert_eq!(od.client_secret.as_deref(), Some("s3cret"));
        assert_eq!(od.token_url, "https://auth.example.com/token");
        assert!(!format!("{od:?}").contains("s3cret"));
    }

    #[test]
    fn bad_onedrive_values_name_the_setting() {
        for (var, value) in [
            ("KBSYNC_ONEDRIVE_GRAPH_URL", "graph"),
            ("KBSYNC_ONEDRIVE_SCOPES", "Files.Read.All"),
            ("KBSYNC_ONEDRIVE_CLIENT_SECRET_FILE", "/nonexistent/secret"),
        ] {
            let env = env_of(&[("KBSYNC_ONEDRIVE_CLIENT_ID", "app"), (var, value)]);
            let err = Settings::resolve(&Flags::default(), &env, FileConfig::default()).unwrap_err();
            assert!(err.0.contains(var), "{var}: {err}");
        }
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let err = toml::from_str::<FileConfig>("bnd = \"x\"").unwrap_err();
        assert!(err.to_string().contains("bnd"), "{err}");
    }
}
