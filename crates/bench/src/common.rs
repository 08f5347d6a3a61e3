//! What every scenario shares: databases, the emulator with a OneDrive datasource pointed at it,
//! knowledge bases with sources, engines, and the printed report.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use kbsync_core::datasource::AccessToken;
use kbsync_core::{KbId, KbType, Role, SeededRandom, SystemClock, UserId};
use kbsync_core::{Source, SourceKind};
use kbsync_ingest::{Extractor, IngestConfig};
use kbsync_kit::PgSchema;
use kbsync_msgraph::{GraphConfig, OneDrive, TokioSleeper, microsoft_oauth};
use kbsync_store::{BlobStore, NewKnowledgeBase, NewUser, PostgresStore, SqliteStore, Store};
use kbsync_sync::events::SyncEvents;
use kbsync_sync::{PermissionPolicy, SyncContext, SyncEngine, SyncLimits};
use msgraph_emulator::{Control, EmulatorBuilder, RunningEmulator};
use uuid::Uuid;

/// The PostgreSQL server the benchmarks may use, when one is named.
pub fn pg_url() -> Option<String> {
    std::env::var("KBSYNC_BENCH_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(kbsync_kit::postgres_url)
}

/// A migrated store in a place of its own: a temporary SQLite file, or a PostgreSQL schema (the
/// kit's guard, dropped with this value, also when a scenario fails).
pub struct Db {
    pub label: &'static str,
    // Declared before `schema`, so the store's pool goes before its schema is dropped.
    pub store: Arc<dyn Store>,
    schema: Option<PgSchema>,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    pub async fn sqlite() -> Result<Db> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("bench.sqlite").display());
        let store = SqliteStore::connect(&url).await?;
        store.migrate().await?;
        Ok(Db {
            label: "SQLite",
            store: Arc::new(store),
            schema: None,
            _dir: Some(dir),
        })
    }

    pub async fn postgres(url: &str) -> Result<Db> {
        Self::postgres_pooled(url, 5).await
    }

    /// [`Db::postgres`] with a pool of `connections` (the server's: [`PostgresStore::POOL_SIZE`]).
    pub async fn postgres_pooled(url: &str, connections: u32) -> Result<Db> {
        let schema = PgSchema::new(url, "kbsync_bench");
        let store = PostgresStore::connect_in_schema_with(schema.url(), schema.name(), connections).await?;
        store.migrate().await?;
        Ok(Db {
            label: "PostgreSQL",
            store: Arc::new(store),
            schema: Some(schema),
            _dir: None,
        })
    }

    /// SQLite, then PostgreSQL when a server is named.
    pub async fn all() -> Result<Vec<Db>> {
        Self::all_pooled(5).await
    }

    /// [`Db::all`] with the pools the server opens: SQLite's own (8 connections) and
    /// PostgreSQL's [`PostgresStore::POOL_SIZE`].
    pub async fn all_as_in_production() -> Result<Vec<Db>> {
        Self::all_pooled(PostgresStore::POOL_SIZE).await
    }

    async fn all_pooled(pg_connections: u32) -> Result<Vec<Db>> {
        let mut dbs = vec![Db::sqlite().await?];
        match pg_url() {
            Some(url) => dbs.push(Db::postgres_pooled(&url, pg_connections).await?),
            None => {
                println!("  (PostgreSQL skipped: set KBSYNC_BENCH_DATABASE_URL or KBSYNC_TEST_DATABASE_URL)")
            }
        }
        Ok(dbs)
    }

    /// Runs a bulk load of chunks. On PostgreSQL the full-text (GIN) index is dropped for the
    /// load and built once afterwards, then the table is analysed, as an operator would for an
    /// initial import: maintaining the GIN index row by row limits the load to ~450 chunks/s on
    /// this machine, and what the search scenario measures is querying, not the build. SQLite
    /// loads through its index as it is (FTS5 is fast to build).
    pub async fn bulk_load<F, Fut>(&self, load: F) -> Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let Some(schema) = &self.schema else {
            return load().await;
        };
        let (url, schema) = (schema.url(), schema.name());
        let pool = sqlx::PgPool::connect(url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX {schema}.chunks_tsv")))
            .execute(&pool)
            .await?;
        load().await?;
        for statement in [
            format!("CREATE INDEX chunks_tsv ON {schema}.chunks USING GIN (tsv)"),
            format!("ANALYZE {schema}.chunks"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&pool).await?;
        }
        pool.close().await;
        Ok(())
    }
}

/// The emulator and a OneDrive datasource with a valid access token for its default user.
pub struct Graph {
    pub emu: RunningEmulator,
    pub ctl: Control,
    pub ds: Arc<OneDrive>,
    pub token: AccessToken,
    pub drive: String,
    pub root: String,
}

impl Graph {
    pub async fn start(builder: EmulatorBuilder, tweak: impl FnOnce(&mut GraphConfig)) -> Result<Graph> {
        let emu = builder.start().await.context("starting the emulator")?;
        let ctl = emu.control();
        let mut config = GraphConfig {
            graph_url: emu.graph_url().to_string(),
            request_timeout: Duration::from_secs(60),
            ..GraphConfig::default()
        };
        tweak(&mut config);
        let http = config.http_client()?;
        let oauth = microsoft_oauth(emu.base_url(), &ctl.tenant_id(), vec!["Files.Read.All".into()]);
        let ds = Arc::new(OneDrive::new(config, oauth, http, Arc::new(TokioSleeper)));
        let user = ctl.default_user_id();
        let token = AccessToken::new(ctl.mint_access_token_for(
            &user,
            &["Files.Read.All", "Sites.Read.All"],
            chrono::Duration::hours(24),
        )?);
        let drive = ctl.default_drive_id();
        let root = ctl.drive(&drive)?.root_id;
        Ok(Graph {
            emu,
            ctl,
            ds,
            token,
            drive,
            root,
        })
    }

