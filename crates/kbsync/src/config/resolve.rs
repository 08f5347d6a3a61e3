//! Resolving the settings: command-line flags, then `KBSYNC_*` environment variables, then the
//! file, then defaults; every value is checked here.

use std::{net::SocketAddr, path::PathBuf, str::FromStr};

use kbsync_core::datasource::DatasourceKind;
use url::Url;

use super::{
    AppOnlyCredential, AppOnlySettings, ConfigError, DEFAULT_AUTHORITY_URL, DEFAULT_GRAPH_URL,
    DEFAULT_SCOPES, ExtractIsolation, FileConfig, Flags, GDriveFileConfig, GDriveSettings, LogFormat,
    MIN_SECRET_KEY_CHARS, OidcFileConfig, OidcSettings, OneDriveFileConfig, OneDriveSettings,
    OpenWebUiFileConfig, OpenWebUiSettings, Settings,
};

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
        let extract_isolation = match text("KBSYNC_EXTRACT_ISOLATION", file.extract_isolation).as_deref() {
            None | Some("process") => ExtractIsolation::Process,
            Some("thread") => ExtractIsolation::Thread,
            Some(other) => {
                return Err(ConfigError(format!(
                    "KBSYNC_EXTRACT_ISOLATION: {other:?} is not one of: process, thread"
                )));
            }
        };
        let extract_memory_mb: u64 = number(env, "KBSYNC_EXTRACT_MEMORY_MB", file.extract_memory_mb, 1024)?;
        if extract_memory_mb < 64 {
            return Err(ConfigError(
                "KBSYNC_EXTRACT_MEMORY_MB: must be at least 64 (MiB)".into(),
            ));
        }

        let api_concurrency: usize = number(env, "KBSYNC_API_CONCURRENCY", file.api_concurrency, 4)?;
        positive("KBSYNC_API_CONCURRENCY", api_concurrency as u64)?;

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
        let group_refresh_minutes: u32 = number(
            env,
            "KBSYNC_GROUP_REFRESH_MINUTES",
            file.group_refresh_minutes,
            60,
        )?;
        positive("KBSYNC_GROUP_REFRESH_MINUTES", u64::from(group_refresh_minutes))?;
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
        let blob_grace_minutes: u32 = number(env, "KBSYNC_BLOB_GRACE_MINUTES", file.blob_grace_minutes, 60)?;
        positive("KBSYNC_BLOB_GRACE_MINUTES", u64::from(blob_grace_minutes))?;

        let log_format = match text("KBSYNC_LOG_FORMAT", file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError(format!(
                    "KBSYNC_LOG_FORMAT: {other:?} is not one of: text, json"
                )));
            }
        };

        let onedrive = onedrive_settings(env, &text, file.onedrive.unwrap_or_default())?;
        let gdrive = gdrive_settings(&text, file.gdrive.unwrap_or_default())?;
        let oidc = oidc_settings(&text, file.oidc.unwrap_or_default())?;
        let openwebui = openwebui_settings(env, &text, file.openwebui.unwrap_or_default())?;
        let https = public_url.scheme() == "https";
        let webhooks = match text("KBSYNC_WEBHOOKS", file.webhooks).as_deref() {
            None | Some("auto") => https,
            Some("on") => true,
            Some("off") => false,
            Some(other) => {
                return Err(ConfigError(format!(
                    "KBSYNC_WEBHOOKS: {other:?} is not one of: auto, on, off"
                )));
            }
        };
        let webhook_renew_before_hours: u32 = number(
            env,
            "KBSYNC_WEBHOOK_RENEW_BEFORE_HOURS",
            file.webhook_renew_before_hours,
            48,
        )?;
        if !(1..=600).contains(&webhook_renew_before_hours) {
            return Err(ConfigError(
                "KBSYNC_WEBHOOK_RENEW_BEFORE_HOURS: must be between 1 and 600 (a OneDrive subscription lives at most 705 hours)"
                    .into(),
            ));
        }
        let webhook_debounce_ms: u64 =
            number(env, "KBSYNC_WEBHOOK_DEBOUNCE_MS", file.webhook_debounce_ms, 2000)?;
        let webhook_tick_secs: u64 = number(env, "KBSYNC_WEBHOOK_TICK_SECS", file.webhook_tick_secs, 60)?;
        positive("KBSYNC_WEBHOOK_TICK_SECS", webhook_tick_secs)?;
        let password_login = boolean(env, "KBSYNC_PASSWORD_LOGIN", file.password_login, true)?;
        if !password_login && oidc.is_none() {
            return Err(ConfigError(
                "KBSYNC_PASSWORD_LOGIN=false: needs KBSYNC_OIDC_ISSUER, or nobody could sign in".into(),
            ));
        }

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
            extract_isolation,
            extract_memory_mb,
            api_concurrency,
            log_format,
            sync_interval_minutes,
            sync_concurrency,
            max_files_per_kb,
            max_file_size_bytes: max_file_size_mb.saturating_mul(1024 * 1024),
            sync_link_grants,
            sharing_refresh_minutes,
            group_refresh_minutes,
            scheduler,
            scheduler_tick_secs,
            sync_lease_secs,
            login_address_max_failures,
            login_address_window_minutes,
            login_failure_retention_hours,
            housekeeping_minutes,
            run_retention_days,
            run_keep_latest,
            blob_grace_minutes,
            reauth_grace_hours,
            onedrive,
            gdrive,
            oidc,
            openwebui,
            password_login,
            webhooks,
            webhook_renew_before_hours,
            webhook_debounce_ms,
            webhook_tick_secs,
        })
    }

    /// Where a datasource's authorization server sends the user back after consent (the redirect
    /// URI to register with it): `{public_url}/api/v1/datasources/{name}/auth/callback`, `name`
    /// being the datasource's name in the registry.
    pub fn redirect_uri(&self, kind: DatasourceKind) -> String {
        format!(
            "{}/api/v1/datasources/{}/auth/callback",
            self.public_origin(),
            kind.info().name
        )
    }

    /// The public URL without a trailing slash, as the server composes links with it.
    pub fn public_origin(&self) -> String {
        self.public_url.as_str().trim_end_matches('/').to_owned()
    }
}

