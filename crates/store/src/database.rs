//! The database itself: which one it is, its schema, whether it answers.

use async_trait::async_trait;

use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database behind a store, apart from what it holds.
#[async_trait]
pub trait DatabaseStore: Send + Sync {
    fn backend(&self) -> Backend;

    /// Applies pending migrations; safe to call on every start and from several instances at once.
    async fn migrate(&self) -> Result<()>;

    /// Succeeds when the database answers a trivial query.
    async fn ping(&self) -> Result<()>;
}
