//! The signed-in person's account page (password change) and API keys page, and the
//! administrator's users and keys pages.

use kbsync_core::{ApiKey, UserId};
use kbsync_store::KeyWithOwner;

use super::*;
use crate::service::{accounts, api_keys};

/// Users per page of the admin's list.
const USERS_PER_PAGE: u32 = 50;

fn never_or(t: Option<DateTime<Utc>>, none: &str) -> String {
    t.map(when).unwrap_or_else(|| none.to_owned())
}

fn key_row(key: ApiKey, owner: Option<&kbsync_core::User>) -> views::KeyRow {
    views::KeyRow {
        id: key.id.to_string(),
        name: key.name,
        prefix: key.prefix,
        scope: key.scope.as_str(),
        created: when(key.created_at),
        expires: never_or(key.expires_at, "never"),
        last_used: never_or(key.last_used_at, "never"),
        owner: owner.map(|o| o.email.clone()).unwrap_or_default(),
        service: owner.is_some_and(|o| o.is_service()),
        asserts_users: key.trusted_user_assertion,
    }
}

/// The key form's fields.
#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    scope: String,
    /// A date (`YYYY-MM-DD`): the key expires at 00:00 UTC that day.
    #[serde(default)]
    expires_on: String,
}

impl KeyForm {
    fn expires_at(&self) -> Result<Option<DateTime<Utc>>, ApiError> {
        let text = self.expires_on.trim();
        if text.is_empty() {
            return Ok(None);
        }
        chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| Some(t.and_utc()))
            .ok_or_else(|| ApiError::invalid("expires_on", "must be a date (YYYY-MM-DD)"))
    }

    fn make<'a>(&'a self, expires_at: Option<DateTime<Utc>>) -> api_keys::KeyRequest<'a> {
        api_keys::KeyRequest {
            name: &self.name,
            scope: &self.scope,
            expires_at,
        }
    }
}

/// Service errors a key form shows beside the form (anything else is an error page).
fn form_error(e: ApiError) -> Result<String, UiError> {
    match e {
        e @ (ApiError::Invalid { .. } | ApiError::BadRequest { .. } | ApiError::Conflict(_)) => {
            Ok(e.to_string())
        }
        other => Err(other.into()),
    }
}

#[derive(Deserialize)]
pub struct RevokedParam {
    #[serde(default)]
    revoked: Option<String>,
}

async fn keys_page(
    state: &AppState,
    session: &Session,
    created: Option<views::NewKeyView>,
    revoked: bool,
    form: Option<(&KeyForm, String)>,
) -> UiResult {
    let keys = api_keys::list_own(state, &session.user)
        .await?
        .into_iter()
        .map(|k| key_row(k, None))
        .collect();
    let (error, name, scope, expires_on) = match form {
        Some((f, error)) => (Some(error), f.name.clone(), f.scope.clone(), f.expires_on.clone()),
        None => (None, String::new(), "read".to_owned(), String::new()),
    };
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page = views::KeysPage {
        chrome: Chrome::of(session, "keys"),
        keys,
        created,
        revoked,
        error,
        name,
        scope,
        expires_on,
    };
    Ok((status, render(&page)).into_response())
}

pub async fn keys(
    State(state): State<AppState>,
    session: Session,
    Query(p): Query<RevokedParam>,
) -> UiResult {
    keys_page(&state, &session, None, p.revoked.is_some(), None).await
}

/// Creates a personal key and shows it once, in the answer to the form itself (it is never stored,
/// so there is nothing to redirect to).
pub async fn key_create(State(state): State<AppState>, session: Session, Form(f): Form<KeyForm>) -> UiResult {
    session.check_csrf(&f.csrf)?;
    let made = match f.expires_at() {
        Ok(expires_at) => api_keys::create_own(&state, &session.user, f.make(expires_at)).await,
        Err(e) => Err(e),
    };
    match made {
        Ok(created) => {
            let view = views::NewKeyView {
                name: created.key.name.clone(),
                secret: created.secret,
                account_email: created.owner.email,
            };
            keys_page(&state, &session, Some(view), false, None).await
        }
        Err(e) => {
            let message = form_error(e)?;
            keys_page(&state, &session, None, false, Some((&f, message))).await
        }
    }
}

