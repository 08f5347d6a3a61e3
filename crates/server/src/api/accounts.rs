//! `/api/v1` handlers for API keys (`/me/api-keys`, `/admin/api-keys`), account administration
//! (`/users`) and password changes, with their wire types.

use axum::{Json, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use kbsync_core::{ApiKey, ApiKeyScope, Role, User, UserId, UserKind};
use kbsync_store::{Account, KeyWithOwner};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    extract::{ApiJson, ApiPath, ApiQuery},
    v1::{ListDto, PageParams},
};
use crate::{
    AppState,
    auth::{CurrentUser, SessionUser},
    error::ApiResult,
    service::{self, accounts, api_keys},
};

// --- wire types --------------------------------------------------------------------------------

/// The account a key acts as, in an administrator's list.
#[derive(Serialize)]
pub struct KeyOwnerDto {
    pub id: UserId,
    pub email: String,
    pub display_name: Option<String>,
    pub kind: UserKind,
    pub disabled: bool,
}

impl From<User> for KeyOwnerDto {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            email: u.email,
            display_name: u.display_name,
            kind: u.kind,
            disabled: u.disabled,
        }
    }
}

/// A key as lists show it: never the key itself, only its first characters (`prefix`).
#[derive(Serialize)]
pub struct ApiKeyDto {
    pub id: Uuid,
    pub name: String,
    pub scope: ApiKeyScope,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// The key may name the user a tool server request is for (service keys only).
    pub trusted_user_assertion: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<KeyOwnerDto>,
}

impl From<ApiKey> for ApiKeyDto {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id,
            name: k.name,
            scope: k.scope,
            prefix: k.prefix,
            created_at: k.created_at,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
            trusted_user_assertion: k.trusted_user_assertion,
            owner: None,
        }
    }
}

impl From<KeyWithOwner> for ApiKeyDto {
    fn from(k: KeyWithOwner) -> Self {
        Self {
            owner: Some(k.owner.into()),
            ..k.key.into()
        }
    }
}

/// A key just made: the only answer that carries the key itself.
#[derive(Serialize)]
pub struct CreatedKeyDto {
    #[serde(flatten)]
    pub listed: ApiKeyDto,
    pub key: String,
}

#[derive(Deserialize)]
pub struct CreateKeyRequest {
    pub name: String,
    pub scope: String,
    pub expires_at: Option<DateTime<Utc>>,
}

impl CreateKeyRequest {
    fn as_request(&self) -> api_keys::KeyRequest<'_> {
        api_keys::KeyRequest {
            name: &self.name,
            scope: &self.scope,
            expires_at: self.expires_at,
        }
    }
}

#[derive(Serialize)]
pub struct KeysDto {
    pub items: Vec<ApiKeyDto>,
}

/// An account as administrators see it.
#[derive(Serialize)]
pub struct AccountDto {
    pub id: UserId,
    pub email: String,
    pub display_name: Option<String>,
    pub role: Role,
    pub kind: UserKind,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub has_password: bool,
    /// Whether it signs in through an OpenID provider (an identity is linked).
    pub oidc: bool,
}

impl From<Account> for AccountDto {
    fn from(a: Account) -> Self {
        Self {
            id: a.user.id,
            email: a.user.email,
            display_name: a.user.display_name,
            role: a.user.role,
            kind: a.user.kind,
            disabled: a.user.disabled,
            created_at: a.user.created_at,
            has_password: a.has_password,
            oidc: a.has_provider_identity,
        }
    }
}

#[derive(Deserialize)]
pub struct PatchAccountRequest {
    pub role: Option<String>,
    pub disabled: Option<bool>,
}

#[derive(Deserialize)]
pub struct DeleteAccountParams {
    pub transfer_to: Option<UserId>,
}

#[derive(Deserialize)]
pub struct ResetPasswordRequest {
    pub password: String,
}

#[derive(Deserialize)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

// --- personal keys -----------------------------------------------------------------------------

pub async fn create_own_key(
    State(state): State<AppState>,
    caller: SessionUser,
    ApiJson(req): ApiJson<CreateKeyRequest>,
) -> ApiResult<(StatusCode, Json<CreatedKeyDto>)> {
    let created = api_keys::create_own(&state, &caller.user, req.as_request()).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKeyDto {
            listed: created.key.into(),
            key: created.secret,
        }),
    ))
}

pub async fn list_own_keys(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<KeysDto>> {
    let keys = api_keys::list_own(&state, &user).await?;
    Ok(Json(KeysDto {
        items: keys.into_iter().map(Into::into).collect(),
    }))
}

pub async fn revoke_own_key(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    api_keys::revoke_own(&state, &user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// --- service keys and every key (admins) -------------------------------------------------------

pub async fn create_service_key(
    State(state): State<AppState>,
    caller: SessionUser,
    ApiJson(req): ApiJson<CreateKeyRequest>,
) -> ApiResult<(StatusCode, Json<CreatedKeyDto>)> {
    let created = api_keys::create_service_key(&state, &caller.user, req.as_request()).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKeyDto {
            listed: KeyWithOwner {
                key: created.key,
                owner: created.owner,
            }
            .into(),
            key: created.secret,
        }),
    ))
}

pub async fn list_all_keys(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<KeysDto>> {
    let keys = api_keys::list_all(&state, &user).await?;
    Ok(Json(KeysDto {
        items: keys.into_iter().map(Into::into).collect(),
    }))
}

/// What an admin may change on an existing key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchKeyRequest {
    pub trusted_user_assertion: bool,
}

/// Changing what a key may assert is credential management: it needs a signed-in admin session.
pub async fn patch_any_key(
    State(state): State<AppState>,
    caller: SessionUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<PatchKeyRequest>,
) -> ApiResult<Json<ApiKeyDto>> {
    let key = api_keys::set_user_assertion(&state, &caller.user, id, req.trusted_user_assertion).await?;
    Ok(Json(key.into()))
}

pub async fn revoke_any_key(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    api_keys::revoke_any(&state, &user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// --- accounts (admins) -------------------------------------------------------------------------

pub async fn list_accounts(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<ListDto<AccountDto>>> {
    let page = service::page(p.limit, p.offset)?;
    let found = accounts::list(&state, &user, page).await?;
    Ok(Json(ListDto::of(page, found)))
}

pub async fn get_account(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<UserId>,
) -> ApiResult<Json<AccountDto>> {
    Ok(Json(accounts::get(&state, &user, id).await?.into()))
}

pub async fn patch_account(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<UserId>,
    ApiJson(req): ApiJson<PatchAccountRequest>,
) -> ApiResult<Json<AccountDto>> {
    let account = accounts::change(&state, &user, id, req.role.as_deref(), req.disabled).await?;
    Ok(Json(account.into()))
}

pub async fn delete_account(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<UserId>,
    ApiQuery(p): ApiQuery<DeleteAccountParams>,
) -> ApiResult<StatusCode> {
    accounts::delete(&state, &user, id, p.transfer_to).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn reset_password(
    State(state): State<AppState>,
    caller: SessionUser,
    ApiPath(id): ApiPath<UserId>,
    ApiJson(req): ApiJson<ResetPasswordRequest>,
) -> ApiResult<StatusCode> {
    accounts::reset_password(&state, &caller.user, &caller.session_token, id, &req.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn change_own_password(
    State(state): State<AppState>,
    caller: SessionUser,
    ApiJson(req): ApiJson<ChangePasswordRequest>,
) -> ApiResult<StatusCode> {
    accounts::change_own_password(
        &state,
        &caller.user,
        &caller.session_token,
        &req.current_password,
        &req.new_password,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
