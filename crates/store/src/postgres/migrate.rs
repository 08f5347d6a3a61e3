//! PostgreSQL's migrations (`migrations/postgres`).

use sqlx::Connection;

use super::PostgresStore;
use crate::error::map_migrate;
use crate::{Backend, Result};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl PostgresStore {
    /// Applies pending migrations (also [`DatabaseStore::migrate`](crate::DatabaseStore::migrate)).
    /// sqlx's migrator holds a PostgreSQL advisory lock (keyed by the database name) while it
    /// applies migrations, so instances starting together apply each migration once.
    pub async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(Self::err)?;
        // `run_direct` is `run` on a connection we hold (sqlx's own workaround for a lifetime
        // limitation of `run(&mut conn)` in Send futures).
        let result = MIGRATOR.run_direct(None, &mut *conn, false).await;
        if let Err(e) = result {
            // A failed run can leave the session's advisory lock held: close the connection
            // rather than return it to the pool.
            let _ = conn.detach().close().await;
            return Err(map_migrate(Backend::Postgres, e));
        }
        Ok(())
    }
}
