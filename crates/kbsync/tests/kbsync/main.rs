//! The binary's end-to-end tests, one test binary: the `kbsync` process itself (its command
//! line, `serve`, the demo) and a sync through it.

mod app_only;
mod cli;
mod common;
mod extract_worker;
mod fault_matrix;
mod ops;
mod sync_process;
mod terminal;
