//! How kbsync is registered with a datasource's authorization server.

use std::fmt;

use kbsync_core::datasource::DatasourceKind;

/// A confidential client's secret. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the token request body and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(***)")
    }
}

/// The OAuth 2.0 registration of kbsync for one datasource.
#[derive(Debug, Clone)]
pub struct OAuthClientConfig {
    /// The datasource these settings are for.
    pub kind: DatasourceKind,
    /// The application (client) id.
    pub client_id: String,
    /// The client secret, sent in the token request body.
    pub client_secret: ClientSecret,
    /// The authorization endpoint, e.g. `https://login.microsoftonline.com/common/oauth2/v2.0/authorize`.
    pub authorize_url: String,
    /// The token endpoint, e.g. `https://login.microsoftonline.com/common/oauth2/v2.0/token`.
    pub token_url: String,
    /// Scopes to request; `offline_access` (needed for a refresh token) is added when missing.
    pub scopes: Vec<String>,
    /// The callback URL registered with the authorization server, exactly as registered.
    pub redirect_uri: String,
}

impl OAuthClientConfig {
    /// The `scope` parameter: the configured scopes plus `offline_access` when missing.
    pub(crate) fn scope_param(&self) -> String {
        let mut scopes: Vec<&str> = self.scopes.iter().flat_map(|s| s.split_whitespace()).collect();
        if !scopes.iter().any(|s| s.eq_ignore_ascii_case("offline_access")) {
            scopes.push("offline_access");
        }
        scopes.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(scopes: &[&str]) -> OAuthClientConfig {
        OAuthClientConfig {
            kind: DatasourceKind::OneDrive,
            client_id: "client".into(),
            client_secret: ClientSecret::new("s3cret-value"),
            authorize_url: "https://login.example/authorize".into(),
            token_url: "https://login.example/token".into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            redirect_uri: "https://kbsync.example/cb".into(),
        }
    }

    #[test]
    fn scope_always_includes_offline_access_once() {
        assert_eq!(
            config(&["https://graph.microsoft.com/Files.Read.All"]).scope_param(),
            "https://graph.microsoft.com/Files.Read.All offline_access"
        );
        assert_eq!(
            config(&["Files.Read.All offline_access"]).scope_param(),
            "Files.Read.All offline_access"
        );
    }

    #[test]
    fn debug_never_shows_the_client_secret() {
        let d = format!("{:?}", config(&[]));
        assert!(!d.contains("s3cret-value"), "{d}");
        assert!(d.contains("ClientSecret(***)"), "{d}");
    }
}
