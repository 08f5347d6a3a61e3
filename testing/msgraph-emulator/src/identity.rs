//! The identity platform v2.0 endpoints: `/{tenant}/oauth2/v2.0/authorize` (GET shows consent or redirects;
//! POST is the consent form's submission) and `/{tenant}/oauth2/v2.0/token`.

use crate::Shared;
use crate::app_only::ClientCredential;
use crate::auth::{AadError, CodeRequest, parse_scopes};
use crate::error::RequestMeta;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

type Params = HashMap<String, String>;

pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn aad_timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

fn description(e: &AadError, meta: &RequestMeta) -> String {
    format!(
        "AADSTS{}: {}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
        e.code,
        e.message,
        meta.request_id,
        meta.client_request_id,
        aad_timestamp(meta.date)
    )
}

/// The identity platform's JSON error body.
pub fn aad_error_json(e: &AadError, meta: &RequestMeta, base_url: &str) -> serde_json::Value {
    let mut v = json!({
        "error": e.error,
        "error_description": description(e, meta),
        "error_codes": [e.code],
        "timestamp": aad_timestamp(meta.date),
        "trace_id": meta.request_id,
        "correlation_id": meta.client_request_id,
        "error_uri": format!("{base_url}/error?code={}", e.code),
    });
    if let (Some(sub), Some(o)) = (e.suberror, v.as_object_mut()) {
        o.insert("suberror".into(), sub.into());
        o.insert("claims".into(), r#"{"access_token":{"capolids":{"essential":true,"values":["00000000-0000-0000-0000-00000000mfa1"]}}}"#.into());
    }
    v
}

pub(crate) fn aad_error_response(e: &AadError, meta: &RequestMeta, base_url: &str) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = (status, axum::Json(aad_error_json(e, meta, base_url))).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    r
}

pub(crate) fn error_page(status: StatusCode, e: &AadError, meta: &RequestMeta) -> Response {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign in to your account</title></head><body>\
         <h1>Sorry, but we're having trouble signing you in.</h1><p id=\"error\">AADSTS{}: {}</p>\
         <p>Request Id: {}<br>Correlation Id: {}<br>Timestamp: {}</p></body></html>",
        e.code,
        html_escape(&e.message),
        html_escape(&meta.request_id),
        html_escape(&meta.client_request_id),
        aad_timestamp(meta.date)
    );
    (status, Html(body)).into_response()
}

/// What the `{tenant}` segment of an identity platform URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TenantPath {
    /// `common` or `organizations`: any organisation's users (the segment as given).
    Multi(String),
    /// `consumers`: personal Microsoft accounts.
    Consumers,
    /// One tenant, by its id: the emulated tenant (named by id or domain) or another organisation's tenant
    /// that one of the emulator's users belongs to.
    Tenant(String),
}

/// The tenant id of personal Microsoft accounts.
pub(crate) const CONSUMERS_TENANT_ID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

pub(crate) fn resolve_tenant(shared: &Shared, tenant: &str) -> Option<TenantPath> {
    let lower = tenant.to_ascii_lowercase();
    match lower.as_str() {
        "common" | "organizations" => return Some(TenantPath::Multi(lower)),
        "consumers" => return Some(TenantPath::Consumers),
        _ => {}
    }
    let store = shared.store.read();
    if lower == store.tenant.id.to_ascii_lowercase() || lower == store.tenant.domain.to_ascii_lowercase() {
        return Some(TenantPath::Tenant(store.tenant.id.clone()));
    }
    store
        .users
        .values()
        .filter_map(|u| u.home_tenant.as_ref())
        .find(|t| t.eq_ignore_ascii_case(tenant))
        .map(|t| TenantPath::Tenant(t.clone()))
}

fn tenant_known(shared: &Shared, tenant: &str) -> bool {
    resolve_tenant(shared, tenant).is_some()
}

pub(crate) fn tenant_error(tenant: &str) -> AadError {
    AadError::new(
        400,
        "invalid_request",
        90002,
        format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
        ),
    )
}

