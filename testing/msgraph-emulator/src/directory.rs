//! The directory side of Graph the emulator serves: `GET /groups/{id}/transitiveMembers`, optionally cast to
//! one member type (`/microsoft.graph.user`, `/microsoft.graph.group`), as
//! learn.microsoft.com/graph/api/group-list-transitivemembers describes it: a flat list of directoryObjects,
//! each with its `@odata.type`, nested groups resolved (the nested groups themselves are listed too).
//!
//! Paging follows the directory's rules (learn.microsoft.com/graph/paging): 100 objects per page unless `$top`
//! asks for another size between 1 and 999, and an `@odata.nextLink` with an opaque `$skiptoken`. The cast is
//! served without the `ConsistencyLevel: eventual` header and `$count` the documentation asks for.

use crate::Shared;
use crate::access::DirectoryGroup;
use crate::auth::AccessRecord;
use crate::error::GraphError;
use crate::scopes::{GROUP_MEMBERS_READ, has_permission};
use crate::store::User;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 999;

/// Which members a request lists.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Only {
    All,
    Users,
    Groups,
    /// A member type the emulator's directory never holds (devices, contacts, service principals).
    Nothing,
}

/// The 403 Graph's directory answers when the token lacks the permission a route needs.
pub(crate) fn insufficient_privileges() -> GraphError {
    GraphError::new(
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )
}

fn resource_not_found(id: &str) -> GraphError {
    GraphError::new(
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        format!(
            "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
        ),
    )
}

fn page_size(q: &HashMap<String, String>) -> Result<usize, GraphError> {
    let Some(raw) = q.get("top") else {
        return Ok(DEFAULT_PAGE);
    };
    match raw.parse::<usize>() {
        Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        _ => Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            format!("Invalid page size specified: '{raw}'. Must be between 1 and {MAX_PAGE} inclusive."),
        )),
    }
}

fn skiptoken(group_id: &str, offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("transitiveMembers\n{group_id}\n{offset}"))
}

fn offset_of(group_id: &str, token: &str) -> Result<usize, GraphError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            let mut parts = s.split('\n');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("transitiveMembers"), Some(g), Some(n)) if g == group_id => n.parse().ok(),
                _ => None,
            }
        })
        .ok_or_else(|| {
            GraphError::new(
                StatusCode::BAD_REQUEST,
                "Request_BadRequest",
                "Invalid skip token.",
            )
        })
}

fn user_object(u: &User) -> Map<String, Value> {
    let (given, surname) = u.display_name.split_once(' ').unwrap_or((&u.display_name, ""));
    let v = json!({
        "@odata.type": "#microsoft.graph.user",
        "id": u.id, "businessPhones": [], "displayName": u.display_name, "givenName": given, "jobTitle": null,
        "mail": u.mail, "mobilePhone": null, "officeLocation": null, "preferredLanguage": "en-US",
        "surname": surname, "userPrincipalName": u.upn,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn group_object(g: &DirectoryGroup) -> Map<String, Value> {
    let nickname: String = g
        .mail
        .as_deref()
        .and_then(|m| m.split('@').next())
        .map_or_else(|| g.display_name.replace(' ', ""), str::to_string);
    let v = json!({
        "@odata.type": "#microsoft.graph.group",
        "id": g.id, "deletedDateTime": null, "description": null, "displayName": g.display_name,
        "groupTypes": [], "mail": g.mail, "mailEnabled": g.mail.is_some(), "mailNickname": nickname,
        "securityEnabled": true,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// `$select` on a directoryObject: the selected properties, and `@odata.type` always (the collection mixes types).
fn select(m: Map<String, Value>, select: Option<&[String]>) -> Value {
    let Some(select) = select else {
        return Value::Object(m);
    };
    Value::Object(
        m.into_iter()
            .filter(|(k, _)| k == "@odata.type" || select.iter().any(|s| s.eq_ignore_ascii_case(k)))
            .collect(),
    )
}

/// `GET /groups/{group_id}/transitiveMembers[/{cast}]`.
pub(crate) fn transitive_members(
    shared: &Shared,
    record: &AccessRecord,
    group_id: &str,
    cast: Option<&str>,
    q: &HashMap<String, String>,
) -> Result<Response, GraphError> {
    if !has_permission(record, GROUP_MEMBERS_READ) {
        return Err(insufficient_privileges());
    }
    let only = match cast.map(str::to_ascii_lowercase).as_deref() {
        None => Only::All,
        Some("microsoft.graph.user") => Only::Users,
        Some("microsoft.graph.group") => Only::Groups,
        Some(
            "microsoft.graph.device"
            | "microsoft.graph.orgcontact"
            | "microsoft.graph.serviceprincipal"
            | "microsoft.graph.application",
        ) => Only::Nothing,
        Some(_) => {
            return Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!(
                    "Resource not found for the segment '{}'.",
                    cast.unwrap_or_default()
                ),
            ));
        }
    };
    let top = page_size(q)?;
    let store = shared.store.read();
    if !store.access.groups.contains_key(group_id) {
        return Err(resource_not_found(group_id));
    }
    let offset = q
        .get("skiptoken")
        .map(|t| offset_of(group_id, t))
        .transpose()?
        .unwrap_or(0);
    let members = store.transitive_members(group_id);
    let mut objects: Vec<Map<String, Value>> = Vec::new();
    if matches!(only, Only::All | Only::Users) {
        objects.extend(
            members
                .users
                .iter()
                .filter_map(|id| store.users.get(id))
                .map(user_object),
        );
    }
    if matches!(only, Only::All | Only::Groups) {
        objects.extend(
            members
                .groups
                .iter()
                .filter_map(|id| store.access.groups.get(id))
                .map(group_object),
        );
    }
    let selected: Option<Vec<String>> = q.get("select").map(|s| {
        s.split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect()
    });
    let total = objects.len();
    let page: Vec<Value> = objects
        .into_iter()
        .skip(offset)
        .take(top)
        .map(|m| select(m, selected.as_deref()))
        .collect();
    let context = match only {
        Only::Users => "users",
        Only::Groups => "groups",
        Only::All | Only::Nothing => "directoryObjects",
    };
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        format!("{}/$metadata#{context}", shared.graph_url).into(),
    );
    if offset + top < total {
        let mut link = format!(
            "{}/groups/{}/transitiveMembers",
            shared.graph_url,
            crate::render::encode_segment(group_id)
        );
        if let Some(c) = cast {
            link.push('/');
            link.push_str(c);
        }
        link.push_str(&format!(
            "?$top={top}&$skiptoken={}",
            skiptoken(group_id, offset + top)
        ));
        if let Some(s) = q.get("select") {
            link.push_str("&$select=");
            link.push_str(&crate::render::encode_segment(s));
        }
        body.insert("@odata.nextLink".into(), link.into());
    }
    body.insert("value".into(), Value::Array(page));
    Ok((StatusCode::OK, axum::Json(Value::Object(body))).into_response())
}
