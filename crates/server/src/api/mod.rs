//! HTTP handlers: extract, call one service function, map the result. No SQL, no rules.

pub mod accounts;
pub mod datasources;
pub mod extract;
pub mod health;
pub mod multipart;
pub mod openwebui;
pub mod sync;
pub mod tools;
pub mod v1;
pub mod webhooks;
