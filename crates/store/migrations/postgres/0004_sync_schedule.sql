-- (PostgreSQL) Scheduling, sync leases and persisted progress of knowledge bases. Timestamps are BIGINT unix
-- milliseconds.

-- The schedule: the knowledge base's own interval (NULL: the server-wide default), when the scheduler next
-- considers it (NULL: at once, it never ran), when a run last actually ran, and how many runs in a row failed
-- (for the backoff).
ALTER TABLE knowledge_bases ADD COLUMN sync_interval_minutes INTEGER;
ALTER TABLE knowledge_bases ADD COLUMN next_sync_at BIGINT;
ALTER TABLE knowledge_bases ADD COLUMN last_sync_at BIGINT;
ALTER TABLE knowledge_bases ADD COLUMN sync_failures INTEGER NOT NULL DEFAULT 0;

-- The sync lease: the instance running the knowledge base's sync and until when it may (a lease past its
-- expiry is stale and may be taken over). Taken and checked with single conditional statements, so one
-- knowledge base is never synced twice at once. The cancel flag is set by whichever instance serves the
-- cancel request and seen by the holder when it renews its lease; taking the lease clears it.
ALTER TABLE knowledge_bases ADD COLUMN sync_lease_owner TEXT;
ALTER TABLE knowledge_bases ADD COLUMN sync_lease_expires_at BIGINT;
ALTER TABLE knowledge_bases ADD COLUMN sync_cancel_requested BOOLEAN NOT NULL DEFAULT FALSE;

-- Progress of the current (or last) run and the last error, so every instance can report them.
ALTER TABLE knowledge_bases ADD COLUMN sync_run_id TEXT;
ALTER TABLE knowledge_bases ADD COLUMN sync_current BIGINT NOT NULL DEFAULT 0;
ALTER TABLE knowledge_bases ADD COLUMN sync_total BIGINT NOT NULL DEFAULT 0;
ALTER TABLE knowledge_bases ADD COLUMN sync_file TEXT;
ALTER TABLE knowledge_bases ADD COLUMN sync_error TEXT;

-- The due query walks this index in claim order and reads only the entries due at `now` (a range scan that
-- stops after the rows it claims), however many knowledge bases there are; local knowledge bases are not in
-- it. A never-synced knowledge base (NULL) is due at once and first: it is indexed as -1, before every
-- timestamp. The claim's WHERE and ORDER BY repeat this expression exactly, so the planner uses the index.
CREATE INDEX knowledge_bases_due ON knowledge_bases (COALESCE(next_sync_at, -1), id) WHERE kb_type <> 'local';
