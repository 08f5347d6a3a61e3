//! How kbsync reaches one Open WebUI deployment.

use std::fmt;
use std::time::Duration;

use url::Url;

/// Uploads in flight at once unless configured otherwise.
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 4;
/// How long one file may stay `pending` in Open WebUI before the publish gives up on it.
pub const DEFAULT_PROCESSING_TIMEOUT: Duration = Duration::from_secs(600);
/// How often a file's processing status is asked for.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The Open WebUI deployment to publish into, and how hard to push it.
#[derive(Clone)]
pub struct OpenWebUiConfig {
    /// Where Open WebUI answers, e.g. `http://127.0.0.1:8080` (without `/api`; a path prefix of a
    /// reverse proxy is kept).
    pub base_url: Url,
    /// An Open WebUI admin's API key (`sk-…`) or JWT, sent as `Authorization: Bearer`. An admin's, because
    /// only admins may list users and write every knowledge base. Never logged (see the `Debug` impl).
    pub api_key: String,
    /// Files uploaded (and waited for) at the same time; at least 1.
    pub upload_concurrency: usize,
    /// How long one uploaded file may take to be processed before it is reported as failed.
    pub processing_timeout: Duration,
    /// The pause between two questions about a file's processing status.
    pub poll_interval: Duration,
}

impl OpenWebUiConfig {
    /// A configuration with the default concurrency, timeout and polling interval.
    pub fn new(base_url: Url, api_key: impl Into<String>) -> Self {
        Self {
            base_url,
            api_key: api_key.into(),
            upload_concurrency: DEFAULT_UPLOAD_CONCURRENCY,
            processing_timeout: DEFAULT_PROCESSING_TIMEOUT,
            poll_interval: DEFAULT_POLL_INTERVAL,
        }
    }
}

impl fmt::Debug for OpenWebUiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenWebUiConfig")
            .field("base_url", &self.base_url.as_str())
            .field("api_key", &"[redacted]")
            .field("upload_concurrency", &self.upload_concurrency)
            .field("processing_timeout", &self.processing_timeout)
            .field("poll_interval", &self.poll_interval)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_api_key() {
        let config = OpenWebUiConfig::new(Url::parse("http://127.0.0.1:8080").unwrap(), "sk-very-secret");
        let shown = format!("{config:?}");
        assert!(!shown.contains("sk-very-secret"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }

    #[test]
    fn new_uses_the_documented_defaults() {
        let config = OpenWebUiConfig::new(Url::parse("http://h").unwrap(), "k");
        assert_eq!(config.upload_concurrency, 4);
        assert_eq!(config.processing_timeout, Duration::from_secs(600));
        assert_eq!(config.poll_interval, Duration::from_millis(500));
    }
}
