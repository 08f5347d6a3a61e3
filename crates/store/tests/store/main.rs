//! The store's tests, one binary: the conformance suite by area, indexing under load, and search
//! at scale (ignored by default). Each body runs on SQLite and, when `KBSYNC_TEST_DATABASE_URL`
//! is set, on PostgreSQL in a schema of its own (the kit's `on_both_databases!`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod conformance;
mod indexing;
mod scale;
