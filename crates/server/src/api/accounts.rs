//! `/api/v1` handlers for API keys (`/me/api-keys`, `/admin/api-keys`), account administration
//! (`/users`) and password changes, with their wire types.

use axum::{Json, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use kbsync_core::{ApiKey, ApiKeyScope, Role, User, UserId, UserKind};
use kbsync_store::{Account, KeyWithOwner};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    extract::{ApiJson, ApiPath, ApiQuery},
    v1::{ListDto, PageParams},
};
use crate::{
    AppState,
    auth::{CurrentUser, SessionUser},
    error::{ApiResult, ErrorBody},
    service::{self, accounts, api_keys},
};

// --- wire types --------------------------------------------------------------------------------

/// The account a key acts as, in an administrator's list.
#[derive(Serialize, ToSchema)]
pub struct KeyOwnerDto {
    #[schema(value_type = uuid::Uuid)]
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
#[derive(Serialize, ToSchema)]
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
#[derive(Serialize, ToSchema)]
pub struct CreatedKeyDto {
    #[serde(flatten)]
    pub listed: ApiKeyDto,
    pub key: String,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateKeyRequest {
    pub name: String,
    /// `read` (GET and HEAD only) or `write`.
    pub scope: String,
    /// Absent: the key never expires.
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

#[derive(Serialize, ToSchema)]
pub struct KeysDto {
    pub items: Vec<ApiKeyDto>,
}

/// An account as administrators see it.
#[derive(Serialize, ToSchema)]
pub struct AccountDto {
    #[schema(value_type = uuid::Uuid)]
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

#[derive(Deserialize, ToSchema)]
pub struct PatchAccountRequest {
    /// `admin` or `user`.
    pub role: Option<String>,
    pub disabled: Option<bool>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteAccountParams {
    /// The account that takes over the deleted one's knowledge bases (needed when it owns any).
    #[param(value_type = Option<uuid::Uuid>)]
    pub transfer_to: Option<UserId>,
}

#[derive(Deserialize, ToSchema)]
pub struct ResetPasswordRequest {
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

// --- personal keys -----------------------------------------------------------------------------

/// Create an API key for the caller's own account
///
/// The answer is the only one that carries the key itself.
#[utoipa::path(post, path = "/me/api-keys", tag = "api keys",
    security(("session_token" = [])),
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "Created", body = CreatedKeyDto),
        (status = 400, description = "The body is not JSON, or an unknown scope", body = ErrorBody),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "An API key: managing credentials needs a signed-in session", body = ErrorBody),
        (status = 422, description = "A field has a value the service cannot accept; the message names it", body = ErrorBody),
    ))]
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

/// The caller's API keys (never the keys themselves)
#[utoipa::path(get, path = "/me/api-keys", tag = "api keys",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    responses(
        (status = 200, description = "The keys", body = KeysDto),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
    ))]
pub async fn list_own_keys(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<KeysDto>> {
    let keys = api_keys::list_own(&state, &user).await?;
    Ok(Json(KeysDto {
        items: keys.into_iter().map(Into::into).collect(),
    }))
}

/// Revoke one of the caller's API keys
#[utoipa::path(delete, path = "/me/api-keys/{id}", tag = "api keys",
    security(("session_token" = []), ("api_key" = ["write"])),
    params(("id" = Uuid, Path, description = "The key")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "A read-only API key", body = ErrorBody),
        (status = 404, description = "No such key of the caller's", body = ErrorBody),
    ))]
pub async fn revoke_own_key(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    api_keys::revoke_own(&state, &user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// --- service keys and every key (admins) -------------------------------------------------------

/// Create a service account with an API key (admins)
#[utoipa::path(post, path = "/admin/api-keys", tag = "api keys",
    security(("session_token" = [])),
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "Created, with its service account as `owner`", body = CreatedKeyDto),
        (status = 400, description = "The body is not JSON, or an unknown scope", body = ErrorBody),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "An API key, or the caller is not an admin", body = ErrorBody),
        (status = 409, description = "A service account of this name exists", body = ErrorBody),
        (status = 422, description = "A field has a value the service cannot accept; the message names it", body = ErrorBody),
    ))]
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

/// Every API key, with the account it acts as (admins)
#[utoipa::path(get, path = "/admin/api-keys", tag = "api keys",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    responses(
        (status = 200, description = "The keys", body = KeysDto),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "The caller is not an admin", body = ErrorBody),
    ))]
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
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchKeyRequest {
    pub trusted_user_assertion: bool,
}

/// Let a service key name the user a tool request is for, or stop it (admins)
///
/// Changing what a key may assert is credential management: it needs a signed-in admin session.
#[utoipa::path(patch, path = "/admin/api-keys/{id}", tag = "api keys",
    security(("session_token" = [])),
    params(("id" = Uuid, Path, description = "The key")),
    request_body = PatchKeyRequest,
    responses(
        (status = 200, description = "The key", body = ApiKeyDto),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "An API key, or the caller is not an admin", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
        (status = 422, description = "A field has a value the service cannot accept; the message names it", body = ErrorBody),
    ))]
