use thiserror::Error;

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
}
