-- Accounts that sign in through an OpenID provider may have no password; accounts carry the name the
-- provider gives them and may be disabled; each provider identity (issuer + subject) belongs to one account.
ALTER TABLE users ALTER COLUMN password_hash DROP NOT NULL;
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

-- One row per OpenID sign-in in flight: the state and the browser binding only as SHA-256 (the PKCE
-- verifier and the nonce derive from the two secrets and are never stored), and where to go afterwards.
CREATE TABLE sign_in_flows (
    state_hash   TEXT PRIMARY KEY NOT NULL,
    binding_hash TEXT NOT NULL,
    next_path    TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX sign_in_flows_expires_at ON sign_in_flows (expires_at);
