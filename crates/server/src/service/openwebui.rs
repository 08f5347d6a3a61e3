//! Publishing a knowledge base into Open WebUI, as its manager sees and controls it: turn it on
//! (creating an Open WebUI knowledge base, or naming an existing one), publish now, turn it off,
//! and what the last publishes did. The work itself is the publisher's ([`crate::publishing`]).

use chrono::{DateTime, Utc};
use kbsync_core::{
    KbId, LeftOutReader, Publication, PublicationCounts, PublicationStatus, PublishFailure, PublishRun, User,
};
use kbsync_openwebui::OpenWebUiError;
use serde::Serialize;
use utoipa::ToSchema;

use super::knowledge;
use crate::{AppState, error::ApiError, publishing::Publisher};

/// How many publishes the history shows at most.
pub const MAX_HISTORY: u32 = 50;

/// A knowledge base's publication as its manager sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublicationView {
    pub enabled: bool,
    pub openwebui_knowledge_id: Option<String>,
    /// Where people open the Open WebUI knowledge base.
    pub openwebui_url: Option<String>,
    pub status: Option<PublicationStatus>,
    /// A publish is waiting to be done.
    pub requested: bool,
    pub last_published_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub counts: PublicationCounts,
    /// Files done of those to upload, while publishing.
    pub progress: PublishProgressView,
    pub failures: Vec<PublishFailure>,
    pub left_out: Vec<LeftOutReader>,
}

/// Files done of those to upload, while publishing.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct PublishProgressView {
    pub done: u64,
    pub total: u64,
}

impl PublicationView {
    fn off() -> Self {
        Self {
            enabled: false,
            openwebui_knowledge_id: None,
            openwebui_url: None,
            status: None,
            requested: false,
            last_published_at: None,
            error: None,
            counts: PublicationCounts::default(),
            progress: PublishProgressView::default(),
            failures: Vec::new(),
            left_out: Vec::new(),
        }
    }

    fn of(p: Publication, publisher: Option<&Publisher>) -> Self {
        Self {
            enabled: true,
            openwebui_url: p
                .knowledge_id
                .as_deref()
                .zip(publisher)
                .map(|(id, publisher)| publisher.knowledge_url(id)),
            openwebui_knowledge_id: p.knowledge_id,
            status: Some(p.status),
            requested: p.requested_at.is_some(),
            last_published_at: p.last_published_at,
            error: p.error,
            counts: p.counts,
            progress: PublishProgressView {
                done: p.progress_done,
                total: p.progress_total,
            },
            failures: p.failures,
            left_out: p.left_out,
        }
    }
}

/// The publisher, or why there is none.
fn publisher(state: &AppState) -> Result<&Publisher, ApiError> {
    state.openwebui.as_deref().ok_or_else(|| {
        ApiError::NotImplemented(
            "publishing into Open WebUI is not set up on this server: set KBSYNC_OPENWEBUI_URL and \
             KBSYNC_OPENWEBUI_API_KEY"
                .into(),
        )
    })
}

/// The publication of a knowledge base the caller manages.
pub async fn get(state: &AppState, user: &User, kb_id: KbId) -> Result<PublicationView, ApiError> {
    knowledge::manageable(state, user, kb_id).await?;
    Ok(view(state, kb_id).await?)
}

/// The publication of a knowledge base, whoever asks (for pages that already checked access).
pub async fn view(state: &AppState, kb_id: KbId) -> Result<PublicationView, kbsync_store::StoreError> {
    Ok(match state.store.publication(kb_id).await? {
        Some(p) => PublicationView::of(p, state.openwebui.as_deref()),
        None => PublicationView::off(),
    })
}

/// Turns publishing on (or points it at another Open WebUI knowledge base) and asks for a publish.
/// `knowledge_id` names an existing Open WebUI knowledge base, which must exist; `None` has the
/// first publish create one (or keeps the one created before).
pub async fn enable(
    state: &AppState,
    user: &User,
    kb_id: KbId,
    knowledge_id: Option<String>,
) -> Result<PublicationView, ApiError> {
    knowledge::manageable(state, user, kb_id).await?;
    let publisher = publisher(state)?;
    let knowledge_id = match knowledge_id.as_deref().map(str::trim) {
        None => None,
        Some(id) => {
            let id = valid_knowledge_id(id)?;
            publisher.client().knowledge(&id).await.map_err(|e| match e {
                OpenWebUiError::KnowledgeNotFound => ApiError::invalid(
                    "knowledge_id",
                    "Open WebUI has no knowledge base with this id that kbsync's API key may write",
                ),
                other => openwebui_error(other),
            })?;
            Some(id)
        }
    };
    let now = state.clock.now();
    let p = state
        .store
        .enable_publication(kb_id, knowledge_id.as_deref(), now)
        .await?;
    tracing::info!(kb.id = %kb_id, user.id = %user.id, "publishing into Open WebUI turned on");
    Ok(PublicationView::of(p, Some(publisher)))
}

/// Asks for a publish now, comparing with Open WebUI even when nothing changed in kbsync (files
/// someone removed there come back).
pub async fn publish_now(state: &AppState, user: &User, kb_id: KbId) -> Result<PublicationView, ApiError> {
    knowledge::manageable(state, user, kb_id).await?;
    publisher(state)?;
    if !state
        .store
        .request_publication(kb_id, state.clock.now(), true)
        .await?
    {
        return Err(ApiError::Conflict(
            "publishing into Open WebUI is off for this knowledge base: turn it on first".into(),
        ));
    }
    Ok(view(state, kb_id).await?)
}

/// Turns publishing off. Open WebUI's knowledge base is left as it is.
pub async fn disable(state: &AppState, user: &User, kb_id: KbId) -> Result<(), ApiError> {
    knowledge::manageable(state, user, kb_id).await?;
    if state.store.disable_publication(kb_id).await? {
        tracing::info!(kb.id = %kb_id, user.id = %user.id, "publishing into Open WebUI turned off");
    }
    Ok(())
}

/// The latest publishes of a knowledge base the caller manages, newest first.
pub async fn history(
    state: &AppState,
    user: &User,
    kb_id: KbId,
    limit: Option<u32>,
) -> Result<Vec<PublishRun>, ApiError> {
    knowledge::manageable(state, user, kb_id).await?;
    let limit = limit.unwrap_or(20);
    if limit == 0 || limit > MAX_HISTORY {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_HISTORY}"),
        ));
    }
    Ok(state.store.publish_runs(kb_id, limit).await?)
}

/// Open WebUI's ids are UUIDs; anything of their alphabet is accepted, nothing else.
fn valid_knowledge_id(id: &str) -> Result<String, ApiError> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::invalid(
            "knowledge_id",
            "must be an Open WebUI knowledge base id (letters, digits, '-' and '_')",
        ));
    }
    Ok(id.to_owned())
}

fn openwebui_error(e: OpenWebUiError) -> ApiError {
    match e {
        OpenWebUiError::Unauthorized(_) => {
            ApiError::BadGateway("Open WebUI refused kbsync's API key (KBSYNC_OPENWEBUI_API_KEY)".into())
        }
        other => ApiError::BadGateway(format!("Open WebUI: {other}")),
    }
}
