//! The SQLite store: the embedded default (one process, one file). This module opens the
//! database; what else differs from PostgreSQL is in its submodules, by area: `migrate` (its own
//! migrations), `documents` (how chunks are written: through the [`index_writer`]'s group
//! commit) and `search` (an external-content FTS5 index over `chunks` with the
//! `unicode61 remove_diacritics 2` tokenizer). Everything else is the shared SQL of
//! [`crate::sql`], written for this type by `impl_store_areas!` below.

mod documents;
mod index_writer;
mod migrate;
mod search;
#[cfg(test)]
mod tests;

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};

use self::index_writer::IndexWriter;

use crate::error::map_sqlx;
use crate::{Backend, Result, StoreError};

/// How long a statement waits for another connection's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection type the shared SQL (`crate::sql`) writes through.
type DbConnection = SqliteConnection;

/// A [`Store`](crate::Store) over one SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Writes `complete_document` calls together (see [`index_writer`]).
    index_writer: IndexWriter,
}

impl SqliteStore {
    const BACKEND: Backend = Backend::Sqlite;
    /// SQLite serialises writers: one UPDATE is atomic.
    const CLAIM_DUE_SYNCS: &'static str = crate::sql::schedule::claim_due_syncs_sql!("");

    /// Opens (creating when missing) the database a `sqlite:` URL names, in WAL mode with foreign
    /// keys enforced. Does not run migrations: call [`migrate`](Self::migrate) or use
    /// [`connect`](crate::connect).
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory
            && let Some(parent) = options.get_filename().parent()
            && !parent.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(parent).await.map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot create the database directory {}: {e}",
                    parent.display()
                ))
            })?;
        }
        let pool_options = if in_memory {
            // An in-memory database lives as long as its one connection.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(8)
        };
        let pool = pool_options
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(Self::err)?;
        Ok(Self {
            index_writer: IndexWriter::new(pool.clone()),
            pool,
        })
    }

    fn err(e: sqlx::Error) -> StoreError {
        map_sqlx(Backend::Sqlite, e)
    }

    /// Writes a copy of the whole database to the new file `path` (`VACUUM INTO`): one read
    /// transaction, so the copy is the database as it was at one moment, while other connections
    /// (a running server) go on writing. The file must not exist.
    pub async fn vacuum_into(&self, path: &std::path::Path) -> Result<()> {
        let path = path
            .to_str()
            .ok_or_else(|| StoreError::Database(format!("not a UTF-8 path: {}", path.display())))?;
        sqlx::query("VACUUM INTO $1")
            .bind(path)
            .execute(&self.pool)
            .await
            .map_err(Self::err)?;
        Ok(())
    }

    /// A transaction that takes the write lock up front, so it never fails half-way with
    /// SQLITE_BUSY when upgrading from a read.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(Self::err)
    }

    /// Nothing to do: a write transaction holds the database's write lock, so write
    /// transactions are serial already.
    async fn lock_name(_conn: &mut SqliteConnection, _name: &str) -> Result<()> {
        Ok(())
    }
}

crate::sql::impl_store_areas!(SqliteStore);
