//! The OneDrive datasource against the in-process Graph emulator: one test binary, one module
//! per concern.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod browse;
mod common;
mod config;
mod delta;
mod download;
mod faults;
mod fuzz_properties;
mod groups;
mod permissions;
mod quickxorhash;
mod site_groups;
mod throttle;
