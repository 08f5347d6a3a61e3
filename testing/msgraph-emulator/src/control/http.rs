//! The HTTP control API under `/_emulator/…`: request bodies, the error shape, and one route per method of the
//! typed handle ([`Control`]), which does the work.

use super::{Control, ItemInfo, NewDrive, NewGroup, NewSite, NewUser, PermissionSpec};
use crate::Shared;
use crate::auth::{ClientRegistration, GroupMembershipClaims, IdTokenOverrides};
use crate::store::{DeltaBehaviour, ResyncCode, StoreError};
use crate::subscriptions::NotificationPolicy;
use crate::traffic::FaultRule;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug)]
struct ControlError(StatusCode, String);

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        let status = match e {
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Conflict(_) => StatusCode::CONFLICT,
            StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
        };
        ControlError(status, e.to_string())
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({"error": self.1}))).into_response()
    }
}

type CResult<T> = Result<Json<T>, ControlError>;

fn ctl(shared: &Arc<Shared>) -> Control {
    Control {
        shared: shared.clone(),
    }
}

#[derive(Deserialize)]
struct FileBody {
    #[serde(default)]
    path: Option<String>,
    /// UTF-8 text content.
    #[serde(default)]
    content: Option<String>,
    /// Binary content, base64.
    #[serde(default)]
    content_base64: Option<String>,
}

impl FileBody {
    fn bytes(&self) -> Result<Bytes, ControlError> {
        match (&self.content, &self.content_base64) {
            (Some(t), None) => Ok(Bytes::from(t.clone())),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map(Bytes::from)
                .map_err(|e| ControlError(StatusCode::BAD_REQUEST, format!("content_base64: {e}"))),
            (None, None) => Ok(Bytes::new()),
            (Some(_), Some(_)) => Err(ControlError(
                StatusCode::BAD_REQUEST,
                "give content or content_base64, not both".into(),
            )),
        }
    }
}

#[derive(Deserialize)]
struct PathBody {
    path: String,
}
#[derive(Deserialize)]
struct NameBody {
    name: String,
}
#[derive(Deserialize)]
struct MoveBody {
    parent_id: String,
    #[serde(default)]
    name: Option<String>,
}
#[derive(Deserialize, Default)]
struct ExpireBody {
    #[serde(default)]
    code: Option<ResyncCode>,
}
#[derive(Deserialize)]
struct AppRolesBody {
    roles: Vec<String>,
}
#[derive(Deserialize)]
struct MfaBody {
    required: bool,
}
#[derive(Deserialize, Default)]
struct TokenBody {
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    lifetime_secs: Option<i64>,
}
#[derive(Deserialize, Default)]
struct IdTokenBody {
    /// Default: the first registered client.
    #[serde(default)]
    client_id: Option<String>,
    /// Default: `openid profile email`.
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    nonce: Option<String>,
}
#[derive(Deserialize)]
struct GroupClaimsBody {
    value: GroupMembershipClaims,
}
#[derive(Deserialize)]
struct AdvanceBody {
    seconds: i64,
}
#[derive(Deserialize)]
struct RateBody {
    requests_per_second: Option<u32>,
}
#[derive(Deserialize)]
struct ToggleBody {
    enabled: bool,
}
#[derive(Deserialize)]
struct LookupQuery {
    path: String,
}
#[derive(Deserialize)]
struct AccessBody {
    user_id: String,
    drive_id: String,
    /// Default: the drive's root.
    #[serde(default)]
    item_id: Option<String>,
}

impl AccessBody {
    fn item(&self, c: &Control) -> Result<String, ControlError> {
        match &self.item_id {
            Some(i) => Ok(i.clone()),
            None => Ok(c.drive(&self.drive_id)?.root_id),
        }
    }
}

#[derive(Deserialize, Default)]
struct LogQuery {
    #[serde(default)]
    entries: Option<bool>,
}

