//! Publishing into Open WebUI from a knowledge base's page: turn it on (into a new Open WebUI
//! knowledge base or an existing one), publish now, turn it off; and the panel that shows how it
//! went.

use kbsync_core::{PublicationStatus, PublishRun, User};

use super::*;
use crate::service::openwebui;

/// How many publishes the page lists.
const HISTORY_SHOWN: u32 = 5;

#[derive(Deserialize)]
pub struct PublishForm {
    csrf: String,
    /// An existing Open WebUI knowledge base's id; empty: create one.
    #[serde(default)]
    knowledge_id: String,
}

pub async fn openwebui_on(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<PublishForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    let kb_id = parse_kb(&id)?;
    let target = Some(f.knowledge_id.trim().to_owned()).filter(|t| !t.is_empty());
    openwebui::enable(&state, &session.user, kb_id, target).await?;
    Ok(to_kb(kb_id))
}

pub async fn openwebui_publish(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    let kb_id = parse_kb(&id)?;
    openwebui::publish_now(&state, &session.user, kb_id).await?;
    Ok(to_kb(kb_id))
}

pub async fn openwebui_off(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    let kb_id = parse_kb(&id)?;
    openwebui::disable(&state, &session.user, kb_id).await?;
    Ok(to_kb(kb_id))
}

/// The publication panel of a knowledge base's page, for those who manage it; `None` when
/// publishing is off (or the caller does not manage the knowledge base).
pub(super) async fn publication_panel(
    state: &AppState,
    user: &User,
    kb_id: KbId,
    can_manage: bool,
) -> Result<Option<views::PublicationPanel>, UiError> {
    if !can_manage {
        return Ok(None);
    }
    let p = openwebui::view(state, kb_id).await.map_err(ApiError::from)?;
    if !p.enabled {
        return Ok(None);
    }
    let history = openwebui::history(state, user, kb_id, Some(HISTORY_SHOWN)).await?;
    let status = p.status.unwrap_or(PublicationStatus::Pending);
    let c = &p.counts;
    Ok(Some(views::PublicationPanel {
        status: match status {
            PublicationStatus::Pending => "waiting to publish".to_owned(),
            PublicationStatus::Publishing => "publishing".to_owned(),
            PublicationStatus::Published if p.error.is_some() => "published, with failed files".to_owned(),
            PublicationStatus::Published => "published".to_owned(),
            PublicationStatus::Failed => "publish failed".to_owned(),
        },
        tone: tone(status, p.error.is_some()),
        published: status == PublicationStatus::Published || p.last_published_at.is_some(),
        url: p.openwebui_url,
        last_published: p.last_published_at.map(when).unwrap_or_else(|| "never".into()),
        progress: if status == PublicationStatus::Publishing && p.progress.total > 0 {
            format!("{} of {} files uploaded", p.progress.done, p.progress.total)
        } else {
            String::new()
        },
        counts: format!(
            "{} files in Open WebUI · {} uploaded · {} removed · {} failed · {} readers granted · {} left out",
            c.published, c.uploaded, c.removed, c.failed, c.readers_granted, c.readers_left_out
        ),
        error: p.error,
        failures: p
            .failures
            .into_iter()
            .map(|f| views::FailureRow {
                name: f.path,
                reason: f.error,
            })
            .collect(),
        left_out: p
            .left_out
            .into_iter()
            .map(|r| views::FailureRow {
                name: r.email,
                reason: r.reason,
            })
            .collect(),
        history: history.into_iter().map(publish_row).collect(),
    }))
}

fn tone(status: PublicationStatus, with_errors: bool) -> &'static str {
    match status {
        PublicationStatus::Pending | PublicationStatus::Publishing => "busy",
        PublicationStatus::Published if with_errors => "warn",
        PublicationStatus::Published => "ok",
        PublicationStatus::Failed => "danger",
    }
}

fn publish_row(r: PublishRun) -> views::RunRow {
    let o = r.outcome;
    let c = &o.counts;
    let secs = (r.finished_at - r.started_at).num_seconds().max(0);
    views::RunRow {
        started: when(r.started_at),
        trigger: "publish".to_owned(),
        status: o.status.as_str().to_owned(),
        tone: tone(o.status, o.error.is_some()),
        duration: if secs < 120 {
            format!("{secs} s")
        } else {
            format!("{} min", secs / 60)
        },
        counts: match &o.error {
            Some(error) if o.status == PublicationStatus::Failed => error.clone(),
            _ => format!(
                "{} uploaded · {} unchanged · {} removed · {} failed",
                c.uploaded, c.unchanged, c.removed, c.failed
            ),
        },
        // A publish is not split into phases.
        phases: String::new(),
        failures: o
            .failures
            .into_iter()
            .map(|f| views::FailureRow {
                name: f.path,
                reason: f.error,
            })
            .collect(),
    }
}
