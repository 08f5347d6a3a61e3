//! The scheduler loop: claims due knowledge bases from the database and hands them to the runner.
//!
//! Every instance runs one. A claim is a lease taken in one atomic step (PostgreSQL:
//! `FOR UPDATE SKIP LOCKED`; SQLite: a single UPDATE), so however many instances claim at once,
//! each due knowledge base goes to exactly one of them. The claim covers every knowledge base in
//! the database, oldest due first; a tick keeps claiming while knowledge bases are due and this
//! instance has free slots.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

use kbsync_store::StoreError;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::runner::SyncRunner;

/// How often and how much the scheduler claims.
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// Time between two claim passes; a due knowledge base waits at most about this long.
    pub tick: Duration,
    /// The most knowledge bases one claim query takes (a tick claims again while it got that
    /// many and slots are free).
    pub batch: u32,
    /// How long a knowledge base may need re-authorization before the read access sync gave from
    /// its sources' sharing is withdrawn: kbsync can no longer see that sharing change, so it
    /// stops vouching for it (manual grants stay; the sharing is read again once reconnected).
    pub reauth_grace: chrono::Duration,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(5),
            batch: 32,
            reauth_grace: chrono::Duration::hours(72),
        }
    }
}

/// Claims due knowledge bases and starts their runs.
pub struct Scheduler {
    runner: SyncRunner,
    settings: SchedulerSettings,
    /// When the last pass withdrew lapsed access (on the injected clock).
    last_withdrawal: Mutex<Option<DateTime<Utc>>>,
}

impl Scheduler {
    pub fn new(runner: SyncRunner, settings: SchedulerSettings) -> Self {
        Self {
            runner,
            settings,
            last_withdrawal: Mutex::new(None),
        }
    }

    /// One claim pass: claims up to min(free slots, batch) due knowledge bases at a time (with
    /// `lease_until = now + lease_ttl`) and launches them as scheduled runs, again while a claim
    /// came back full and slots are free; returns how many it launched. A claimed knowledge base
    /// whose tokens resolve to NeedsReauth/NotConnected is released without running (next
    /// considered after its interval).
    pub async fn tick(&self) -> Result<usize, StoreError> {
        let cx = self.runner.context();
        let ttl = self.runner.settings().lease_ttl;
        self.withdraw_lapsed_access().await;
        let mut launched = 0;
        // A knowledge base released at once (one starting here by hand) is due again at once:
        // claiming it twice in one tick ends the tick rather than spin.
        let mut seen = HashSet::new();
        loop {
            if self.runner.is_shutting_down() {
                break;
            }
            let limit = u32::try_from(self.runner.free_slots())
                .unwrap_or(u32::MAX)
                .min(self.settings.batch);
            if limit == 0 {
                break;
            }
            let now = cx.clock.now();
            let claimed = cx
                .store
                .claim_due_syncs(self.runner.instance_id(), now, now + ttl, limit)
                .await?;
            let full = claimed.len() >= limit as usize;
            debug!(claimed = claimed.len(), limit, "claimed due knowledge bases");
            let mut again = false;
            for claim in claimed {
                again |= !seen.insert(claim.kb_id);
                if self.runner.start_scheduled(claim).await {
                    launched += 1;
                }
            }
            if !full || again {
                break;
            }
        }
        Ok(launched)
    }

    /// Withdraws the document access lists of knowledge bases that have needed re-authorization for longer
    /// than [`SchedulerSettings::reauth_grace`] (on the injected clock), at most once per `tick`
    /// period: a loop woken after every run would otherwise repeat it for each knowledge base
    /// claimed. A failure is logged and tried again at the next tick; claiming goes on.
    async fn withdraw_lapsed_access(&self) {
        let cx = self.runner.context();
        let now = cx.clock.now();
        {
            let mut last = self
                .last_withdrawal
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let period = chrono::Duration::from_std(self.settings.tick).unwrap_or(chrono::Duration::MAX);
            if last.is_some_and(|at| now >= at && now - at < period) {
                return;
            }
            *last = Some(now);
        }
        let since = now - self.settings.reauth_grace;
        match cx.store.withdraw_lapsed_document_access(since).await {
            Ok(kbs) => {
                for kb_id in kbs {
                    info!(kb.id = %kb_id, "needs re-authorization beyond the grace period: document access lists withdrawn");
                }
            }
            Err(e) => {
                *self
                    .last_withdrawal
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
                warn!(error = %e, "could not withdraw the document access lists of knowledge bases awaiting re-authorization")
            }
        }
    }

    /// The loop: logs `scheduler started`, ticks every `tick`, and sooner when woken (a change
    /// notification made knowledge bases due, or a run of this instance ended and freed a slot),
    /// until `shutdown` is cancelled; then stops claiming, shuts the runner down, and logs
    /// `scheduler stopped`.
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            info!(
                instance.id = %self.runner.instance_id(),
                tick_ms = u64::try_from(self.settings.tick.as_millis()).unwrap_or(u64::MAX),
                batch = self.settings.batch,
                "scheduler started"
            );
            let mut ticker = tokio::time::interval(self.settings.tick.max(Duration::from_millis(10)));
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = async {
                        tokio::select! {
                            _ = ticker.tick() => {}
                            () = self.runner.woken() => {}
                        }
                    } => match self.tick().await {
                        Ok(0) => {}
                        Ok(n) => debug!(launched = n, "scheduler tick"),
                        Err(e) => warn!(error = %e, "scheduler tick failed; trying again at the next one"),
                    },
                }
            }
            self.runner.shutdown().await;
            info!(instance.id = %self.runner.instance_id(), "scheduler stopped");
        })
    }
}
