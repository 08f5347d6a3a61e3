//! Search and the administrator's page.

use super::*;

#[derive(Deserialize)]
pub struct SearchParams {
    q: Option<String>,
    kb: Option<String>,
}

pub async fn search(
    State(state): State<AppState>,
    session: Session,
    Query(p): Query<SearchParams>,
) -> UiResult {
    let kb_id = match p.kb.as_deref().filter(|k| !k.is_empty()) {
        Some(k) => Some(parse_kb(k)?),
        None => None,
    };
    let found = overview::search(&state, &session.user, p.q.as_deref(), kb_id).await?;
    let kb_name = |id: KbId| {
        found
            .kbs
            .iter()
            .find(|v| v.kb.id == id)
            .map(|v| v.kb.name.clone())
            .unwrap_or_else(|| "a knowledge base".to_owned())
    };
    let (searched, hits, error) = match found.hits {
        None => (false, Vec::new(), None),
        Some(Ok(hits)) => (
            true,
            hits.into_iter()
                .map(|h| views::HitRow {
                    kb_name: kb_name(h.knowledge_id),
                    kb_id: h.knowledge_id.to_string(),
                    name: h.name,
                    snippet: views::highlight(&h.snippet, p.q.as_deref().unwrap_or_default()),
                    web_url: h
                        .web_url
                        .filter(|u| u.starts_with("https://") || u.starts_with("http://")),
                })
                .collect(),
            None,
        ),
        Some(Err(e @ ApiError::Invalid { .. })) => (true, Vec::new(), Some(e.to_string())),
        Some(Err(e)) => return Err(e.into()),
    };
    Ok(render(&views::SearchPage {
        chrome: Chrome::of(&session, "search"),
        q: p.q.unwrap_or_default(),
        kbs: found
            .kbs
            .iter()
            .map(|v| views::KbChoice {
                id: v.kb.id.to_string(),
                name: v.kb.name.clone(),
                selected: Some(v.kb.id) == kb_id,
            })
            .collect(),
        searched,
        hits,
        error,
    }))
}

pub async fn admin(State(state): State<AppState>, session: Session) -> UiResult {
    let a = overview::admin(&state, &session.user)?;
    let s = &a.settings;
    let sync = &a.sync;
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let row = |name, value: String| views::SettingRow { name, value };
    let mb = |bytes: u64| format!("{} MB", bytes / (1024 * 1024));
    let settings = vec![
        row("Public URL", s.public_url.clone()),
        row("Largest upload", mb(s.max_upload_bytes)),
        row("Session lifetime", format!("{} days", s.session_ttl.num_days())),
        row(
            "Sync interval (default)",
            format!("{} min", sync.runner.default_interval.num_minutes()),
        ),
        row("Most files per knowledge base", sync.limits.max_files.to_string()),
        row("Largest synced file", mb(sync.limits.max_file_size)),
        row("Files at once per run", sync.limits.concurrency.to_string()),
        row(
            "Time limit per file",
            format!("{} s", sync.limits.file_timeout.as_secs()),
        ),
        row("Sharing links grant access", yes_no(sync.permissions.link_grants)),
        row(
            "Failed sign-ins per address",
            format!(
                "{} per {} min",
                s.login_address_limit.max_failures,
                s.login_address_limit.window.num_minutes()
            ),
        ),
        row(
            "Run records kept",
            match &s.housekeeping {
                Some(h) => format!(
                    "{} days, at least the latest {} per knowledge base",
                    h.run_retention.num_days(),
                    h.keep_runs_per_kb
                ),
                None => "all (no housekeeping on this instance)".to_owned(),
            },
        ),
        row("Run lease", format!("{} s", sync.runner.lease_ttl.num_seconds())),
        row("Instance", sync.instance_id.clone()),
    ];
    let datasources = a
        .datasources
        .iter()
        .map(|c| {
            row(
                c.kind.display_name(),
                if c.configured {
                    "configured"
                } else {
                    "not configured"
                }
                .to_owned(),
            )
        })
        .collect();
    let scheduler = vec![
        row(
            "Scheduler on this instance",
            match &sync.scheduler {
                Some(sch) => format!("on, looks for due knowledge bases every {} s", sch.tick.as_secs()),
                None => "off (manual runs only)".to_owned(),
            },
        ),
        row("Runs going on this instance", a.running_runs.to_string()),
        row("Free run slots", format!("{} of {}", a.free_slots, a.max_runs)),
    ];
    let now = state.clock.now();
    let mut notifications = vec![views::LabelRow {
        label: "Change notifications".to_owned(),
        value: match &state.settings.webhooks {
            Some(w) => format!(
                "on: sources post to {}/api/v1/webhooks/…; renewed {} h before expiry; a notified knowledge base runs {} s later",
                s.public_url.trim_end_matches('/'),
                w.renew_before.num_hours(),
                w.debounce.num_seconds()
            ),
            None => "off: knowledge bases are only polled".to_owned(),
        },
    }];
    for r in webhooks::all(&state).await? {
        notifications.push(views::LabelRow {
            label: format!("{} drive {}", r.datasource, r.drive_id),
            value: subscription_line(&r, now),
        });
    }
    let activity = overview::activity(&state, &session.user).await?;
    Ok(render(&views::AdminPage {
        chrome: Chrome::of(&session, "admin"),
        settings,
        datasources,
        scheduler,
        notifications,
        activity_chart: charts::activity(&activity).to_html(),
    }))
}