fn onedrive_settings(
    env: &dyn Fn(&str) -> Option<String>,
    text: &dyn Fn(&str, Option<String>) -> Option<String>,
    file: OneDriveFileConfig,
) -> Result<Option<OneDriveSettings>, ConfigError> {
    let app_only = boolean(env, "KBSYNC_ONEDRIVE_APP_ONLY", file.app_only, false)?;
    let cert_file = text(
        "KBSYNC_ONEDRIVE_CLIENT_CERT_FILE",
        file.client_cert_file.map(|p| p.display().to_string()),
    );
    let key_file = text(
        "KBSYNC_ONEDRIVE_CLIENT_KEY_FILE",
        file.client_key_file.map(|p| p.display().to_string()),
    );
    let Some(client_id) = text("KBSYNC_ONEDRIVE_CLIENT_ID", file.client_id) else {
        if app_only {
            return Err(ConfigError(
                "KBSYNC_ONEDRIVE_APP_ONLY: needs KBSYNC_ONEDRIVE_CLIENT_ID (the application's client id)"
                    .into(),
            ));
        }
        return Ok(None);
    };
    let secret_file = text(
        "KBSYNC_ONEDRIVE_CLIENT_SECRET_FILE",
        file.client_secret_file.map(|p| p.display().to_string()),
    );
    let client_secret = secret(
        text("KBSYNC_ONEDRIVE_CLIENT_SECRET", None),
        "KBSYNC_ONEDRIVE_CLIENT_SECRET_FILE",
        secret_file,
    )?;
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
    let app_only = if app_only {
        Some(app_only_settings(
            &tenant,
            &token_url,
            client_secret.clone(),
            cert_file,
            key_file,
        )?)
    } else {
        if cert_file.is_some() || key_file.is_some() {
            return Err(ConfigError(
                "KBSYNC_ONEDRIVE_CLIENT_CERT_FILE / KBSYNC_ONEDRIVE_CLIENT_KEY_FILE: only used with \
                 KBSYNC_ONEDRIVE_APP_ONLY=true"
                    .into(),
            ));
        }
        None
    };
    Ok(Some(OneDriveSettings {
        client_id,
        client_secret,
        authorize_url,
        token_url,
        graph_url,
        scopes,
        app_only,
    }))
}

fn gdrive_settings(
    text: &dyn Fn(&str, Option<String>) -> Option<String>,
    file: GDriveFileConfig,
) -> Result<Option<GDriveSettings>, ConfigError> {
    let Some(client_id) = text("KBSYNC_GDRIVE_CLIENT_ID", file.client_id) else {
        return Ok(None);
    };
    let client_secret = secret(
        text("KBSYNC_GDRIVE_CLIENT_SECRET", None),
        "KBSYNC_GDRIVE_CLIENT_SECRET_FILE",
        text(
            "KBSYNC_GDRIVE_CLIENT_SECRET_FILE",
            file.client_secret_file.map(|p| p.display().to_string()),
        ),
    )?;
    let url = |var: &str, from_file: Option<String>, default: &str| {
        http_url(var, &text(var, from_file).unwrap_or_else(|| default.to_owned()))
    };
    Ok(Some(GDriveSettings {
        client_id,
        client_secret,
        authorize_url: url(
            "KBSYNC_GDRIVE_AUTHORIZE_URL",
            file.authorize_url,
            kbsync_gdrive::DEFAULT_AUTHORIZE_URL,
        )?,
        token_url: url(
            "KBSYNC_GDRIVE_TOKEN_URL",
            file.token_url,
            kbsync_gdrive::DEFAULT_TOKEN_URL,
        )?,
        api_url: url(
            "KBSYNC_GDRIVE_API_URL",
            file.api_url,
            kbsync_gdrive::DEFAULT_API_URL,
        )?,
    }))
}

