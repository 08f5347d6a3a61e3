//! Settings of the Graph client, and the OAuth specification of the Microsoft identity platform.

use std::time::Duration;

use kbsync_core::datasource::OAuthSpec;
use serde::{Deserialize, Serialize};

/// Microsoft Graph v1.0, as the public cloud serves it.
pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com/v1.0";
/// The resource id of Microsoft Graph in the public cloud: app-only tokens are requested for
/// `{GRAPH_RESOURCE}/.default`.
pub const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";
/// The identity platform of the public cloud.
pub const DEFAULT_AUTHORITY_URL: &str = "https://login.microsoftonline.com";
/// What kbsync asks a user to consent to:
///
/// * `Files.Read.All`: every file the user can open (drives, delta, content, permissions);
/// * `Sites.Read.All`: the SharePoint sites the picker lists (`/sites` search and site resources);
/// * `GroupMember.Read.All`: the members of the groups items are shared with, for per-document
///   access (`/groups/{id}/transitiveMembers`). **It needs admin consent**: in a tenant where no
///   administrator granted it, users cannot consent to it themselves;
/// * `offline_access`: a refresh token.
pub const DEFAULT_SCOPES: &[&str] = &[
    "https://graph.microsoft.com/Files.Read.All",
    "https://graph.microsoft.com/Sites.Read.All",
    "https://graph.microsoft.com/GroupMember.Read.All",
    "offline_access",
];

/// How the OneDrive / SharePoint datasource talks to Microsoft Graph.
///
/// Durations are written in seconds (decimals allowed) when (de)serialised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GraphConfig {
    /// Base URL of Graph v1.0. Tests and the demo point it at the emulator; delta and paging links
    /// are only followed (with the bearer token) when they share this URL's origin.
    pub graph_url: String,
    /// Time allowed for one request: connecting, the answer's headers and, for JSON answers, the
    /// whole body. A request that exceeds it is retried like a dropped connection.
    #[serde(with = "secs")]
    pub request_timeout: Duration,
    /// Longest pause allowed between two chunks of a download body. A download may take far
    /// longer than `request_timeout` as a whole; it only fails when it stalls.
    #[serde(with = "secs")]
    pub download_idle_timeout: Duration,
    /// Attempts per request (the first one included) before a retryable failure (5xx, timeout,
    /// connection error) is reported as `Transient` (throttling without `Retry-After` as
    /// `Throttled`). Neither a token refresh after a 401 nor a throttled answer with `Retry-After`
    /// counts: those have their own budget, `max_throttle_wait`.
    pub max_attempts: u32,
    /// Total time one request may spend waiting on throttling (at its tenant's throttle gate,
    /// closed by 429/503 answers with `Retry-After` to it or to any other request of the tenant)
    /// before it is reported as `Throttled`. Throttling says "later", not "broken": under a
    /// sustained rate limit a request keeps its place for this long instead of failing after a
    /// few answers.
    #[serde(with = "secs")]
    pub max_throttle_wait: Duration,
    /// Longest wait the client does on its own. A `Retry-After` (or a tenant's closed throttle
    /// gate) longer than this is not waited for here: the call returns `Throttled { retry_after }`
    /// so the engine can reschedule the work. Exponential backoff is capped at this value too.
    #[serde(with = "secs")]
    pub max_retry_wait: Duration,
    /// First step of the exponential backoff on 5xx answers, connection errors and throttling
    /// without `Retry-After` (then ×2 per attempt, "equal jitter"). A `Retry-After` gets no
    /// backoff: it is waited in full plus a jitter below 5 % of it and below 250 ms.
    #[serde(with = "secs")]
    pub base_backoff: Duration,
    /// `$top` for delta and children listings. Graph may return fewer (or, for delta, more)
    /// items per page; the client never assumes a page size.
    pub page_size: u32,
    /// `User-Agent` decoration SharePoint asks ISVs to send (`ISV|Company|App/Version`); it lets
    /// Microsoft prioritise well-behaved traffic when throttling.
    pub user_agent: String,
}

impl Default for GraphConfig {
    fn default() -> Self {
        Self {
            graph_url: DEFAULT_GRAPH_URL.to_string(),
            request_timeout: Duration::from_secs(30),
            download_idle_timeout: Duration::from_secs(60),
            max_attempts: 6,
            max_throttle_wait: Duration::from_secs(600),
            max_retry_wait: Duration::from_secs(60),
            base_backoff: Duration::from_secs(1),
            page_size: 200,
            user_agent: format!("ISV|kbsync|kbsync/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

impl GraphConfig {
    /// The HTTP client this datasource expects: it never follows redirects (a download's `302`
    /// must be followed by hand, without the bearer token), and it bounds connecting.
    ///
    /// A client passed to [`crate::OneDrive::new`] must not follow redirects either, and must
    /// not carry a default `Authorization` header.
    pub fn http_client(&self) -> Result<reqwest::Client, reqwest::Error> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.request_timeout)
            .user_agent(self.user_agent.clone())
            .build()
    }
}

/// The OAuth specification of the Microsoft identity platform v2.0 for `tenant` (`common`,
/// `organizations`, a tenant id or domain) under `authority_url`.
pub fn microsoft_oauth(authority_url: &str, tenant: &str, scopes: Vec<String>) -> OAuthSpec {
    let authority = format!("{}/{}", authority_url.trim_end_matches('/'), tenant);
    OAuthSpec {
        authorize_url: format!("{authority}/oauth2/v2.0/authorize"),
        token_url: format!("{authority}/oauth2/v2.0/token"),
        scopes,
        extra_authorize_params: Vec::new(),
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
