//! What went wrong, phrased as what the caller does next. No message carries a token, secret,
//! code or verifier.

use kbsync_core::KbId;
use kbsync_core::datasource::{DatasourceError, DatasourceKind};
use kbsync_store::{CryptoError, StoreError};

/// Errors of the connection lifecycle.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// No client is configured for this datasource: the operator must configure one (HTTP 501).
    #[error("the {0} datasource is not configured")]
    NotConfigured(DatasourceKind),
    /// The knowledge base has no stored connection: the user must connect it.
    #[error("the knowledge base is not connected")]
    NotConnected,
    /// The stored refresh token was refused (revoked or expired): the user must connect again.
    #[error("the connection must be renewed: sign in again")]
    NeedsReauth,
    /// The authorization server could not be reached, answered 5xx or timed out, or another
    /// instance is still refreshing: retry later.
    #[error("temporary failure: {0}")]
    Transient(String),
    /// The authorization server refused kbsync itself (`invalid_client`, an unknown scope, …):
    /// the operator must fix the configuration; retrying does not help.
    #[error("the OAuth configuration was refused: {0}")]
    Misconfigured(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored value cannot be decrypted (for example the secret key changed without the old one
    /// being configured as the previous key).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

impl From<OAuthError> for DatasourceError {
    fn from(e: OAuthError) -> Self {
        match e {
            OAuthError::NotConnected | OAuthError::NeedsReauth => {
                DatasourceError::Unauthorized(e.to_string())
            }
            OAuthError::Transient(m) => DatasourceError::Transient(m),
            OAuthError::Store(StoreError::Unavailable(m)) => DatasourceError::Transient(m),
            OAuthError::NotConfigured(_)
            | OAuthError::Misconfigured(_)
            | OAuthError::Store(_)
            | OAuthError::Crypto(_) => DatasourceError::Permanent(e.to_string()),
        }
    }
}

/// Why a callback failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackErrorKind {
    /// The state is missing, unknown, already used or expired: start connecting again.
    InvalidState,
    /// The callback arrived without the cookie of the browser that started connecting (another
    /// browser, or one that dropped the cookie): start connecting again in this browser.
    WrongBrowser,
    /// The user who started connecting may no longer change the knowledge base.
    NotPermitted,
    /// The user (or the authorization server) declined; nothing was stored.
    Denied,
    /// The authorization code could not be redeemed, or no refresh token was granted.
    TokenExchange,
    /// The datasource of the pending authorization is not configured (any more).
    NotConfigured,
    /// The authorization server refused kbsync's registration: the operator must act.
    Misconfigured,
    /// The authorization server or the database could not be reached: try again.
    Transient,
    /// kbsync could not read what it stored (a corrupt row, an undecryptable verifier).
    Internal,
}

/// A failed callback: which knowledge base it was for (when the state told), and a message that
/// can be shown to the user as it is (no secrets; still HTML-escape it).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct CallbackError {
    pub kb_id: Option<KbId>,
    pub reason: String,
    pub kind: CallbackErrorKind,
}

/// Longest piece of an authorization server's `error_description` put into a reason.
const MAX_DESCRIPTION_CHARS: usize = 300;

impl CallbackError {
    pub fn new(kind: CallbackErrorKind, kb_id: Option<KbId>, reason: impl Into<String>) -> Self {
        Self {
            kb_id,
            reason: reason.into(),
            kind,
        }
    }

    pub(crate) fn invalid_state() -> Self {
        Self::new(
            CallbackErrorKind::InvalidState,
            None,
            "This sign-in link is invalid, was already used or has expired. Start connecting again.",
        )
    }

    /// The callback came back to a browser that did not start the authorization. It names no
    /// knowledge base: that browser is not known to be allowed to learn which one it was.
    pub(crate) fn wrong_browser() -> Self {
        Self::new(
            CallbackErrorKind::WrongBrowser,
            None,
            "This sign-in was not started in this browser (or the browser did not keep kbsync's \
             cookie). Start connecting again from kbsync in the browser you sign in with.",
        )
    }

    /// The callback carried `error` (and maybe `error_description`) instead of a code; pass the
    /// knowledge base [`ConnectionManager::abandon`](crate::ConnectionManager::abandon) returned.
    /// Only the first line of the description is kept (the rest is trace ids), shortened.
    pub fn denied(kb_id: Option<KbId>, error: &str, description: Option<&str>) -> Self {
        let error: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        let first_line = description
            .and_then(|d| d.lines().map(str::trim).find(|l| !l.is_empty()))
            .map(|l| l.chars().take(MAX_DESCRIPTION_CHARS).collect::<String>());
        let reason = match (error.as_str(), first_line) {
            ("access_denied", None) => "The sign-in was cancelled or access was declined.".to_owned(),
            (_, Some(d)) => format!("The sign-in did not complete ({error}): {d}"),
            (_, None) => format!("The sign-in did not complete ({error})."),
        };
        Self::new(CallbackErrorKind::Denied, kb_id, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_keeps_the_first_line_of_the_description_only() {
        let e = CallbackError::denied(
            None,
            "access_denied",
            Some("AADSTS65004: User declined to consent.\r\nTrace ID: abc\r\nCorrelation ID: def"),
        );
        assert_eq!(
            e.reason,
            "The sign-in did not complete (access_denied): AADSTS65004: User declined to consent."
        );
        assert_eq!(e.kind, CallbackErrorKind::Denied);
        let e = CallbackError::denied(None, "access_denied", None);
        assert_eq!(e.reason, "The sign-in was cancelled or access was declined.");
        let e = CallbackError::denied(None, "bad\"<script>", Some(&"x".repeat(1000)));
        assert!(
            e.reason.starts_with("The sign-in did not complete (badscript): "),
            "{}",
            e.reason
        );
        assert!(e.reason.len() < 400);
    }

    #[test]
    fn oauth_errors_map_to_what_a_datasource_caller_does_next() {
        assert!(matches!(
            DatasourceError::from(OAuthError::NeedsReauth),
            DatasourceError::Unauthorized(_)
        ));
        assert!(matches!(
            DatasourceError::from(OAuthError::NotConnected),
            DatasourceError::Unauthorized(_)
        ));
        assert!(matches!(
            DatasourceError::from(OAuthError::Transient("x".into())),
            DatasourceError::Transient(_)
        ));
        assert!(matches!(
            DatasourceError::from(OAuthError::Store(StoreError::Unavailable("db".into()))),
            DatasourceError::Transient(_)
        ));
        assert!(matches!(
            DatasourceError::from(OAuthError::Misconfigured("invalid_client".into())),
            DatasourceError::Permanent(_)
        ));
    }
}
