//! Requests to an authorization server's token endpoint (form POST, client secret in the body) and
//! the classification of its answers (as the identity platform documents it: branch on `error`
//! first, use `error_codes` only to describe).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::config::OAuthClientConfig;

/// What a successful token request returned. `Debug` never shows the tokens.
pub(crate) struct TokenSet {
    pub access_token: String,
    /// Seconds from now.
    pub expires_in: i64,
    pub refresh_token: Option<String>,
    /// The OpenID Connect ID token, when `openid` was asked for.
    pub id_token: Option<String>,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("expires_in", &self.expires_in)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("has_id_token", &self.id_token.is_some())
            .finish_non_exhaustive()
    }
}

/// A failed token request, by what the caller does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EndpointError {
    /// The grant (code or refresh token) was refused: the user must sign in again.
    GrantRefused(String),
    /// Timeout, connection failure, 5xx, 429 or `temporarily_unavailable`: retry later.
    Transient(String),
    /// kbsync's own request or registration was refused (`invalid_client`, …): the operator must act.
    Misconfigured(String),
}

/// Used when the server does not say how long an access token lives.
const DEFAULT_EXPIRES_IN: i64 = 3600;

#[derive(Deserialize)]
struct SuccessBody {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
    /// A number by the standard; some servers send a string.
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_codes: Vec<u64>,
    #[serde(default)]
    trace_id: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
}

pub(crate) async fn redeem_code(
    http: &reqwest::Client,
    datasource: &OAuthClientConfig,
    code: &str,
    code_verifier: &str,
    timeout: Duration,
) -> Result<TokenSet, EndpointError> {
    let scope = datasource.scope_param();
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", datasource.client_id.as_str()),
        ("client_secret", datasource.client_secret.expose()),
        ("code", code),
        ("redirect_uri", datasource.redirect_uri.as_str()),
        ("code_verifier", code_verifier),
        ("scope", scope.as_str()),
    ];
    post(http, &datasource.token_url, &form, timeout).await
}

/// `grant_type=authorization_code` for a sign-in (OpenID Connect): no `scope` is sent again (the
/// authorize request's scopes apply), the client secret goes in the body.
pub(crate) async fn redeem_sign_in_code(
    http: &reqwest::Client,
    token_url: &str,
    client: (&str, &str),
    code: &str,
    redirect_uri: &str,
    code_verifier: &str,
    timeout: Duration,
) -> Result<TokenSet, EndpointError> {
    let (client_id, client_secret) = client;
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", client_id),
        ("client_secret", client_secret),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", code_verifier),
    ];
    post(http, token_url, &form, timeout).await
}

pub(crate) async fn refresh(
    http: &reqwest::Client,
    datasource: &OAuthClientConfig,
    refresh_token: &str,
    timeout: Duration,
) -> Result<TokenSet, EndpointError> {
    let scope = datasource.scope_param();
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", datasource.client_id.as_str()),
        ("client_secret", datasource.client_secret.expose()),
        ("refresh_token", refresh_token),
        ("scope", scope.as_str()),
    ];
    post(http, &datasource.token_url, &form, timeout).await
}

/// `grant_type=client_credentials` (app-only): `client_auth` are the client's credentials as form fields
/// (`client_secret`, or `client_assertion_type` + `client_assertion`); `scope` is `{resource}/.default`.
pub(crate) async fn client_credentials(
    http: &reqwest::Client,
    token_url: &str,
    client_id: &str,
    client_auth: &[(&str, &str)],
    scope: &str,
    timeout: Duration,
) -> Result<TokenSet, EndpointError> {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("scope", scope),
    ];
    form.extend_from_slice(client_auth);
    post(http, token_url, &form, timeout).await
}

async fn post(
    http: &reqwest::Client,
    token_url: &str,
    form: &[(&str, &str)],
    timeout: Duration,
) -> Result<TokenSet, EndpointError> {
    let response = http
        .post(token_url)
        .header(reqwest::header::ACCEPT, "application/json")
        .form(form)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| EndpointError::Transient(describe_transport(e)))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| EndpointError::Transient(describe_transport(e)))?;
    classify(status, &body)
}

/// A transport error, without its URL (not secret, but not needed either).
fn describe_transport(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "the token endpoint did not answer in time".to_owned()
    } else if e.is_connect() {
        "the token endpoint could not be reached".to_owned()
    } else {
        format!("the token request failed: {}", e.without_url())
    }
}

