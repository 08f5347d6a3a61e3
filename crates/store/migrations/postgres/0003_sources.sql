-- (PostgreSQL) Sources a knowledge base syncs from, the documents that came from them, and the history of
-- sync runs. Timestamps are BIGINT unix milliseconds.

-- One picked folder or file. `cursor` is the delta link of a folder or the last content hash of a
-- file; NULL means "never synced": the next run enumerates everything. Adding the same item twice
-- to one knowledge base is harmless (the unique key).
CREATE TABLE sources (
    id         TEXT PRIMARY KEY NOT NULL,
    kb_id      TEXT NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    provider   TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('folder', 'file')),
    drive_id   TEXT NOT NULL,
    item_id    TEXT NOT NULL,
    name       TEXT NOT NULL,
    path       TEXT NOT NULL,
    cursor     TEXT,
    -- What the sync engine knows of the source's items at its cursor (names, parents, hashes; the
    -- engine's own serialization), saved in the same write as the cursor so the two always match.
    state      TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (kb_id, drive_id, item_id)
);

ALTER TABLE documents ADD COLUMN source_id TEXT REFERENCES sources (id) ON DELETE CASCADE;
CREATE INDEX documents_source_id ON documents (source_id);
-- A remote item is one document of a knowledge base, however often it is synced.
CREATE UNIQUE INDEX documents_kb_source_item ON documents (kb_id, source_item_id)
    WHERE source_item_id IS NOT NULL;

CREATE TABLE sync_runs (
    id          TEXT PRIMARY KEY NOT NULL,
    kb_id       TEXT NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    run_trigger TEXT NOT NULL CHECK (run_trigger IN ('manual', 'scheduled', 'webhook')),
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    status      TEXT NOT NULL,
    processed   BIGINT NOT NULL DEFAULT 0,
    failed      BIGINT NOT NULL DEFAULT 0,
    deleted     BIGINT NOT NULL DEFAULT 0,
    skipped     BIGINT NOT NULL DEFAULT 0,
    total_found BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX sync_runs_kb_id_started_at ON sync_runs (kb_id, started_at);

CREATE TABLE sync_failures (
    run_id  TEXT NOT NULL REFERENCES sync_runs (id) ON DELETE CASCADE,
    ordinal BIGINT NOT NULL,
    item_id TEXT NOT NULL,
    name    TEXT NOT NULL,
    reason  TEXT NOT NULL,
    PRIMARY KEY (run_id, ordinal)
);
