//! The store's error type, and how database errors map onto it.

use thiserror::Error;

use crate::Backend;

/// What went wrong, phrased as what the caller does next.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The row does not exist: answer "not found".
    #[error("not found")]
    NotFound,
    /// A unique value is taken: answer "conflict" naming it.
    #[error("already exists: {0}")]
    Conflict(String),
    /// The input names a row that does not exist (for example an unknown user id in a grant).
    #[error("invalid reference: {0}")]
    InvalidReference(String),
    /// The database URL is not one this store understands: fix the configuration.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// The database cannot be reached or timed out: retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A stored value cannot be read back (a bug or a hand-edited database).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Any other database failure.
    #[error("database error: {0}")]
    Database(String),
    /// The blob store's filesystem failed while the database was being changed with it.
    #[error("blob storage error: {0}")]
    Blob(String),
}

/// Maps a sqlx error to what the caller does next.
pub(crate) fn map_sqlx(backend: Backend, err: sqlx::Error) -> StoreError {
    use sqlx::error::ErrorKind;
    match err {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Database(db) => {
            let message = db.message().to_owned();
            match db.kind() {
                ErrorKind::UniqueViolation => StoreError::Conflict(message),
                ErrorKind::ForeignKeyViolation => StoreError::InvalidReference(message),
                _ => {
                    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                    if is_transient(backend, &code) {
                        StoreError::Unavailable(format!("{message} (code {code})"))
                    } else {
                        StoreError::Database(format!("{message} (code {code})"))
                    }
                }
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(err.to_string()),
        sqlx::Error::Migrate(m) => map_migrate(backend, *m),
        other => StoreError::Database(other.to_string()),
    }
}

pub(crate) fn map_migrate(backend: Backend, err: sqlx::migrate::MigrateError) -> StoreError {
    match err {
        sqlx::migrate::MigrateError::Execute(e) => map_sqlx(backend, e),
        other => StoreError::Database(format!("migration failed: {other}")),
    }
}

/// Errors that mean "the database is busy or gone right now: retry later".
fn is_transient(backend: Backend, code: &str) -> bool {
    match backend {
        // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with any extended code.
        Backend::Sqlite => code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6)),
        // connection exceptions, insufficient resources, operator intervention, serialization
        // failure and deadlock.
        Backend::Postgres => {
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code == "40001"
                || code == "40P01"
        }
    }
}

impl From<crate::BlobError> for StoreError {
    fn from(e: crate::BlobError) -> Self {
        StoreError::Blob(e.to_string())
    }
}
