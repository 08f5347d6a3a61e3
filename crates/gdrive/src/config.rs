//! Settings of the Drive client, and the OAuth specification of Google's authorization server.

use std::time::Duration;

use kbsync_core::datasource::OAuthSpec;
use serde::{Deserialize, Serialize};

/// The Drive API v3, as Google serves it.
pub const DEFAULT_API_URL: &str = "https://www.googleapis.com/drive/v3";
/// Google's authorization endpoint for web-server applications.
pub const DEFAULT_AUTHORIZE_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";
/// Google's token endpoint.
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// What kbsync asks a user to consent to: read access to the metadata and content of every file
/// the user can open, shared drives included (a *restricted* scope: an app published to users
/// outside its own organisation needs Google's security assessment).
pub const DRIVE_READONLY_SCOPE: &str = "https://www.googleapis.com/auth/drive.readonly";

/// How the Google Drive datasource talks to the Drive API.
///
/// Durations are written in seconds (decimals allowed) when (de)serialised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GDriveConfig {
    /// Base URL of the Drive API v3. Tests and the demo point it at an emulator; the bearer token
    /// goes to no other origin.
    pub api_url: String,
    /// Time allowed for one request: connecting, the answer's headers and, for JSON answers, the
    /// whole body. A request that exceeds it is retried like a dropped connection.
    #[serde(with = "secs")]
    pub request_timeout: Duration,
    /// Longest pause allowed between two chunks of a download body.
    #[serde(with = "secs")]
    pub download_idle_timeout: Duration,
    /// Attempts per request (the first one included) before a retryable failure (5xx, timeout,
    /// connection error, throttling without `Retry-After`) is reported as `Transient` (or
    /// `Throttled` for throttling). A token refresh after a 401 does not count, nor does a
    /// throttled answer with `Retry-After` (those are bounded by `max_throttle_wait`).
    pub max_attempts: u32,
    /// Total time one request may wait on `Retry-After`s before it is reported as `Throttled`.
    #[serde(with = "secs")]
    pub max_throttle_wait: Duration,
    /// Longest wait the client does on its own: a longer `Retry-After` is returned to the engine
    /// as `Throttled { retry_after }`, and exponential backoff is truncated here.
    #[serde(with = "secs")]
    pub max_retry_wait: Duration,
    /// First step of the truncated exponential backoff (then ×2 per attempt, "equal jitter").
    #[serde(with = "secs")]
    pub base_backoff: Duration,
    /// `pageSize` of `files.list` and `changes.list` (Drive's maximum is 1000; it may return
    /// fewer, even none, before the end).
    pub page_size: u32,
    /// Folders whose subtree one `changes` call may list before it hands the rest to the next
    /// call through the cursor (one `files.list` page per folder at most).
    pub max_listings_per_call: u32,
}

impl Default for GDriveConfig {
    fn default() -> Self {
        Self {
            api_url: DEFAULT_API_URL.to_string(),
            request_timeout: Duration::from_secs(30),
            download_idle_timeout: Duration::from_secs(60),
            max_attempts: 6,
            max_throttle_wait: Duration::from_secs(600),
            max_retry_wait: Duration::from_secs(64),
            base_backoff: Duration::from_secs(1),
            page_size: 1000,
            max_listings_per_call: 20,
        }
    }
}

impl GDriveConfig {
    /// The HTTP client this datasource expects: it never follows redirects (the bearer token must
    /// not travel to another host) and it bounds connecting.
    pub fn http_client(&self) -> Result<reqwest::Client, reqwest::Error> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.request_timeout)
            .user_agent(format!("kbsync/{}", env!("CARGO_PKG_VERSION")))
            .build()
    }
}

/// The OAuth specification of Google's authorization server: scope `drive.readonly`, and
/// `access_type=offline` and `prompt=consent` on the authorize URL (without them Google returns
/// no refresh token, or only on the first consent).
pub fn google_oauth(authorize_url: &str, token_url: &str) -> OAuthSpec {
    OAuthSpec {
        authorize_url: authorize_url.to_string(),
        token_url: token_url.to_string(),
        scopes: vec![DRIVE_READONLY_SCOPE.to_string()],
        extra_authorize_params: vec![
            ("access_type".to_string(), "offline".to_string()),
            ("prompt".to_string(), "consent".to_string()),
        ],
    }
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(|e| D::Error::custom(format!("{v} s: {e}")))
    }
}
