//! Connecting a knowledge base to a datasource, and using that connection to browse.

use kbsync_core::{
    KbId, KbType, SyncStatus, User,
    datasource::{BrowseEntry, BrowseLocation, DatasourceError, DatasourceKind},
};
use kbsync_oauth::{
    CallbackError, CallbackErrorKind, ConnectionStatus, Initiated, OAuthError, PendingAuthorization,
};
use kbsync_store::StoreError;

use super::knowledge;
use crate::{AppState, error::ApiError};

/// A registered datasource and whether this server has credentials for it.
pub struct DatasourceStatus {
    pub kind: DatasourceKind,
    pub configured: bool,
}

pub fn datasources(state: &AppState) -> Vec<DatasourceStatus> {
    DatasourceKind::ALL
        .iter()
        .map(|&kind| DatasourceStatus {
            kind,
            configured: state.datasources.manager.oauth_client(kind).is_some()
                && state.datasources.datasource(kind).is_some(),
        })
        .collect()
}

/// Parses a datasource path segment into a configured datasource.
pub fn datasource(name: &str) -> Result<DatasourceKind, ApiError> {
    DatasourceKind::from_name(name).ok_or(ApiError::NotFound("datasource"))
}

/// The callback URL registered for a datasource's OAuth client, when it is configured.
pub fn redirect_uri(state: &AppState, kind: DatasourceKind) -> Option<&str> {
    state
        .datasources
        .manager
        .oauth_client(kind)
        .map(|c| c.redirect_uri.as_str())
}

/// Starts the authorization-code flow for a knowledge base the caller may change. The answer's
/// binding must reach the caller's browser only (as a cookie): the callback needs it back.
/// `kind: None` connects the knowledge base to its own datasource; the answer names the
/// datasource connected.
pub async fn initiate(
    state: &AppState,
    user: &User,
    kind: Option<DatasourceKind>,
    kb_id: KbId,
) -> Result<(DatasourceKind, Initiated), ApiError> {
    let view = knowledge::manageable(state, user, kb_id).await?;
    let kind = match kind {
        Some(kind) => kind,
        None => own_datasource(view.kb.kb_type)?,
    };
    if view.kb.kb_type != kind.kb_type() {
        return Err(ApiError::Conflict(format!(
            "this is a {} knowledge base; only {} knowledge bases connect to {}",
            view.kb.kb_type,
            kind.kb_type(),
            kind.display_name()
        )));
    }
    let started = state
        .datasources
        .manager
        .initiate(kind, kb_id, user.id)
        .await
        .map_err(oauth_error)?;
    Ok((kind, started))
}

/// Connects a knowledge base as the organisation's application (app-only access, configured by the
/// operator): no sign-in, no redirect. Administrators only, since it syncs with the application's tenant-wide
/// read access rather than with what one person may see. `kind: None` is the knowledge base's own datasource.
/// 409 when app-only access is not configured for the datasource.
pub async fn connect_app_only(
    state: &AppState,
    user: &User,
    kind: Option<DatasourceKind>,
    kb_id: KbId,
) -> Result<(), ApiError> {
    if !user.is_admin() {
        return Err(ApiError::Forbidden(
            "only an administrator may connect a knowledge base as the organisation's application".into(),
        ));
    }
    let view = knowledge::manageable(state, user, kb_id).await?;
    let kind = match kind {
        Some(kind) => kind,
        None => own_datasource(view.kb.kb_type)?,
    };
    if view.kb.kb_type != kind.kb_type() {
        return Err(ApiError::Conflict(format!(
            "this is a {} knowledge base; only {} knowledge bases connect to {}",
            view.kb.kb_type,
            kind.kb_type(),
            kind.display_name()
        )));
    }
    if state.datasources.datasource(kind).is_none() {
        return Err(ApiError::NotImplemented(format!(
            "{} is not configured on this server",
            kind.display_name()
        )));
    }
    state
        .datasources
        .manager
        .connect_app_only(kind, kb_id)
        .await
        .map_err(app_only_error)?;
    tracing::info!(kb.id = %kb_id, user.id = %user.id, datasource = %kind, "knowledge base connected app-only");
    connected(state, kb_id).await;
    Ok(())
}