pub async fn key_revoke(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("API key"))?;
    api_keys::revoke_own(&state, &session.user, id).await?;
    Ok(Redirect::to("/keys?revoked=1").into_response())
}

// --- the account page --------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct ChangedParam {
    #[serde(default)]
    changed: Option<String>,
}

async fn account_page(state: &AppState, session: &Session, changed: bool, error: Option<String>) -> UiResult {
    let has_password = state
        .store
        .get_credentials_by_email(&session.user.email)
        .await
        .map_err(ApiError::from)?
        .password_hash
        .is_some();
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page = views::AccountPage {
        chrome: Chrome::of(session, "account"),
        email: session.user.email.clone(),
        display_name: session.user.display_name.clone(),
        role: session.user.role.as_str(),
        has_password,
        min_chars: users::MIN_PASSWORD_CHARS,
        changed,
        error,
    };
    Ok((status, render(&page)).into_response())
}

pub async fn account(
    State(state): State<AppState>,
    session: Session,
    Query(p): Query<ChangedParam>,
) -> UiResult {
    account_page(&state, &session, p.changed.is_some(), None).await
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

pub async fn account_password(
    State(state): State<AppState>,
    session: Session,
    Form(f): Form<PasswordForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    match accounts::change_own_password(
        &state,
        &session.user,
        &session.token,
        &f.current_password,
        &f.new_password,
    )
    .await
    {
        Ok(()) => Ok(Redirect::to("/account?changed=1").into_response()),
        Err(
            e @ (ApiError::Invalid { .. }
            | ApiError::Conflict(_)
            | ApiError::TooManyRequests { .. }
            | ApiError::Busy { .. }),
        ) => account_page(&state, &session, false, Some(e.to_string())).await,
        Err(e) => Err(e.into()),
    }
}

// --- the admin's users page --------------------------------------------------------------------

#[derive(Deserialize)]
pub struct UsersParams {
    offset: Option<u64>,
    done: Option<String>,
}

/// What a finished admin action says (a fixed text per action, so nothing from the URL is shown).
fn done_message(code: &str) -> Option<&'static str> {
    Some(match code {
        "role" => "Role changed.",
        "disabled" => "Account disabled: its sessions have ended and its keys stop working.",
        "enabled" => "Account enabled.",
        "password" => "Password set; that account's sessions have ended.",
        "deleted" => "Account deleted.",
        _ => return None,
    })
}

pub async fn admin_users(
    State(state): State<AppState>,
    session: Session,
    Query(p): Query<UsersParams>,
) -> UiResult {
    let page = Page {
        limit: USERS_PER_PAGE,
        offset: p.offset.unwrap_or(0),
    };
    let found = accounts::list(&state, &session.user, page).await?;
    let (prev_offset, next_offset) = pager(page, found.total);
    let heirs = found
        .items
        .iter()
        .filter(|a| !a.user.is_service())
        .map(|a| views::HeirChoice {
            id: a.user.id.to_string(),
            email: a.user.email.clone(),
        })
        .collect();
    let users = found
        .items
        .into_iter()
        .map(|a| views::UserRow {
            id: a.user.id.to_string(),
            signs_in_with: match (a.user.is_service(), a.has_password, a.has_provider_identity) {
                (true, _, _) => "API keys only (service account)",
                (false, true, true) => "password or organisation account",
                (false, false, true) => "organisation account",
                (false, true, false) => "password",
                (false, false, false) => "nothing yet",
            },
            created: when(a.user.created_at),
            is_admin: a.user.is_admin(),
            is_service: a.user.is_service(),
            is_self: a.user.id == session.user.id,
            disabled: a.user.disabled,
            email: a.user.email,
            display_name: a.user.display_name,
        })
        .collect();
    Ok(render(&views::AdminUsersPage {
        chrome: Chrome::of(&session, "admin"),
        users,
        heirs,
        done: p.done.as_deref().and_then(done_message),
        min_chars: users::MIN_PASSWORD_CHARS,
        total: found.total,
        prev_offset,
        next_offset,
    }))
}

fn parse_user(id: &str) -> Result<UserId, UiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound("user").into())
}

fn to_users(done: &str) -> Response {
    Redirect::to(&format!("/admin/users?done={done}")).into_response()
}

#[derive(Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    role: String,
}

pub async fn admin_user_role(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<RoleForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    let id = parse_user(&id)?;
    accounts::change(&state, &session.user, id, Some(&f.role), None).await?;
    Ok(to_users("role"))
}

