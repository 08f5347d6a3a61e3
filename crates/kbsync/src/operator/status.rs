//! `kbsync status`: every knowledge base with its sync state, last run, next run and connection,
//! as a table or (`--json`) as a JSON array for scripts.

use chrono::{DateTime, Utc};
use kbsync_core::KnowledgeBase;
use kbsync_server::AppState;
use kbsync_server::service::sync::{SyncStateView, state_view};
use serde::Serialize;

use super::all_kbs;

/// One knowledge base as `kbsync status --json` prints it. The field names are stable: scripts
/// read them.
#[derive(Debug, Serialize)]
pub struct KbStatus {
    pub id: String,
    pub name: String,
    /// `local`, or the datasource's kind (`onedrive`).
    pub datasource: String,
    /// The sync status (`idle`, `syncing`, `completed`, `completed_with_errors`, `failed`,
    /// `cancelled`, `access_revoked`, `file_limit_exceeded`, `needs_reauth`).
    pub state: String,
    /// Whether a run is going now (on any instance).
    pub running: bool,
    /// The files of the run going now: done and total.
    pub progress: Option<Progress>,
    pub last_run: Option<LastRun>,
    pub last_error: Option<String>,
    /// When the scheduler runs it next; `null` when it does not (local, not connected, or the
    /// connection needs re-authorisation).
    pub next_run_at: Option<DateTime<Utc>>,
    /// `connected`, `app_only`, `needs_reauth`, `not_connected`; `null` for a local knowledge base.
    pub connection: Option<&'static str>,
    pub needs_reauth: bool,
}

#[derive(Debug, Serialize)]
pub struct Progress {
    pub current: u64,
    pub total: u64,
}

#[derive(Debug, Serialize)]
pub struct LastRun {
    pub id: String,
    pub trigger: &'static str,
    /// How it ended; `syncing` while it runs.
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub processed: u64,
    pub failed: u64,
    pub deleted: u64,
    pub skipped: u64,
    /// Files left out because extracting them killed or timed out the extractor twice; each is
    /// retried when it changes at the source.
    pub quarantined: u64,
}

/// Every knowledge base's status, by name.
pub async fn collect(state: &AppState) -> anyhow::Result<Vec<KbStatus>> {
    let mut kbs = all_kbs(state.store.as_ref()).await?;
    kbs.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    let mut rows = Vec::with_capacity(kbs.len());
    for kb in kbs {
        let sync = state_view(state, &kb).await?;
        let last = state.store.list_sync_runs(kb.id, 1).await?.into_iter().next();
        rows.push(row(&kb, &sync, last));
    }
    Ok(rows)
}

fn row(kb: &KnowledgeBase, sync: &SyncStateView, last: Option<kbsync_core::SyncRun>) -> KbStatus {
    let connection = sync.connection.as_ref().map(|c| {
        if c.needs_reauth {
            "needs_reauth"
        } else if c.app_only {
            "app_only"
        } else {
            "connected"
        }
    });
    let connection = match (kb.kb_type, connection) {
        (kbsync_core::KbType::Local, _) => None,
        (_, None) => Some("not_connected"),
        (_, c) => c,
    };
    KbStatus {
        id: kb.id.to_string(),
        name: kb.name.clone(),
        datasource: kb.kb_type.to_string(),
        state: sync.status.to_string(),
        running: sync.running,
        progress: sync.running.then_some(Progress {
            current: sync.progress.current,
            total: sync.progress.total,
        }),
        last_run: last.map(|r| LastRun {
            id: r.id.to_string(),
            trigger: r.trigger.as_str(),
            status: r.outcome.status.to_string(),
            started_at: r.started_at,
            finished_at: r.finished_at,
            processed: r.outcome.processed,
            failed: r.outcome.failed,
            deleted: r.outcome.deleted,
            skipped: r.outcome.skipped,
            quarantined: r.outcome.quarantined,
        }),
        last_error: sync.last_error.clone(),
        next_run_at: sync.next_sync_at,
        needs_reauth: connection == Some("needs_reauth"),
        connection,
    }
}

/// The table people read.
pub fn table(rows: &[KbStatus]) -> String {
    if rows.is_empty() {
        return "no knowledge bases\n".to_owned();
    }
    let header = [
        "NAME",
        "ID",
        "DATASOURCE",
        "STATE",
        "LAST RUN",
        "NEXT RUN",
        "CONNECTION",
    ]
    .map(str::to_owned);
    let mut lines: Vec<[String; 7]> = vec![header];
    for r in rows {
        let state = match &r.progress {
            Some(p) if p.total > 0 => format!("{} {}/{}", r.state, p.current, p.total),
            _ => r.state.clone(),
        };
        let last_run = match &r.last_run {
            Some(run) => {
                let when = run.finished_at.unwrap_or(run.started_at);
                let mut counts = format!("{} processed", run.processed);
                if run.failed > 0 {
                    counts.push_str(&format!(", {} failed", run.failed));
                }
                if run.quarantined > 0 {
                    counts.push_str(&format!(", {} quarantined", run.quarantined));
                }
                format!("{} {} ({counts})", run.status, time(when),)
            }
            None => "never".to_owned(),
        };
        let connection = match r.connection {
            None => "-",
            Some("needs_reauth") => "NEEDS RE-AUTHORISATION",
            Some("not_connected") => "not connected",
            Some("app_only") => "app-only",
            Some(c) => c,
        };
        lines.push([
            r.name.clone(),
            r.id.clone(),
            r.datasource.clone(),
            state,
            last_run,
            r.next_run_at.map_or_else(|| "-".to_owned(), time),
            connection.to_owned(),
        ]);
    }
    let mut widths = [0usize; 7];
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(last_run: Option<LastRun>) -> KbStatus {
        KbStatus {
            id: "kb-1".into(),
            name: "Handbook".into(),
            datasource: "onedrive".into(),
            state: "completed_with_errors".into(),
            running: false,
            progress: None,
            last_run,
            last_error: None,
            next_run_at: None,
            connection: Some("connected"),
            needs_reauth: false,
        }
    }

    fn run(failed: u64, quarantined: u64) -> LastRun {
        let at: DateTime<Utc> = "2026-12-07T10:00:00Z".parse().unwrap();
        LastRun {
            id: "run-1".into(),
            trigger: "scheduled",
            status: "completed_with_errors".into(),
            started_at: at,
            finished_at: Some(at),
            processed: 40,
            failed,
            deleted: 0,
            skipped: 0,
            quarantined,
        }
    }

    #[test]
    fn the_table_counts_failed_and_quarantined_files_of_the_last_run_only_when_there_are_some() {
        let out = table(&[status(Some(run(2, 1)))]);
        assert!(
            out.contains(
                "completed_with_errors 2026-12-07 10:00 UTC (40 processed, 2 failed, 1 quarantined)"
            ),
            "{out}"
        );
        let out = table(&[status(Some(run(0, 0)))]);
        assert!(out.contains("(40 processed)"), "{out}");
        let out = table(&[status(None)]);
        assert!(out.contains("never"), "{out}");
    }

    #[test]
    fn the_json_names_the_quarantined_count_of_the_last_run() {
        let json = serde_json::to_value(status(Some(run(0, 3)))).unwrap();
        assert_eq!(json["last_run"]["quarantined"], 3);
    }
}
