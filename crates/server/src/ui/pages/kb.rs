//! Knowledge bases: the list, creating one, its page (files, sources, runs), deleting it, uploads.

use super::*;

#[derive(Deserialize)]
pub struct OffsetParam {
    offset: Option<u64>,
}

pub async fn kb_list(
    State(state): State<AppState>,
    session: Session,
    Query(p): Query<OffsetParam>,
) -> UiResult {
    let page = Page {
        limit: KBS_PER_PAGE,
        offset: p.offset.unwrap_or(0),
    };
    let found = overview::list(&state, &session.user, page).await?;
    let now = state.clock.now();
    let rows = found
        .items
        .into_iter()
        .map(|s| {
            let b = badge(s.view.kb.kb_type, &s.sync, s.failed_files, now);
            let id = s.view.kb.id;
            let connect = match b.text.as_str() {
                _ if !s.view.access.can_manage() => None,
                "Re-authorisation required" => Some("Reconnect"),
                "Not connected" => Some("Connect"),
                _ => None,
            };
            views::KbRow {
                id: id.to_string(),
                after_connect: match connect {
                    Some("Connect") => format!("/kb/{id}/pick"),
                    _ => "/kb".to_owned(),
                },
                connect,
                name: s.view.kb.name,
                description: s.view.kb.description,
                kind: kind_name(s.view.kb.kb_type).to_owned(),
                badge_text: b.text,
                badge_tone: b.tone,
            }
        })
        .collect();
    let (prev_offset, next_offset) = pager(page, found.total);
    Ok(render(&views::KbListPage {
        chrome: Chrome::of(&session, "kb"),
        rows,
        total: found.total,
        prev_offset,
        next_offset,
    }))
}

pub async fn kb_new(State(state): State<AppState>, session: Session) -> Response {
    render(&new_page(&state, &session, String::new(), String::new(), None))
}

fn new_page(
    state: &AppState,
    session: &Session,
    name: String,
    description: String,
    error: Option<String>,
) -> views::KbNewPage {
    let (configured, unconfigured): (Vec<_>, Vec<_>) = connections::datasources(state)
        .into_iter()
        .partition(|c| c.configured);
    views::KbNewPage {
        chrome: Chrome::of(session, "kb"),
        datasources: configured
            .iter()
            .map(|c| views::DatasourceChoice {
                name: c.kind.info().name,
                label: c.kind.info().kb_choice,
            })
            .collect(),
        unconfigured: unconfigured.iter().map(|c| c.kind.display_name()).collect(),
        name,
        description,
        error,
    }
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default, rename = "type")]
    kb_type: String,
}

