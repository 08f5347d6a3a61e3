//! SQLite's migrations (`migrations/sqlite`).

use super::SqliteStore;
use crate::error::map_migrate;
use crate::{Backend, Result};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

impl SqliteStore {
    /// Applies pending migrations (also [`DatabaseStore::migrate`](crate::DatabaseStore::migrate));
    /// safe to call on every start and from several processes at once.
    pub async fn migrate(&self) -> Result<()> {
        // Several processes opening one file at once: a migration another process applied
        // between our listing and our attempt makes the attempt fail; the next round sees it.
        let mut attempt = 0;
        loop {
            match MIGRATOR.run(&self.pool).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 3 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "sqlite migration failed; retrying");
                }
                Err(e) => return Err(map_migrate(Backend::Sqlite, e)),
            }
        }
    }
}
