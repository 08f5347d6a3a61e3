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
}

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
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub bind: SocketAddr,
    pub database_url: String,
    /// `None` when neither the environment nor the file gives one: a key is then generated
    /// once and kept in the data directory.
    pub secret_key: Option<String>,
    pub public_url: Url,
    pub admin: Option<(String, String)>,
    pub max_upload_bytes: u64,
    pub chunk_size: usize,
    pub chunk_overlap: usize,
    pub ingest_concurrency: usize,
    pub ingest_timeout_secs: u64,
    pub log_format: LogFormat,
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
        if let Some(key) = &secret_key {
            if key.chars().count() < MIN_SECRET_KEY_CHARS {
                return Err(ConfigError(format!(
                    "KBSYNC_SECRET_KEY: must be at least {MIN_SECRET_KEY_CHARS} characters"
                )));
            }
        }

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

        let log_format = match text("KBSYNC_LOG_FORMAT", file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError(format!(
                    "KBSYNC_LOG_FORMAT: {other:?} is not one of: text, json"
                )));
            }
        };

        Ok(Settings {
            data_dir,
            bind,
            database_url,
            secret_key,
            public_url,
            admin,
            max_upload_bytes: max_upload_mb.saturating_mul(1024 * 1024),
            chunk_size,
            chunk_overlap,
            ingest_concurrency,
            ingest_timeout_secs,
            log_format,
        })
    }

    /// The public URL without a trailing slash, as the server composes links with it.
    pub fn public_origin(&self) -> String {
        self.public_url.as_str().trim_end_matches('/').to_owned()
    }
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
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
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
        ];
        for (var, value) in cases {
            let err = Settings::resolve(&Flags::default(), &env_of(&[(var, value)]), FileConfig::default())
                .unwrap_err();
            assert!(err.0.contains(var), "{var}={value}: {err}");
        }
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let err = toml::from_str::<FileConfig>("bnd = \"x\"").unwrap_err();
        assert!(err.to_string().contains("bnd"), "{err}");
    }
}
