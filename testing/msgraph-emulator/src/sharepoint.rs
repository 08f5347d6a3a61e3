//! The SharePoint REST subset kbsync uses: the members of a site group,
//! `GET {siteUrl}/_api/web/sitegroups/GetById({id})/users` (also `sitegroups({id})/users`): SharePoint REST's
//! `SP.GroupCollection.GetById` and `SP.Group.Users`, which Graph v1.0 has no counterpart for. Sites live under the emulator's own base URL (`{base}/sites/{name}`), so
//! the SharePoint origin is the emulator's origin.
//!
//! SharePoint accepts only tokens whose audience is its origin: a delegated token (e.g. for
//! `{origin}/AllSites.Read`; the emulator's token endpoint issues delegated tokens for Graph only, so this
//! branch is reached only by tokens minted for the origin) or an app-only token obtained **with a certificate**; an app-only token obtained
//! with a client secret is refused with 401 "Unsupported app only token." (techcommunity.microsoft.com,
//! "Avoiding Access Errors with SharePoint App-Only Access", 2025). With
//! `Accept: application/json;odata=nometadata` the answer is `{"value":[{Id, LoginName, Title, Email,
//! PrincipalType, UserPrincipalName, IsSiteAdmin}]}`; `PrincipalType` is 1 for a user and 4 for a security
//! group, whose `LoginName` is its claim (`c:0t.c|tenant|<group id>`).

use crate::Shared;
use crate::app_only::ClientCredential;
use crate::error::RequestMeta;
use crate::store::{Site, Store};
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::Digest as _;
use std::sync::Arc;

/// Application permissions SharePoint honours for reading a site.
const SITE_READ_ROLES: &[&str] = &[
    "Sites.Read.All",
    "Sites.ReadWrite.All",
    "Sites.Manage.All",
    "Sites.FullControl.All",
];

/// A SharePoint REST refusal of the bearer token: 401 with the reason in `x-ms-diagnostics` and the body.
fn unauthorized(reason: &str) -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error_description": reason})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "3000003;reason=\"{reason}\";category=\"invalid_client\""
    )) {
        r.headers_mut().insert("x-ms-diagnostics", v);
    }
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"\",client_id=\"00000003-0000-0ff1-ce00-000000000000\""),
    );
    r
}

/// SharePoint's OData error body.
fn odata_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"odata.error": {"code": code, "message": {"lang": "en-US", "value": message}}})),
    )
        .into_response()
}

fn access_denied() -> Response {
    odata_error(
        StatusCode::FORBIDDEN,
        "-2147024891, System.UnauthorizedAccessException",
        "Access denied. You do not have permission to perform this action or access this resource.",
    )
}

/// A stable site-local numeric id for a principal (SharePoint numbers the users of a site itself).
fn site_local_id(principal: &str) -> u64 {
    let h = sha2::Sha256::digest(principal.as_bytes());
    let n = u64::from(h[0]) << 16 | u64::from(h[1]) << 8 | u64::from(h[2]);
    10 + n % 1_000_000
}

/// The site group id in `sitegroups/GetById(5)/users` or `sitegroups(5)/users`.
fn site_group_id(rest: &str) -> Option<String> {
    let lower = rest.to_ascii_lowercase();
    let tail = lower.strip_prefix("web/sitegroups")?;
    let tail = tail.strip_prefix("/getbyid").unwrap_or(tail);
    let inner = tail.strip_prefix('(')?;
    let (id, after) = inner.split_once(')')?;
    (after == "/users" && !id.is_empty() && id.chars().all(|c| c.is_ascii_digit())).then(|| id.to_string())
}