pub async fn kb_create(
    State(state): State<AppState>,
    session: Session,
    Form(f): Form<CreateForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    let kb_type = (!f.kb_type.is_empty()).then_some(f.kb_type.as_str());
    match knowledge::create(&state, &session.user, &f.name, Some(&f.description), kb_type).await {
        Ok(view) => Ok(Redirect::to(&format!("/kb/{}", view.kb.id)).into_response()),
        Err(e @ ApiError::Invalid { .. }) => {
            let page = new_page(&state, &session, f.name, f.description, Some(e.to_string()));
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn kb_page(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(p): Query<OffsetParam>,
) -> UiResult {
    let kb_id = parse_kb(&id)?;
    let page = Page {
        limit: FILES_PER_PAGE,
        offset: p.offset.unwrap_or(0),
    };
    let d = overview::detail(&state, &session.user, kb_id, page).await?;
    let now = state.clock.now();
    let failed_files = d
        .runs
        .first()
        .filter(|_| d.sync.status == SyncStatus::CompletedWithErrors)
        // A quarantined file is an error the user must look at too.
        .map(|r| r.outcome.failed + r.outcome.quarantined);
    let b = badge(d.view.kb.kb_type, &d.sync, failed_files, now);
    let connection = d.sync.connection.as_ref();
    let (prev_offset, next_offset) = pager(page, d.files.total);
    let kb = d.view.kb;
    let access = d.view.access;
    let publication =
        kb_openwebui::publication_panel(&state, &session.user, kb.id, access.can_manage()).await?;
    let source_notifies = DatasourceKind::of(kb.kb_type).is_some_and(|kind| kind.info().webhook.is_some());
    let notifications = match (&state.settings.webhooks, source_notifies) {
        (Some(_), true) => Some(
            webhooks::of_kb(&state, kb.id)
                .await?
                .iter()
                .map(|r| views::LabelRow {
                    label: r.drive_id.clone(),
                    value: subscription_line(r, now),
                })
                .collect(),
        ),
        _ => None,
    };
    Ok(render(&views::KbPage {
        chrome: Chrome::of(&session, "kb"),
        id: kb.id.to_string(),
        kind: kind_name(kb.kb_type).to_owned(),
        is_remote: kb.kb_type != KbType::Local,
        can_write: access >= Access::Write,
        can_manage: access.can_manage(),
        badge_text: b.text,
        badge_tone: b.tone,
        running: d.sync.running,
        status: d.sync.status.as_str().to_owned(),
        progress_current: d.sync.progress.current,
        progress_total: d.sync.progress.total,
        progress_label: badge::progress_label(&d.sync, failed_files),
        progress_file: d.sync.progress.file.clone().unwrap_or_default(),
        // The last error explains a run that ended badly; after a good run or a reconnect it is
        // history (the run list keeps it).
        last_error: d.sync.last_error.clone().filter(|_| {
            !d.sync.running
                && !matches!(
                    d.sync.status,
                    SyncStatus::Idle | SyncStatus::Completed | SyncStatus::Syncing
                )
        }),
        last_sync: d.sync.last_sync_at.map(when).unwrap_or_else(|| "never".into()),
        next_sync: match d.sync.next_sync_at {
            Some(next) => badge::next_in(next, now),
            None => "not scheduled".into(),
        },
        connected: connection.is_some_and(|c| c.has_stored_token),
        needs_reauth: connection.is_some_and(|c| c.needs_reauth) || d.sync.status == SyncStatus::NeedsReauth,
        sources: d
            .sources
            .into_iter()
            .map(|s| views::SourceRow {
                id: s.id.to_string(),
                kind: s.kind.as_str(),
                synced: s.cursor.is_some(),
                name: s.name,
                path: s.path,
            })
            .collect(),
        files: d
            .files
            .items
            .into_iter()
            .map(|f| views::FileRow {
                size: human_size(f.size),
                status: f.status.as_str().to_owned(),
                tone: match f.status {
                    DocumentStatus::Processed => "ok",
                    DocumentStatus::Pending => "busy",
                    DocumentStatus::Failed => "danger",
                    DocumentStatus::Quarantined => "warn",
                },
                error: f.error,
                name: f.name,
                path: f.path,
            })
            .collect(),
        files_total: d.files.total,
        prev_offset,
        next_offset,
        run_chart: charts::run_history(&d.runs).to_html(),
        runs: d
            .runs
            .into_iter()
            .take(overview::RUNS_SHOWN)
            .map(run_row)
            .collect(),
        openwebui_available: state.openwebui.is_some(),
        publication,
        notifications,
        source_notifies,
        name: kb.name,
        description: kb.description,
    }))
}

fn run_row(r: kbsync_core::SyncRun) -> views::RunRow {
    let o = r.outcome;
    let running = r.finished_at.is_none();
    views::RunRow {
        started: when(r.started_at),
        trigger: r.trigger.as_str().to_owned(),
        status: if running {
            "running".to_owned()
        } else {
            o.status.as_str().replace('_', " ")
        },
        tone: match o.status {
            _ if running => "busy",
            SyncStatus::Completed => "ok",
            SyncStatus::CompletedWithErrors | SyncStatus::Cancelled => "warn",
            _ => "danger",
        },
        duration: r
            .finished_at
            .map(|f| {
                let secs = (f - r.started_at).num_seconds().max(0);
                if secs < 120 {
                    format!("{secs} s")
                } else {
                    format!("{} min", secs / 60)
                }
            })
            .unwrap_or_default(),
        counts: {
            let mut counts = format!(
                "{} found · {} processed · {} failed · {} deleted · {} skipped",
                o.total_found, o.processed, o.failed, o.deleted, o.skipped
            );
            if o.quarantined > 0 {
                counts.push_str(&format!(" · {} quarantined", o.quarantined));
            }
            counts
        },
        phases: o.phases.map(phase_line).unwrap_or_default(),
        failures: o
            .failures
            .into_iter()
            .map(|f| views::FailureRow {
                name: f.name,
                reason: f.reason,
            })
            .collect(),
    }
}

/// A run's phase times on one line, in the order the run goes through them, then its wall time.
fn phase_line(p: kbsync_core::SyncPhaseTimes) -> String {
    let phases: Vec<String> = kbsync_core::SyncPhase::ALL
        .iter()
        .map(|&phase| format!("{} {}", phase.as_str(), short_duration(p.get(phase))))
        .collect();
    format!("{} · of {} in all", phases.join(" · "), short_duration(p.wall))
}

/// A measured time, as precise as it is worth reading: sub-millisecond times in µs, then ms,
/// seconds with one decimal, minutes, hours.
fn short_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if d < std::time::Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else if d < std::time::Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if secs < 120 {
        format!("{:.1} s", d.as_secs_f64())
    } else if secs < 2 * 3600 {
        format!("{} min", secs / 60)
    } else {
        format!("{} h {} min", secs / 3600, secs % 3600 / 60)
    }
}

pub async fn kb_delete(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    knowledge::delete(&state, &session.user, parse_kb(&id)?).await?;
    Ok(Redirect::to("/kb").into_response())
}

/// An upload to a local knowledge base. The form puts its CSRF field before the file, so the
/// token is checked before any byte of the file is stored.
pub async fn upload(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> UiResult {
    let kb_id = parse_kb(&id)?;
    let mut multipart = multipart.map_err(|e| ApiError::BadRequest {
        message: e.body_text(),
    })?;
    let stored = store_upload(&state, &session, kb_id, &mut multipart).await;
    if stored.is_err() {
        multipart::drain(&mut multipart).await;
    }
    stored
}

/// Reads the upload form: the CSRF field, then the file, which is stored.
async fn store_upload(
    state: &AppState,
    session: &Session,
    kb_id: KbId,
    multipart: &mut Multipart,
) -> UiResult {
    let mut checked = false;
    let mut fields = FormFields::default();
    while let Some(field) = multipart.next_field().await.map_err(multipart::unreadable)? {
        match field.name() {
            Some("csrf") => {
                let value = fields.text(field).await?;
                session.check_csrf(&value)?;
                checked = true;
            }
            Some("file") if checked => {
                let name = field.file_name().map(str::to_owned);
                let content_type = field.content_type().map(str::to_owned);
                documents::upload(
                    state,
                    &session.user,
                    kb_id,
                    name.as_deref(),
                    content_type.as_deref(),
                    field,
                )
                .await?;
                return Ok(to_kb(kb_id));
            }
            Some("file") => return Err(UiError::Csrf),
            _ => {
                fields.text(field).await?;
            }
        }
    }
    if checked {
        Err(ApiError::invalid("file", "choose a file to upload").into())
    } else {
        Err(UiError::Csrf)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn measured_times_read_in_a_unit_that_fits_them() {
        for (d, text) in [
            (Duration::ZERO, "0 µs"),
            (Duration::from_micros(420), "420 µs"),
            (Duration::from_micros(12_700), "12 ms"),
            (Duration::from_millis(1_250), "1.2 s"),
            (Duration::from_secs(119), "119.0 s"),
            (Duration::from_secs(600), "10 min"),
            (Duration::from_secs(3 * 3600 + 5 * 60 + 9), "3 h 5 min"),
        ] {
            assert_eq!(short_duration(d), text, "{d:?}");
        }
    }

    #[test]
    fn the_phase_line_names_every_phase_in_run_order_then_the_wall_time() {
        let line = phase_line(kbsync_core::SyncPhaseTimes {
            enumerate: Duration::from_millis(30),
            plan: Duration::from_micros(800),
            download: Duration::from_secs(2),
            extract: Duration::from_millis(500),
            index: Duration::from_millis(40),
            permissions: Duration::ZERO,
            wall: Duration::from_secs(3),
        });
        assert_eq!(
            line,
            "enumerate 30 ms · plan 800 µs · download 2.0 s · extract 500 ms · index 40 ms · \
             permissions 0 µs · of 3.0 s in all"
        );
    }
}
