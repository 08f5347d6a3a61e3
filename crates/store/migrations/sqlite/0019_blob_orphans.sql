-- (SQLite)
-- Blobs are collected late (docs/storage.md): deleting a document, or changing its content, records its old
-- content hash here in the same transaction; housekeeping removes the blob file once the hash has been a
-- candidate longer than the grace period and no document references it. A document row that takes a hash
-- clears its candidate in the transaction that writes the row. since: milliseconds.
CREATE TABLE blob_orphans (
    content_hash TEXT PRIMARY KEY,
    since BIGINT NOT NULL
);
CREATE INDEX blob_orphans_since ON blob_orphans (since);
