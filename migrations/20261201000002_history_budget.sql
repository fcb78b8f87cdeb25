-- Bytes of channel history (and, apart, of cache channels' last events) one app keeps on a
-- node; past it the app's oldest events are evicted first (issue 8).
ALTER TABLE plans ADD COLUMN history_bytes BIGINT NOT NULL DEFAULT 2097152
    CHECK (history_bytes >= 0);

UPDATE plans SET history_bytes = CASE id
    WHEN 'sandbox' THEN 2 * 1024 * 1024
    WHEN 'startup' THEN 16 * 1024 * 1024
    WHEN 'pro' THEN 64 * 1024 * 1024
    WHEN 'business' THEN 256 * 1024 * 1024
    ELSE history_bytes
END;
