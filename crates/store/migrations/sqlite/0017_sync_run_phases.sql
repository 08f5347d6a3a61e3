-- (SQLite)
-- Where a sync run's time went (docs/sync.md, "Where a run's time goes"), in microseconds: the run's steps
-- (enumerate, plan, permissions) as wall time, the files' phases (download, extract, index) summed over the
-- files, and the run's own wall time. All NULL while the run is going, for a run an interrupted instance left
-- open, and for runs that ended before this migration; all set when a run finishes.
ALTER TABLE sync_runs ADD COLUMN phase_enumerate_us BIGINT;
ALTER TABLE sync_runs ADD COLUMN phase_plan_us BIGINT;
ALTER TABLE sync_runs ADD COLUMN phase_download_us BIGINT;
ALTER TABLE sync_runs ADD COLUMN phase_extract_us BIGINT;
ALTER TABLE sync_runs ADD COLUMN phase_index_us BIGINT;
ALTER TABLE sync_runs ADD COLUMN phase_permissions_us BIGINT;
ALTER TABLE sync_runs ADD COLUMN wall_us BIGINT;
