//! How kbsync is registered with a datasource's authorization server.

use std::fmt;

use kbsync_core::datasource::{DatasourceKind, OAuthSpec};

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
    /// Scopes to request, exactly as the authorization server expects them: how a refresh token is
    /// asked for differs (the Microsoft identity platform wants the `offline_access` scope, Google
    /// refuses that scope as invalid and wants `access_type=offline` among
    /// [`extra_authorize_params`](Self::extra_authorize_params) instead).
    pub scopes: Vec<String>,
    /// The callback URL registered with the authorization server, exactly as registered.
    pub redirect_uri: String,
    /// Parameters the authorization server wants on the authorize URL besides the standard ones
    /// (Google: `access_type=offline`, `prompt=consent`). One named `prompt` replaces the default
    /// `prompt=consent`; the parameters of the protocol itself (`client_id`, `state`, PKCE, …)
    /// cannot be replaced.
    pub extra_authorize_params: Vec<(String, String)>,
}

/// The authorize URL's parameters that the connection manager sets and no extra parameter may
/// replace: the protocol, the flow's state and its PKCE challenge.
pub(crate) const RESERVED_AUTHORIZE_PARAMS: &[&str] = &[
    "client_id",
    "response_type",
    "redirect_uri",
    "response_mode",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

impl OAuthClientConfig {
    /// kbsync's registration for a datasource whose authorization server `spec` describes (its
    /// endpoints, scopes and extra authorize parameters, as the datasource declares them).
    pub fn from_spec(
        kind: DatasourceKind,
        spec: &OAuthSpec,
        client_id: impl Into<String>,
        client_secret: ClientSecret,
        redirect_uri: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            client_id: client_id.into(),
            client_secret,
            authorize_url: spec.authorize_url.clone(),
            token_url: spec.token_url.clone(),
            scopes: spec.scopes.clone(),
            redirect_uri: redirect_uri.into(),
            extra_authorize_params: spec.extra_authorize_params.clone(),
        }
    }

    /// The `scope` parameter: the configured scopes, space-separated.
    pub(crate) fn scope_param(&self) -> String {
        let scopes: Vec<&str> = self.scopes.iter().flat_map(|s| s.split_whitespace()).collect();
        scopes.join(" ")
    }

    /// The authorize URL's parameters besides the flow's own (`state`, PKCE): the standard ones,
    /// `prompt=consent` unless an extra parameter names another prompt, then the extra ones. Each
    /// name appears once (a repeated extra parameter keeps its first value). An extra parameter
    /// that would replace one of the protocol's is refused: the registration is wrong.
    pub(crate) fn authorize_params(&self) -> Result<Vec<(&str, String)>, String> {
        if let Some((name, _)) = self
            .extra_authorize_params
            .iter()
            .find(|(name, _)| RESERVED_AUTHORIZE_PARAMS.contains(&name.as_str()))
        {
            return Err(format!(
                "the extra authorize parameter {name:?} would replace one kbsync sets itself"
            ));
        }
        let mut params: Vec<(&str, String)> = vec![
            ("client_id", self.client_id.clone()),
            ("response_type", "code".to_owned()),
            ("redirect_uri", self.redirect_uri.clone()),
            ("response_mode", "query".to_owned()),
            ("scope", self.scope_param()),
        ];
        if !self
            .extra_authorize_params
            .iter()
            .any(|(name, _)| name == "prompt")
        {
            params.push(("prompt", "consent".to_owned()));
        }
        for (name, value) in &self.extra_authorize_params {
            if !params.iter().any(|(n, _)| n == name) {
                params.push((name.as_str(), value.clone()));
            }
        }
        Ok(params)
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
            extra_authorize_params: Vec::new(),
        }
    }

    fn names<'a>(params: &'a [(&'a str, String)]) -> Vec<&'a str> {
        params.iter().map(|(n, _)| *n).collect()
    }

    #[test]
    fn scope_is_sent_as_configured_without_adding_offline_access() {
        assert_eq!(
            config(&["Files.Read.All offline_access", "Sites.Read.All"]).scope_param(),
            "Files.Read.All offline_access Sites.Read.All"
        );
        // Google refuses `offline_access` as an invalid scope: nothing adds it behind the settings' back.
        assert_eq!(
            config(&["https://www.googleapis.com/auth/drive.readonly"]).scope_param(),
            "https://www.googleapis.com/auth/drive.readonly"
        );
    }

    #[test]
    fn authorize_params_ask_for_consent_by_default_and_name_each_parameter_once() {
        let plain = config(&["Files.Read.All"]);
        let plain = plain.authorize_params().unwrap();
        assert_eq!(
            names(&plain),
            [
                "client_id",
                "response_type",
                "redirect_uri",
                "response_mode",
                "scope",
                "prompt"
            ]
        );
        assert!(plain.contains(&("prompt", "consent".to_owned())));

        let mut google = config(&["https://www.googleapis.com/auth/drive.readonly"]);
        google.extra_authorize_params = vec![
            ("access_type".into(), "offline".into()),
            ("prompt".into(), "consent select_account".into()),
            ("access_type".into(), "online".into()),
        ];
        let params = google.authorize_params().unwrap();
        let mut sorted = names(&params);
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            params.len(),
            "a parameter is sent twice: {params:?}"
        );
        assert!(
            params.contains(&("access_type", "offline".to_owned())),
            "{params:?}"
        );
        assert!(
            params.contains(&("prompt", "consent select_account".to_owned())),
            "the datasource's prompt replaces the default: {params:?}"
        );
    }

    #[test]
    fn an_extra_parameter_may_not_replace_the_flows_own() {
        for reserved in RESERVED_AUTHORIZE_PARAMS {
            let mut c = config(&["Files.Read.All"]);
            c.extra_authorize_params = vec![((*reserved).to_owned(), "x".to_owned())];
            let err = c.authorize_params().unwrap_err();
            assert!(err.contains(reserved), "{err}");
        }
    }

    #[test]
    fn from_spec_takes_endpoints_scopes_and_extra_parameters_from_the_datasource() {
        let spec = OAuthSpec {
            authorize_url: "https://accounts.example/auth".into(),
            token_url: "https://oauth2.example/token".into(),
            scopes: vec!["drive.readonly".into()],
            extra_authorize_params: vec![("access_type".into(), "offline".into())],
        };
        let c = OAuthClientConfig::from_spec(
            DatasourceKind::GDrive,
            &spec,
            "client",
            ClientSecret::new("s"),
            "https://kbsync.example/cb",
        );
        assert_eq!(
            (c.authorize_url.as_str(), c.token_url.as_str()),
            ("https://accounts.example/auth", "https://oauth2.example/token")
        );
        assert_eq!(c.scopes, spec.scopes);
        assert_eq!(c.extra_authorize_params, spec.extra_authorize_params);
        assert_eq!(c.kind, DatasourceKind::GDrive);
    }

    #[test]
    fn debug_never_shows_the_client_secret() {
        let d = format!("{:?}", config(&[]));
        assert!(!d.contains("s3cret-value"), "{d}");
        assert!(d.contains("ClientSecret(***)"), "{d}");
    }
}
