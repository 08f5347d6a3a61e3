-- Service accounts (programs an administrator sets up: they never sign in, they hold API keys and
-- knowledge-base grants) and API keys, stored only as the SHA-256 of the key.
ALTER TABLE users ADD COLUMN kind TEXT NOT NULL DEFAULT 'person' CHECK (kind IN ('person', 'service'));

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    scope        TEXT NOT NULL CHECK (scope IN ('read', 'write')),
    -- hex SHA-256 of the whole key; the key itself is never stored
    key_hash     TEXT NOT NULL UNIQUE,
    -- the key's first characters, shown in lists so that keys can be told apart
    prefix       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    last_used_at BIGINT
);
CREATE INDEX api_keys_user_id ON api_keys (user_id, created_at);
