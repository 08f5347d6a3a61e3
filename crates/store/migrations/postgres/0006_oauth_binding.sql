-- (PostgreSQL)
-- A pending authorization is bound to the browser that started it: initiate sets a cookie holding a
-- fresh random secret, and only its SHA-256 (hex) is kept here; the callback completes only when that
-- cookie comes back with it. Authorizations pending from before this migration have no binding, so
-- they could never complete: they are dropped (they live ten minutes anyway; the user starts again).
DELETE FROM oauth_states;
-- Every row is written with its hash; the default only satisfies ADD COLUMN and matches no cookie.
ALTER TABLE oauth_states ADD COLUMN binding_hash TEXT NOT NULL DEFAULT '';
