//! Commands for people at a terminal: `kbsync sync`, `kbsync status` and `kbsync search`. They
//! work on the configured database directly, as an operator who sees every knowledge base, with
//! the same parts a server builds ([`crate::wiring`]); no server needs to run. A sync takes the
//! knowledge base's lease like any run, so a server on the same database never runs it at the
//! same time.

mod progress;
pub mod search;
pub mod status;
pub mod sync;

use std::sync::Arc;

use anyhow::Context;
use kbsync_core::{Clock, KnowledgeBase, OsRandom, Random, SystemClock};
use kbsync_server::AppState;
use kbsync_store::{Page, Reader, Store, StoreError, TokenCipher};
use uuid::Uuid;

use crate::config::Settings;
use crate::{backup, secret, wiring};

/// How a command ended, as its exit status (documented in `kbsync sync --help` and the README).
/// Clap answers a bad command line with 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Anything not listed below: bad settings, an unreachable database, a knowledge base that
    /// cannot sync (local, or its datasource not configured).
    Error = 1,
    /// The run failed, a source's access was revoked, or the knowledge base is over its file
    /// limit.
    RunFailed = 3,
    /// The run completed, but some files could not be brought in (they are retried next run).
    FilesFailed = 4,
    /// The knowledge base is not connected, or its connection needs re-authorisation: connect
    /// it again in the web UI.
    NeedsReauth = 5,
    /// No knowledge base (or, for `--as`, no user) has that id or name.
    NotFound = 6,
    /// The knowledge base is being synced elsewhere (a server or another `kbsync sync`), and
    /// `--wait` was not given.
    Busy = 7,
    /// The run was cancelled (Ctrl-C, or a cancel through the web UI or API).
    Cancelled = 8,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A command ended in a way its exit status tells: the message goes to stderr, the status to the
/// shell.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }
}

/// The parts a server would run, over the configured database, for one command. Refuses a SQLite
/// database that does not exist (an operator command must not create an empty one). `secrets`
/// says whether the command reads stored credentials (a sync does): it then needs the real key.
pub async fn open(settings: &Settings, secrets: bool) -> anyhow::Result<AppState> {
    if let Some(file) = backup::sqlite_file(&settings.database_url)
        && !file.is_file()
    {
        anyhow::bail!(
            "there is no database at {} (check --data-dir, --config or KBSYNC_DATABASE_URL)",
            file.display()
        );
    }
    let store = kbsync_store::connect(&settings.database_url)
        .await
        .context("cannot open the database")?;
    let random: Arc<dyn Random> = Arc::new(OsRandom);
    let key = match secret::load(settings) {
        Ok(key) => key,
        Err(e) if secrets => return Err(e),
        // Status and search decrypt nothing: a key of their own, never stored, will do.
        Err(_) => random.token_hex(32),
    };
    let cipher = TokenCipher::new(&key, settings.secret_key_previous.as_deref())
        .map_err(|e| anyhow::anyhow!("KBSYNC_SECRET_KEY: {e}"))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    wiring::app_state(settings, store, cipher, clock, random)
}

/// Every knowledge base, newest first.
pub async fn all_kbs(store: &dyn Store) -> Result<Vec<KnowledgeBase>, StoreError> {
    const PAGE: u32 = 200;
    let mut all = Vec::new();
    loop {
        let page = store
            .list_readable_kbs(
                Reader::Admin,
                Page {
                    limit: PAGE,
                    offset: all.len() as u64,
                },
            )
            .await?;
        let n = page.items.len();
        all.extend(page.items);
        if n < PAGE as usize {
            return Ok(all);
        }
    }
}

/// The knowledge base a command line names: by id, or by its exact name when exactly one has it.
pub async fn find_kb(store: &dyn Store, wanted: &str) -> anyhow::Result<KnowledgeBase> {
    if let Ok(id) = wanted.trim().parse::<Uuid>() {
        match store.get_kb(id).await {
            Ok(kb) => return Ok(kb),
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut named: Vec<KnowledgeBase> = all_kbs(store)
        .await?
        .into_iter()
        .filter(|kb| kb.name == wanted)
        .collect();
    match named.len() {
        0 => Err(Failure::new(
            Exit::NotFound,
            format!("no knowledge base has the id or name \"{wanted}\" (`kbsync status` lists them)"),
        )
        .into()),
        1 => Ok(named.remove(0)),
        n => {
            let ids: Vec<String> = named.iter().map(|kb| kb.id.to_string()).collect();
            anyhow::bail!(
                "{n} knowledge bases are named \"{wanted}\": give one of their ids ({})",
                ids.join(", ")
            )
        }
    }
}
