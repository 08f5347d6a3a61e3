//! The sync runtime of one instance, built in one place from its parts and settings.
//!
//! The binary builds it from its configuration and hands it to the server, which serves it
//! (manual runs, cancellation, event streams) and runs its scheduler; tests build it the same
//! way. Nothing else constructs a [`SyncContext`], [`SyncEngine`] or [`SyncRunner`] for serving.

use std::sync::Arc;

use kbsync_core::{Clock, Random};
use kbsync_ingest::Extractor;
use kbsync_store::{BlobStore, Store};

use crate::events::SyncEvents;
use crate::runner::{DatasourceResolver, RunnerSettings, SyncRunner};
use crate::scheduler::SchedulerSettings;
use crate::{PermissionPolicy, SyncContext, SyncEngine, SyncLimits};

/// How this instance syncs: limits of a run, what permissions grant, leases and backoff, and the
/// scheduler loop.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// Limits of every run (files per knowledge base, file size, concurrency, time per file).
    pub limits: SyncLimits,
    /// What the sources' permissions grant, and how often they and groups are read again.
    pub permissions: PermissionPolicy,
    /// Leases, backoff and jitter of runs, and the default interval between scheduled runs.
    pub runner: RunnerSettings,
    /// The scheduler loop; `None` runs no scheduler on this instance (manual runs only).
    pub scheduler: Option<SchedulerSettings>,
    /// Names this instance in leases; unique per process.
    pub instance_id: String,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            limits: SyncLimits::default(),
            permissions: PermissionPolicy::default(),
            runner: RunnerSettings::default(),
            scheduler: Some(SchedulerSettings::default()),
            instance_id: format!("kbsync-{}", uuid::Uuid::new_v4()),
        }
    }
}

/// What the server serves of syncing: the runner, the events runs publish, and the settings it
/// was built with (the server starts the scheduler loop they describe, stops it on shutdown,
/// and shows them to admins).
#[derive(Clone)]
pub struct SyncRuntime {
    /// Starts, cancels and tracks the sync runs of this instance.
    pub runner: SyncRunner,
    /// Progress of the runs of this instance, for event streams.
    pub events: SyncEvents,
    pub settings: Arc<SyncSettings>,
}

impl SyncRuntime {
    /// Builds the engine and the runner over the given parts. `datasources` gives the runner the
    /// datasource and the stored connection of a knowledge base.
    pub fn new(
        store: Arc<dyn Store>,
        blobs: BlobStore,
        extractor: Extractor,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
        datasources: Arc<dyn DatasourceResolver>,
        settings: SyncSettings,
    ) -> Self {
        let events = SyncEvents::new();
        let shared = Arc::new(settings.clone());
        let cx = SyncContext {
            store,
            blobs,
            extractor,
            clock,
            random,
            limits: settings.limits,
            events: events.clone(),
            permissions: settings.permissions,
        };
        let runner = SyncRunner::new(
            Arc::new(SyncEngine::new(cx.clone())),
            cx,
            datasources,
            settings.runner,
            settings.instance_id,
        );
        Self {
            runner,
            events,
            settings: shared,
        }
    }
}
