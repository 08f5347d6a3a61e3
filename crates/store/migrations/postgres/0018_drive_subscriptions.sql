-- (PostgreSQL)
-- Change notifications (docs/notifications.md). A knowledge base's latest change notification not yet
-- answered by a run that started after it (milliseconds): the scheduler runs it again right after a run
-- during which one came.
ALTER TABLE knowledge_bases ADD COLUMN sync_requested_at BIGINT;

-- One subscription to a drive's changes at its source, shared by every knowledge base that syncs the
-- drive. kb_id is the knowledge base whose connection created it (its tokens renew and delete it); the
-- client state is kept only as its SHA-256 (hex). status: pending (to create), active, renew (renew at
-- once: the source asked), failed (retried at next_check_at). The lease lets one instance at a time
-- work on a row.
CREATE TABLE drive_subscriptions (
    datasource TEXT NOT NULL,
    drive_id TEXT NOT NULL,
    kb_id TEXT,
    subscription_id TEXT,
    client_state_hash TEXT,
    status TEXT NOT NULL,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    renewed_at BIGINT,
    next_check_at BIGINT NOT NULL,
    last_notification_at BIGINT,
    notifications BIGINT NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    lease_owner TEXT,
    lease_expires_at BIGINT,
    PRIMARY KEY (datasource, drive_id)
);
CREATE UNIQUE INDEX drive_subscriptions_by_id ON drive_subscriptions (subscription_id);

-- A notification names a drive: the knowledge bases with a source on it.
CREATE INDEX sources_datasource_drive ON sources (datasource, drive_id);
