-- Publishing knowledge bases into Open WebUI: one row per knowledge base that publishes (its
-- manager turned it on), with the lease an instance holds while publishing, and a history of
-- publishes. Counts, failed files and left-out readers are JSON text.
CREATE TABLE openwebui_publications (
    kb_id             TEXT PRIMARY KEY NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    -- the Open WebUI knowledge base; NULL until the first publish creates it
    knowledge_id      TEXT,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'publishing', 'published', 'failed')),
    -- a publish is wanted since then (NULL: nothing waits); cleared by the publish that saw it
    requested_at      BIGINT,
    lease_owner       TEXT,
    lease_until       BIGINT,
    last_started_at   BIGINT,
    last_published_at BIGINT,
    error             TEXT,
    progress_done     BIGINT NOT NULL DEFAULT 0,
    progress_total    BIGINT NOT NULL DEFAULT 0,
    counts            TEXT NOT NULL DEFAULT '{}',
    failures          TEXT NOT NULL DEFAULT '[]',
    left_out          TEXT NOT NULL DEFAULT '[]',
    -- digest of what the last complete publish sent (files and readers): a publish whose input
    -- has the same digest has nothing to do; NULL forces the next one to compare with Open WebUI
    published_digest  TEXT,
    enabled_at        BIGINT NOT NULL
);
CREATE INDEX openwebui_publications_due ON openwebui_publications (requested_at)
    WHERE requested_at IS NOT NULL;

CREATE TABLE openwebui_publish_runs (
    id          TEXT PRIMARY KEY NOT NULL,
    kb_id       TEXT NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('published', 'failed')),
    error       TEXT,
    counts      TEXT NOT NULL,
    failures    TEXT NOT NULL,
    left_out    TEXT NOT NULL
);
CREATE INDEX openwebui_publish_runs_kb ON openwebui_publish_runs (kb_id, started_at);
