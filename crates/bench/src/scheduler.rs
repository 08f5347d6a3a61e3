//! Scenario 5: thousands of connected knowledge bases all due at once: the scheduler claims and
//! dispatches them to the real runner (each run is a no-op against an empty emulated folder).
//!
//! Two passes over the same knowledge bases. First with the server's settings: the scheduler's
//! own loop (tick 5 s, batch 32), `RunnerSettings::default()` (4 runs at once) and the server's
//! database pool, until every knowledge base has run; its time per knowledge base is the target.
//! Then, all due again, the claim path alone: one `Scheduler::tick` with as many slots as
//! knowledge bases, which claims and dispatches them all (its runs go on meanwhile).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kbsync_core::datasource::{Datasource, DatasourceKind, StaticToken};
use kbsync_core::{KbId, KbType};
use kbsync_store::{NewConnection, NewKnowledgeBase, Store, StoreError, TokenCipher};
use kbsync_sync::SyncEngine;
use kbsync_sync::runner::{DatasourceResolver, ResolveError, RunnerSettings, StoredTokens, SyncRunner};
use kbsync_sync::scheduler::{Scheduler, SchedulerSettings};
use msgraph_emulator::Emulator;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::{Block, Db, Graph, add_folder, context, limits, memory, new_kb, reset_peak_memory};
use crate::counting::{CountingStore, SCOPE};

/// Like the server's resolver: the knowledge base's connection is read (one query, counted).
struct Resolver {
    store: Arc<dyn Store>,
    ds: Arc<dyn Datasource>,
    token: kbsync_core::datasource::AccessToken,
    reads: AtomicU64,
}

#[async_trait]
impl DatasourceResolver for Resolver {
    fn datasource(&self, kind: DatasourceKind) -> Option<Arc<dyn Datasource>> {
        (kind == DatasourceKind::OneDrive).then(|| self.ds.clone())
    }

    async fn tokens(&self, kb_id: KbId) -> Result<StoredTokens, ResolveError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        match self.store.get_connection(kb_id).await {
            Ok(c) if c.needs_reauth => Err(ResolveError::NeedsReauth),
            Ok(c) => Ok(StoredTokens {
                source: Arc::new(StaticToken(self.token.clone())),
                stored_at: c.stored_at,
            }),
            Err(StoreError::NotFound) => Err(ResolveError::NotConnected),
            Err(e) => Err(ResolveError::Unavailable(e.to_string())),
        }
    }

    /// The empty folders' runs are never refused.
    async fn mark_needs_reauth(&self, _: KbId, _: DateTime<Utc>) -> Result<bool, ResolveError> {
        Ok(false)
    }
}

pub async fn run(small: bool) -> Result<()> {
    let n: usize = if small { 100 } else { 10_000 };
    for db in Db::all_as_in_production().await? {
        one(&db, n).await?;
    }
    Ok(())
}

