-- (SQLite) Read access that sync granted does not outlive what it came from, and a source that stops
-- answering is hidden before its documents are deleted. Timestamps are BIGINT unix milliseconds.

-- Which folder source's sharing gave each sync grant. `kb_grants` keeps one `sync` row per user (the union
-- over the sources, what access checks read); these rows say which sources it came from, so removing a source
-- withdraws exactly what only that source granted. Gone with the source or the user.
CREATE TABLE sync_grant_sources (
    source_id TEXT NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (source_id, user_id)
);
CREATE INDEX sync_grant_sources_user_id ON sync_grant_sources (user_id);

-- When the source first answered 403/404 (NULL: readable). While set, its documents are left out of search
-- and its sharing grants nothing; the next run deletes them if the source still does not answer, or clears
-- the mark if it does.
ALTER TABLE sources ADD COLUMN revoked_at BIGINT;

-- Since when the connection needs re-authorization (NULL while it does not). After a grace period the
-- knowledge base's sync grants are withdrawn. Connections already marked start their grace now.
ALTER TABLE connections ADD COLUMN needs_reauth_since BIGINT;
UPDATE connections SET needs_reauth_since = CAST(strftime('%s', 'now') AS INTEGER) * 1000 WHERE needs_reauth;
CREATE INDEX connections_needs_reauth_since ON connections (needs_reauth_since) WHERE needs_reauth;
