//! Test databases: a fresh SQLite file or a fresh PostgreSQL schema (or database), each removed
//! when its value is dropped.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use kbsync_store::{Backend, PostgresStore, Store};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Row};
use uuid::Uuid;

/// The variable naming the PostgreSQL database the tests may use (schemas of their own in it).
pub const PG_ENV: &str = "KBSYNC_TEST_DATABASE_URL";

/// How long removing a test schema or database may wait for a lock or a connection before it
/// gives up (and says so on stderr) rather than hang the test run.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Which database a test variant runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// The PostgreSQL URL for tests, or `None` when `KBSYNC_TEST_DATABASE_URL` is unset or empty.
pub fn postgres_url() -> Option<String> {
    std::env::var(PG_ENV).ok().filter(|v| !v.is_empty())
}

fn say_skipped() {
    eprintln!("skipped: {PG_ENV} is not set, so this PostgreSQL variant did not run");
}

/// A schema of its own (`<prefix>_<uuid>`) in the test database; dropped with everything in it
/// when this value is dropped, also while a panicking test unwinds.
pub struct PgSchema {
    url: String,
    name: String,
}

impl PgSchema {
    /// Names a fresh schema in the database at `url` (a store creates it on connecting).
    pub fn new(url: &str, prefix: &str) -> Self {
        Self {
            url: url.to_owned(),
            name: format!("{prefix}_{}", Uuid::new_v4().simple()),
        }
    }

    /// A fresh schema in the test database, or `None` (with a message) when none is configured.
    pub fn from_env(prefix: &str) -> Option<Self> {
        let Some(url) = postgres_url() else {
            say_skipped();
            return None;
        };
        Some(Self::new(&url, prefix))
    }

    /// The database's URL (not the schema's: the schema is chosen per connection).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new, migrated store on this schema (its own connection pool). Panics when PostgreSQL
    /// cannot be used: the variable is set, so the test fails rather than skips.
    pub async fn store(&self) -> Arc<dyn Store> {
        let store = PostgresStore::connect_in_schema(&self.url, &self.name)
            .await
            .unwrap_or_else(|e| panic!("{PG_ENV} is set but PostgreSQL is unusable: {e}"));
        store.migrate().await.unwrap();
        Arc::new(store)
    }

    /// Connection options whose `search_path` is this schema, for looking under the store.
    pub fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.url)
            .unwrap()
            .options([("search_path", self.name.as_str())])
    }

    /// A one-connection pool on this schema, for looking under the store.
    pub async fn raw_pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(1)
            .connect_with(self.connect_options())
            .await
            .unwrap()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        run_cleanup(&format!("schema {}", self.name), self.url.clone(), sql);
    }
}

/// A fresh PostgreSQL database (for whole processes, which take a URL rather than a schema),
/// dropped when this value is dropped, also while a panicking test unwinds.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    /// Creates `<prefix>_<uuid>` next to the test database, or `None` (with a message) when
    /// none is configured.
    pub async fn create(prefix: &str) -> Option<Self> {
        let Some(admin_url) = postgres_url() else {
            say_skipped();
            return None;
        };
        let name = format!("{prefix}_{}", Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("{PG_ENV} is set but PostgreSQL is unusable: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let (prefix_url, _) = admin_url.rsplit_once('/').unwrap();
        let url = format!("{prefix_url}/{name}");
        Some(Self { admin_url, name, url })
    }

    /// The URL of the new database.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        run_cleanup(&format!("database {}", self.name), self.admin_url.clone(), sql);
    }
}

/// Runs one cleanup statement from `Drop`: on a thread of its own with a runtime of its own
/// (`Drop` cannot await, and a test's runtime cannot be blocked on from inside it). It never
/// panics (a panic while unwinding would abort the test binary); a failure is reported on stderr.
fn run_cleanup(what: &str, url: String, sql: String) {
    let work = move || -> Result<(), String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async move {
            let cleanup = async {
                let mut conn = PgConnection::connect(&url).await?;
                sqlx::query("SET lock_timeout = '20s'").execute(&mut conn).await?;
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await?;
                conn.close().await
            };
            match tokio::time::timeout(CLEANUP_TIMEOUT, cleanup).await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(_) => Err("timed out".to_owned()),
            }
        })
    };
    let outcome = std::thread::Builder::new()
        .name("kbsync-kit-cleanup".into())
        .spawn(work)
        .map_err(|e| e.to_string())
        .and_then(|thread| {
            thread
                .join()
                .unwrap_or_else(|_| Err("the cleanup thread panicked".to_owned()))
        });
    if let Err(e) = outcome {
        eprintln!("kbsync-kit: could not drop the test {what}: {e}");
    }
}

