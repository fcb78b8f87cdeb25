-- Metering: what each app did, per UTC minute, hour and day. Edges count in memory and flush
-- every few seconds; each flush adds its counts to the minute row and rolls the same deltas
-- into the hour and day rows in one transaction, so the three always agree. Counts add up;
-- peak_connections is the highest seen (GREATEST), per edge node.
--
-- No foreign key to apps: usage is a billing record that outlives a deleted app, and a flush
-- must never fail (and be retried forever) because an app was deleted meanwhile. Reads are
-- scoped by joining apps on the caller's account.

CREATE TABLE usage_minutes (
    app_id TEXT NOT NULL,
    minute TIMESTAMPTZ NOT NULL,
    peak_connections BIGINT NOT NULL DEFAULT 0,
    connections_opened BIGINT NOT NULL DEFAULT 0,
    messages_published BIGINT NOT NULL DEFAULT 0,
    messages_delivered BIGINT NOT NULL DEFAULT 0,
    bytes_out BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, minute)
);

CREATE TABLE usage_hours (
    app_id TEXT NOT NULL,
    hour TIMESTAMPTZ NOT NULL,
    peak_connections BIGINT NOT NULL DEFAULT 0,
    connections_opened BIGINT NOT NULL DEFAULT 0,
    messages_published BIGINT NOT NULL DEFAULT 0,
    messages_delivered BIGINT NOT NULL DEFAULT 0,
    bytes_out BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, hour)
);

CREATE TABLE usage_days (
    app_id TEXT NOT NULL,
    day TIMESTAMPTZ NOT NULL,
    peak_connections BIGINT NOT NULL DEFAULT 0,
    connections_opened BIGINT NOT NULL DEFAULT 0,
    messages_published BIGINT NOT NULL DEFAULT 0,
    messages_delivered BIGINT NOT NULL DEFAULT 0,
    bytes_out BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, day)
);