/// Whether app-only access is configured for a datasource.
pub fn app_only_configured(state: &AppState, kind: DatasourceKind) -> bool {
    state.datasources.manager.app_only(kind).is_some()
}

/// App-only access that is not configured is a conflict with the server's configuration (409), not a
/// missing feature.
fn app_only_error(e: OAuthError) -> ApiError {
    match e {
        OAuthError::NotConfigured(kind) => ApiError::Conflict(format!(
            "app-only access to {} is not configured on this server",
            kind.display_name()
        )),
        other => oauth_error(other),
    }
}

/// The datasource of a knowledge base of this type; a local one has none (409).
pub fn own_datasource(kb_type: KbType) -> Result<DatasourceKind, ApiError> {
    DatasourceKind::of(kb_type)
        .ok_or_else(|| ApiError::Conflict("a knowledge base of local files connects to no datasource".into()))
}

/// The callback of an authorization that came back with a code. It completes only in the browser
/// that started it (`binding`, from that browser's cookie) and only while the user who started it
/// still manages the knowledge base; otherwise nothing is redeemed or stored. The state is
/// consumed in every case.
pub async fn complete(
    state: &AppState,
    oauth_state: &str,
    code: &str,
    binding: Option<&str>,
) -> Result<KbId, CallbackError> {
    let manager = &state.datasources.manager;
    let pending = manager.claim(oauth_state, binding).await?;
    initiator_still_manages(state, &pending).await?;
    let kb_id = manager.complete(pending, code).await?;
    connected(state, kb_id).await;
    Ok(kb_id)
}

/// The callback of an authorization that came back with an error: consumes the state and says
/// which knowledge base it was for, to the browser that started it only.
pub async fn abandon(state: &AppState, oauth_state: &str, binding: Option<&str>) -> Option<KbId> {
    state.datasources.manager.abandon(oauth_state, binding).await
}

/// Whether the user who started connecting may still change the knowledge base: a grant removed
/// or a role lowered in the ten minutes of the flow stops it.
async fn initiator_still_manages(
    state: &AppState,
    pending: &PendingAuthorization,
) -> Result<(), CallbackError> {
    let kb_id = pending.kb_id();
    let refused = || {
        tracing::warn!(kb.id = %kb_id, user.id = %pending.user_id(), "the user who started connecting no longer manages the knowledge base");
        CallbackError::new(
            CallbackErrorKind::NotPermitted,
            Some(kb_id),
            "The account that started connecting may no longer change this knowledge base \
             (only its owner or an admin may). Nothing was stored.",
        )
    };
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::warn!(kb.id = %kb_id, error = %e, "cannot check who may connect the knowledge base");
        CallbackError::new(
            CallbackErrorKind::Transient,
            Some(kb_id),
            "kbsync could not check your access right now. Start connecting again in a moment.",
        )
    };
    let user = match state.store.get_user(pending.user_id()).await {
        Ok(user) => user,
        Err(StoreError::NotFound) => return Err(refused()),
        Err(e) => return Err(unavailable(&e)),
    };
    match knowledge::manageable(state, &user, kb_id).await {
        Ok(_) => Ok(()),
        Err(ApiError::NotFound(_) | ApiError::Forbidden(_)) => Err(refused()),
        Err(e) => Err(unavailable(&e)),
    }
}