/// Sends the browser back to the client with `params`, honouring `response_mode`.
fn redirect_back(redirect_uri: &str, mode: &str, params: &[(&str, String)]) -> Response {
    if mode == "form_post" {
        let inputs: String = params
            .iter()
            .map(|(k, v)| {
                format!(
                    "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                    html_escape(k),
                    html_escape(v)
                )
            })
            .collect();
        let body = format!(
            "<!doctype html><html><head><title>Working...</title></head><body onload=\"document.forms[0].submit()\">\
             <form method=\"POST\" action=\"{}\">{inputs}<noscript><button type=\"submit\">Continue</button></noscript></form></body></html>",
            html_escape(redirect_uri)
        );
        return (StatusCode::OK, Html(body)).into_response();
    }
    let encoded: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let sep = if mode == "fragment" {
        "#"
    } else if redirect_uri.contains('?') {
        "&"
    } else {
        "?"
    };
    let location = format!("{redirect_uri}{sep}{encoded}");
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn redirect_error(
    redirect_uri: &str,
    mode: &str,
    e: &AadError,
    state: Option<&String>,
    meta: &RequestMeta,
) -> Response {
    let mut params = vec![
        ("error", e.error.to_string()),
        ("error_description", description(e, meta)),
    ];
    if let Some(s) = state {
        params.push(("state", s.clone()));
    }
    redirect_back(redirect_uri, mode, &params)
}

/// What the consent form submitted.
struct Consent {
    accept: bool,
    user_id: Option<String>,
}

fn authorize(
    shared: &Shared,
    meta: &RequestMeta,
    tenant: &str,
    p: &Params,
    consent: Option<Consent>,
) -> Response {
    let Some(tenant_path) = resolve_tenant(shared, tenant) else {
        return error_page(StatusCode::BAD_REQUEST, &tenant_error(tenant), meta);
    };
    let get = |k: &str| p.get(k).filter(|v| !v.is_empty());
    let Some(client_id) = get("client_id") else {
        return error_page(StatusCode::BAD_REQUEST, &AadError::missing("client_id"), meta);
    };
    let (client_name, registered) = {
        let store = shared.store.read();
        match store.auth.clients.get(client_id) {
            Some(c) => (c.reg.display_name.clone(), c.reg.redirect_uris.clone()),
            None => {
                let e = AadError::new(
                    400,
                    "unauthorized_client",
                    700016,
                    format!(
                        "Application with identifier '{client_id}' was not found in the directory '{}'.",
                        store.tenant.display_name
                    ),
                );
                return error_page(StatusCode::BAD_REQUEST, &e, meta);
            }
        }
    };
    let Some(redirect_uri) = get("redirect_uri") else {
        return error_page(StatusCode::BAD_REQUEST, &AadError::missing("redirect_uri"), meta);
    };
    if !registered.iter().any(|r| r == redirect_uri) {
        let e = AadError::new(
            400,
            "invalid_request",
            50011,
            format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal."
            ),
        );
        return error_page(StatusCode::BAD_REQUEST, &e, meta);
    }
    let state = p.get("state");
    let mode = get("response_mode").map_or("query", String::as_str);
    let fail = |e: AadError| redirect_error(redirect_uri, mode, &e, state, meta);
    // The response types Entra knows; the emulator's registrations enable the code flow only.
    let known = [
        "code",
        "id_token",
        "token",
        "code id_token",
        "id_token token",
        "code token",
        "code id_token token",
    ];
    match get("response_type").map(String::as_str) {
        Some("code") => {}
        Some(other) if known.contains(&other) => {
            return fail(AadError::new(
                400,
                "unsupported_response_type",
                700054,
                format!("response_type '{other}' is not enabled for the application."),
            ));
        }
        Some(other) => {
            return fail(AadError::new(
                400,
                "invalid_request",
                9002313,
                format!(
                    "Invalid request. Request is malformed or invalid. The provided value for the input parameter 'response_type' is not valid: '{other}'."
                ),
            ));
        }
        None => return fail(AadError::missing("response_type")),
    }
    let Some(scope) = get("scope") else {
        return fail(AadError::missing("scope"));
    };
    let Some(challenge) = get("code_challenge") else {
        return fail(AadError::new(
            400,
            "invalid_request",
            9002325,
            "Proof Key for Code Exchange is required for cross-origin authorization code redemption.",
        ));
    };
    if get("code_challenge_method").map(String::as_str) != Some("S256") {
        return fail(AadError::new(
            400,
            "invalid_request",
            9002313,
            "Invalid request. Request is malformed or invalid. The emulator requires code_challenge_method=S256.",
        ));
    }
    let auto = shared.auto_consent.load(std::sync::atomic::Ordering::Relaxed);
    let prompt = get("prompt").map_or("", String::as_str);
    let (users, hinted) = {
        let store = shared.store.read();
        let users: Vec<(String, String, String)> = store
            .users
            .values()
            .map(|u| (u.id.clone(), u.display_name.clone(), u.upn.clone()))
            .collect();
        let hinted = get("login_hint")
            .and_then(|h| store.find_user(h))
            .map(|u| u.id.clone());
        (users, hinted.unwrap_or_else(|| store.default_user_id.clone()))
    };
    let decision = match consent {
        Some(c) => Some((c.accept, c.user_id.unwrap_or(hinted.clone()))),
        None if auto => Some((true, hinted.clone())),
        None if prompt == "none" => {
            return fail(AadError::new(
                400,
                "interaction_required",
                65001,
                format!(
                    "The user or administrator has not consented to use the application with ID '{client_id}'. Send an interactive authorization request for this user and resource."
                ),
            ));
        }
        None => None,
    };
    match decision {
        Some((true, user_id)) => {
            let code = {
                let mut store = shared.store.write();
                let Ok(user) = store.user(&user_id).cloned() else {
                    drop(store);
                    return fail(AadError::new(
                        400,
                        "invalid_request",
                        50034,
                        "The user account does not exist in the directory.",
                    ));
                };
                if let TenantPath::Tenant(tid) = &tenant_path {
                    let home = store.user_tenant(&user);
                    if &home != tid {
                        let name = if *tid == store.tenant.id {
                            store.tenant.display_name.clone()
                        } else {
                            tid.clone()
                        };
                        drop(store);
                        let e = AadError::new(
                            400,
                            "invalid_request",
                            50020,
                            format!(
                                "User account '{}' from identity provider 'https://sts.windows.net/{home}/' does not exist in tenant '{name}' and cannot access the application '{client_id}'({client_name}) in that tenant. The account needs to be added as an external user in the tenant first. Sign out and sign in again with a different Microsoft Entra user account.",
                                user.upn
                            ),
                        );
                        return error_page(StatusCode::BAD_REQUEST, &e, meta);
                    }
                }
                store.issue_code(
                    CodeRequest {
                        client_id,
                        redirect_uri,
                        user_id: &user_id,
                        scopes: parse_scopes(scope),
                        code_challenge: challenge,
                        nonce: get("nonce").map(String::as_str),
                    },
                    meta.date,
                )
            };
            let mut params = vec![("code", code)];
            if let Some(s) = state {
                params.push(("state", s.clone()));
            }
            params.push(("session_state", crate::ids::derived_guid(shared.seed, 7)));
            redirect_back(redirect_uri, mode, &params)
        }
        Some((false, _)) => fail(AadError::new(
            400,
            "access_denied",
            65004,
            "User declined to consent to access the app.",
        )),
        None => consent_page(tenant, &client_name, scope, p, &users, &hinted),
    }
}

