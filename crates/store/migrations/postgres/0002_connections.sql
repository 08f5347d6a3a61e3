-- Connections of knowledge bases to datasources (PostgreSQL): pending OAuth authorizations and the
-- stored, encrypted credentials. Timestamps are BIGINT unix milliseconds.

-- One row per authorize request in flight. The state is stored only as its SHA-256 (hex), the
-- PKCE verifier only encrypted (with the id of the key that encrypted it).
CREATE TABLE oauth_states (
    state_hash               TEXT PRIMARY KEY NOT NULL,
    kb_id                    TEXT NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    user_id                  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider                 TEXT NOT NULL,
    code_verifier_ciphertext TEXT NOT NULL,
    code_verifier_key_id     TEXT NOT NULL,
    created_at               BIGINT NOT NULL,
    expires_at               BIGINT NOT NULL
);
CREATE INDEX oauth_states_expires_at ON oauth_states (expires_at);
CREATE INDEX oauth_states_kb_id ON oauth_states (kb_id);

-- At most one connection per knowledge base. The access token is kept too (encrypted) so that an
-- instance can use a token another instance refreshed; the refresh lease makes refreshing
-- single-flight across instances.
CREATE TABLE connections (
    kb_id                    TEXT PRIMARY KEY NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    provider                 TEXT NOT NULL,
    refresh_token_ciphertext TEXT NOT NULL,
    refresh_token_key_id     TEXT NOT NULL,
    access_token_ciphertext  TEXT,
    access_token_key_id      TEXT,
    access_expires_at        BIGINT,
    tenant                   TEXT,
    stored_at                BIGINT NOT NULL,
    last_refreshed_at        BIGINT,
    needs_reauth             BOOLEAN NOT NULL DEFAULT FALSE,
    refresh_lease_owner      TEXT,
    refresh_lease_until      BIGINT
);
