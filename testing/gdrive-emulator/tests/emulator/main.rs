//! End-to-end tests of the emulator: each starts its own emulator on 127.0.0.1:0 and talks HTTP to it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod binary;
mod changes;
mod control;
mod export;
mod faults;
mod files;
mod oauth;
mod permissions;
