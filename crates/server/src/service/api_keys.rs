//! API keys: personal keys (each person's own) and service keys (an administrator's, each acting as
//! a service account of its own). A key is `kbs_` followed by 64 hex digits (32 random bytes); it is
//! shown once, when it is made, and stored only as its SHA-256 with a short prefix for lists.
//!
//! What a key may do is decided in [`crate::auth`]: a `read` key opens only GET and HEAD; a `write`
//! key whatever its account may do, except creating keys and changing passwords (those need a
//! signed-in session, so that a leaked key cannot make itself permanent or take the account over).
//! Revoking needs no session: it only takes access away.

use chrono::{DateTime, Utc};
use kbsync_core::{ApiKey, ApiKeyScope, User};
use kbsync_store::{KeyWithOwner, NewApiKey, StoreError};
use uuid::Uuid;

use crate::{AppState, auth::token_hash, error::ApiError};

/// Every API key starts with this, so that a bearer token is known to be a key without a lookup
/// (and secret scanners can recognise leaked keys).
pub const KEY_PREFIX: &str = "kbs_";
/// Random bytes in a key.
const KEY_BYTES: usize = 32;
/// Hex digits of the key (after `kbs_`) kept for lists: enough to tell keys apart, far too few to
/// use one.
const SHOWN_HEX_DIGITS: usize = 8;
const MAX_NAME_CHARS: usize = 100;
/// Keys one account may hold at once.
pub const MAX_KEYS_PER_ACCOUNT: usize = 100;
/// A key's last use is written at most this often (requests in a burst write nothing).
pub const LAST_USED_RESOLUTION: chrono::Duration = chrono::Duration::minutes(1);
/// Domain of the synthetic emails of service accounts (`.invalid` is reserved: no mail reaches it
/// and no drive's sharing names it, so a service account gets only the grants an admin gives it).
pub const SERVICE_EMAIL_DOMAIN: &str = "service.kbsync.invalid";

/// What a caller asks for: a name, a scope (`read` or `write`) and an optional expiry.
pub struct KeyRequest<'a> {
    pub name: &'a str,
    pub scope: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key just made: the stored record, the key itself (shown this once), and its account.
pub struct CreatedKey {
    pub key: ApiKey,
    pub secret: String,
    pub owner: User,
}

/// Whether a bearer token is an API key (rather than a session token).
pub fn is_api_key(token: &str) -> bool {
    token.starts_with(KEY_PREFIX)
}

struct Checked {
    name: String,
    scope: ApiKeyScope,
    expires_at: Option<DateTime<Utc>>,
}

fn check(req: &KeyRequest<'_>, now: DateTime<Utc>) -> Result<Checked, ApiError> {
    let name = super::required_text("name", req.name, MAX_NAME_CHARS)?;
    let scope = req
        .scope
        .parse::<ApiKeyScope>()
        .map_err(|e| ApiError::BadRequest {
            message: format!("scope: {e}"),
        })?;
    if let Some(at) = req.expires_at
        && at <= now
    {
        return Err(ApiError::invalid("expires_at", "must be in the future"));
    }
    Ok(Checked {
        name,
        scope,
        expires_at: req.expires_at,
    })
}

async fn store_new_key(state: &AppState, owner: User, checked: Checked) -> Result<CreatedKey, ApiError> {
    let secret = format!("{KEY_PREFIX}{}", state.random.token_hex(KEY_BYTES));
    let prefix: String = secret.chars().take(KEY_PREFIX.len() + SHOWN_HEX_DIGITS).collect();
    let key = state
        .store
        .create_api_key(
            state.random.uuid(),
            NewApiKey {
                user_id: owner.id,
                name: checked.name,
                scope: checked.scope,
                key_hash: token_hash(&secret),
                prefix,
                expires_at: checked.expires_at,
            },
            state.clock.now(),
        )
        .await?;
    tracing::info!(key.id = %key.id, user.id = %owner.id, scope = %key.scope, "API key created");
    Ok(CreatedKey { key, secret, owner })
}

/// Makes a personal key for `user` (the caller; a signed-in session, see [`crate::auth::SessionUser`]).
pub async fn create_own(state: &AppState, user: &User, req: KeyRequest<'_>) -> Result<CreatedKey, ApiError> {
    let checked = check(&req, state.clock.now())?;
    if user.is_service() {
        return Err(ApiError::Forbidden(
            "a service account's keys are made by an admin".into(),
        ));
    }
    if state.store.list_api_keys(user.id).await?.len() >= MAX_KEYS_PER_ACCOUNT {
        return Err(ApiError::Conflict(format!(
            "an account may hold at most {MAX_KEYS_PER_ACCOUNT} API keys; revoke one first"
        )));
    }
    store_new_key(state, user.clone(), checked).await
}

pub async fn list_own(state: &AppState, user: &User) -> Result<Vec<ApiKey>, ApiError> {
    Ok(state.store.list_api_keys(user.id).await?)
}