fn opt_json<T: Default + serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ControlError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        serde_json::from_slice(body).map_err(|e| ControlError(StatusCode::BAD_REQUEST, e.to_string()))
    }
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_emulator/info", get(|State(s): State<Arc<Shared>>| async move { Json(ctl(&s).info()) }))
        .route(
            "/_emulator/users",
            post(|State(s): State<Arc<Shared>>, Json(b): Json<NewUser>| async move { Ok::<_, ControlError>(Json(ctl(&s).create_user(b)?)) }),
        )
        .route(
            "/_emulator/drives",
            post(|State(s): State<Arc<Shared>>, Json(b): Json<NewDrive>| async move { Ok::<_, ControlError>(Json(ctl(&s).create_drive(b)?)) }),
        )
        .route(
            "/_emulator/drives/{d}",
            get(|State(s): State<Arc<Shared>>, Path(d): Path<String>| async move { Ok::<_, ControlError>(Json(ctl(&s).drive(&d)?)) }),
        )
        .route(
            "/_emulator/sites",
            post(|State(s): State<Arc<Shared>>, Json(b): Json<NewSite>| async move { Ok::<_, ControlError>(Json(ctl(&s).create_site(b)?)) }),
        )
        .route(
            "/_emulator/drives/{d}/folders",
            post(|State(s): State<Arc<Shared>>, Path(d): Path<String>, Json(b): Json<PathBody>| async move {
                Ok::<_, ControlError>(Json(ctl(&s).create_folder(&d, &b.path)?))
            }),
        )
        .route("/_emulator/drives/{d}/files", put(put_file))
        .route(
            "/_emulator/drives/{d}/lookup",
            get(|State(s): State<Arc<Shared>>, Path(d): Path<String>, Query(q): Query<LookupQuery>| async move {
                Ok::<_, ControlError>(Json(ctl(&s).item_by_path(&d, &q.path)?))
            }),
        )
        .route(
            "/_emulator/drives/{d}/items/{i}",
            get(|State(s): State<Arc<Shared>>, Path((d, i)): Path<(String, String)>| async move {
                Ok::<_, ControlError>(Json(ctl(&s).item(&d, &i)?))
            })
            .delete(|State(s): State<Arc<Shared>>, Path((d, i)): Path<(String, String)>| async move {
                ctl(&s).delete(&d, &i)?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            }),
        )
        .route(
            "/_emulator/drives/{d}/items/{i}/children",
            get(|State(s): State<Arc<Shared>>, Path((d, i)): Path<(String, String)>| async move {
                Ok::<_, ControlError>(Json(ctl(&s).children(&d, &i)?))
            }),
        )
        .route("/_emulator/drives/{d}/items/{i}/content", put(modify_file))
        .route(
            "/_emulator/drives/{d}/items/{i}/rename",
            post(|State(s): State<Arc<Shared>>, Path((d, i)): Path<(String, String)>, Json(b): Json<NameBody>| async move {
                Ok::<_, ControlError>(Json(ctl(&s).rename(&d, &i, &b.name)?))
            }),
        )
        .route(
            "/_emulator/drives/{d}/items/{i}/move",
            post(|State(s): State<Arc<Shared>>, Path((d, i)): Path<(String, String)>, Json(b): Json<MoveBody>| async move {
                Ok::<_, ControlError>(Json(ctl(&s).move_item(&d, &i, &b.parent_id, b.name.as_deref())?))
            }),
        )
        .route(
            "/_emulator/drives/{d}/items/{i}/permissions",
            put(|State(s): State<Arc<Shared>>, Path((d, i)): Path<(String, String)>, Json(b): Json<Vec<PermissionSpec>>| async move {
                Ok::<_, ControlError>(Json(serde_json::json!({"ids": ctl(&s).set_permissions(&d, &i, b)?})))
            })
            .post(|State(s): State<Arc<Shared>>, Path((d, i)): Path<(String, String)>, Json(b): Json<PermissionSpec>| async move {
                Ok::<_, ControlError>(Json(serde_json::json!({"id": ctl(&s).add_permission(&d, &i, b)?})))
            }),
        )
        .route(
            "/_emulator/drives/{d}/expire-delta-tokens",
            post(|State(s): State<Arc<Shared>>, Path(d): Path<String>, body: Bytes| async move {
                let b: ExpireBody = opt_json(&body)?;
                ctl(&s).expire_delta_tokens(&d, b.code.unwrap_or_default())?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            }),
        )
        .route(
            "/_emulator/access/revoke",
            post(|State(s): State<Arc<Shared>>, Json(b): Json<AccessBody>| async move {
                let c = ctl(&s);
                c.revoke_access(&b.user_id, &b.drive_id, &b.item(&c)?)?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            }),
        )
        .route(
            "/_emulator/access/grant",
            post(|State(s): State<Arc<Shared>>, Json(b): Json<AccessBody>| async move {
                let c = ctl(&s);
                c.grant_access(&b.user_id, &b.drive_id, &b.item(&c)?)?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            }),
        )
        .route(
            "/_emulator/access",
            get(|State(s): State<Arc<Shared>>, Query(b): Query<AccessBody>| async move {
                let c = ctl(&s);
                let readable = c.can_read(&b.user_id, &b.drive_id, &b.item(&c)?)?;
                Ok::<_, ControlError>(Json(serde_json::json!({"readable": readable})))
            }),
        )
        .route(
            "/_emulator/groups",
            post(|State(s): State<Arc<Shared>>, Json(b): Json<NewGroup>| async move { Ok::<_, ControlError>(Json(ctl(&s).create_group(b)?)) }),
        )
        .route(
            "/_emulator/groups/{g}",
            get(|State(s): State<Arc<Shared>>, Path(g): Path<String>| async move { Ok::<_, ControlError>(Json(ctl(&s).group(&g)?)) }),
        )
        .route(
            "/_emulator/groups/{g}/groups/{m}",
            put(|State(s): State<Arc<Shared>>, Path((g, m)): Path<(String, String)>| async move {
                ctl(&s).add_group_member_group(&g, &m)?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            })
            .delete(|State(s): State<Arc<Shared>>, Path((g, m)): Path<(String, String)>| async move {
                if ctl(&s).remove_group_member_group(&g, &m) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
            }),
        )
        .route(
            "/_emulator/groups/{g}/members/{u}",
            put(|State(s): State<Arc<Shared>>, Path((g, u)): Path<(String, String)>| async move {
                ctl(&s).add_group_member(&g, &u)?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            })
            .delete(|State(s): State<Arc<Shared>>, Path((g, u)): Path<(String, String)>| async move {
                if ctl(&s).remove_group_member(&g, &u) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
            }),
        )
        .route(
            "/_emulator/sites/{site}/groups/{g}/members/{u}",
            put(|State(s): State<Arc<Shared>>, Path((site, g, u)): Path<(String, String, String)>| async move {
                ctl(&s).add_site_group_member(&site, &g, &u)?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            })
            .delete(|State(s): State<Arc<Shared>>, Path((site, g, u)): Path<(String, String, String)>| async move {
                if ctl(&s).remove_site_group_member(&site, &g, &u) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
            }),
        )
        .route(
            "/_emulator/sites/{site}/groups/{g}/groups/{group}",
            put(|State(s): State<Arc<Shared>>, Path((site, g, group)): Path<(String, String, String)>| async move {
                ctl(&s).add_site_group_group(&site, &g, &group)?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            }),
        )
        .route(
            "/_emulator/clients/{c}/certificates",
            post(|State(s): State<Arc<Shared>>, Path(c): Path<String>, body: Bytes| async move {
                let thumbprint = ctl(&s).add_client_certificate(&c, &body)?;
                Ok::<_, ControlError>(Json(serde_json::json!({"thumbprint": thumbprint})))
            }),
        )
        .route(
            "/_emulator/clients/{c}/app-roles",
            put(|State(s): State<Arc<Shared>>, Path(c): Path<String>, Json(b): Json<AppRolesBody>| async move {
                let roles: Vec<&str> = b.roles.iter().map(String::as_str).collect();
                ctl(&s).grant_app_roles(&c, &roles)?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            }),
        )
        .route(
            "/_emulator/users/{u}/revoke-refresh-tokens",
            post(|State(s): State<Arc<Shared>>, Path(u): Path<String>| async move {
                Ok::<_, ControlError>(Json(serde_json::json!({"revoked": ctl(&s).revoke_refresh_tokens(&u)?})))
            }),
        )
        .route(
            "/_emulator/users/{u}/expire-refresh-tokens",
            post(|State(s): State<Arc<Shared>>, Path(u): Path<String>| async move {
                Ok::<_, ControlError>(Json(serde_json::json!({"expired": ctl(&s).expire_refresh_tokens(&u)?})))
            }),
        )
        .route(
            "/_emulator/users/{u}/mfa",
            put(|State(s): State<Arc<Shared>>, Path(u): Path<String>, Json(b): Json<MfaBody>| async move {
                ctl(&s).set_mfa_required(&u, b.required)?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            }),
        )
        .route(
            "/_emulator/users/{u}/tokens",
            post(|State(s): State<Arc<Shared>>, Path(u): Path<String>, body: Bytes| async move {
                let b: TokenBody = opt_json(&body)?;
                let scopes: Vec<&str> = if b.scopes.is_empty() { vec!["Files.Read.All", "Sites.Read.All"] } else { b.scopes.iter().map(String::as_str).collect() };
                let t = ctl(&s).mint_access_token_for(&u, &scopes, chrono::Duration::seconds(b.lifetime_secs.unwrap_or(3599)))?;
                Ok::<_, ControlError>(Json(serde_json::json!({"access_token": t, "token_type": "Bearer"})))
            }),
        )
        .route(
            "/_emulator/users/{u}/id-token",
            post(|State(s): State<Arc<Shared>>, Path(u): Path<String>, body: Bytes| async move {
                let b: IdTokenBody = opt_json(&body)?;
                let c = ctl(&s);
                let client = b.client_id.unwrap_or_else(|| c.info().client_ids.first().cloned().unwrap_or_default());
                let scopes: Vec<&str> = if b.scopes.is_empty() { vec!["openid", "profile", "email"] } else { b.scopes.iter().map(String::as_str).collect() };
                let t = c.mint_id_token(&u, &client, &scopes, b.nonce.as_deref())?;
                Ok::<_, ControlError>(Json(serde_json::json!({"id_token": t})))
            }),
        )
        .route(
            "/_emulator/clients/{c}/group-membership-claims",
            put(|State(s): State<Arc<Shared>>, Path(c): Path<String>, Json(b): Json<GroupClaimsBody>| async move {
                ctl(&s).set_group_membership_claims(&c, b.value)?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            }),
        )
        .route("/_emulator/signing-keys", get(|State(s): State<Arc<Shared>>| async move { Json(ctl(&s).signing_keys()) }))
        .route(
            "/_emulator/signing-keys/rotate",
            post(|State(s): State<Arc<Shared>>| async move {
                Ok::<_, ControlError>(Json(serde_json::json!({"kid": ctl(&s).rotate_signing_key()?})))
            }),
        )
        .route(
            "/_emulator/signing-keys/retire-previous",
            post(|State(s): State<Arc<Shared>>| async move {
                Json(serde_json::json!({"retired": ctl(&s).retire_previous_signing_keys()}))
            }),
        )
        .route(
            "/_emulator/signing-keys/{kid}/retire",
            post(|State(s): State<Arc<Shared>>, Path(kid): Path<String>| async move {
                ctl(&s).retire_signing_key(&kid)?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            }),
        )
        .route(
            "/_emulator/next-id-token",
            put(|State(s): State<Arc<Shared>>, Json(b): Json<IdTokenOverrides>| async move {
                ctl(&s).set_next_id_token(b);
                StatusCode::NO_CONTENT
            })
            .delete(|State(s): State<Arc<Shared>>| async move {
                ctl(&s).clear_next_id_token();
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/_emulator/clients",
            post(|State(s): State<Arc<Shared>>, Json(b): Json<ClientRegistration>| async move {
                ctl(&s).register_client(b);
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/_emulator/clients/{c}/expire-secret",
            post(|State(s): State<Arc<Shared>>, Path(c): Path<String>| async move {
                ctl(&s).expire_client_secret(&c)?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            }),
        )
        .route("/_emulator/clock", get(|State(s): State<Arc<Shared>>| async move { Json(serde_json::json!({"now": ctl(&s).now()})) }))
        .route(
            "/_emulator/clock/advance",
            post(|State(s): State<Arc<Shared>>, Json(b): Json<AdvanceBody>| async move {
                let c = ctl(&s);
                c.advance_clock(chrono::Duration::seconds(b.seconds));
                Json(serde_json::json!({"now": c.now()}))
            }),
        )
        .route(
            "/_emulator/delta-behaviour",
            get(|State(s): State<Arc<Shared>>| async move { Json(ctl(&s).delta_behaviour()) }).put(
                |State(s): State<Arc<Shared>>, Json(b): Json<DeltaBehaviour>| async move {
                    ctl(&s).set_delta_behaviour(b);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/_emulator/auto-consent",
            put(|State(s): State<Arc<Shared>>, Json(b): Json<ToggleBody>| async move {
                ctl(&s).set_auto_consent(b.enabled);
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/_emulator/faults",
            get(|State(s): State<Arc<Shared>>| async move { Json(ctl(&s).faults()) })
                .post(|State(s): State<Arc<Shared>>, Json(b): Json<FaultRule>| async move {
                    Json(serde_json::json!({"id": ctl(&s).add_fault(b)}))
                })
                .delete(|State(s): State<Arc<Shared>>| async move {
                    ctl(&s).clear_faults();
                    StatusCode::NO_CONTENT
                }),
        )
        .route(
            "/_emulator/faults/{id}",
            delete(|State(s): State<Arc<Shared>>, Path(id): Path<u64>| async move {
                if ctl(&s).remove_fault(id) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
            }),
        )
        .route(
            "/_emulator/rate-limit",
            put(|State(s): State<Arc<Shared>>, Json(b): Json<RateBody>| async move {
                ctl(&s).set_rate_limit(b.requests_per_second);
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/_emulator/requests",
            get(|State(s): State<Arc<Shared>>, Query(q): Query<LogQuery>| async move {
                let c = ctl(&s);
                Json(if q.entries == Some(false) { c.request_counts() } else { c.request_log() })
            })
            .delete(|State(s): State<Arc<Shared>>| async move {
                ctl(&s).clear_request_log();
                StatusCode::NO_CONTENT
            }),
        )
        .route("/_emulator/subscriptions", get(|State(s): State<Arc<Shared>>| async move { Json(ctl(&s).subscriptions()) }))
        .route(
            "/_emulator/subscriptions/{id}",
            get(|State(s): State<Arc<Shared>>, Path(id): Path<String>| async move {
                Ok::<_, ControlError>(Json(ctl(&s).subscription(&id)?))
            })
            .delete(|State(s): State<Arc<Shared>>, Path(id): Path<String>| async move {
                ctl(&s).remove_subscription(&id)?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            }),
        )
        .route(
            "/_emulator/subscriptions/{id}/expire",
            post(|State(s): State<Arc<Shared>>, Path(id): Path<String>| async move {
                ctl(&s).expire_subscription(&id)?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            }),
        )
        .route(
            "/_emulator/notification-policy",
            get(|State(s): State<Arc<Shared>>| async move { Json(ctl(&s).notification_policy()) }).put(
                |State(s): State<Arc<Shared>>, Json(b): Json<NotificationPolicy>| async move {
                    ctl(&s).set_notification_policy(b);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/_emulator/notifications/in-flight",
            get(|State(s): State<Arc<Shared>>| async move {
                Json(serde_json::json!({"in_flight": ctl(&s).notifications_in_flight()}))
            }),
        )
        .route(
            "/_emulator/subscriptions/{id}/reauthorization-required",
            post(|State(s): State<Arc<Shared>>, Path(id): Path<String>| async move {
                ctl(&s).send_reauthorization_required(&id)?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            }),
        )
        .route("/_emulator/notifications", get(|State(s): State<Arc<Shared>>| async move { Json(ctl(&s).notification_deliveries()) }))
        .route("/_emulator/authorization-leaks", get(|State(s): State<Arc<Shared>>| async move { Json(ctl(&s).authorization_leaks()) }))
        .route(
            "/_emulator/reset",
            post(|State(s): State<Arc<Shared>>| async move {
                ctl(&s).reset();
                StatusCode::NO_CONTENT
            }),
        )
}

async fn put_file(
    State(s): State<Arc<Shared>>,
    Path(d): Path<String>,
    Json(b): Json<FileBody>,
) -> CResult<ItemInfo> {
    let path = b
        .path
        .clone()
        .ok_or_else(|| ControlError(StatusCode::BAD_REQUEST, "path is required".into()))?;
    let bytes = b.bytes()?;
    Ok(Json(ctl(&s).put_file(&d, &path, bytes)?))
}

async fn modify_file(
    State(s): State<Arc<Shared>>,
    Path((d, i)): Path<(String, String)>,
    Json(b): Json<FileBody>,
) -> CResult<ItemInfo> {
    let bytes = b.bytes()?;
    Ok(Json(ctl(&s).modify_file(&d, &i, bytes)?))
}