/// A knowledge base was (re)connected: it is due for a sync at once, and a `needs_reauth` status
/// left by the revoked connection is cleared. Failures here only delay the next sync.
pub async fn connected(state: &AppState, kb_id: KbId) {
    let store = &state.store;
    if let Err(e) = store.schedule_sync(kb_id, state.clock.now()).await {
        tracing::warn!(kb.id = %kb_id, error = %e, "could not schedule a sync after connecting");
    }
    match store.get_kb(kb_id).await {
        Ok(kb) if kb.sync_status == SyncStatus::NeedsReauth => {
            if let Err(e) = store.set_sync_status(kb_id, SyncStatus::Idle).await {
                tracing::warn!(kb.id = %kb_id, error = %e, "could not clear the re-authorisation status");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(kb.id = %kb_id, error = %e, "could not read the connected knowledge base"),
    }
}

pub async fn status(state: &AppState, user: &User, kb_id: KbId) -> Result<ConnectionStatus, ApiError> {
    let view = knowledge::readable(state, user, kb_id).await?;
    let Some(kind) = DatasourceKind::of(view.kb.kb_type) else {
        return Err(ApiError::NotFound("connection"));
    };
    let status = state
        .datasources
        .manager
        .status(kb_id)
        .await
        .map_err(oauth_error)?;
    Ok(status.unwrap_or(ConnectionStatus {
        datasource: kind,
        has_stored_token: false,
        token_stored_at: None,
        last_refreshed_at: None,
        needs_reauth: false,
        app_only: false,
    }))
}

/// Disconnects the knowledge base: the stored token is forgotten and, in the same transaction,
/// the read access sync gave from its sharing is withdrawn (manual grants stay).
pub async fn forget(state: &AppState, user: &User, kb_id: KbId) -> Result<(), ApiError> {
    knowledge::manageable(state, user, kb_id).await?;
    state.datasources.manager.forget(kb_id).await.map_err(oauth_error)
}

/// Lists a level of the picker through the knowledge base's stored connection.
pub async fn browse(
    state: &AppState,
    user: &User,
    kind: DatasourceKind,
    kb_id: KbId,
    at: BrowseLocation,
) -> Result<Vec<BrowseEntry>, ApiError> {
    // Browsing shows whatever the connected account can read: only those who manage the
    // knowledge base (and so chose that account) may look.
    let view = knowledge::manageable(state, user, kb_id).await?;
    if view.kb.kb_type != kind.kb_type() {
        return Err(ApiError::Conflict(format!(
            "this knowledge base is not connected to {}",
            kind.display_name()
        )));
    }
    let datasource = state
        .datasources
        .datasource(kind)
        .ok_or(ApiError::NotImplemented(format!(
            "{} is not configured on this server",
            kind.display_name()
        )))?;
    let status = match state
        .datasources
        .manager
        .status(kb_id)
        .await
        .map_err(oauth_error)?
    {
        None => return Err(ApiError::Conflict("connect this knowledge base first".into())),
        Some(s) if s.needs_reauth => return Err(needs_reauth()),
        Some(s) => s,
    };
    let tokens = state
        .datasources
        .manager
        .token_source(kb_id, &status)
        .map_err(app_only_error)?;
    datasource
        .browse(tokens.as_ref(), &at)
        .await
        .map_err(datasource_error)
}

fn needs_reauth() -> ApiError {
    ApiError::Conflict("the connection needs re-authorisation: connect the knowledge base again".into())
}

pub fn oauth_error(e: OAuthError) -> ApiError {
    match e {
        OAuthError::NotConfigured(kind) => ApiError::NotImplemented(format!(
            "{} is not configured on this server",
            kind.display_name()
        )),
        OAuthError::NotConnected => ApiError::Conflict("connect this knowledge base first".into()),
        OAuthError::NeedsReauth => needs_reauth(),
        OAuthError::Transient(detail) => ApiError::Unavailable(detail),
        OAuthError::Store(e) => e.into(),
        other => ApiError::internal("oauth", other),
    }
}

pub fn datasource_error(e: DatasourceError) -> ApiError {
    match e {
        DatasourceError::Unauthorized(_) => needs_reauth(),
        DatasourceError::NotFound(_) => ApiError::NotFound("drive item"),
        DatasourceError::Throttled { retry_after } => ApiError::TooManyRequests {
            retry_after_secs: retry_after.as_secs().max(1),
        },
        DatasourceError::Transient(detail) => ApiError::Unavailable(detail),
        other => ApiError::BadGateway(format!("the datasource answered with an error: {other}")),
    }
}
