//! The Open WebUI client's tests: `contract` replays exchanges recorded from the real Open WebUI
//! 0.12.4 (tests/fixtures, made by tests/fixtures/record.py) against an in-process fake that also
//! checks kbsync's requests have the recorded shapes; `real` runs against the real Open WebUI
//! (skipped with a message when it is not installed, failing under `CI`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod contract;
mod fake;
mod real;
