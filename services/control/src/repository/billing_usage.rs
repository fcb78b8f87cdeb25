//! Overage from the metering rollups into the billing outbox, and the outbox's rows on
//! their way to Stripe's meters.
//!
//! Rows are made only for UTC days that are over (`day + 1 day <= until`), once each (the
//! identifier is the primary key), and from the account's current period on. Messages: each
//! app's published plus delivered beyond the plan's messages per day. Connections: each day
//! adds how much the period's running peak over the included amount grew that day, so the
//! rows of a period sum to `max(0, period peak - included)`, whatever order they are made in.

use sqlx::{AssertSqlSafe, PgConnection};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub identifier: String,
    pub account_id: Uuid,
    pub meter: String,
    pub app_id: String,
    pub usage_day: Date,
    pub quantity: i64,
    pub stripe_customer_id: String,
    pub attempts: i32,
}

/// Subscriptions whose apps are billed for overage (downgraded ones run on hard limits).
const BILLED: &str = "b.plan_id IS NOT NULL AND NOT b.downgraded AND b.status IN ('active', 'trialing', 'past_due', 'unpaid') AND b.current_period_start IS NOT NULL";

/// Adds the rows for days over before `until`; returns how many were new.
#[tracing::instrument(name = "db.billing_usage.enqueue_overage", level = "debug", skip_all)]
pub async fn enqueue_overage(conn: &mut PgConnection, until: OffsetDateTime) -> sqlx::Result<u64> {
    let messages = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO billing_usage_outbox (identifier, account_id, meter, app_id, usage_day, quantity, stripe_customer_id) \
         SELECT 'sb-messages-' || d.app_id || '-' || to_char(d.day AT TIME ZONE 'UTC', 'YYYY-MM-DD'), \
                b.account_id, 'messages', d.app_id, (d.day AT TIME ZONE 'UTC')::date, \
                d.messages_published + d.messages_delivered - p.messages_per_day, b.stripe_customer_id \
         FROM usage_days d JOIN apps a ON a.id = d.app_id \
         JOIN billing_accounts b ON b.account_id = a.account_id JOIN plans p ON p.id = b.plan_id \
         WHERE {BILLED} AND d.day >= date_trunc('day', b.current_period_start, 'UTC') \
           AND d.day + interval '1 day' <= $1 \
           AND d.messages_published + d.messages_delivered > p.messages_per_day \
         ON CONFLICT (identifier) DO NOTHING"
    )))
    .bind(until)
    .execute(&mut *conn)
    .await?;
    let connections = sqlx::query(AssertSqlSafe(format!(
        "WITH days AS ( \
           SELECT d.app_id, d.day, b.account_id, b.stripe_customer_id, p.max_connections::bigint AS included, \
                  max(d.peak_connections) OVER (PARTITION BY d.app_id ORDER BY d.day) AS peak_to_date \
           FROM usage_days d JOIN apps a ON a.id = d.app_id \
           JOIN billing_accounts b ON b.account_id = a.account_id JOIN plans p ON p.id = b.plan_id \
           WHERE {BILLED} AND d.day >= date_trunc('day', b.current_period_start, 'UTC') \
             AND d.day + interval '1 day' <= $1 \
         ), growth AS ( \
           SELECT *, GREATEST(0, peak_to_date - included) \
                     - GREATEST(0, COALESCE(lag(peak_to_date) OVER (PARTITION BY app_id ORDER BY day), 0) - included) AS quantity \
           FROM days \
         ) \
         INSERT INTO billing_usage_outbox (identifier, account_id, meter, app_id, usage_day, quantity, stripe_customer_id) \
         SELECT 'sb-connections-' || app_id || '-' || to_char(day AT TIME ZONE 'UTC', 'YYYY-MM-DD'), \
                account_id, 'connections', app_id, (day AT TIME ZONE 'UTC')::date, quantity, stripe_customer_id \
         FROM growth WHERE quantity > 0 \
         ON CONFLICT (identifier) DO NOTHING"
    )))
    .bind(until)
    .execute(conn)
    .await?;
    Ok(messages.rows_affected() + connections.rows_affected())
}

