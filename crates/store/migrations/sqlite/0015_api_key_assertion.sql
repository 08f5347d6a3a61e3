-- A service account's key an administrator trusts to assert which kbsync user a request is for
-- (Open WebUI's forwarded user headers on the tool server's operations). Off for every existing key.
ALTER TABLE api_keys ADD COLUMN trusted_user_assertion BOOLEAN NOT NULL DEFAULT FALSE;