/// App-only access: one organisation's tenant, and a certificate (preferred: SharePoint REST accepts only
/// certificate-based app-only tokens) or the client secret.
fn app_only_settings(
    tenant: &str,
    token_url: &str,
    client_secret: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
) -> Result<AppOnlySettings, ConfigError> {
    if matches!(
        tenant.to_ascii_lowercase().as_str(),
        "common" | "organizations" | "consumers"
    ) {
        return Err(ConfigError(format!(
            "KBSYNC_ONEDRIVE_APP_ONLY: needs KBSYNC_ONEDRIVE_TENANT_ID set to the organisation's tenant id or \
             domain (app-only tokens belong to one tenant), not {tenant:?}"
        )));
    }
    let read = |var: &str, path: &str| {
        let bytes =
            std::fs::read(path).map_err(|e| ConfigError(format!("{var}: cannot read {path}: {e}")))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ConfigError(format!("{var}: {path} is empty")));
        }
        Ok(bytes)
    };
    let credential = match (cert_file, key_file) {
        (Some(cert), Some(key)) => {
            let certificate_pem = read("KBSYNC_ONEDRIVE_CLIENT_CERT_FILE", &cert)?;
            let key_pem = read("KBSYNC_ONEDRIVE_CLIENT_KEY_FILE", &key)?;
            kbsync_oauth::ClientCertificate::from_pem(&certificate_pem, &key_pem).map_err(|e| {
                ConfigError(format!(
                    "KBSYNC_ONEDRIVE_CLIENT_CERT_FILE / KBSYNC_ONEDRIVE_CLIENT_KEY_FILE ({cert}, {key}): {e}"
                ))
            })?;
            AppOnlyCredential::Certificate {
                certificate_pem,
                key_pem,
            }
        }
        (Some(_), None) => {
            return Err(ConfigError(
                "KBSYNC_ONEDRIVE_CLIENT_KEY_FILE: required with KBSYNC_ONEDRIVE_CLIENT_CERT_FILE".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError(
                "KBSYNC_ONEDRIVE_CLIENT_CERT_FILE: required with KBSYNC_ONEDRIVE_CLIENT_KEY_FILE".into(),
            ));
        }
        (None, None) => match client_secret {
            Some(secret) => AppOnlyCredential::Secret(secret),
            None => {
                return Err(ConfigError(
                    "KBSYNC_ONEDRIVE_APP_ONLY: needs a certificate (KBSYNC_ONEDRIVE_CLIENT_CERT_FILE and \
                     KBSYNC_ONEDRIVE_CLIENT_KEY_FILE) or a client secret"
                        .into(),
                ));
            }
        },
    };
    Ok(AppOnlySettings {
        tenant: tenant.to_owned(),
        token_url: token_url.to_owned(),
        credential,
    })
}

/// An http(s) URL without a trailing slash.
/// A secret given directly (`value`, from the environment only) or in a file (`path`, named by `file_var`).
fn secret(
    value: Option<String>,
    file_var: &str,
    path: Option<String>,
) -> Result<Option<String>, ConfigError> {
    match (value, path) {
        (Some(secret), _) => Ok(Some(secret)),
        (None, Some(path)) => {
            let secret = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError(format!("{file_var}: cannot read {path}: {e}")))?;
            let secret = secret.trim().to_owned();
            if secret.is_empty() {
                return Err(ConfigError(format!("{file_var}: {path} is empty")));
            }
            Ok(Some(secret))
        }
        (None, None) => Ok(None),
    }
}

