-- A knowledge base may be connected as the organisation's application (client credentials) instead of by a
-- user's delegation: such a connection has no refresh token. `credentials` says which kind a row is.
-- SQLite cannot drop NOT NULL from a column, so the table is rebuilt (nothing references it).
CREATE TABLE connections_new (
    kb_id                    TEXT PRIMARY KEY NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    datasource               TEXT NOT NULL,
    credentials              TEXT NOT NULL DEFAULT 'delegated',
    refresh_token_ciphertext TEXT,
    refresh_token_key_id     TEXT,
    access_token_ciphertext  TEXT,
    access_token_key_id      TEXT,
    access_expires_at        BIGINT,
    tenant                   TEXT,
    stored_at                BIGINT NOT NULL,
    last_refreshed_at        BIGINT,
    needs_reauth             BOOLEAN NOT NULL DEFAULT FALSE,
    refresh_lease_owner      TEXT,
    refresh_lease_until      BIGINT,
    needs_reauth_since       BIGINT,
    CHECK (credentials = 'app_only' OR (refresh_token_ciphertext IS NOT NULL AND refresh_token_key_id IS NOT NULL))
);
INSERT INTO connections_new (kb_id, datasource, credentials, refresh_token_ciphertext, refresh_token_key_id,
    access_token_ciphertext, access_token_key_id, access_expires_at, tenant, stored_at, last_refreshed_at,
    needs_reauth, refresh_lease_owner, refresh_lease_until, needs_reauth_since)
SELECT kb_id, datasource, 'delegated', refresh_token_ciphertext, refresh_token_key_id,
    access_token_ciphertext, access_token_key_id, access_expires_at, tenant, stored_at, last_refreshed_at,
    needs_reauth, refresh_lease_owner, refresh_lease_until, needs_reauth_since
FROM connections;
DROP TABLE connections;
ALTER TABLE connections_new RENAME TO connections;
CREATE INDEX connections_needs_reauth_since ON connections (needs_reauth_since) WHERE needs_reauth;
