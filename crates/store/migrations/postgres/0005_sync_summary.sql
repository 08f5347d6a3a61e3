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
