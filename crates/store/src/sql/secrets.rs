//! The SQL of [`SecretStore`](crate::SecretStore): the encrypted columns, the same text on both
//! databases.

use crate::SecretColumn;

/// `(select, update)` for one encrypted column. The select takes the current key id (`$1`) and
/// returns `row, ciphertext, key_id`; the update takes the row, the old ciphertext, the new
/// ciphertext and the new key id.
pub(crate) fn statements(column: SecretColumn) -> (&'static str, &'static str) {
    match column {
        SecretColumn::RefreshToken => (
            "SELECT kb_id, refresh_token_ciphertext, COALESCE(refresh_token_key_id, '') FROM connections \
             WHERE refresh_token_ciphertext IS NOT NULL AND COALESCE(refresh_token_key_id, '') <> $1 \
             ORDER BY kb_id",
            "UPDATE connections SET refresh_token_ciphertext = $3, refresh_token_key_id = $4 \
             WHERE kb_id = $1 AND refresh_token_ciphertext = $2",
        ),
        SecretColumn::AccessToken => (
            "SELECT kb_id, access_token_ciphertext, COALESCE(access_token_key_id, '') FROM connections \
             WHERE access_token_ciphertext IS NOT NULL AND COALESCE(access_token_key_id, '') <> $1 \
             ORDER BY kb_id",
            "UPDATE connections SET access_token_ciphertext = $3, access_token_key_id = $4 \
             WHERE kb_id = $1 AND access_token_ciphertext = $2",
        ),
        SecretColumn::CodeVerifier => (
            "SELECT state_hash, code_verifier_ciphertext, code_verifier_key_id FROM oauth_states \
             WHERE code_verifier_key_id <> $1 ORDER BY state_hash",
            "UPDATE oauth_states SET code_verifier_ciphertext = $3, code_verifier_key_id = $4 \
             WHERE state_hash = $1 AND code_verifier_ciphertext = $2",
        ),
    }
}

/// Writes `impl SecretStore for $ty`.
macro_rules! impl_secret_store {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl $crate::SecretStore for $ty {
            async fn secrets_not_under_key(&self, key_id: &str) -> $crate::Result<Vec<$crate::StoredSecret>> {
                let mut secrets = Vec::new();
                for column in $crate::SecretColumn::ALL {
                    let (select, _) = $crate::sql::secrets::statements(column);
                    let rows: Vec<(String, String, String)> = sqlx::query_as(select)
                        .bind(key_id)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(Self::err)?;
                    secrets.extend(
                        rows.into_iter()
                            .map(|(row, ciphertext, key_id)| $crate::StoredSecret {
                                column,
                                row,
                                value: kbsync_core::Encrypted { ciphertext, key_id },
                            }),
                    );
                }
                Ok(secrets)
            }

            async fn replace_secret(
                &self,
                secret: &$crate::StoredSecret,
                new: &kbsync_core::Encrypted,
            ) -> $crate::Result<bool> {
                let (_, update) = $crate::sql::secrets::statements(secret.column);
                let done = sqlx::query(update)
                    .bind(&secret.row)
                    .bind(&secret.value.ciphertext)
                    .bind(&new.ciphertext)
                    .bind(&new.key_id)
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

pub(crate) use impl_secret_store;
