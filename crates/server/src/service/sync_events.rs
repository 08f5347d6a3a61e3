//! The sync event stream behind `GET …/sync/events`.
//!
//! The stored sync state is the single source of truth: every instance persists progress and
//! failed files as it goes, so a listener derives its events from what the store says, whichever
//! instance runs the sync. Events published on this instance only wake the listener early, so
//! a sync running here is reported without waiting for the next poll.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::response::sse::Event;
use futures::{Stream, StreamExt};
use kbsync_core::SyncState;
use kbsync_core::{KbId, SyncStatus, User};
use kbsync_sync::events::SyncEvent;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::knowledge;
use crate::{AppState, error::ApiError};

/// Opens the event stream of a knowledge base the caller may read.
pub async fn stream(
    state: AppState,
    user: &User,
    kb_id: KbId,
) -> Result<impl Stream<Item = Result<Event, Infallible>> + use<>, ApiError> {
    knowledge::readable(&state, user, kb_id).await?;
    let wake = Some(state.sync_events.subscribe(kb_id));
    let shutting_down = state.shutting_down.clone();
    let watcher = Watcher {
        state,
        kb_id,
        wake,
        last: None,
        failures_seen: 0,
        last_finished: None,
        last_publication: None,
        pending: VecDeque::new(),
    };
    let events = futures::stream::unfold(watcher, |mut w| async move {
        let event = w.next().await;
        Some((Ok(event), w))
    });
    Ok(events.take_until(shutting_down.cancelled_owned()))
}

struct Watcher {
    state: AppState,
    kb_id: KbId,
    wake: Option<broadcast::Receiver<SyncEvent>>,
    last: Option<SyncState>,
    /// Failed files of the current run already reported.
    failures_seen: u64,
    /// The last run reported as finished.
    last_finished: Option<Uuid>,
    /// The publication into Open WebUI as last reported.
    last_publication: Option<serde_json::Value>,
    pending: VecDeque<Event>,
}

impl Watcher {
    async fn next(&mut self) -> Event {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return event;
            }
            if self.last.is_some() {
                self.wait().await;
            }
            if let Err(e) = self.refresh().await {
                tracing::debug!(kb.id = %self.kb_id, error = %e, "sync events: could not read the sync state");
            }
        }
    }

    /// Until an event of this instance or the next poll, whichever comes first.
    async fn wait(&mut self) {
        let poll = tokio::time::sleep(self.state.settings.sse_poll_interval);
        match self.wake.as_mut() {
            Some(rx) => {
                tokio::select! {
                    received = rx.recv() => {
                        if let Err(broadcast::error::RecvError::Closed) = received {
                            self.wake = None;
                        }
                    }
                    () = poll => {}
                }
            }
            None => poll.await,
        }
    }

    async fn refresh(&mut self) -> Result<(), kbsync_store::StoreError> {
        let store = self.state.store.clone();
        let now = self.state.clock.now();
        let current = store.get_sync_state(self.kb_id, now).await?;
        let Some(last) = self.last.take() else {
            // First look: say where things stand; failures reported before we came are history.
            if let Some(run_id) = current.progress.run_id {
                self.failures_seen = store.list_sync_failures(run_id, 0).await?.len() as u64;
            }
            self.last_finished = store
                .list_sync_runs(self.kb_id, 1)
                .await?
                .into_iter()
                .find(|r| r.finished_at.is_some())
                .map(|r| r.id);
            self.push("status", &status_body(&current));
            self.last = Some(current);
            self.push_publication().await?;
            return Ok(());
        };
        let run_id = current.progress.run_id;
        if run_id != last.progress.run_id {
            self.failures_seen = 0;
        }
        if current.status != last.status || current.running != last.running {
            self.push("status", &status_body(&current));
        }
        if current.progress != last.progress && current.progress.total > 0 {
            self.push(
                "progress",
                &serde_json::json!({
                    "run_id": run_id,
                    "current": current.progress.current,
                    "total": current.progress.total,
                    "file": current.progress.file,
                }),
            );
        }
        if let Some(run_id) = run_id {
            let failures = store.list_sync_failures(run_id, self.failures_seen).await?;
            self.failures_seen += failures.len() as u64;
            for f in failures {
                self.push(
                    "file_failed",
                    &serde_json::json!({ "run_id": run_id, "name": f.name, "reason": f.reason }),
                );
            }
        }
        let ended = !current.running
            && (last.running || current.status != last.status || run_id != last.progress.run_id);
        if ended && current.status != SyncStatus::Syncing {
            self.push_finished().await?;
        }
        self.last = Some(current);
        self.push_publication().await
    }

    /// Reports the publication into Open WebUI (status, progress, last result) when it changed.
    async fn push_publication(&mut self) -> Result<(), kbsync_store::StoreError> {
        let Some(p) = self.state.store.publication(self.kb_id).await? else {
            return Ok(());
        };
        let body = serde_json::json!({
            "status": p.status,
            "done": p.progress_done,
            "total": p.progress_total,
            "last_published_at": p.last_published_at,
            "error": p.error,
            "counts": p.counts,
        });
        if self.last_publication.as_ref() != Some(&body) {
            self.push("publish", &body);
            self.last_publication = Some(body);
        }
        Ok(())
    }

    /// Reports the latest run once it has finished, unless it was reported already.
    async fn push_finished(&mut self) -> Result<(), kbsync_store::StoreError> {
        let runs = self.state.store.list_sync_runs(self.kb_id, 1).await?;
        let Some(run) = runs.into_iter().next() else {
            return Ok(());
        };
        if run.finished_at.is_none() || self.last_finished == Some(run.id) {
            return Ok(());
        }
        self.last_finished = Some(run.id);
        let o = run.outcome;
        self.push(
            "finished",
            &serde_json::json!({
                "run_id": run.id,
                "status": o.status,
                "processed": o.processed,
                "failed": o.failed,
                "deleted": o.deleted,
                "skipped": o.skipped,
                "quarantined": o.quarantined,
                "total_found": o.total_found,
            }),
        );
        Ok(())
    }

    fn push(&mut self, name: &str, body: &serde_json::Value) {
        self.pending
            .push_back(Event::default().event(name).data(body.to_string()));
    }
}

fn status_body(s: &SyncState) -> serde_json::Value {
    serde_json::json!({
        "run_id": s.progress.run_id,
        "status": s.status,
        "running": s.running,
        "current": s.progress.current,
        "total": s.progress.total,
    })
}
