//! Google's OAuth 2.0 endpoints for a confidential web-server client: `GET /o/oauth2/v2/auth` (consent, PKCE,
//! `access_type`, `prompt`, `state`), `POST /token` (authorization-code and refresh-token grants, client
//! authentication in the body or by HTTP Basic) and `POST /revoke`.

use crate::Shared;
use crate::store::{AccessToken, AuthCode, RefreshGrant};
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Digest;
use std::collections::HashMap;
use std::sync::Arc;

/// Access tokens live an hour; the answer says 3599 seconds, as Google's does.
pub const ACCESS_TOKEN_LIFETIME_SECS: i64 = 3600;
const EXPIRES_IN: i64 = 3599;
const CODE_LIFETIME_SECS: i64 = 600;

/// How the authorize endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMode {
    /// Show a consent page with Allow and Deny buttons.
    #[default]
    Page,
    /// Approve at once and redirect with a code.
    Auto,
    /// Redirect with `error=access_denied`, as when the user clicks Cancel.
    Deny,
}

/// The PKCE S256 challenge of a verifier.
pub fn pkce_s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

/// What the token endpoint answers on success.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenResponse {
    pub access_token: String,
    pub expires_in: i64,
    pub token_type: String,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

fn error_page(status: StatusCode, error: &str, detail: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><title>Error {code}: {error}</title></head><body>\
         <h1>Access blocked: authorisation error</h1><p>Error {code}: {error}</p><p>{detail}</p></body></html>",
        code = status.as_u16(),
        error = html_escape(error),
        detail = html_escape(detail),
    );
    (status, Html(body)).into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let mut url = match url::Url::parse(redirect_uri) {
        Ok(u) => u,
        Err(_) => return error_page(StatusCode::BAD_REQUEST, "invalid_request", "Invalid redirect_uri"),
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    (StatusCode::FOUND, [(header::LOCATION, url.as_str().to_string())]).into_response()
}

pub(crate) async fn authorize_get(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let mode = *shared.consent.lock();
    authorize(&shared, &params, mode)
}

pub(crate) async fn authorize_post(
    State(shared): State<Arc<Shared>>,
    Form(params): Form<HashMap<String, String>>,
) -> Response {
    let mode = if params.get("decision").map(String::as_str) == Some("allow") {
        ConsentMode::Auto
    } else {
        ConsentMode::Deny
    };
    authorize(&shared, &params, mode)
}

fn authorize(shared: &Shared, p: &HashMap<String, String>, mode: ConsentMode) -> Response {
    let get = |k: &str| p.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let Some(client_id) = get("client_id") else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: client_id",
        );
    };
    let store = shared.store.read();
    let Some(client) = store.clients.get(client_id).cloned() else {
        return error_page(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The OAuth client was not found.",
        );
    };
    let Some(redirect_uri) = get("redirect_uri") else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: redirect_uri",
        );
    };
    if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "redirect_uri_mismatch",
            &format!(
                "The redirect URI in the request, {redirect_uri}, does not match the ones authorized for the OAuth client."
            ),
        );
    }
    let state = get("state").unwrap_or("");
    let with_state = |mut v: Vec<(&'static str, String)>| {
        if !state.is_empty() {
            v.push(("state", state.to_string()));
        }
        v
    };
    if get("response_type") != Some("code") {
        let params = with_state(vec![("error", "unsupported_response_type".to_string())]);
        let refs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        return redirect_with(redirect_uri, &refs);
    }
    let Some(scope) = get("scope") else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: scope",
        );
    };
    let (valid, invalid): (Vec<&str>, Vec<&str>) = scope.split_whitespace().partition(|s| known_scope(s));
    if !invalid.is_empty() {
        // Google answers with an error page, not a redirect; OpenID Connect's `offline_access` is
        // one of the scopes it refuses (offline access is `access_type=offline`).
        return error_page(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            &format!(
                "Some requested scopes were invalid. {{valid=[{}], invalid=[{}]}}",
                valid.join(", "),
                invalid.join(", ")
            ),
        );
    }
    let access_type = get("access_type").unwrap_or("online");
    if access_type != "online" && access_type != "offline" {
        return error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("Invalid access_type: {access_type}"),
        );
    }
    let prompt = get("prompt").unwrap_or("");
    let challenge = match (get("code_challenge"), get("code_challenge_method")) {
        (None, None) => None,
        (Some(c), m) => {
            let m = m.unwrap_or("plain");
            if m != "S256" && m != "plain" {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    &format!("Invalid code_challenge_method: {m}"),
                );
            }
            Some((c.to_string(), m.to_string()))
        }
        (None, Some(_)) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing required parameter: code_challenge",
            );
        }
    };
    let user_id = get("login_hint")
        .and_then(|h| store.user_by_email(h))
        .map_or_else(|| store.default_user.clone(), |u| u.id.clone());
    drop(store);
    match mode {
        ConsentMode::Deny => {
            let params = with_state(vec![("error", "access_denied".to_string())]);
            let refs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            redirect_with(redirect_uri, &refs)
        }
        ConsentMode::Page => consent_page(shared, p, client_id, scope),
        ConsentMode::Auto => {
            let now = shared.clock.now();
            let mut store = shared.store.write();
            let code = store.ids.code();
            store.codes.insert(
                code.clone(),
                AuthCode {
                    client_id: client_id.into(),
                    redirect_uri: redirect_uri.into(),
                    user_id,
                    scope: scope.split_whitespace().collect::<Vec<_>>().join(" "),
                    offline: access_type == "offline",
                    force_consent: prompt.split_whitespace().any(|x| x == "consent"),
                    challenge,
                    expires: now + chrono::Duration::seconds(CODE_LIFETIME_SECS),
                    used: false,
                },
            );
            drop(store);
            let granted = scope.split_whitespace().collect::<Vec<_>>().join(" ");
            let params = with_state(vec![
                ("code", code),
                ("scope", granted),
                ("authuser", "0".into()),
                ("prompt", "consent".into()),
            ]);
            let refs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            redirect_with(redirect_uri, &refs)
        }
    }
}