/// Revokes one of the caller's own keys; someone else's is "not found".
pub async fn revoke_own(state: &AppState, user: &User, id: Uuid) -> Result<(), ApiError> {
    match state.store.delete_api_key(id, Some(user.id)).await {
        Ok(()) => {
            tracing::info!(key.id = %id, user.id = %user.id, "API key revoked");
            Ok(())
        }
        Err(StoreError::NotFound) => Err(ApiError::NotFound("API key")),
        Err(e) => Err(e.into()),
    }
}

fn require_admin(user: &User, what: &str) -> Result<(), ApiError> {
    if user.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!("only admins may {what}")))
    }
}

/// Makes a service key: a new service account named like the key, and its key. The account reads
/// nothing until an admin grants it a knowledge base (`PUT /knowledge/{id}/access` with its id).
pub async fn create_service_key(
    state: &AppState,
    admin: &User,
    req: KeyRequest<'_>,
) -> Result<CreatedKey, ApiError> {
    require_admin(admin, "create service keys")?;
    let now = state.clock.now();
    let checked = check(&req, now)?;
    let id = state.random.uuid();
    let email = format!("{}@{SERVICE_EMAIL_DOMAIN}", id.simple());
    let account = state
        .store
        .create_service_account(id, &email, &checked.name, now)
        .await?;
    tracing::info!(user.id = %account.id, by = %admin.id, "service account created");
    store_new_key(state, account, checked).await
}

/// Every key with its account (admins only).
pub async fn list_all(state: &AppState, admin: &User) -> Result<Vec<KeyWithOwner>, ApiError> {
    require_admin(admin, "list every API key")?;
    Ok(state.store.list_all_api_keys().await?)
}

/// Revokes any key (admins only). The service account of a service key stays, with its grants.
pub async fn revoke_any(state: &AppState, admin: &User, id: Uuid) -> Result<(), ApiError> {
    require_admin(admin, "revoke other people's API keys")?;
    match state.store.delete_api_key(id, None).await {
        Ok(()) => {
            tracing::info!(key.id = %id, by = %admin.id, "API key revoked");
            Ok(())
        }
        Err(StoreError::NotFound) => Err(ApiError::NotFound("API key")),
        Err(e) => Err(e.into()),
    }
}

/// Lets a service account's key assert the user a tool server request is for (or stops it).
/// Admins only; a person's key is refused: a person's key acting as other people would let
/// whoever holds it read what they may read.
pub async fn set_user_assertion(
    state: &AppState,
    admin: &User,
    id: Uuid,
    trusted: bool,
) -> Result<KeyWithOwner, ApiError> {
    require_admin(admin, "change what API keys may assert")?;
    let found = match state.store.get_api_key(id).await {
        Ok(found) => found,
        Err(StoreError::NotFound) => return Err(ApiError::NotFound("API key")),
        Err(e) => return Err(e.into()),
    };
    if trusted && !found.owner.is_service() {
        return Err(ApiError::invalid(
            "trusted_user_assertion",
            "only a service account's key may assert users; make a service key for the tool server",
        ));
    }
    let key = match state.store.set_api_key_user_assertion(id, trusted).await {
        Ok(key) => key,
        Err(StoreError::NotFound) => return Err(ApiError::NotFound("API key")),
        Err(e) => return Err(e.into()),
    };
    tracing::info!(key.id = %id, by = %admin.id, trusted, "API key user assertion changed");
    Ok(key)
}

/// The user a trusted key's request names by email (see [`crate::auth::ToolCaller`]): a person
/// with that email whose account is enabled. Anything else is 403, never the key's own account.
pub async fn asserted_user(state: &AppState, email: &str) -> Result<User, ApiError> {
    let email = email.trim();
    if email.is_empty() {
        return Err(ApiError::Forbidden("the asserted user email is empty".into()));
    }
    let user = state
        .store
        .users_by_emails(&[email.to_owned()])
        .await?
        .into_iter()
        .next();
    match user {
        Some(user) if !user.disabled && !user.is_service() => Ok(user),
        Some(user) if user.disabled => Err(ApiError::Forbidden(
            "the asserted user's kbsync account is disabled".into(),
        )),
        _ => Err(ApiError::Forbidden(
            "the asserted user has no kbsync account; they must sign in to kbsync once (or an admin \
             must create their account) before the tool can search for them"
                .into(),
        )),
    }
}

/// The account a key opens at `now`, with the key; records the use at most once per
/// [`LAST_USED_RESOLUTION`]. `Unauthenticated` when the key is unknown, revoked, expired, or its
/// account is disabled.
pub async fn authenticate(state: &AppState, secret: &str) -> Result<KeyWithOwner, ApiError> {
    let now = state.clock.now();
    let found = match state.store.api_key_user(&token_hash(secret), now).await {
        Ok(found) => found,
        Err(StoreError::NotFound) => return Err(ApiError::Unauthenticated),
        Err(e) => return Err(e.into()),
    };
    let since = now - LAST_USED_RESOLUTION;
    if found.key.last_used_at.is_none_or(|at| at < since) {
        // Bookkeeping only: a failure to write it must not refuse the request.
        if let Err(e) = state.store.record_api_key_use(found.key.id, now, since).await {
            tracing::warn!(key.id = %found.key.id, error = %e, "could not record an API key's use");
        }
    }
    Ok(found)
}
