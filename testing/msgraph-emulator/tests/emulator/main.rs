//! End-to-end tests of the emulator: each starts its own emulator on 127.0.0.1:0 and talks HTTP to it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod binary;
mod common;

mod access;
mod app_only;
mod content;
mod control;
mod delta;
mod faults;
mod generator;
mod graph_read;
mod groups;
mod identity;
mod lazy_drive;
mod oidc;
mod permissions;
mod shared_with_me;
mod sites;
mod subscriptions;
