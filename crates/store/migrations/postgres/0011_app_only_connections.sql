-- A knowledge base may be connected as the organisation's application (client credentials) instead of by a
-- user's delegation: such a connection has no refresh token. `credentials` says which kind a row is.
ALTER TABLE connections ADD COLUMN credentials TEXT NOT NULL DEFAULT 'delegated';
ALTER TABLE connections ALTER COLUMN refresh_token_ciphertext DROP NOT NULL;
ALTER TABLE connections ALTER COLUMN refresh_token_key_id DROP NOT NULL;
ALTER TABLE connections ADD CONSTRAINT connections_refresh_token_of_delegated
    CHECK (credentials = 'app_only' OR (refresh_token_ciphertext IS NOT NULL AND refresh_token_key_id IS NOT NULL));
