-- Issue 11: metered billing through Stripe. Stripe holds money; Postgres holds the truth
-- about usage and which Stripe objects stand for our plans.

-- The Stripe meters overage is reported to (one per kind, shared by every plan), and each
-- paid plan's product and prices; written by `switchboard admin sync-stripe`.
CREATE TABLE billing_meters (
    meter TEXT PRIMARY KEY CHECK (meter IN ('messages', 'connections')),
    stripe_meter_id TEXT NOT NULL,
    event_name TEXT NOT NULL
);

CREATE TABLE billing_plan_prices (
    plan_id TEXT PRIMARY KEY REFERENCES plans (id),
    stripe_product_id TEXT NOT NULL,
    flat_price_id TEXT NOT NULL,
    messages_price_id TEXT NOT NULL,
    connections_price_id TEXT NOT NULL
);

-- One Stripe customer per account, and its subscription as last read from Stripe.
-- `plan_id` is the plan paid for; the apps run on it unless `downgraded` (unpaid past the
-- grace period: the apps are on the free plan until the payment comes).
CREATE TABLE billing_accounts (
    account_id UUID PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    stripe_customer_id TEXT NOT NULL UNIQUE,
    subscription_id TEXT UNIQUE,
    subscription_created BIGINT,
    plan_id TEXT REFERENCES plans (id),
    status TEXT,
    cancel_at_period_end BOOLEAN NOT NULL DEFAULT FALSE,
    current_period_start TIMESTAMPTZ,
    current_period_end TIMESTAMPTZ,
    past_due_since TIMESTAMPTZ,
    downgraded BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every Stripe event processed, by id: a redelivered event is acknowledged and not applied
-- again.
CREATE TABLE stripe_events (
    event_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Overage waiting to be reported to a Stripe meter, one row per app, meter and UTC day. The
-- identifier is deterministic and is the meter event's `identifier` (Stripe keeps one event
-- per identifier): a row sent and then not marked (a crash) is sent again without counting
-- twice, and a row is never created twice (primary key).
CREATE TABLE billing_usage_outbox (
    identifier TEXT PRIMARY KEY,
    account_id UUID NOT NULL,
    meter TEXT NOT NULL CHECK (meter IN ('messages', 'connections')),
    app_id TEXT NOT NULL,
    usage_day DATE NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    stripe_customer_id TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    reported_at TIMESTAMPTZ,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX billing_usage_outbox_pending ON billing_usage_outbox (created_at)
    WHERE reported_at IS NULL;
CREATE INDEX billing_usage_outbox_account ON billing_usage_outbox (account_id, meter, usage_day);
