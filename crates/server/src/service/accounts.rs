//! Account administration (admins): the list of accounts, role changes, disabling and re-enabling,
//! password resets and deletion; and a person changing their own password.
//!
//! No change may leave the instance without an enabled admin (409): the store checks that in the
//! same transaction as the change. Disabling ends the account's sessions at once; its API keys stop
//! working while it is disabled and work again when it is re-enabled. A password change ends the
//! account's other sessions (not its API keys: they are revoked on their own).

use kbsync_core::{Role, User, UserId};
use kbsync_store::{Account, AccountChange, Page, PageOf, StoreError};

use crate::{
    AppState,
    auth::{hash_password, password_work, token_hash, verify_password},
    error::ApiError,
    service::users::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS},
};

fn require_admin(user: &User) -> Result<(), ApiError> {
    if user.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden("only admins may administer accounts".into()))
    }
}

/// A store conflict (last admin, knowledge bases still owned) is shown as the store words it.
fn conflict_as_is(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(message) => ApiError::Conflict(message),
        StoreError::NotFound => ApiError::NotFound("user"),
        other => other.into(),
    }
}

pub async fn list(state: &AppState, admin: &User, page: Page) -> Result<PageOf<Account>, ApiError> {
    require_admin(admin)?;
    Ok(state.store.list_accounts(page).await?)
}

pub async fn get(state: &AppState, admin: &User, id: UserId) -> Result<Account, ApiError> {
    require_admin(admin)?;
    state.store.get_account(id).await.map_err(conflict_as_is)
}

/// Changes an account's role and/or disabled flag. A service account cannot become an admin.
pub async fn change(
    state: &AppState,
    admin: &User,
    id: UserId,
    role: Option<&str>,
    disabled: Option<bool>,
) -> Result<Account, ApiError> {
    require_admin(admin)?;
    let role = role
        .map(|r| {
            r.parse::<Role>()
                .map_err(|e| ApiError::invalid("role", e.to_string()))
        })
        .transpose()?;
    if role.is_none() && disabled.is_none() {
        return Err(ApiError::invalid("body", "give role, disabled, or both"));
    }
    let account = state.store.get_account(id).await.map_err(conflict_as_is)?;
    if role == Some(Role::Admin) && account.user.is_service() {
        return Err(ApiError::invalid("role", "a service account cannot be an admin"));
    }
    let now = state.clock.now();
    state
        .store
        .change_account(id, AccountChange { role, disabled }, now)
        .await
        .map_err(conflict_as_is)?;
    tracing::info!(user.id = %id, by = %admin.id, role = ?role, disabled = ?disabled, "account changed");
    state.store.get_account(id).await.map_err(conflict_as_is)
}

/// Deletes an account. With `transfer_to` its knowledge bases go to that person, in one
/// transaction. Without, the account is first disabled (which checks it is not the last enabled
/// admin and stops it from making anything new), then each of its knowledge bases is deleted the
/// way an owner deletes one (documents, blobs, sources and connections go), then the account.
/// Its grants, sessions, keys and provider identities go with it.
pub async fn delete(
    state: &AppState,
    admin: &User,
    id: UserId,
    transfer_to: Option<UserId>,
) -> Result<(), ApiError> {
    require_admin(admin)?;
    match transfer_to {
        Some(to) => {
            if to == id {
                return Err(ApiError::invalid(
                    "transfer_to",
                    "must be another account than the one deleted",
                ));
            }
            match state.store.get_user(to).await {
                Ok(heir) if heir.is_service() => {
                    return Err(ApiError::invalid(
                        "transfer_to",
                        "knowledge bases can be transferred only to a person",
                    ));
                }
                Ok(_) => {}
                Err(StoreError::NotFound) => return Err(ApiError::invalid("transfer_to", "no such user")),
                Err(e) => return Err(e.into()),
            }
            state
                .store
                .delete_account(id, Some(to))
                .await
                .map_err(|e| match e {
                    StoreError::InvalidReference(m) => ApiError::invalid("transfer_to", m),
                    other => conflict_as_is(other),
                })?;
        }
        None => {
            let disable = AccountChange {
                disabled: Some(true),
                ..AccountChange::default()
            };
            state
                .store
                .change_account(id, disable, state.clock.now())
                .await
                .map_err(conflict_as_is)?;
            for kb_id in state.store.owned_kbs(id).await? {
                super::knowledge::delete(state, admin, kb_id).await?;
            }
            state
                .store
                .delete_account(id, None)
                .await
                .map_err(conflict_as_is)?;
        }
    }
    tracing::info!(user.id = %id, by = %admin.id, transfer_to = ?transfer_to, "account deleted");
    Ok(())
}

