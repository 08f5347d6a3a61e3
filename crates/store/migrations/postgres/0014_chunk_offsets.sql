-- Where each chunk lies in its document's normalised extracted text, in characters (start
-- inclusive, end exclusive), so that retrieval can point at the passage. Chunks indexed before
-- this migration keep NULL until their document is indexed again.
ALTER TABLE chunks ADD COLUMN start_offset BIGINT;
ALTER TABLE chunks ADD COLUMN end_offset BIGINT;
