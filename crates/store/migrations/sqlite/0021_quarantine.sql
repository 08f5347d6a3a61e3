-- (SQLite)
-- Quarantine of files that kill or time out the text extractor (docs/reliability.md, "Quarantine").
-- strikes: how many times extracting the document's content killed or timed out the extractor, counted
-- against strike_content (a synced document: the source's content hash or eTag of the item; an upload: the
-- content hash of its bytes); a strike against other content starts again at one. quarantined_at: set at the
-- second strike on the same content; the document's status stays 'failed' (its error says why) and the API
-- shows it as 'quarantined' until the content changes. Cleared when the document is brought in again.
ALTER TABLE documents ADD COLUMN strikes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE documents ADD COLUMN strike_content TEXT;
ALTER TABLE documents ADD COLUMN quarantined_at BIGINT;
-- Every run reports the quarantined documents of its knowledge base: few, found by knowledge base.
CREATE INDEX documents_quarantined ON documents (kb_id) WHERE quarantined_at IS NOT NULL;
-- Files a run did not bring in because they are quarantined (also listed with the run's failed files, with
-- the reason); 0 for runs before this migration.
ALTER TABLE sync_runs ADD COLUMN quarantined BIGINT NOT NULL DEFAULT 0;