fn check_new_password(field: &'static str, password: &str) -> Result<(), ApiError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(ApiError::invalid(
            field,
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

/// An admin sets a new password for an account; that account's sessions end (the admin's own
/// current session stays when they reset their own). A service account never signs in, so it gets
/// no password.
pub async fn reset_password(
    state: &AppState,
    admin: &User,
    admin_session: &str,
    id: UserId,
    password: &str,
) -> Result<(), ApiError> {
    require_admin(admin)?;
    check_new_password("password", password)?;
    let target = state.store.get_user(id).await.map_err(conflict_as_is)?;
    if target.is_service() {
        return Err(ApiError::Conflict(
            "a service account never signs in and has no password".into(),
        ));
    }
    let password = password.to_owned();
    let phc = password_work(state, move || hash_password(&password)).await??;
    let keep = (id == admin.id).then(|| token_hash(admin_session));
    state
        .store
        .set_password_hash(id, &phc, keep.as_deref())
        .await
        .map_err(conflict_as_is)?;
    tracing::info!(user.id = %id, by = %admin.id, "password reset by an admin");
    Ok(())
}

/// A person changes their own password: the current one is checked (with the same argon2 work and
/// the same per-account throttle as signing in), then every other session of theirs ends.
///
/// An account without a password (it signs in through the organisation's OpenID provider) cannot
/// set one here: a password would be a second way in that the organisation's provider does not
/// control (it would keep working after the person left). An admin may still set one.
pub async fn change_own_password(
    state: &AppState,
    user: &User,
    session_token: &str,
    current: &str,
    new: &str,
) -> Result<(), ApiError> {
    check_new_password("new_password", new)?;
    if current.chars().count() > MAX_PASSWORD_CHARS {
        return Err(ApiError::invalid("current_password", "is wrong"));
    }
    let credentials = state
        .store
        .get_credentials_by_email(&user.email)
        .await
        .map_err(conflict_as_is)?;
    let Some(phc) = credentials.password_hash else {
        return Err(ApiError::Conflict(
            "this account signs in through its organisation's provider and has no password to change".into(),
        ));
    };
    let now = state.clock.now();
    let backoff = state
        .settings
        .login_throttle
        .backoff(now - state.settings.login_failure_retention);
    if let kbsync_store::LoginAttempt::Throttled { until } = state
        .store
        .begin_login_attempt(&user.email, now, &backoff)
        .await?
    {
        return Err(ApiError::TooManyRequests {
            retry_after_secs: u64::try_from((until - now).num_seconds().max(1)).unwrap_or(1),
        });
    }
    let current = current.to_owned();
    let new = new.to_owned();
    let outcome = password_work(state, move || {
        if verify_password(&current, &phc) {
            hash_password(&new).map(Some)
        } else {
            Ok(None)
        }
    })
    .await??;
    let Some(new_phc) = outcome else {
        return Err(ApiError::invalid("current_password", "is wrong"));
    };
    state.store.clear_login_failures(&user.email).await?;
    state
        .store
        .set_password_hash(user.id, &new_phc, Some(&token_hash(session_token)))
        .await
        .map_err(conflict_as_is)?;
    tracing::info!(user.id = %user.id, "password changed");
    Ok(())
}