/// Calls by method made between two snapshots.
fn since(
    now: &BTreeMap<&'static str, u64>,
    then: &BTreeMap<&'static str, u64>,
) -> BTreeMap<&'static str, u64> {
    now.iter()
        .map(|(k, v)| (*k, v - then.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

async fn one(db: &Db, n: usize) -> Result<()> {
    let g = Graph::start(Emulator::builder().seed(5), |_| {}).await?;
    let folder = g.ctl.create_folder(&g.drive, "/Empty")?;
    let store = db.store.clone();
    let cipher = TokenCipher::new("kbsync-bench-secret", None)?;
    let (owner, _) = new_kb(&store, KbType::Local).await?;
    let t = Instant::now();
    let mut kbs = Vec::with_capacity(n);
    for i in 0..n {
        let kb = Uuid::new_v4();
        store
            .create_kb(
                kb,
                NewKnowledgeBase {
                    name: format!("kb {i}"),
                    description: String::new(),
                    owner_id: owner,
                    kb_type: KbType::OneDrive,
                },
                Utc::now(),
            )
            .await?;
        add_folder(&store, kb, &g.drive, &folder.id, "/Empty").await?;
        store
            .upsert_connection(
                NewConnection {
                    kb_id: kb,
                    datasource: DatasourceKind::OneDrive,
                    credentials: kbsync_core::ConnectionCredentials::Delegated,
                    refresh_token: Some(cipher.encrypt("bench-refresh-token")),
                    access_token: None,
                    tenant: None,
                },
                Utc::now(),
            )
            .await?;
        kbs.push(kb);
    }
    let setup = t.elapsed();

    let counting = Arc::new(CountingStore::new(store.clone()));
    let blobs = tempfile::tempdir()?;
    let cx = context(counting.clone(), blobs.path(), limits(1_000));
    let resolver = Arc::new(Resolver {
        store: counting.clone(),
        ds: g.ds.clone(),
        token: g.token.clone(),
        reads: AtomicU64::new(0),
    });
    let engine = Arc::new(SyncEngine::new(cx.clone()));
    let runner_of = |max_runs: usize, instance: &str| {
        SyncRunner::new(
            engine.clone(),
            cx.clone(),
            resolver.clone(),
            RunnerSettings {
                max_runs,
                ..RunnerSettings::default()
            },
            instance.into(),
        )
    };
    let mut b = Block::new(format!(
        "5. scheduler on {}: {n} connected knowledge bases all due",
        db.label
    ));
    b.line(format!(
        "setup: {n} knowledge bases with a source and a connection in {:.1} s",
        setup.as_secs_f64()
    ));

    // Pass 1: the server's settings, the scheduler's own loop, until every knowledge base ran.
    let production = RunnerSettings::default();
    let settings = SchedulerSettings::default();
    let (tick, batch, max_runs) = (settings.tick, settings.batch, production.max_runs);
    let runner = runner_of(max_runs, "kbsync-bench-production");
    let before = counting.counts();
    g.ctl.clear_request_log();
    reset_peak_memory();
    let (rss_before, _) = memory();
    let shutdown = CancellationToken::new();
    let t = Instant::now();
    let handle = Scheduler::new(runner.clone(), settings).spawn(shutdown.clone());
    let mut poll = tokio::time::interval(Duration::from_millis(5));
    loop {
        poll.tick().await;
        let finished = since(&counting.counts(), &before)
            .get("finish_sync_run")
            .copied()
            .unwrap_or(0);
        if finished >= n as u64 {
            break;
        }
        if t.elapsed() > Duration::from_secs(3 * 3600) {
            bail!("{finished} of {n} runs finished after 3 hours");
        }
    }
    let all_ran = t.elapsed();
    shutdown.cancel();
    handle.await?;
    let (_, peak) = memory();
    let calls = since(&counting.counts(), &before);
    let resolver_reads = resolver.reads.swap(0, Ordering::Relaxed);
    let claims = calls.get("claim_due_syncs").copied().unwrap_or(0);
    let withdrawals = calls.get("withdraw_lapsed_document_access").copied().unwrap_or(0);
    // The scheduler's own queries: its claims and withdrawal passes, and the resolver's reads of
    // the connections it dispatches (the runs themselves read no connection).
    let scheduler_queries = claims + withdrawals + resolver_reads;
    let all_calls: u64 = calls.values().sum();
    let per_kb = all_ran.as_secs_f64() * 1e3 / n as f64;
    b.line(format!(
        "server's settings (scheduler loop, tick {} s, batch {batch}, max_runs {max_runs}, pool {}): every one of {n} ran in {:.1} s = {per_kb:.3} ms per KB",
        tick.as_secs(),
        if db.label == "SQLite" { 8 } else { kbsync_store::PostgresStore::POOL_SIZE },
        all_ran.as_secs_f64()
    ));
    b.line(format!(
        "  scheduler queries: {scheduler_queries} ({claims} claim_due_syncs, {withdrawals} withdraw_lapsed_document_access, {resolver_reads} get_connection by the resolver) = {:.2} per KB",
        scheduler_queries as f64 / n as f64
    ));
    b.line(format!(
        "  store calls in all: {all_calls} = {:.1} per KB, by method {calls:?}; {} Graph requests",
        all_calls as f64 / n as f64,
        g.ctl.request_counts().counts.values().sum::<u64>()
    ));
    b.line(format!(
        "  memory: RSS {:.0} MB before, peak {:.0} MB (whole process)",
        rss_before as f64 / 1e6,
        peak as f64 / 1e6
    ));

    // Pass 2: all due again; one tick with a slot for each claims and dispatches them all.
    let now = Utc::now();
    for kb in &kbs {
        store.schedule_sync(*kb, now).await?;
    }
    let runner = runner_of(n, "kbsync-bench-claim-path");
    let scheduler = Scheduler::new(runner.clone(), SchedulerSettings::default());
    let before = counting.counts();
    let t = Instant::now();
    let launched = SCOPE.scope((), scheduler.tick()).await?;
    let dispatch = t.elapsed();
    let dispatch_counts = counting.scoped_counts();
    runner.wait_idle().await;
    let all_done = t.elapsed();
    let finished = since(&counting.counts(), &before)
        .get("finish_sync_run")
        .copied()
        .unwrap_or(0);
    if launched != n || finished != n as u64 {
        bail!("{launched} runs launched and {finished} finished of {n} due knowledge bases");
    }
    let dispatch_reads = resolver.reads.swap(0, Ordering::Relaxed);
    let dispatch_queries: u64 = dispatch_counts.values().sum();
    let dispatch_per_kb = dispatch.as_secs_f64() * 1e3 / n as f64;
    b.line(format!(
        "claim path alone (one Scheduler::tick, batch {batch}, max_runs {n}): {:.0} ms for {launched} = {dispatch_per_kb:.3} ms per KB; runs all finished after {:.1} s",
        dispatch.as_secs_f64() * 1e3,
        all_done.as_secs_f64()
    ));
    b.line(format!(
        "  dispatch queries: {dispatch_queries} (by method {dispatch_counts:?}; {dispatch_reads} of them the resolver's) = {:.2} per KB",
        dispatch_queries as f64 / n as f64
    ));
    let scheduler_per_kb = scheduler_queries as f64 / n as f64;
    b.target(
        "time per KB with the server's settings",
        format!("{per_kb:.3} ms, {scheduler_per_kb:.2} scheduler queries"),
        "< 2 ms, bounded queries",
        per_kb < 2.0 && scheduler_per_kb <= 3.0,
    );
    b.print();
    Ok(())
}
