//! OpenID Connect discovery as Entra serves it: the metadata document at
//! `/{tenant}/v2.0/.well-known/openid-configuration`, the signing keys at `/{tenant}/discovery/v2.0/keys`, and
//! the end-session endpoint `/{tenant}/oauth2/v2.0/logout`.
//!
//! For one tenant (named by id or domain) the issuer and every endpoint carry the tenant's id. For `common` and
//! `organizations` the endpoints keep the segment as given and the issuer is the template
//! `{base}/{tenantid}/v2.0`, as at Entra: a multi-tenant client substitutes the token's `tid`.

use crate::Shared;
use crate::auth::AadError;
use crate::error::RequestMeta;
use crate::identity::{CONSUMERS_TENANT_ID, TenantPath, aad_error_response, html_escape, resolve_tenant};
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// Entra's answer for a tenant it does not know, on the metadata and keys endpoints.
fn invalid_tenant(tenant: &str) -> AadError {
    AadError::new(
        400,
        "invalid_tenant",
        90002,
        format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
        ),
    )
}

/// The segment the endpoints use and the issuer the document announces.
fn segment_and_issuer(base: &str, path: &TenantPath) -> (String, String) {
    match path {
        TenantPath::Multi(segment) => (segment.clone(), format!("{base}/{{tenantid}}/v2.0")),
        TenantPath::Consumers => (
            "consumers".to_string(),
            format!("{base}/{CONSUMERS_TENANT_ID}/v2.0"),
        ),
        TenantPath::Tenant(id) => (id.clone(), format!("{base}/{id}/v2.0")),
    }
}

fn cached_json(v: serde_json::Value) -> Response {
    let mut r = (StatusCode::OK, axum::Json(v)).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=86400, private"),
    );
    r
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`.
pub(crate) async fn openid_configuration(
    State(shared): State<Arc<Shared>>,
    Extension(meta): Extension<RequestMeta>,
    Path(tenant): Path<String>,
) -> Response {
    let b = &shared.base_url;
    let Some(path) = resolve_tenant(&shared, &tenant) else {
        return aad_error_response(&invalid_tenant(&tenant), &meta, b);
    };
    let (t, issuer) = segment_and_issuer(b, &path);
    cached_json(json!({
        "token_endpoint": format!("{b}/{t}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{b}/{t}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer,
        "request_uri_parameter_supported": false,
        "authorization_endpoint": format!("{b}/{t}/oauth2/v2.0/authorize"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{b}/{t}/oauth2/v2.0/logout"),
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "nbf", "nonce", "preferred_username", "name", "tid", "oid",
            "ver", "email", "groups"
        ],
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "cloud_instance_name": "microsoftonline.com",
        "msgraph_host": shared.graph_url.trim_start_matches("http://").trim_start_matches("https://"),
    }))
}

/// `GET /{tenant}/discovery/v2.0/keys`: the published signing keys, newest first.
pub(crate) async fn keys(
    State(shared): State<Arc<Shared>>,
    Extension(meta): Extension<RequestMeta>,
    Path(tenant): Path<String>,
) -> Response {
    let b = &shared.base_url;
    let Some(path) = resolve_tenant(&shared, &tenant) else {
        return aad_error_response(&invalid_tenant(&tenant), &meta, b);
    };
    let (_, issuer) = segment_and_issuer(b, &path);
    let jwks = shared.store.read().signing.jwks(&issuer);
    cached_json(jwks)
}

/// `GET|POST /{tenant}/oauth2/v2.0/logout`: the emulator keeps no browser session, so signing out only
/// sends the browser to `post_logout_redirect_uri` (with `state`), or shows Entra's "signed out" page.
/// Entra also requires that URI to be registered with the application; the emulator takes any absolute
/// http(s) URL.
pub(crate) async fn logout(
    State(shared): State<Arc<Shared>>,
    Extension(meta): Extension<RequestMeta>,
    Path(tenant): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if resolve_tenant(&shared, &tenant).is_none() {
        return crate::identity::error_page(
            StatusCode::BAD_REQUEST,
            &crate::identity::tenant_error(&tenant),
            &meta,
        );
    }
    let target = q
        .get("post_logout_redirect_uri")
        .and_then(|u| url::Url::parse(u).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"));
    if let Some(mut target) = target {
        if let Some(state) = q.get("state") {
            target.query_pairs_mut().append_pair("state", state);
        }
        let mut r = StatusCode::FOUND.into_response();
        if let Ok(v) = HeaderValue::from_str(target.as_str()) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        return r;
    }
    let hint = q
        .get("logout_hint")
        .map(|h| format!("<p>{}</p>", html_escape(h)))
        .unwrap_or_default();
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign out</title></head><body>\
         <h1 id=\"signed-out\">You signed out of your account</h1>{hint}\
         <p>It's a good idea to close all browser windows.</p></body></html>"
    ))
    .into_response()
}
