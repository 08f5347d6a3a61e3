//! The SQL of [`DatabaseStore`](crate::DatabaseStore): only `ping`; migrations are each database's
//! own (`sqlite/migrate.rs`, `postgres/migrate.rs`).

/// Writes `impl DatabaseStore for $ty`. `$ty` provides what `sql/mod.rs` lists.
macro_rules! impl_database_store {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl $crate::DatabaseStore for $ty {
            fn backend(&self) -> $crate::Backend {
                Self::BACKEND
            }

            async fn migrate(&self) -> $crate::Result<()> {
                // The inherent `migrate` (inherent items win over trait items in a path).
                <$ty>::migrate(self).await
            }

            async fn ping(&self) -> $crate::Result<()> {
                sqlx::query("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_database_store;
