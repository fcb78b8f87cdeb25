-- Issue 10: verified emails, one-time account tokens (email verification, password reset),
-- and per-app settings the edge enforces (client events, allowed origins).

-- NULL until the owner follows the link of a verification mail.
ALTER TABLE accounts ADD COLUMN email_verified_at TIMESTAMPTZ;

-- One-time tokens mailed to an account's owner; only a SHA-256 hash is stored. A token is
-- single use (`used_at`) and expires; issuing a new one deletes the account's other unused
-- ones of the same purpose, so each account holds at most one live token per purpose.
CREATE TABLE account_tokens (
    token_hash BYTEA PRIMARY KEY,
    account_id UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    purpose TEXT NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ
);
CREATE INDEX account_tokens_account ON account_tokens (account_id, purpose);

-- On by default so apps made before this setting keep working (Pusher's default is off).
ALTER TABLE apps ADD COLUMN client_events BOOLEAN NOT NULL DEFAULT TRUE;
-- Origins (scheme://host[:port], or scheme://*.domain) browsers may connect from; empty
-- means any. The bound matches `tenancy::MAX_ALLOWED_ORIGINS`.
ALTER TABLE apps ADD COLUMN allowed_origins TEXT[] NOT NULL DEFAULT '{}'
    CHECK (cardinality(allowed_origins) <= 100);
