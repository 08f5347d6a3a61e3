-- (SQLite)
-- The engine's state of a source, one row per item instead of one JSON document: a run with a few changes
-- reads and writes the rows of the items it touches (the changed ones, their folders up to the source's
-- root, what lies below a renamed, moved, deleted or re-shared folder, and the files left to retry), not the
-- whole map. data: the engine's serialization of the item; parent_id: what paths and inherited access are
-- followed by; owned: the source looks after the item's document (an item in several sources is one
-- document); pending: an owned file not yet brought in at its current content (retried by the next run).
-- A state saved as one document before this migration (source_states) is read once more by the engine,
-- which writes it back as rows and removes it.
CREATE TABLE source_items (
    source_id TEXT NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    item_id   TEXT NOT NULL,
    parent_id TEXT,
    owned     BOOLEAN NOT NULL DEFAULT FALSE,
    pending   BOOLEAN NOT NULL DEFAULT FALSE,
    data      TEXT NOT NULL,
    PRIMARY KEY (source_id, item_id)
) WITHOUT ROWID;
-- What lies below a folder.
CREATE INDEX source_items_parent ON source_items (source_id, parent_id);
-- The files left to retry: few, found by source.
CREATE INDEX source_items_pending ON source_items (source_id) WHERE pending;
