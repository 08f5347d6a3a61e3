-- (PostgreSQL)
-- What a run needs to know before it reads a source's saved state, so a run that finds nothing changed
-- stays O(1) in the size of the source.

-- How many files the source's saved state holds (inside its subtree), and how many of them are not brought
-- in at their current content (failed, to be retried). Saved in the same write as the cursor and state;
-- NULL when unknown (a state saved before this migration), which makes the next run read the state.
ALTER TABLE sources ADD COLUMN state_files BIGINT;
ALTER TABLE sources ADD COLUMN state_pending BIGINT;
-- The engine's settings that decided what the state says (size limit, supported types): a run under other
-- settings reads the state again, so files skipped under the old ones are reconsidered.
ALTER TABLE sources ADD COLUMN state_settings TEXT;

-- When the knowledge base's sync grants were last computed from its folder sources' sharing (unix
-- milliseconds). NULL means "read the sharing on the next run": never read, or the sources or the users
-- changed since.
ALTER TABLE knowledge_bases ADD COLUMN sharing_read_at BIGINT;

-- The engine's state of a source moves to a table of its own: it can be megabytes (every item of a large
-- folder), and a run that only moves the cursor on must not rewrite it (an UPDATE rewrites the whole row on
-- SQLite). Written in the same transaction as the cursor; gone with its source.
CREATE TABLE source_states (
    source_id TEXT PRIMARY KEY NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    state     TEXT NOT NULL
);
INSERT INTO source_states (source_id, state) SELECT id, state FROM sources WHERE state IS NOT NULL;
ALTER TABLE sources DROP COLUMN state;