fn classify(status: reqwest::StatusCode, body: &[u8]) -> Result<TokenSet, EndpointError> {
    if status.is_success() {
        let parsed: SuccessBody = serde_json::from_slice(body).map_err(|_| {
            EndpointError::Misconfigured(
                "the token endpoint answered without a readable access token".to_owned(),
            )
        })?;
        if parsed.access_token.is_empty() {
            return Err(EndpointError::Misconfigured(
                "the token endpoint answered with an empty access token".to_owned(),
            ));
        }
        let expires_in = match parsed.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_EXPIRES_IN);
        return Ok(TokenSet {
            access_token: parsed.access_token,
            expires_in,
            refresh_token: parsed.refresh_token.filter(|r| !r.is_empty()),
            id_token: parsed.id_token.filter(|t| !t.is_empty()),
        });
    }
    let error: Option<ErrorBody> = serde_json::from_slice(body).ok();
    if status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
    {
        return Err(EndpointError::Transient(format!(
            "the token endpoint answered {status}{}",
            error
                .as_ref()
                .map(|e| format!(" ({})", summary(e)))
                .unwrap_or_default()
        )));
    }
    let Some(error) = error else {
        return Err(EndpointError::Misconfigured(format!(
            "the token endpoint answered {status} without an OAuth error"
        )));
    };
    tracing::warn!(
        http.status = status.as_u16(),
        oauth.error = %sanitize(&error.error),
        oauth.error_codes = ?error.error_codes,
        oauth.trace_id = error.trace_id.as_deref().map(sanitize).unwrap_or_default(),
        oauth.correlation_id = error.correlation_id.as_deref().map(sanitize).unwrap_or_default(),
        "token endpoint refused the request"
    );
    let text = summary(&error);
    Err(match error.error.as_str() {
        // Revoked, expired or otherwise unusable grant; or the user must interact again
        // (MFA, consent, sign-in): only a new interactive sign-in helps.
        "invalid_grant" | "interaction_required" | "consent_required" | "login_required" => {
            EndpointError::GrantRefused(text)
        }
        "temporarily_unavailable" | "server_error" => EndpointError::Transient(text),
        // invalid_client (wrong or expired secret), unauthorized_client, invalid_request,
        // invalid_scope, unsupported_grant_type, invalid_resource, and anything unknown.
        _ => EndpointError::Misconfigured(text),
    })
}

/// `error` with its AADSTS codes, e.g. `invalid_grant (AADSTS50173)`.
fn summary(e: &ErrorBody) -> String {
    let codes: Vec<String> = e.error_codes.iter().map(|c| format!("AADSTS{c}")).collect();
    if codes.is_empty() {
        sanitize(&e.error)
    } else {
        format!("{} ({})", sanitize(&e.error), codes.join(", "))
    }
}

/// Server-supplied identifiers, kept short and free of markup before they reach logs or users.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(80)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    fn aad(error: &str, code: u64) -> Vec<u8> {
        serde_json::json!({
            "error": error,
            "error_description": format!("AADSTS{code}: something\r\nTrace ID: t"),
            "error_codes": [code],
            "trace_id": "t", "correlation_id": "c",
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn grant_errors_mean_sign_in_again() {
        for (e, c) in [
            ("invalid_grant", 50173),
            ("invalid_grant", 70008),
            ("interaction_required", 50076),
        ] {
            assert_eq!(
                classify(StatusCode::BAD_REQUEST, &aad(e, c)).unwrap_err(),
                EndpointError::GrantRefused(format!("{e} (AADSTS{c})"))
            );
        }
    }

    #[test]
    fn client_errors_are_for_the_operator_and_server_errors_are_transient() {
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, &aad("invalid_client", 7000215)),
            Err(EndpointError::Misconfigured(_))
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, &aad("invalid_scope", 70011)),
            Err(EndpointError::Misconfigured(_))
        ));
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE, b"<html>busy</html>"),
            Err(EndpointError::Transient(_))
        ));
        // Even an invalid_grant-looking body on a 5xx is not a refusal of the grant.
        assert!(matches!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, &aad("invalid_grant", 70000)),
            Err(EndpointError::Transient(_))
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, &aad("temporarily_unavailable", 1)),
            Err(EndpointError::Transient(_))
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, b"not json"),
            Err(EndpointError::Misconfigured(_))
        ));
    }

    #[test]
    fn success_reads_tokens_and_lifetime_and_debug_hides_them() {
        let body = br#"{"token_type":"Bearer","expires_in":"3599","access_token":"AT-secret","refresh_token":"RT-secret"}"#;
        let t = classify(StatusCode::OK, body).unwrap();
        assert_eq!(t.expires_in, 3599);
        assert_eq!(t.access_token, "AT-secret");
        assert_eq!(t.refresh_token.as_deref(), Some("RT-secret"));
        let d = format!("{t:?}");
        assert!(!d.contains("secret"), "{d}");
        let t = classify(StatusCode::OK, br#"{"access_token":"a"}"#).unwrap();
        assert_eq!(t.expires_in, DEFAULT_EXPIRES_IN);
        assert_eq!(t.refresh_token, None);
    }
}