fn oidc_settings(
    text: &dyn Fn(&str, Option<String>) -> Option<String>,
    file: OidcFileConfig,
) -> Result<Option<OidcSettings>, ConfigError> {
    let Some(issuer) = text("KBSYNC_OIDC_ISSUER", file.issuer) else {
        return Ok(None);
    };
    // Kept exactly as given (a trailing slash included): the ID tokens' `iss` must equal it.
    let issuer = issuer.trim().to_owned();
    http_url("KBSYNC_OIDC_ISSUER", &issuer)?;
    let client_id = text("KBSYNC_OIDC_CLIENT_ID", file.client_id).ok_or_else(|| {
        ConfigError(
            "KBSYNC_OIDC_ISSUER: needs KBSYNC_OIDC_CLIENT_ID (kbsync's client id at the provider)".into(),
        )
    })?;
    let client_secret = secret(
        text("KBSYNC_OIDC_CLIENT_SECRET", None),
        "KBSYNC_OIDC_CLIENT_SECRET_FILE",
        text(
            "KBSYNC_OIDC_CLIENT_SECRET_FILE",
            file.client_secret_file.map(|p| p.display().to_string()),
        ),
    )?
    .ok_or_else(|| {
        ConfigError(
            "KBSYNC_OIDC_ISSUER: needs KBSYNC_OIDC_CLIENT_SECRET or KBSYNC_OIDC_CLIENT_SECRET_FILE (kbsync signs \
             in as a confidential client)"
                .into(),
        )
    })?;
    let list = |value: Option<String>| -> Vec<String> {
        value
            .unwrap_or_default()
            .split([',', ' '])
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let scopes = list(text("KBSYNC_OIDC_SCOPES", file.scopes));
    let scopes = if scopes.is_empty() {
        ["openid", "email", "profile"].map(str::to_owned).to_vec()
    } else {
        scopes
    };
    let allowed_domains: Vec<String> = list(text("KBSYNC_OIDC_ALLOWED_DOMAINS", file.allowed_domains))
        .into_iter()
        .map(|d| d.trim_start_matches('@').to_lowercase())
        .collect();
    if let Some(bad) = allowed_domains
        .iter()
        .find(|d| !d.contains('.') || d.contains('@'))
    {
        return Err(ConfigError(format!(
            "KBSYNC_OIDC_ALLOWED_DOMAINS: {bad:?} is not an email domain like contoso.com"
        )));
    }
    Ok(Some(OidcSettings {
        issuer,
        client_id,
        client_secret,
        scopes,
        allowed_domains,
        admin_groups: list(text("KBSYNC_OIDC_ADMIN_GROUPS", file.admin_groups)),
        display_name: text("KBSYNC_OIDC_DISPLAY_NAME", file.display_name),
    }))
}

fn openwebui_settings(
    env: &dyn Fn(&str) -> Option<String>,
    text: &dyn Fn(&str, Option<String>) -> Option<String>,
    file: OpenWebUiFileConfig,
) -> Result<Option<OpenWebUiSettings>, ConfigError> {
    let Some(url) = text("KBSYNC_OPENWEBUI_URL", file.url) else {
        return Ok(None);
    };
    let url = http_url("KBSYNC_OPENWEBUI_URL", &url)?;
    let api_key = secret(
        text("KBSYNC_OPENWEBUI_API_KEY", None),
        "KBSYNC_OPENWEBUI_API_KEY_FILE",
        text(
            "KBSYNC_OPENWEBUI_API_KEY_FILE",
            file.api_key_file.map(|p| p.display().to_string()),
        ),
    )?
    .ok_or_else(|| {
        ConfigError(
            "KBSYNC_OPENWEBUI_URL: needs KBSYNC_OPENWEBUI_API_KEY or KBSYNC_OPENWEBUI_API_KEY_FILE (an Open WebUI \
             admin's API key)"
                .into(),
        )
    })?;
    let public_url = match text("KBSYNC_OPENWEBUI_PUBLIC_URL", file.public_url) {
        Some(public) => http_url("KBSYNC_OPENWEBUI_PUBLIC_URL", &public)?,
        None => url.clone(),
    };
    let upload_concurrency = number(
        env,
        "KBSYNC_OPENWEBUI_UPLOAD_CONCURRENCY",
        file.upload_concurrency,
        4,
    )?;
    if !(1..=32).contains(&upload_concurrency) {
        return Err(ConfigError(
            "KBSYNC_OPENWEBUI_UPLOAD_CONCURRENCY: must be between 1 and 32".into(),
        ));
    }
    let processing_timeout_secs = number(
        env,
        "KBSYNC_OPENWEBUI_PROCESSING_TIMEOUT_SECS",
        file.processing_timeout_secs,
        600,
    )?;
    if !(10..=86_400).contains(&processing_timeout_secs) {
        return Err(ConfigError(
            "KBSYNC_OPENWEBUI_PROCESSING_TIMEOUT_SECS: must be between 10 and 86400".into(),
        ));
    }
    Ok(Some(OpenWebUiSettings {
        url,
        api_key,
        public_url,
        upload_concurrency: usize::try_from(upload_concurrency).unwrap_or(4),
        processing_timeout_secs,
    }))
}

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
