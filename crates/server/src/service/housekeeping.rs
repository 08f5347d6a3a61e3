//! Housekeeping: a periodic purge of expired sessions, forgotten login failures and old sync run
//! records, so that none of these tables grows without bound, and the collection of blob files
//! no document references any more (docs/storage.md). Every instance may run it: each purge is
//! one idempotent `DELETE` by age, and each blob is collected by the one instance whose
//! statement cleared its candidate, so instances running it at once do no harm.

use chrono::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::AppState;

/// What housekeeping deletes and how often it looks.
#[derive(Debug, Clone)]
pub struct HousekeepingSettings {
    /// Time between purges (the first runs at start-up).
    pub interval: std::time::Duration,
    /// Finished runs older than this are deleted, with their failed files ...
    pub run_retention: Duration,
    /// ... except each knowledge base's most recent ones.
    pub keep_runs_per_kb: u32,
    /// How long a blob no document references is kept before its file is removed (also the
    /// age after which a blob file no row knows, or an unfinished temporary file, is removed).
    pub blob_grace: Duration,
}

impl Default for HousekeepingSettings {
    fn default() -> Self {
        Self {
            interval: std::time::Duration::from_secs(3600),
            run_retention: Duration::days(90),
            keep_runs_per_kb: 20,
            blob_grace: Duration::hours(1),
        }
    }
}

/// How many rows one purge deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub sessions: u64,
    pub login_failures: u64,
    pub sync_runs: u64,
    pub sign_in_flows: u64,
    /// Blob files removed (orphans, unknown files and stale temporary files).
    pub blobs: u64,
}

/// Deletes what has expired at the clock's `now`: sessions and OpenID sign-ins in flight past their expiry, login failures
/// older than `login_failure_retention` (and ended address windows), and finished runs older
/// than `run_retention` beyond each knowledge base's `keep_runs_per_kb` most recent, and blob
/// files that have been garbage for longer than `blob_grace`. Goes on
/// with the next kind when one fails, and reports the first error.
pub async fn purge(
    state: &AppState,
    settings: &HousekeepingSettings,
) -> Result<Purged, kbsync_store::StoreError> {
    let now = state.clock.now();
    let sessions = state.store.purge_expired_sessions(now).await;
    let login_failures = state
        .store
        .purge_login_failures(now, now - state.settings.login_failure_retention)
        .await;
    let sync_runs = state
        .store
        .purge_sync_runs(now - settings.run_retention, settings.keep_runs_per_kb)
        .await;
    let sign_in_flows = state.store.delete_expired_sign_in_flows(now).await;
    let blobs = kbsync_store::collect_blobs(&*state.store, &state.blobs, now, settings.blob_grace)
        .await
        .map(|c| c.orphans + c.unknown + c.temporary);
    Ok(Purged {
        sessions: sessions?,
        login_failures: login_failures?,
        sync_runs: sync_runs?,
        sign_in_flows: sign_in_flows?,
        blobs: blobs?,
    })
}

/// Runs [`purge`] at start-up and then every `interval` until `stop` is cancelled.
pub fn spawn(state: AppState, settings: HousekeepingSettings, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(settings.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticks.tick() => {}
            }
            match purge(&state, &settings).await {
                Ok(purged) if purged != Purged::default() => tracing::info!(
                    sessions = purged.sessions,
                    login_failures = purged.login_failures,
                    sync_runs = purged.sync_runs,
                    blobs = purged.blobs,
                    "housekeeping purged expired rows"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "housekeeping failed; it tries again at its next turn"),
            }
        }
    })
}
