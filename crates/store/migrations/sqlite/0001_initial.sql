-- kbsync initial schema (SQLite). Ids are TEXT uuids, timestamps BIGINT unix milliseconds.

CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    email         TEXT NOT NULL,
    -- lower-cased copy of email: uniqueness and lookup ignore case
    email_lower   TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'user')),
    created_at    BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE login_failures (
    email           TEXT PRIMARY KEY NOT NULL,
    count           BIGINT NOT NULL,
    last_failure_at BIGINT NOT NULL
);

CREATE TABLE knowledge_bases (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    owner_id    TEXT NOT NULL REFERENCES users (id),
    kb_type     TEXT NOT NULL,
    sync_status TEXT NOT NULL DEFAULT 'idle',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX knowledge_bases_owner_id ON knowledge_bases (owner_id);
CREATE INDEX knowledge_bases_created_at ON knowledge_bases (created_at);

CREATE TABLE kb_grants (
    kb_id      TEXT NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    permission TEXT NOT NULL CHECK (permission IN ('read', 'write')),
    origin     TEXT NOT NULL CHECK (origin IN ('manual', 'sync')),
    PRIMARY KEY (kb_id, user_id, origin)
);
CREATE INDEX kb_grants_user_id ON kb_grants (user_id);

CREATE TABLE documents (
    id             TEXT PRIMARY KEY NOT NULL,
    kb_id          TEXT NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    path           TEXT NOT NULL,
    mime           TEXT NOT NULL,
    size           BIGINT NOT NULL,
    content_hash   TEXT NOT NULL,
    source_item_id TEXT,
    web_url        TEXT,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'processed', 'failed')),
    error          TEXT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX documents_kb_id_path ON documents (kb_id, path);
CREATE INDEX documents_content_hash ON documents (content_hash);
CREATE INDEX documents_status ON documents (status, created_at);

-- chunks.id is the rowid of the FTS5 index below.
CREATE TABLE chunks (
    id          INTEGER PRIMARY KEY,
    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    kb_id       TEXT NOT NULL,
    ordinal     BIGINT NOT NULL,
    text        TEXT NOT NULL,
    UNIQUE (document_id, ordinal)
);

-- External-content FTS5 index over chunks.text, kept in sync by triggers (so in the same
-- transaction as every chunk write, including ON DELETE CASCADE from documents).
CREATE VIRTUAL TABLE chunks_fts USING fts5 (
    text,
    content = 'chunks',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER chunks_fts_after_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, text) VALUES (new.id, new.text);
END;

CREATE TRIGGER chunks_fts_after_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;

CREATE TRIGGER chunks_fts_after_update AFTER UPDATE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO chunks_fts (rowid, text) VALUES (new.id, new.text);
END;