/// The unreported row no one else holds with the fewest attempts, oldest first (a row Stripe
/// keeps refusing does not hold back the others), locked until the transaction ends.
#[tracing::instrument(name = "db.billing_usage.claim_next", level = "debug", skip_all)]
pub async fn claim_next(conn: &mut PgConnection) -> sqlx::Result<Option<OutboxRow>> {
    sqlx::query_as("SELECT identifier, account_id, meter, app_id, usage_day, quantity, stripe_customer_id, attempts FROM billing_usage_outbox WHERE reported_at IS NULL ORDER BY attempts, created_at, identifier LIMIT 1 FOR UPDATE SKIP LOCKED")
        .fetch_optional(conn)
        .await
}

#[tracing::instrument(name = "db.billing_usage.mark_reported", level = "debug", skip_all)]
pub async fn mark_reported(conn: &mut PgConnection, identifier: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE billing_usage_outbox SET reported_at = now(), attempts = attempts + 1, last_error = NULL WHERE identifier = $1")
        .bind(identifier)
        .execute(conn)
        .await?;
    Ok(())
}

#[tracing::instrument(name = "db.billing_usage.record_failure", level = "debug", skip_all)]
pub async fn record_failure(
    conn: &mut PgConnection,
    identifier: &str,
    error: &str,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE billing_usage_outbox SET attempts = attempts + 1, last_error = left($2, 500) WHERE identifier = $1")
        .bind(identifier)
        .bind(error)
        .execute(conn)
        .await?;
    Ok(())
}

/// Units in the outbox for the account and meter from `since` on: (all, reported).
#[tracing::instrument(name = "db.billing_usage.totals", level = "debug", skip_all)]
pub async fn totals(
    conn: &mut PgConnection,
    account_id: Uuid,
    meter: &str,
    since: Date,
) -> sqlx::Result<(i64, i64)> {
    sqlx::query_as("SELECT COALESCE(sum(quantity), 0)::bigint, COALESCE(sum(quantity) FILTER (WHERE reported_at IS NOT NULL), 0)::bigint FROM billing_usage_outbox WHERE account_id = $1 AND meter = $2 AND usage_day >= $3")
        .bind(account_id)
        .bind(meter)
        .bind(since)
        .fetch_one(conn)
        .await
}

/// This period's usage of the account's apps, today's partial day included.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct PeriodUsage {
    pub messages: i64,
    pub peak_connections: i64,
    pub overage_messages: i64,
    pub overage_connections: i64,
}

#[tracing::instrument(name = "db.billing_usage.period_usage", level = "debug", skip_all)]
pub async fn period_usage(
    conn: &mut PgConnection,
    account_id: Uuid,
    since: OffsetDateTime,
    included_messages_per_day: i64,
    included_connections: i64,
) -> sqlx::Result<PeriodUsage> {
    sqlx::query_as(
        "WITH per_app AS ( \
           SELECT d.app_id, \
                  sum(d.messages_published + d.messages_delivered) AS messages, \
                  sum(GREATEST(0, d.messages_published + d.messages_delivered - $3)) AS overage_messages, \
                  max(d.peak_connections) AS peak \
           FROM usage_days d JOIN apps a ON a.id = d.app_id \
           WHERE a.account_id = $1 AND d.day >= date_trunc('day', $2::timestamptz, 'UTC') GROUP BY d.app_id \
         ) \
         SELECT COALESCE(sum(messages), 0)::bigint AS messages, COALESCE(max(peak), 0)::bigint AS peak_connections, \
                COALESCE(sum(overage_messages), 0)::bigint AS overage_messages, \
                COALESCE(sum(GREATEST(0, peak - $4)), 0)::bigint AS overage_connections \
         FROM per_app",
    )
    .bind(account_id)
    .bind(since)
    .bind(included_messages_per_day)
    .bind(included_connections)
    .fetch_one(conn)
    .await
}

/// Usage reports not yet accepted by Stripe, and the age of the oldest; for `/metrics`
/// (the partial index on unreported rows answers it).
pub async fn backlog(conn: &mut PgConnection) -> sqlx::Result<super::Backlog> {
    sqlx::query_as(
        "SELECT count(*) AS waiting, \
         COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS oldest_age_seconds \
         FROM billing_usage_outbox WHERE reported_at IS NULL",
    )
    .fetch_one(conn)
    .await
}
