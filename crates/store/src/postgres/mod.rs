//! The PostgreSQL store: for several instances sharing one database. This module opens the
//! database (optionally in its own schema); what else differs from SQLite is in its submodules,
//! by area: `migrate` (its own migrations, under sqlx's advisory lock), `documents` (chunks are
//! inserted with their `tsvector`) and `search` (a `tsvector` column, configuration `simple`,
//! with a GIN index). Everything else is the shared SQL of [`crate::sql`], written for this type
//! by `impl_store_areas!` below.

mod documents;
mod migrate;
mod search;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool, Postgres, Transaction};

use crate::error::map_sqlx;
use crate::{Backend, Result, StoreError};

/// How long taking a connection (including opening one) may last before the database counts as
/// unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection type the shared SQL (`crate::sql`) writes through.
type DbConnection = PgConnection;

/// A [`Store`](crate::Store) over a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    const BACKEND: Backend = Backend::Postgres;
    /// Concurrent claimers skip the rows another one has locked.
    const CLAIM_DUE_SYNCS: &'static str =
        crate::sql::schedule::claim_due_syncs_sql!(" FOR UPDATE SKIP LOCKED");

    /// Connects to the database a `postgres://` URL names. Fails with
    /// [`StoreError::Unavailable`] within a few seconds when it cannot be reached. Does not run
    /// migrations: call [`migrate`](Self::migrate) or use [`connect`](crate::connect).
    pub async fn connect(url: &str) -> Result<Self> {
        let options = Self::parse(url)?;
        Self::connect_with(options, Self::POOL_SIZE).await
    }

    /// The connections [`connect`](Self::connect) keeps open at most (what the server runs with).
    pub const POOL_SIZE: u32 = 10;

    /// Connects like [`connect`](Self::connect), but keeps every table in `schema` (created when
    /// missing; `search_path` is set on every connection). For tests, which each take their own
    /// schema in one database, and for deployments that share a database with other software.
    ///
    /// `schema` must be a plain lower-case identifier (`[a-z_][a-z0-9_]*`, at most 63 bytes).
    /// The pool is smaller than [`connect`](Self::connect)'s (5 connections), as tests open many
    /// at once; [`connect_in_schema_with`](Self::connect_in_schema_with) chooses its size.
    pub async fn connect_in_schema(url: &str, schema: &str) -> Result<Self> {
        Self::connect_in_schema_with(url, schema, 5).await
    }

    /// [`connect_in_schema`](Self::connect_in_schema) with a pool of `max_connections`.
    pub async fn connect_in_schema_with(url: &str, schema: &str, max_connections: u32) -> Result<Self> {
        let valid = !schema.is_empty()
            && schema.len() <= 63
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !schema.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(StoreError::InvalidUrl(format!(
                "schema name {schema:?} must match [a-z_][a-z0-9_]* (at most 63 bytes)"
            )));
        }
        let options = Self::parse(url)?;
        let mut conn = tokio::time::timeout(ACQUIRE_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| StoreError::Unavailable("timed out connecting to PostgreSQL".to_owned()))?
            .map_err(Self::err)?;
        let created = sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}"
        )))
        .execute(&mut conn)
        .await;
        match created {
            Ok(_) => {}
            // Two connections creating the same schema at once: the loser sees a unique violation.
            Err(e) if e.as_database_error().is_some_and(|d| d.is_unique_violation()) => {}
            Err(e) => return Err(Self::err(e)),
        }
        let _ = conn.close().await;
        Self::connect_with(options.options([("search_path", schema)]), max_connections).await
    }

    fn parse(url: &str) -> Result<PgConnectOptions> {
        PgConnectOptions::from_str(url).map_err(|e| StoreError::InvalidUrl(e.to_string()))
    }

    async fn connect_with(options: PgConnectOptions, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(Self::err)?;
        Ok(Self { pool })
    }

    fn err(e: sqlx::Error) -> StoreError {
        map_sqlx(Backend::Postgres, e)
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(Self::err)
    }

    /// Serializes the rest of the transaction with the others that lock the same name: a
    /// transaction-scoped advisory lock on a key derived from the name (a clash of two names'
    /// keys only makes them wait for each other).
    async fn lock_name(conn: &mut PgConnection, name: &str) -> Result<()> {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(name.as_bytes());
        let mut key = [0u8; 8];
        key.copy_from_slice(&digest[..8]);
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(i64::from_be_bytes(key))
            .execute(conn)
            .await
            .map_err(Self::err)?;
        Ok(())
    }
}

crate::sql::impl_store_areas!(PostgresStore);
