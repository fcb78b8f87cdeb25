-- The control plane: plans, accounts and their sessions and API tokens, apps and their keys,
-- and an audit log. Apps and keys notify the edges of every change (see catalog triggers).

CREATE TABLE plans (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    max_connections INTEGER NOT NULL CHECK (max_connections > 0),
    messages_per_day BIGINT NOT NULL CHECK (messages_per_day > 0),
    max_message_bytes INTEGER NOT NULL CHECK (max_message_bytes > 0),
    client_events_per_second INTEGER NOT NULL CHECK (client_events_per_second > 0),
    publish_requests_per_second INTEGER NOT NULL CHECK (publish_requests_per_second > 0),
    max_presence_members INTEGER NOT NULL CHECK (max_presence_members > 0),
    max_channels_per_connection INTEGER NOT NULL CHECK (max_channels_per_connection > 0),
    history_events INTEGER NOT NULL CHECK (history_events >= 0),
    history_seconds INTEGER NOT NULL CHECK (history_seconds >= 0),
    -- Paid plans admit bursts to this multiple of the included amounts and bill the excess;
    -- 1 means a hard limit.
    burst_multiplier INTEGER NOT NULL CHECK (burst_multiplier >= 1),
    webhooks_allowed BOOLEAN NOT NULL,
    overage_cents_per_million_messages INTEGER NOT NULL,
    overage_cents_per_thousand_connections INTEGER NOT NULL,
    sort_order INTEGER NOT NULL
);

INSERT INTO plans VALUES
  ('sandbox',  'Sandbox',      0,   100,   200000, 10240, 10,   20, 100, 100,    100,   120, 1, TRUE,   0,    0, 1),
  ('startup',  'Startup',   2900,  1000,  2000000, 10240, 10,  100, 100, 100,   1000,   600, 2, TRUE, 150, 1000, 2),
  ('pro',      'Pro',       9900,  5000, 10000000, 32768, 10,  500, 100, 100,  10000,  3600, 2, TRUE, 150, 1000, 3),
  ('business', 'Business', 29900, 20000, 50000000, 65536, 10, 2000, 100, 100, 100000, 86400, 2, TRUE, 150, 1000, 4);

CREATE TABLE accounts (
    id UUID PRIMARY KEY,
    email TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX accounts_email_unique ON accounts (lower(email));

-- Browser sessions; only a hash of the cookie's token is stored.
CREATE TABLE sessions (
    token_hash BYTEA PRIMARY KEY,
    account_id UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_account ON sessions (account_id);

-- Bearer tokens for scripts; only a hash is stored, the token is shown once.
CREATE TABLE api_tokens (
    id UUID PRIMARY KEY,
    account_id UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_hash BYTEA NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at TIMESTAMPTZ
);
CREATE INDEX api_tokens_account ON api_tokens (account_id);

CREATE SEQUENCE app_ids START 100001;

CREATE TABLE apps (
    id TEXT PRIMARY KEY DEFAULT nextval('app_ids')::text,
    account_id UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    plan_id TEXT NOT NULL DEFAULT 'sandbox' REFERENCES plans (id),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX apps_account ON apps (account_id);

-- Several keys per app so a key can be rotated without downtime. Secrets are encrypted with
-- the control plane's secrets key (ChaCha20-Poly1305, the key string as associated data).
CREATE TABLE app_keys (
    key TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    secret_nonce BYTEA NOT NULL,
    secret_ciphertext BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at TIMESTAMPTZ
);
CREATE INDEX app_keys_app ON app_keys (app_id);

CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    account_id UUID REFERENCES accounts (id) ON DELETE SET NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    details JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_account ON audit_log (account_id, id);

-- Edges cache apps and keys and LISTEN on this channel. The payload is the app id whose
-- record or keys changed, or '*' when a plan changed (every cached app is reloaded).
CREATE FUNCTION notify_app_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('switchboard_catalog', COALESCE(NEW.id, OLD.id));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION notify_app_key_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('switchboard_catalog', COALESCE(NEW.app_id, OLD.app_id));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION notify_plan_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('switchboard_catalog', '*');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER apps_notify AFTER INSERT OR UPDATE OR DELETE ON apps
    FOR EACH ROW EXECUTE FUNCTION notify_app_change();
CREATE TRIGGER app_keys_notify AFTER INSERT OR UPDATE OR DELETE ON app_keys
    FOR EACH ROW EXECUTE FUNCTION notify_app_key_change();
CREATE TRIGGER plans_notify AFTER UPDATE ON plans
    FOR EACH ROW EXECUTE FUNCTION notify_plan_change();
