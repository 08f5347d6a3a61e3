-- Accounts that sign in through an OpenID provider may have no password; accounts carry the name the
-- provider gives them and may be disabled; each provider identity (issuer + subject) belongs to one account.
-- SQLite cannot drop NOT NULL from a column: the password moves to a new nullable column under the same name
-- (users is referenced by other tables, so it is not rebuilt).
ALTER TABLE users ADD COLUMN password_phc TEXT;
UPDATE users SET password_phc = password_hash;
ALTER TABLE users DROP COLUMN password_hash;
ALTER TABLE users RENAME COLUMN password_phc TO password_hash;
ALTER TABLE users ADD COLUMN display_name TEXT;
-- Set while the account is disabled: its sessions and keys open nothing.
ALTER TABLE users ADD COLUMN disabled_at BIGINT;

CREATE TABLE user_identities (
    issuer          TEXT NOT NULL,
    subject         TEXT NOT NULL,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at      BIGINT NOT NULL,
    last_sign_in_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX user_identities_user_id ON user_identities (user_id);