fn members_json(store: &Store, site: &Site, group_id: &str) -> Vec<Value> {
    let key = (site.id.clone(), group_id.to_string());
    let mut out = Vec::new();
    for uid in store.access.site_group_members.get(&key).into_iter().flatten() {
        let Some(u) = store.users.get(uid) else { continue };
        out.push(json!({
            "Id": site_local_id(&u.id),
            "IsHiddenInUI": false,
            "LoginName": format!("i:0#.f|membership|{}", u.upn),
            "Title": u.display_name,
            "PrincipalType": 1,
            "Email": u.mail.clone().unwrap_or_default(),
            "IsSiteAdmin": false,
            "UserId": {"NameId": u.id, "NameIdIssuer": "urn:federation:microsoftonline"},
            "UserPrincipalName": u.upn,
        }));
    }
    for gid in store.access.site_group_groups.get(&key).into_iter().flatten() {
        out.push(json!({
            "Id": site_local_id(gid),
            "IsHiddenInUI": false,
            "LoginName": format!("c:0t.c|tenant|{gid}"),
            "Title": gid,
            "PrincipalType": 4,
            "Email": "",
            "IsSiteAdmin": false,
            "UserId": null,
            "UserPrincipalName": null,
        }));
    }
    out
}

/// `GET /sites/{site}/_api/{rest}`.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    Extension(meta): Extension<RequestMeta>,
    Path((site_name, rest)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let origin = shared.base_url.trim_end_matches('/').to_string();
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string());
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return unauthorized("Token is required.");
    };
    let store = shared.store.read();
    let record = match store.check_access_token(&token, meta.date) {
        Ok(r) => r.clone(),
        Err(_) => return unauthorized("Invalid JWT token. The token is expired or not valid."),
    };
    if !record.audience.eq_ignore_ascii_case(&origin) {
        return unauthorized(&format!(
            "Invalid audience Uri '{}'.",
            if record.audience == crate::auth::GRAPH_AUDIENCE {
                crate::app_only::GRAPH_RESOURCE
            } else {
                record.audience.as_str()
            }
        ));
    }
    let Some(site) = store
        .sites
        .values()
        .find(|s| s.name.eq_ignore_ascii_case(&site_name))
    else {
        return odata_error(
            StatusCode::NOT_FOUND,
            "-2147024894, System.IO.FileNotFoundException",
            "File Not Found.",
        );
    };
    match &record.app {
        Some(app) if app.credential == ClientCredential::Secret => {
            return unauthorized("Unsupported app only token.");
        }
        Some(app) if !app.has_role(SITE_READ_ROLES) => return access_denied(),
        Some(_) => {}
        None => {
            // A delegated caller reads the site's groups when they can read one of its libraries.
            let visible = site.drive_ids.iter().any(|d| {
                store
                    .drives
                    .get(d)
                    .is_some_and(|drive| store.can_see_drive(&record.user_id, drive))
            });
            if !visible {
                return access_denied();
            }
        }
    }
    let Some(group_id) = site_group_id(&rest) else {
        return odata_error(
            StatusCode::BAD_REQUEST,
            "-1, Microsoft.SharePoint.Client.InvalidClientQueryException",
            "The expression is not valid.",
        );
    };
    let known = matches!(group_id.as_str(), "3" | "4" | "5")
        || store
            .access
            .site_group_members
            .contains_key(&(site.id.clone(), group_id.clone()))
        || store
            .access
            .site_group_groups
            .contains_key(&(site.id.clone(), group_id.clone()));
    if !known {
        return odata_error(
            StatusCode::NOT_FOUND,
            "-2146232832, Microsoft.SharePoint.SPException",
            "Group cannot be found.",
        );
    }
    let value = members_json(&store, site, &group_id);
    let nometadata = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("odata=nometadata"));
    let body = if nometadata {
        json!({"value": value})
    } else {
        json!({"odata.metadata": format!("{}/_api/$metadata#SP.ApiData.Users", site.web_url), "value": value})
    };
    axum::Json(body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_documented_forms_name_the_site_group() {
        assert_eq!(
            site_group_id("web/sitegroups/GetById(5)/users").as_deref(),
            Some("5")
        );
        assert_eq!(site_group_id("web/SiteGroups(12)/users").as_deref(), Some("12"));
        assert_eq!(site_group_id("web/sitegroups/GetById(x)/users"), None);
        assert_eq!(site_group_id("web/sitegroups/GetById(5)"), None);
    }
}
