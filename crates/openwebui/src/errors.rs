//! What can go wrong talking to Open WebUI, by what the caller does next.

/// An Open WebUI call failed. Each variant says what the caller does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenWebUiError {
    /// Open WebUI could not be reached, reset the connection, or answered 5xx / 408 / 429: try again
    /// later; nothing is wrong with the request.
    #[error("Open WebUI is unreachable: {0}")]
    Unreachable(String),
    /// 401 / 403: the API key is wrong, expired, not an admin's, or not allowed on this endpoint; the
    /// operator must fix `KBSYNC_OPENWEBUI_API_KEY`.
    #[error("Open WebUI refused the API key: {0}")]
    Unauthorized(String),
    /// The remembered knowledge base no longer exists in Open WebUI: create or choose another one.
    #[error("the Open WebUI knowledge base no longer exists")]
    KnowledgeNotFound,
    /// Open WebUI refused the request (another 4xx) with this message (its `detail`).
    #[error("Open WebUI refused the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// A request took longer than the HTTP client's timeout: try again later.
    #[error("Open WebUI did not answer in time: {0}")]
    Timeout(String),
}

impl OpenWebUiError {
    /// Whether trying the same thing later may succeed without anybody changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable(_) | Self::Timeout(_))
    }
}
