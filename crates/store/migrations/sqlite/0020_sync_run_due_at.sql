-- (SQLite)
-- When a scheduled or notified run was due (the knowledge base's next_sync_at as the scheduler claimed it),
-- in milliseconds, so that the queue lag (started_at - due_at) can be shown per run and per hour. NULL for
-- manual runs, for a knowledge base that had never been scheduled (due at once), and for runs before this
-- migration.
ALTER TABLE sync_runs ADD COLUMN due_at BIGINT;
-- The admin page aggregates the runs of the last day across every knowledge base.
CREATE INDEX sync_runs_started_at ON sync_runs (started_at);