fn consent_page(
    tenant: &str,
    client_name: &str,
    scope: &str,
    p: &Params,
    users: &[(String, String, String)],
    selected: &str,
) -> Response {
    let mut keys: Vec<&String> = p
        .keys()
        .filter(|k| k.as_str() != "consent" && k.as_str() != "login_user")
        .collect();
    keys.sort();
    let hidden: String = keys
        .iter()
        .map(|k| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
                html_escape(k),
                html_escape(p.get(*k).map_or("", String::as_str))
            )
        })
        .collect();
    let options: String = users
        .iter()
        .map(|(id, name, upn)| {
            let sel = if id == selected { " selected" } else { "" };
            format!(
                "<option value=\"{}\"{sel}>{} ({})</option>\n",
                html_escape(id),
                html_escape(name),
                html_escape(upn)
            )
        })
        .collect();
    let scopes: String = scope
        .split_whitespace()
        .map(|s| format!("<li>{}</li>", html_escape(s)))
        .collect();
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Permissions requested</title></head><body>\n\
         <h1>Permissions requested</h1>\n<p><strong>{app}</strong> wants to:</p>\n<ul id=\"scopes\">{scopes}</ul>\n\
         <form id=\"consent\" method=\"POST\" action=\"/{tenant}/oauth2/v2.0/authorize\">\n{hidden}\
         <label>Sign in as <select name=\"login_user\">\n{options}</select></label>\n\
         <button type=\"submit\" name=\"consent\" value=\"accept\">Accept</button>\n\
         <button type=\"submit\" name=\"consent\" value=\"deny\">Cancel</button>\n</form>\n</body></html>\n",
        app = html_escape(client_name),
        tenant = html_escape(tenant),
    );
    (StatusCode::OK, Html(body)).into_response()
}

