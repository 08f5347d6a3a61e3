//! Configuration: command-line flags, then `KBSYNC_*` environment variables, then the optional
//! TOML file, then defaults. Every bad value stops start-up with a message naming the setting.
//!
//! - [`file`]: the TOML file's shape and reading it;
//! - [`settings`]: the resolved settings the binary uses;
//! - [`resolve`]: how flags, environment and file combine, and the checks of every value;
//! - [`example`]: the documented example file (`kbsync config example`), parsed by a test.

mod example;
mod file;
mod resolve;
mod settings;
#[cfg(test)]
mod tests;

pub use example::EXAMPLE;
pub use file::{FileConfig, GDriveFileConfig, OidcFileConfig, OneDriveFileConfig, OpenWebUiFileConfig};
pub use settings::{
    AppOnlyCredential, AppOnlySettings, ConfigError, DEFAULT_AUTHORITY_URL, DEFAULT_GRAPH_URL,
    DEFAULT_SCOPES, ExtractIsolation, Flags, GDriveSettings, LogFormat, MIN_SECRET_KEY_CHARS, OidcSettings,
    OneDriveSettings, OpenWebUiSettings, Settings,
};
