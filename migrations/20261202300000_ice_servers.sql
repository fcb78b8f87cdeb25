-- Issue 14: each app's STUN/TURN servers for WebRTC, announced to its presence subscribers.
-- URLs are validated by `tenancy::IceServers` (the bound matches `MAX_ICE_URLS`).
ALTER TABLE apps ADD COLUMN ice_servers TEXT[] NOT NULL DEFAULT '{}'
    CHECK (cardinality(ice_servers) <= 10);
-- The secret shared with the app's TURN server (TURN REST credentials), encrypted like API
-- secrets (ChaCha20-Poly1305 under the secrets key, the app id as associated data); both
-- NULL when none is set.
ALTER TABLE apps ADD COLUMN turn_secret_nonce BYTEA;
ALTER TABLE apps ADD COLUMN turn_secret_ciphertext BYTEA;
ALTER TABLE apps ADD CONSTRAINT apps_turn_secret_whole
    CHECK ((turn_secret_nonce IS NULL) = (turn_secret_ciphertext IS NULL));
