//! The Google Drive datasource against a scripted Drive API: one test binary, one module per
//! concern.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod browse;
mod changes;
mod common;
mod download;
mod fake;
mod faults;
mod permissions;