    /// Every file of the drive: (item id, path, size), by walking the tree.
    pub fn files(&self) -> Result<Vec<(String, String, u64)>> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(folder) = stack.pop() {
            for item in self.ctl.children(&self.drive, &folder)? {
                if item.folder {
                    stack.push(item.id);
                } else {
                    out.push((item.id, item.path, item.size));
                }
            }
        }
        out.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(out)
    }
}

/// A user and a knowledge base of `kb_type` owned by them.
/// A user who owns nothing and holds no grant.
pub async fn new_user(store: &Arc<dyn Store>) -> Result<UserId> {
    let id = Uuid::new_v4();
    store
        .create_user(
            id,
            NewUser {
                email: format!("{id}@bench.example"),
                password_hash: Some("$argon2id$bench".into()),
                display_name: None,
                role: Role::User,
            },
            Utc::now(),
        )
        .await?;
    Ok(id)
}

pub async fn new_kb(store: &Arc<dyn Store>, kb_type: KbType) -> Result<(UserId, KbId)> {
    let now = Utc::now();
    let owner = Uuid::new_v4();
    store
        .create_user(
            owner,
            NewUser {
                email: format!("{owner}@bench.example"),
                password_hash: Some("$argon2id$bench".into()),
                display_name: None,
                role: Role::User,
            },
            now,
        )
        .await?;
    let kb = Uuid::new_v4();
    store
        .create_kb(
            kb,
            NewKnowledgeBase {
                name: "bench".into(),
                description: String::new(),
                owner_id: owner,
                kb_type,
            },
            now,
        )
        .await?;
    Ok((owner, kb))
}

pub async fn add_folder(
    store: &Arc<dyn Store>,
    kb: KbId,
    drive: &str,
    item_id: &str,
    path: &str,
) -> Result<Source> {
    Ok(store
        .add_source(
            Uuid::new_v4(),
            kbsync_kit::fixtures::onedrive_source(kb, SourceKind::Folder, drive, item_id, path),
            Utc::now(),
        )
        .await?)
}

/// Production limits, except that a drive may hold up to `max_files` files.
pub fn limits(max_files: u64) -> SyncLimits {
    SyncLimits {
        max_files,
        max_file_size: 200 * 1024 * 1024,
        ..SyncLimits::default()
    }
}

pub fn context(store: Arc<dyn Store>, blobs: &std::path::Path, limits: SyncLimits) -> SyncContext {
    SyncContext {
        store,
        blobs: BlobStore::new(blobs),
        extractor: Extractor::new(IngestConfig::default()),
        clock: Arc::new(SystemClock),
        random: Arc::new(SeededRandom::new(7)),
        limits,
        events: SyncEvents::new(),
        permissions: PermissionPolicy::default(),
    }
}

pub fn engine(store: Arc<dyn Store>, blobs: &std::path::Path, limits: SyncLimits) -> SyncEngine {
    SyncEngine::new(context(store, blobs, limits))
}

/// [`engine`] with the given extractor (thread or process isolation).
pub fn engine_with(
    store: Arc<dyn Store>,
    blobs: &std::path::Path,
    limits: SyncLimits,
    extractor: Extractor,
) -> SyncEngine {
    SyncEngine::new(SyncContext {
        extractor,
        ..context(store, blobs, limits)
    })
}

/// Process isolation with this very binary as the worker (`kbsync-bench extract-worker` serves
/// the same protocol loop as `kbsync extract-worker`).
pub fn worker_isolation() -> Result<kbsync_ingest::Isolation> {
    let exe = std::env::current_exe()?;
    Ok(kbsync_ingest::Isolation::Process(
        kbsync_ingest::WorkerCommand::new(exe, ["extract-worker"]),
    ))
}

/// Resident memory of this process: (current, peak) in bytes, from /proc/self/status.
pub fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// One printed block per scenario.
pub struct Block {
    lines: Vec<String>,
}

impl Block {
    pub fn new(title: impl AsRef<str>) -> Self {
        Self {
            lines: vec![format!("== {} ==", title.as_ref())],
        }
    }

    pub fn line(&mut self, text: impl AsRef<str>) {
        self.lines.push(format!("  {}", text.as_ref()));
    }

    /// A figure against its target: prints met / NOT met.
    pub fn target(&mut self, what: &str, value: impl AsRef<str>, target: &str, met: bool) {
        self.lines.push(format!(
            "  target {what}: {} (target {target}) -> {}",
            value.as_ref(),
            if met { "met" } else { "NOT met" }
        ));
    }

    pub fn print(self) {
        println!("{}\n", self.lines.join("\n"));
    }
}

/// The p-th quantile (0..=1) of sorted values.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Resets the process's peak resident memory (VmHWM) to its current RSS (Linux: `5` to
/// /proc/self/clear_refs); ignored where that is not allowed.
pub fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
