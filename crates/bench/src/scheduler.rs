//! Scenario 5: thousands of connected knowledge bases all due at once: the scheduler claims and
//! dispatches them to the real runner (each run is a no-op against an empty emulated folder).

use std::sync::Arc;
use std::time::Instant;

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
use uuid::Uuid;

use crate::common::{Block, Db, Graph, add_folder, context, limits, memory, new_kb, reset_peak_memory};
use crate::counting::{CountingStore, SCOPE};

/// Like the server's resolver: the knowledge base's connection is read (one query).
struct Resolver {
    store: Arc<dyn Store>,
    ds: Arc<dyn Datasource>,
    token: kbsync_core::datasource::AccessToken,
}

#[async_trait]
impl DatasourceResolver for Resolver {
    fn datasource(&self, kind: DatasourceKind) -> Option<Arc<dyn Datasource>> {
        (kind == DatasourceKind::OneDrive).then(|| self.ds.clone())
    }

    async fn tokens(&self, kb_id: KbId) -> Result<StoredTokens, ResolveError> {
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
    for db in Db::all().await? {
        one(&db, n).await?;
    }
    Ok(())
}

async fn one(db: &Db, n: usize) -> Result<()> {
    let g = Graph::start(Emulator::builder().seed(5), |_| {}).await?;
    let folder = g.ctl.create_folder(&g.drive, "/Empty")?;
    let store = db.store.clone();
    let cipher = TokenCipher::new("kbsync-bench-secret", None)?;
    let (owner, _) = new_kb(&store, KbType::Local).await?;
    let t = Instant::now();
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
    }
    let setup = t.elapsed();

    let counting = Arc::new(CountingStore::new(store.clone()));
    let blobs = tempfile::tempdir()?;
    let cx = context(counting.clone(), blobs.path(), limits(1_000));
    let resolver = Arc::new(Resolver {
        store: counting.clone(),
        ds: g.ds.clone(),
        token: g.token.clone(),
    });
    let runner = SyncRunner::new(
        Arc::new(SyncEngine::new(cx.clone())),
        cx,
        resolver.clone(),
        RunnerSettings {
            max_runs: n,
            ..RunnerSettings::default()
        },
        "kbsync-bench".into(),
    );
    let settings = SchedulerSettings::default();
    let batch = settings.batch;
    let scheduler = Scheduler::new(runner.clone(), settings);
    g.ctl.clear_request_log();
    reset_peak_memory();
    let (rss_before, _) = memory();
    let t = Instant::now();
    let launched = SCOPE.scope((), scheduler.tick()).await?;
    let dispatch = t.elapsed();
    let dispatch_counts = counting.scoped_counts();
    runner.wait_idle().await;
    let all_done = t.elapsed();
    let (_, peak) = memory();
    let counts = counting.counts();
    let finished = counts.get("finish_sync_run").copied().unwrap_or(0);
    if launched != n || finished != n as u64 {
        bail!("{launched} runs launched and {finished} finished of {n} due knowledge bases");
    }
    let claims = dispatch_counts.get("claim_due_syncs").copied().unwrap_or(0);
    let dispatch_queries: u64 = dispatch_counts.values().sum();
    let per_kb_queries = dispatch_queries as f64 / n as f64;
    let run_queries: u64 = counts.values().sum();
    let per_kb = dispatch.as_secs_f64() * 1e3 / n as f64;
    let mut b = Block::new(format!(
        "5. scheduler on {}: {n} connected knowledge bases all due",
        db.label
    ));
    b.line(format!(
        "setup: {n} knowledge bases with a source and a connection in {:.1} s",
        setup.as_secs_f64()
    ));
    b.line(format!(
        "claim + dispatch (one Scheduler::tick, batch {batch}, max_runs {n}): {:.0} ms for {launched} = {per_kb:.3} ms per KB",
        dispatch.as_secs_f64() * 1e3
    ));
    b.line(format!(
        "dispatch queries: {dispatch_queries} ({claims} claim_due_syncs; by method {dispatch_counts:?}) = {per_kb_queries:.2} per KB"
    ));
    b.line(format!(
        "every run finished after {:.1} s; whole no-op runs made {:.1} store calls per KB ({} Graph requests)",
        all_done.as_secs_f64(),
        run_queries as f64 / n as f64,
        g.ctl.request_counts().counts.values().sum::<u64>()
    ));
    b.line(format!(
        "memory: RSS {:.0} MB before, peak {:.0} MB during dispatch and the runs (whole process)",
        rss_before as f64 / 1e6,
        peak as f64 / 1e6
    ));
    b.target(
        "claim + dispatch per KB",
        format!("{per_kb:.3} ms, {per_kb_queries:.2} queries"),
        "< 2 ms, bounded queries",
        per_kb < 2.0 && per_kb_queries <= 3.0,
    );
    b.print();
    Ok(())
}