#[derive(Deserialize)]
pub struct DisabledForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    disabled: String,
}

pub async fn admin_user_disabled(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<DisabledForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    let id = parse_user(&id)?;
    let disabled = match f.disabled.as_str() {
        "true" => true,
        "false" => false,
        _ => return Err(ApiError::invalid("disabled", "must be true or false").into()),
    };
    accounts::change(&state, &session.user, id, None, Some(disabled)).await?;
    if disabled && id == session.user.id {
        // Their own session ended with the account.
        return Ok(Redirect::to("/login").into_response());
    }
    Ok(to_users(if disabled { "disabled" } else { "enabled" }))
}

#[derive(Deserialize)]
pub struct AdminPasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
}

pub async fn admin_user_password(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<AdminPasswordForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    let id = parse_user(&id)?;
    accounts::reset_password(&state, &session.user, &session.token, id, &f.password).await?;
    Ok(to_users("password"))
}

#[derive(Deserialize)]
pub struct DeleteUserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    transfer_to: String,
}

pub async fn admin_user_delete(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<DeleteUserForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    let id = parse_user(&id)?;
    let transfer_to = match f.transfer_to.trim() {
        "" => None,
        heir => Some(Uuid::parse_str(heir).map_err(|_| ApiError::invalid("transfer_to", "no such user"))?),
    };
    accounts::delete(&state, &session.user, id, transfer_to).await?;
    if id == session.user.id {
        return Ok(Redirect::to("/login").into_response());
    }
    Ok(to_users("deleted"))
}

// --- the admin's keys page ---------------------------------------------------------------------

async fn admin_keys_page(
    state: &AppState,
    session: &Session,
    created: Option<views::NewKeyView>,
    revoked: bool,
    form: Option<(&KeyForm, String)>,
) -> UiResult {
    let keys = api_keys::list_all(state, &session.user)
        .await?
        .into_iter()
        .map(|KeyWithOwner { key, owner }| key_row(key, Some(&owner)))
        .collect();
    let (error, name, scope, expires_on) = match form {
        Some((f, error)) => (Some(error), f.name.clone(), f.scope.clone(), f.expires_on.clone()),
        None => (None, String::new(), "read".to_owned(), String::new()),
    };
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page = views::AdminKeysPage {
        chrome: Chrome::of(session, "admin"),
        keys,
        created,
        revoked,
        error,
        name,
        scope,
        expires_on,
    };
    Ok((status, render(&page)).into_response())
}

pub async fn admin_keys(
    State(state): State<AppState>,
    session: Session,
    Query(p): Query<RevokedParam>,
) -> UiResult {
    admin_keys_page(&state, &session, None, p.revoked.is_some(), None).await
}

pub async fn admin_key_create(
    State(state): State<AppState>,
    session: Session,
    Form(f): Form<KeyForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    let made = match f.expires_at() {
        Ok(expires_at) => api_keys::create_service_key(&state, &session.user, f.make(expires_at)).await,
        Err(e) => Err(e),
    };
    match made {
        Ok(created) => {
            let view = views::NewKeyView {
                name: created.key.name.clone(),
                secret: created.secret,
                account_email: created.owner.email,
            };
            admin_keys_page(&state, &session, Some(view), false, None).await
        }
        Err(e) => {
            let message = form_error(e)?;
            admin_keys_page(&state, &session, None, false, Some((&f, message))).await
        }
    }
}

/// The form that turns a service key's user assertion on or off.
#[derive(Deserialize)]
pub struct AssertionForm {
    #[serde(default)]
    csrf: String,
    /// `on` or `off`.
    #[serde(default)]
    trusted: String,
}

pub async fn admin_key_assertion(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<AssertionForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("API key"))?;
    let trusted = match f.trusted.as_str() {
        "on" => true,
        "off" => false,
        _ => return Err(ApiError::invalid("trusted", "must be on or off").into()),
    };
    api_keys::set_user_assertion(&state, &session.user, id, trusted).await?;
    Ok(Redirect::to("/admin/keys").into_response())
}

pub async fn admin_key_revoke(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("API key"))?;
    api_keys::revoke_any(&state, &session.user, id).await?;
    Ok(Redirect::to("/admin/keys?revoked=1").into_response())
}