/// Whether Google knows a scope: the OpenID Connect ones it accepts, or a Google API scope URL.
fn known_scope(scope: &str) -> bool {
    matches!(scope, "openid" | "email" | "profile")
        || scope
            .strip_prefix("https://www.googleapis.com/auth/")
            .is_some_and(|rest| !rest.is_empty())
}

fn consent_page(shared: &Shared, p: &HashMap<String, String>, client_id: &str, scope: &str) -> Response {
    let user = {
        let s = shared.store.read();
        s.users
            .get(&s.default_user)
            .map(|u| u.email.clone())
            .unwrap_or_default()
    };
    let mut hidden = String::new();
    let mut keys: Vec<&String> = p.keys().filter(|k| k.as_str() != "decision").collect();
    keys.sort();
    for k in keys {
        hidden.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            html_escape(k),
            html_escape(&p[k])
        ));
    }
    let scopes: String = scope
        .split_whitespace()
        .map(|s| format!("<li>{}</li>", html_escape(s)))
        .collect();
    Html(format!(
        "<!doctype html><html><head><title>Sign in - Google Accounts</title></head><body>\
         <h1>{client} wants to access your Google Account</h1><p>{user}</p><ul>{scopes}</ul>\
         <form method=\"post\" action=\"/o/oauth2/v2/auth\">{hidden}\
         <button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\">Cancel</button>\
         <button type=\"submit\" name=\"decision\" value=\"allow\" id=\"allow\">Allow</button>\
         </form></body></html>",
        client = html_escape(client_id),
        user = html_escape(&user),
    ))
    .into_response()
}

fn token_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// Client credentials from HTTP Basic (preferred) or the form body.
fn client_credentials(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> (Option<String>, Option<String>) {
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        && let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(basic.trim())
        && let Ok(text) = String::from_utf8(raw)
        && let Some((id, secret)) = text.split_once(':')
    {
        let dec = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map_or_else(|| s.to_string(), |(_, v)| v.into_owned())
        };
        return (Some(dec(id)), Some(dec(secret)));
    }
    (form.get("client_id").cloned(), form.get("client_secret").cloned())
}

