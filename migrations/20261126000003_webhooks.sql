-- Webhooks: each app's endpoints, and a log of every delivery attempt. Edges cache an app's
-- webhooks and LISTEN on `switchboard_webhooks` (payload: the app id) to reload them.

CREATE TABLE webhooks (
    id UUID PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    -- A subset of channel_occupied, channel_vacated, member_added, member_removed,
    -- client_event, cache_miss, subscription_count; empty means all of them.
    event_types TEXT[] NOT NULL DEFAULT '{}',
    -- Several events per request (up to 100) instead of one.
    batching BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_app ON webhooks (app_id);

-- One row per HTTP attempt: 'retrying' after a failure that will be retried, 'failed' after
-- the last one, 'delivered' on a 2xx.
CREATE TABLE webhook_deliveries (
    id UUID PRIMARY KEY,
    webhook_id UUID NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL CHECK (attempt >= 1),
    status TEXT NOT NULL CHECK (status IN ('delivered', 'failed', 'retrying')),
    http_status INTEGER,
    error TEXT,
    event_count INTEGER NOT NULL CHECK (event_count >= 1),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_app ON webhook_deliveries (app_id, created_at DESC);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id);

-- Opt-in `pusher_internal:subscription_count` events (off by default, as on Pusher). The apps
-- trigger already tells edges when it changes.
ALTER TABLE apps ADD COLUMN subscription_counting BOOLEAN NOT NULL DEFAULT FALSE;

CREATE FUNCTION notify_webhook_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('switchboard_webhooks', COALESCE(NEW.app_id, OLD.app_id));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER webhooks_notify AFTER INSERT OR UPDATE OR DELETE ON webhooks
    FOR EACH ROW EXECUTE FUNCTION notify_webhook_change();
