//! The sync crate's tests, one binary: the engine, and the runner with its scheduler, against the
//! in-process Graph emulator, each scenario on SQLite and (when `KBSYNC_TEST_DATABASE_URL` is
//! set) PostgreSQL in a schema of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod engine;
mod scheduler;
