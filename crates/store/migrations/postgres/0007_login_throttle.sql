-- (PostgreSQL)
-- Sign-in throttling decided in one atomic statement per attempt (see begin_login_attempt): each
-- account keeps the delay its failures earned and until when it runs, so racing attempts cannot all
-- read "no delay yet" before any of them records its failure. Rows written before this migration have
-- no running delay; their next failure starts one from the count they hold.
ALTER TABLE login_failures ADD COLUMN delay_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE login_failures ADD COLUMN locked_until BIGINT NOT NULL DEFAULT 0;
-- Failures are forgotten after a while (housekeeping deletes them by age).
CREATE INDEX login_failures_last_failure_at ON login_failures (last_failure_at);

-- Failed sign-ins per client address (the TCP peer; IPv6 per /64), counted in fixed windows, so one
-- address cannot guess across many accounts. A window's row is deleted once the window has ended.
CREATE TABLE login_address_failures (
    address    TEXT PRIMARY KEY NOT NULL,
    count      BIGINT NOT NULL,
    window_end BIGINT NOT NULL
);
CREATE INDEX login_address_failures_window_end ON login_address_failures (window_end);

-- Old run records are deleted by age, keeping each knowledge base's most recent ones.
CREATE INDEX sync_runs_finished_at ON sync_runs (finished_at);
