//! The oauth crate's tests, one binary: the connection lifecycle against the in-process emulator
//! of the identity platform (and of Google's OAuth endpoints), on SQLite and (when `KBSYNC_TEST_DATABASE_URL` is set) PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod app_only;
mod connections;
mod google;