pub(crate) async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let (client_id, secret) = client_credentials(&headers, &form);
    let Some(client_id) = client_id.filter(|c| !c.is_empty()) else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Could not determine client ID from request.",
        );
    };
    let now = shared.clock.now();
    let mut store = shared.store.write();
    let Some(client) = store.clients.get(&client_id).cloned() else {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The OAuth client was not found.",
        );
    };
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_secret is missing.",
        );
    };
    if secret != client.client_secret {
        return token_error(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized");
    }
    let field = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    match field("grant_type") {
        Some("authorization_code") => {
            let Some(code) = field("code") else {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Missing required parameter: code",
                );
            };
            let Some(c) = store.codes.get(code).cloned() else {
                return token_error(StatusCode::BAD_REQUEST, "invalid_grant", "Malformed auth code.");
            };
            if c.client_id != client_id {
                return token_error(StatusCode::BAD_REQUEST, "invalid_grant", "Malformed auth code.");
            }
            if c.used {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Code was already redeemed.",
                );
            }
            if now >= c.expires {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Token has been expired or revoked.",
                );
            }
            if field("redirect_uri") != Some(c.redirect_uri.as_str()) {
                return token_error(StatusCode::BAD_REQUEST, "redirect_uri_mismatch", "Bad Request");
            }
            if let Some((challenge, method)) = &c.challenge {
                let Some(verifier) = field("code_verifier") else {
                    return token_error(StatusCode::BAD_REQUEST, "invalid_grant", "Missing code verifier.");
                };
                let computed = if method == "S256" {
                    pkce_s256(verifier)
                } else {
                    verifier.to_string()
                };
                if computed != *challenge {
                    return token_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid code verifier.");
                }
            }
            if let Some(entry) = store.codes.get_mut(code) {
                entry.used = true;
            }
            let pair = (client_id.clone(), c.user_id.clone());
            let refresh = if c.offline && (c.force_consent || !store.offline_granted.contains(&pair)) {
                let r = store.ids.refresh_token();
                store.refresh_tokens.insert(
                    r.clone(),
                    RefreshGrant {
                        user_id: c.user_id.clone(),
                        client_id: client_id.clone(),
                        scope: c.scope.clone(),
                    },
                );
                store.offline_granted.insert(pair);
                Some(r)
            } else {
                None
            };
            let access = issue_access(&mut store, &c.user_id, &client_id, &c.scope, refresh.clone(), now);
            token_ok(TokenResponse {
                access_token: access,
                expires_in: EXPIRES_IN,
                token_type: "Bearer".into(),
                scope: c.scope,
                refresh_token: refresh,
            })
        }
        Some("refresh_token") => {
            let Some(rt) = field("refresh_token") else {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Missing required parameter: refresh_token",
                );
            };
            let Some(grant) = store.refresh_tokens.get(rt).cloned() else {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Token has been expired or revoked.",
                );
            };
            if grant.client_id != client_id {
                return token_error(StatusCode::UNAUTHORIZED, "unauthorized_client", "Unauthorized");
            }
            let access = issue_access(
                &mut store,
                &grant.user_id,
                &client_id,
                &grant.scope,
                Some(rt.to_string()),
                now,
            );
            token_ok(TokenResponse {
                access_token: access,
                expires_in: EXPIRES_IN,
                token_type: "Bearer".into(),
                scope: grant.scope,
                refresh_token: None,
            })
        }
        Some(other) => token_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("Invalid grant_type: {other}"),
        ),
        None => token_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type: ",
        ),
    }
}

pub(crate) fn issue_access(
    store: &mut crate::store::Store,
    user_id: &str,
    client_id: &str,
    scope: &str,
    refresh: Option<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let token = store.ids.access_token();
    store.access_tokens.insert(
        token.clone(),
        AccessToken {
            user_id: user_id.into(),
            client_id: client_id.into(),
            scope: scope.into(),
            expires: now + chrono::Duration::seconds(ACCESS_TOKEN_LIFETIME_SECS),
            refresh,
        },
    );
    token
}

fn token_ok(t: TokenResponse) -> Response {
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(t),
    )
        .into_response()
}

pub(crate) async fn revoke(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    body: bytes::Bytes,
) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let Some(token) = query.get("token").or_else(|| form.get("token")) else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: token",
        );
    };
    if shared.store.write().revoke_token(token) {
        (StatusCode::OK, axum::Json(json!({}))).into_response()
    } else {
        token_error(
            StatusCode::BAD_REQUEST,
            "invalid_token",
            "Token expired or revoked",
        )
    }
}