pub async fn patch_any_key(
    State(state): State<AppState>,
    caller: SessionUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<PatchKeyRequest>,
) -> ApiResult<Json<ApiKeyDto>> {
    let key = api_keys::set_user_assertion(&state, &caller.user, id, req.trusted_user_assertion).await?;
    Ok(Json(key.into()))
}

/// Revoke any API key (admins)
#[utoipa::path(delete, path = "/admin/api-keys/{id}", tag = "api keys",
    security(("session_token" = []), ("api_key" = ["write"])),
    params(("id" = Uuid, Path, description = "The key")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "The caller is not an admin, or uses a read-only key", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
    ))]
pub async fn revoke_any_key(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    api_keys::revoke_any(&state, &user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// --- accounts (admins) -------------------------------------------------------------------------

/// Every account (admins)
#[utoipa::path(get, path = "/users", tag = "users",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "One page of accounts", body = ListDto<AccountDto>),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "The caller is not an admin", body = ErrorBody),
        (status = 422, description = "A field has a value the service cannot accept; the message names it", body = ErrorBody),
    ))]
pub async fn list_accounts(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<ListDto<AccountDto>>> {
    let page = service::page(p.limit, p.offset)?;
    let found = accounts::list(&state, &user, page).await?;
    Ok(Json(ListDto::of(page, found)))
}

/// One account (admins)
#[utoipa::path(get, path = "/users/{id}", tag = "users",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    params(("id" = Uuid, Path, description = "The account")),
    responses(
        (status = 200, description = "The account", body = AccountDto),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "The caller is not an admin", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
    ))]
pub async fn get_account(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<UserId>,
) -> ApiResult<Json<AccountDto>> {
    Ok(Json(accounts::get(&state, &user, id).await?.into()))
}

/// Change an account's role or disable it (admins, signed in: an API key cannot promote or
/// re-enable accounts)
#[utoipa::path(patch, path = "/users/{id}", tag = "users",
    security(("session_token" = [])),
    params(("id" = Uuid, Path, description = "The account")),
    request_body = PatchAccountRequest,
    responses(
        (status = 200, description = "The account", body = AccountDto),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "An API key, or the caller is not an admin", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 409, description = "It would leave no enabled admin", body = ErrorBody),
        (status = 422, description = "A field has a value the service cannot accept; the message names it", body = ErrorBody),
    ))]
pub async fn patch_account(
    State(state): State<AppState>,
    SessionUser { user, .. }: SessionUser,
    ApiPath(id): ApiPath<UserId>,
    ApiJson(req): ApiJson<PatchAccountRequest>,
) -> ApiResult<Json<AccountDto>> {
    let account = accounts::change(&state, &user, id, req.role.as_deref(), req.disabled).await?;
    Ok(Json(account.into()))
}

/// Delete an account (admins)
#[utoipa::path(delete, path = "/users/{id}", tag = "users",
    security(("session_token" = []), ("api_key" = ["write"])),
    params(("id" = Uuid, Path, description = "The account"), DeleteAccountParams),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "The caller is not an admin, or uses a read-only key", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 409, description = "It would leave no enabled admin", body = ErrorBody),
        (status = 422, description = "It owns knowledge bases and `transfer_to` is missing or unusable", body = ErrorBody),
    ))]
pub async fn delete_account(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<UserId>,
    ApiQuery(p): ApiQuery<DeleteAccountParams>,
) -> ApiResult<StatusCode> {
    accounts::delete(&state, &user, id, p.transfer_to).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set another account's password and end its sessions (admins)
#[utoipa::path(post, path = "/users/{id}/password", tag = "users",
    security(("session_token" = [])),
    params(("id" = Uuid, Path, description = "The account")),
    request_body = ResetPasswordRequest,
    responses(
        (status = 204, description = "Set"),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "An API key, or the caller is not an admin", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 409, description = "A service account (it has no password)", body = ErrorBody),
        (status = 422, description = "A field has a value the service cannot accept; the message names it", body = ErrorBody),
    ))]
pub async fn reset_password(
    State(state): State<AppState>,
    caller: SessionUser,
    ApiPath(id): ApiPath<UserId>,
    ApiJson(req): ApiJson<ResetPasswordRequest>,
) -> ApiResult<StatusCode> {
    accounts::reset_password(&state, &caller.user, &caller.session_token, id, &req.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change the caller's own password; the caller's other sessions end
#[utoipa::path(post, path = "/me/password", tag = "auth",
    security(("session_token" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "An API key: managing credentials needs a signed-in session", body = ErrorBody),
        (status = 409, description = "The account has no password (it signs in through the organisation's provider)", body = ErrorBody),
        (status = 422, description = "The current password is wrong, or the new one is too short", body = ErrorBody),
        (status = 429, description = "Too many wrong current passwords; see `Retry-After`", body = ErrorBody),
    ))]
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
