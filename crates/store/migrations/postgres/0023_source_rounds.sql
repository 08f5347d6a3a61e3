-- (PostgreSQL)
-- A round of a folder's change feed saved page by page while a run follows it, so that a run stopped in the
-- middle of a long round (killed, failed, cancelled) resumes from the last saved page instead of from the
-- start. The round's changes are still applied only once it is complete. round_from: the cursor the round
-- started from (NULL: the start of the feed), so that a round is resumed only from where it began;
-- round_next: the link to ask for next (NULL: no round saved); round_full: the round enumerates everything
-- (a first round, or one after an expired cursor); round_pages: how many pages source_round_items holds.
-- Cleared when the round's end is saved with the source's items, or the source's state is forgotten.
ALTER TABLE sources ADD COLUMN round_from TEXT;
ALTER TABLE sources ADD COLUMN round_next TEXT;
ALTER TABLE sources ADD COLUMN round_full BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE sources ADD COLUMN round_pages BIGINT NOT NULL DEFAULT 0;
-- The items of each saved page (data: the datasource's item as the engine serializes it), read back page
-- by page in order when the round completes (the same item on a later page wins).
CREATE TABLE source_round_items (
    source_id TEXT NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    page      BIGINT NOT NULL,
    item_id   TEXT NOT NULL,
    data      TEXT NOT NULL,
    PRIMARY KEY (source_id, page, item_id)
);