pub(crate) async fn authorize_get(
    State(shared): State<Arc<Shared>>,
    Extension(meta): Extension<RequestMeta>,
    Path(tenant): Path<String>,
    Query(p): Query<Params>,
) -> Response {
    authorize(&shared, &meta, &tenant, &p, None)
}

fn parse_form(body: &[u8]) -> Params {
    url::form_urlencoded::parse(body).into_owned().collect()
}

pub(crate) async fn authorize_post(
    State(shared): State<Arc<Shared>>,
    Extension(meta): Extension<RequestMeta>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    let p = parse_form(&body);
    let consent = p.get("consent").map(|c| Consent {
        accept: c == "accept",
        user_id: p.get("login_user").cloned(),
    });
    authorize(&shared, &meta, &tenant, &p, consent)
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let dec = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    Some((dec(id), dec(secret)))
}

pub(crate) async fn token(
    State(shared): State<Arc<Shared>>,
    Extension(meta): Extension<RequestMeta>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let base = shared.base_url.clone();
    if !tenant_known(&shared, &tenant) {
        return aad_error_response(&tenant_error(&tenant), &meta, &base);
    }
    let form = parse_form(&body);
    let basic = basic_credentials(&headers);
    let client_id = form
        .get("client_id")
        .cloned()
        .or_else(|| basic.as_ref().map(|b| b.0.clone()));
    let secret = form
        .get("client_secret")
        .cloned()
        .or_else(|| basic.as_ref().map(|b| b.1.clone()));
    let get = |k: &str| form.get(k).map(String::as_str);
    let now = meta.date;
    let result = (|| {
        let grant = get("grant_type")
            .filter(|g| !g.is_empty())
            .ok_or_else(|| AadError::missing("grant_type"))?;
        let mut store = shared.store.write();
        let (client_id, credential) =
            if form.contains_key("client_assertion_type") || form.contains_key("client_assertion") {
                let tenants = [
                    tenant.clone(),
                    store.tenant.id.clone(),
                    store.tenant.domain.clone(),
                ];
                let audiences: Vec<String> = tenants
                    .iter()
                    .map(|t| format!("{base}/{t}/oauth2/v2.0/token"))
                    .collect();
                let id = store.authenticate_assertion(
                    client_id.as_deref(),
                    get("client_assertion_type"),
                    get("client_assertion"),
                    &audiences,
                    now,
                )?;
                (id, ClientCredential::Certificate)
            } else {
                let id = store
                    .authenticate_client(client_id.as_deref(), secret.as_deref(), now)?
                    .reg
                    .client_id
                    .clone();
                (id, ClientCredential::Secret)
            };
        match grant {
            "client_credentials" => {
                store.client_credentials(&client_id, get("scope"), credential, &base, now)
            }
            "authorization_code" => store.redeem_code(
                &client_id,
                get("code"),
                get("redirect_uri"),
                get("code_verifier"),
                now,
            ),
            "refresh_token" => store.redeem_refresh(&client_id, get("refresh_token"), get("scope"), now),
            other => Err(AadError::new(
                400,
                "unsupported_grant_type",
                70003,
                format!("The app requested an unsupported grant type '{other}'."),
            )),
        }
    })();
    match result {
        Ok(t) => {
            let mut r = (StatusCode::OK, axum::Json(t)).into_response();
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store, no-cache"),
            );
            r.headers_mut()
                .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            r
        }
        Err(e) => aad_error_response(&e, &meta, &base),
    }
}
