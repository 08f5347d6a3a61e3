-- (SQLite)
-- Who may read each synced document, as its source says (document-level access), and the members of the groups
-- those principals name. Replaces the knowledge-base-wide grants that the sharing of a source's root gave.

-- An access list: a set of principals, identified by a digest of the sorted set, so the many documents sharing
-- one set point at one row. Principals are text keys: `user:<id at the source>`, `email:<lower-cased address>`,
-- `group:<directory group id>`, `sitegroup:<id>@<site>`, `everyone` (a link open to the organisation or to
-- anyone, when the administrator lets links grant).
CREATE TABLE acls (
    id         TEXT PRIMARY KEY NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE acl_principals (
    acl_id    TEXT NOT NULL REFERENCES acls (id) ON DELETE CASCADE,
    principal TEXT NOT NULL,
    PRIMARY KEY (acl_id, principal)
);
-- Search starts from the caller's principals: which access lists name them.
CREATE INDEX acl_principals_principal ON acl_principals (principal, acl_id);

-- A document's access list (NULL: none read yet, or an uploaded document: only those with access to the whole
-- knowledge base read it). Chunks carry a copy, so search filters matches without visiting documents.
ALTER TABLE documents ADD COLUMN acl_id TEXT REFERENCES acls (id);
CREATE INDEX documents_kb_acl ON documents (kb_id, acl_id);
ALTER TABLE chunks ADD COLUMN acl_id TEXT;
-- Only a change of the text touches the full-text index (an access list change must not re-index).
DROP TRIGGER chunks_fts_after_update;
CREATE TRIGGER chunks_fts_after_update AFTER UPDATE OF text ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO chunks_fts (rowid, text) VALUES (new.id, new.text);
END;

-- Groups as their source expands them (nested groups resolved): members are principal keys (`user:<id>`,
-- `email:<address>`). `refreshed_at` NULL: never expanded.
CREATE TABLE access_groups (
    group_key    TEXT PRIMARY KEY NOT NULL,
    refreshed_at BIGINT
);
CREATE TABLE access_group_members (
    group_key TEXT NOT NULL REFERENCES access_groups (group_key) ON DELETE CASCADE,
    member    TEXT NOT NULL,
    PRIMARY KEY (group_key, member)
);
CREATE INDEX access_group_members_member ON access_group_members (member, group_key);

-- The principals a kbsync user is known as at a source beyond their email (`user:<id at the source>`).
CREATE TABLE user_principals (
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    principal TEXT NOT NULL,
    PRIMARY KEY (user_id, principal)
);
CREATE INDEX user_principals_principal ON user_principals (principal);

-- Read access no longer comes from knowledge-base-wide grants made by sync.
DELETE FROM sync_grant_sources;
DROP TABLE sync_grant_sources;
DELETE FROM kb_grants WHERE origin = 'sync';
-- Every knowledge base reads its sources' permissions again on its next run.
UPDATE knowledge_bases SET sharing_read_at = NULL;
