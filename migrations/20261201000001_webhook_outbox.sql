-- Webhook requests waiting to be delivered, so that a restart loses none (at least once).
-- The sender inserts one row per request (an endpoint's signed-to-be body); any process's
-- dispatcher claims due rows with FOR UPDATE SKIP LOCKED, pushing `next_attempt_at` ahead by
-- a lease (so a crashed claimer's rows come back), and deletes the row when it is delivered
-- or given up, or moves `next_attempt_at` to the next retry.
CREATE TABLE webhook_outbox (
    id UUID PRIMARY KEY,
    webhook_id UUID NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    -- The exact request body, `{"time_ms":…,"events":[…]}`; signed at each attempt with the
    -- app's current key, so no secret is stored here.
    body TEXT NOT NULL,
    event_count INTEGER NOT NULL CHECK (event_count >= 1),
    -- Attempts started so far (a claim counts one).
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- When the first attempt started: the retry window runs from here.
    first_attempt_at TIMESTAMPTZ,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at);
CREATE INDEX webhook_outbox_webhook ON webhook_outbox (webhook_id);
-- Each app's due rows in order, for the fair claim.
CREATE INDEX webhook_outbox_app_due ON webhook_outbox (app_id, next_attempt_at, id);
