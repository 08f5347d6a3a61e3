//! The server's end-to-end tests, one test binary (faster to link than one per file): a real
//! server on port 0 (`common`), on SQLite and PostgreSQL, against the in-process Graph and Google
//! Drive emulators.

mod access;
mod accounts;
mod api;
mod auth;
mod authz_matrix;
mod common;
mod datasources;
mod fuzz;
mod gdrive;
mod json_schema;
mod oidc;
mod openapi;
mod openwebui;
mod retrieve;
mod sync;
mod ui;
mod ui_browser;
mod webhooks;
