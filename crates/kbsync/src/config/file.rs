//! The TOML configuration file: its shape (every key optional, each mirroring a `KBSYNC_*`
//! variable) and how it is read.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

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
    pub extract_isolation: Option<String>,
    pub extract_memory_mb: Option<u64>,
    pub api_concurrency: Option<usize>,
    pub log_format: Option<String>,
    pub secret_key_previous: Option<String>,
    pub sync_interval_minutes: Option<u32>,
    pub sync_concurrency: Option<usize>,
    pub max_files_per_kb: Option<u64>,
    pub max_file_size_mb: Option<u64>,
    pub sync_link_grants: Option<bool>,
    pub sharing_refresh_minutes: Option<u32>,
    pub group_refresh_minutes: Option<u32>,
    pub scheduler: Option<bool>,
    pub scheduler_tick_secs: Option<u64>,
    pub sync_lease_secs: Option<u64>,
    pub login_address_max_failures: Option<u32>,
    pub login_address_window_minutes: Option<u32>,
    pub login_failure_retention_hours: Option<u32>,
    pub housekeeping_minutes: Option<u32>,
    pub run_retention_days: Option<u32>,
    pub run_keep_latest: Option<u32>,
    pub blob_grace_minutes: Option<u32>,
    pub reauth_grace_hours: Option<u32>,
    pub onedrive: Option<OneDriveFileConfig>,
    pub gdrive: Option<GDriveFileConfig>,
    pub password_login: Option<bool>,
    pub webhooks: Option<String>,
    pub webhook_renew_before_hours: Option<u32>,
    pub webhook_debounce_ms: Option<u64>,
    pub webhook_tick_secs: Option<u64>,
    pub oidc: Option<OidcFileConfig>,
    pub openwebui: Option<OpenWebUiFileConfig>,
}

/// The `[openwebui]` table: publishing knowledge bases into Open WebUI. The API key itself is never
/// read from this file: give it in `KBSYNC_OPENWEBUI_API_KEY` or point `api_key_file` at a file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenWebUiFileConfig {
    pub url: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub public_url: Option<String>,
    pub upload_concurrency: Option<u32>,
    pub processing_timeout_secs: Option<u32>,
}

/// The `[oidc]` table: signing people in with an OpenID provider. The client secret itself is never
/// read from this file: give it in `KBSYNC_OIDC_CLIENT_SECRET` or point `client_secret_file` at a file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcFileConfig {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub scopes: Option<String>,
    /// Comma-separated email domains allowed to sign in.
    pub allowed_domains: Option<String>,
    /// Comma-separated group ids whose members are admins (decided at each sign-in).
    pub admin_groups: Option<String>,
    pub display_name: Option<String>,
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
    /// Knowledge bases may connect as the organisation's application (client credentials); needs
    /// `tenant_id` and a client secret or `client_cert_file` + `client_key_file`.
    pub app_only: Option<bool>,
    /// The application's certificate (PEM), registered in its app registration, for app-only access.
    pub client_cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM, unencrypted PKCS#8 or PKCS#1 RSA key).
    pub client_key_file: Option<PathBuf>,
}

/// The `[gdrive]` table. The client secret itself is never read from this file: give it in
/// `KBSYNC_GDRIVE_CLIENT_SECRET` or point `client_secret_file` at a file holding it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GDriveFileConfig {
    pub client_id: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub api_url: Option<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("--config {}: cannot read the file: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| ConfigError(format!("--config {}: {e}", path.display())))
    }
}