/// The database of one test: a fresh SQLite file in a temporary directory, or a fresh
/// PostgreSQL schema. Both go away when this value is dropped.
pub enum TestDb {
    Sqlite { url: String, dir: tempfile::TempDir },
    Postgres(PgSchema),
}

impl TestDb {
    /// A fresh database of kind `db`; for PostgreSQL a schema named `<prefix>_<uuid>`. `None`
    /// (with a message) when `db` is PostgreSQL and no test database is configured.
    pub fn new(db: Db, prefix: &str) -> Option<Self> {
        match db {
            Db::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("kbsync.db").display());
                Some(TestDb::Sqlite { url, dir })
            }
            Db::Postgres => PgSchema::from_env(prefix).map(TestDb::Postgres),
        }
    }

    pub fn db(&self) -> Db {
        match self {
            TestDb::Sqlite { .. } => Db::Sqlite,
            TestDb::Postgres(_) => Db::Postgres,
        }
    }

    /// A new, migrated store handle on this database (its own connection pool: another
    /// "instance" when called twice).
    pub async fn open(&self) -> Arc<dyn Store> {
        let store = match self {
            TestDb::Sqlite { url, .. } => kbsync_store::connect(url).await.unwrap(),
            TestDb::Postgres(schema) => schema.store().await,
        };
        let expected = match self.db() {
            Db::Sqlite => Backend::Sqlite,
            Db::Postgres => Backend::Postgres,
        };
        assert_eq!(store.backend(), expected);
        store
    }

    /// The SQLite URL (`sqlite://…`) or the PostgreSQL database's URL.
    pub fn url(&self) -> &str {
        match self {
            TestDb::Sqlite { url, .. } => url,
            TestDb::Postgres(schema) => schema.url(),
        }
    }

    /// The temporary directory holding the SQLite file (`None` on PostgreSQL).
    pub fn dir(&self) -> Option<&std::path::Path> {
        match self {
            TestDb::Sqlite { dir, .. } => Some(dir.path()),
            TestDb::Postgres(_) => None,
        }
    }

    /// The PostgreSQL schema (`None` on SQLite).
    pub fn schema(&self) -> Option<&PgSchema> {
        match self {
            TestDb::Sqlite { .. } => None,
            TestDb::Postgres(schema) => Some(schema),
        }
    }

    /// The columns of every row `sql` selects, read as text on a connection of its own: for
    /// looking under the store (what is stored hashed or encrypted, what a call left behind).
    pub async fn text_rows(&self, sql: &'static str) -> Vec<Vec<Option<String>>> {
        fn texts<R: Row>(rows: Vec<R>) -> Vec<Vec<Option<String>>>
        where
            for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            usize: sqlx::ColumnIndex<R>,
        {
            rows.iter()
                .map(|r| {
                    (0..r.columns().len())
                        .map(|i| r.try_get::<Option<String>, _>(i).unwrap())
                        .collect()
                })
                .collect()
        }
        match self {
            TestDb::Sqlite { url, .. } => {
                let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
                texts(sqlx::query(sql).fetch_all(&mut c).await.unwrap())
            }
            TestDb::Postgres(schema) => {
                let mut c = PgConnection::connect_with(&schema.connect_options())
                    .await
                    .unwrap();
                texts(sqlx::query(sql).fetch_all(&mut c).await.unwrap())
            }
        }
    }
}

/// Runs `body` with a fresh, migrated store on `db` (schema prefix `kbsync_test`); skips with a
/// message when `db` is PostgreSQL and none is configured. The database is removed afterwards,
/// also when `body` panics.
pub async fn with_store<F, Fut>(db: Db, body: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(test_db) = TestDb::new(db, "kbsync_test") else {
        return;
    };
    let store = test_db.open().await;
    body(store).await;
    drop(test_db);
}

/// Runs `body` with a fresh [`TestDb`] on `db` (schema prefix `kbsync_test`), for tests that open
/// the store themselves (several instances) or look under it; skips as [`with_store`] does.
pub async fn with_test_db<F, Fut>(db: Db, body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(test_db) = TestDb::new(db, "kbsync_test") else {
        return;
    };
    body(test_db).await;
}

/// Runs `body` with `db` itself, for tests that set up their database their own way (a server
/// that makes its own store).
pub async fn with_db<F, Fut>(db: Db, body: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()>,
{
    body(db).await;
}
