//! The shared test kit of kbsync: every crate's tests (and the benches) use it instead of a copy
//! of their own.
//!
//! - [`on_both_databases!`] declares each async test body once per database: `sqlite::NAME` and
//!   `postgres::NAME`.
//! - [`TestDb`], [`PgSchema`] and [`PgDatabase`]: a fresh SQLite file, or a fresh PostgreSQL
//!   schema/database in the one named by `KBSYNC_TEST_DATABASE_URL`, removed when the value is
//!   dropped — also when the test panics.
//! - [`fixtures`]: users and knowledge bases made directly in a store.
//! - [`sse`]: reads a server-sent event stream until a named event.
//! - [`oidc_peer`]: a real OpenID provider (the `oidc-provider` npm package) to sign in against.
//! - [`openwebui`]: a real Open WebUI 0.12 to publish knowledge bases into.
//! - `emulator` (feature `emulator`): an exactly assertable Graph emulator, a OneDrive datasource
//!   pointed at it, [`emulator::TestTokens`] and users with personal drives.
//! - `gdrive` (feature `gdrive`): the same for the Google Drive emulator and datasource.
//! - `tokens` (either feature): access tokens an emulator mints, refreshed like the connection
//!   manager's.
//!
//! The PostgreSQL rule everywhere: when `KBSYNC_TEST_DATABASE_URL` is unset (or empty) the
//! PostgreSQL variants are skipped with a message on stderr; when it is set and the database
//! cannot be used they fail.
//!
//! This is test support (a dev-dependency, and a dependency of the benchmark binary): a failure here is a failed test, so it may
//! panic, except in `Drop`, which runs while a panicking test unwinds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod db;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod fixtures;
#[cfg(feature = "gdrive")]
pub mod gdrive;
pub mod oidc_peer;
pub mod openwebui;
pub mod sse;
#[cfg(any(feature = "emulator", feature = "gdrive"))]
pub mod tokens;

/// When an exact emulator's frozen clock stands (the Graph and the Google Drive one alike).
pub const START: &str = "2025-03-01T09:00:00Z";

/// [`START`] as a time.
pub fn start_time() -> chrono::DateTime<chrono::Utc> {
    START.parse().unwrap()
}

pub use db::{Db, PG_ENV, PgDatabase, PgSchema, TestDb, postgres_url, with_db, with_store, with_test_db};

/// Declares each async test body once per database, as `sqlite::NAME` and `postgres::NAME`
/// (multi-threaded tokio tests). The calling crate needs `tokio` (with its macros).
///
/// - `on_both_databases!(a, b)`: each body is `async fn a(store: Arc<dyn Store>)`, run by
///   [`with_store`] on a fresh, migrated store.
/// - `on_both_databases!(run = RUNNER; a, b)`: each test calls `RUNNER(Db, body)`; `RUNNER` is a
///   path as seen from the calling module (e.g. [`with_test_db`], or a runner of the test file).
/// - `on_both_databases!(run = RUNNER, workers = 4; a, b)`: with that many worker threads
///   (2 unless given).
#[macro_export]
macro_rules! on_both_databases {
    (run = $runner:path, workers = $workers:literal; $($name:ident),* $(,)?) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = $workers)]
                async fn $name() {
                    $runner($crate::Db::Sqlite, super::$name).await
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = $workers)]
                async fn $name() {
                    $runner($crate::Db::Postgres, super::$name).await
                }
            )*
        }
    };
    (run = $runner:path; $($name:ident),* $(,)?) => {
        $crate::on_both_databases!(run = $runner, workers = 2; $($name),*);
    };
    ($($name:ident),* $(,)?) => {
        $crate::on_both_databases!(run = $crate::with_store, workers = 2; $($name),*);
    };
}
