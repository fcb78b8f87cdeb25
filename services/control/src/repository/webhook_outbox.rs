//! Webhook requests waiting for delivery (`webhook_outbox`). Not scoped by account: the
//! sender serves every app. A claim leases rows by moving `next_attempt_at` ahead, so rows a
//! crashed process had claimed are claimed again once the lease runs out.

use std::time::Duration;

use sqlx::PgConnection;
use uuid::Uuid;

/// A request to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxEntry {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub app_id: String,
    pub body: String,
    pub event_count: i32,
}

/// A claimed request: its attempt number is `attempts` (this claim included).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedEntry {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub app_id: String,
    pub body: String,
    pub event_count: i32,
    pub attempts: i32,
    /// Seconds since the first attempt started (0 for the first).
    pub seconds_since_first_attempt: f64,
}

/// Inserts the entries whose webhook still exists and has fewer than `per_webhook_cap`
/// requests waiting (counted before this statement); returns the ids inserted.
#[tracing::instrument(name = "db.webhook_outbox.enqueue", level = "debug", skip_all)]
pub async fn enqueue(
    conn: &mut PgConnection,
    entries: &[NewOutboxEntry],
    per_webhook_cap: i64,
) -> sqlx::Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = entries.iter().map(|entry| entry.id).collect();
    let webhook_ids: Vec<Uuid> = entries.iter().map(|entry| entry.webhook_id).collect();
    let app_ids: Vec<&str> = entries.iter().map(|entry| entry.app_id.as_str()).collect();
    let bodies: Vec<&str> = entries.iter().map(|entry| entry.body.as_str()).collect();
    let counts: Vec<i32> = entries.iter().map(|entry| entry.event_count).collect();
    sqlx::query_scalar(
        "INSERT INTO webhook_outbox (id, webhook_id, app_id, body, event_count) \
         SELECT e.id, e.webhook_id, e.app_id, e.body, e.event_count \
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int4[]) \
              AS e(id, webhook_id, app_id, body, event_count) \
         WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.id = e.webhook_id) \
           AND (SELECT count(*) FROM (SELECT 1 FROM webhook_outbox o \
                WHERE o.webhook_id = e.webhook_id LIMIT $6) waiting) < $6 \
         RETURNING id",
    )
    .bind(ids)
    .bind(webhook_ids)
    .bind(app_ids)
    .bind(bodies)
    .bind(counts)
    .bind(per_webhook_cap)
    .fetch_all(conn)
    .await
}

/// Claims up to `limit` due requests, fairly between apps: each app's oldest due request
/// first, then each app's second, and so on, and no more for an app than `per_app` minus what
/// this process already has under way for it (`busy`: app id and count). Only that many rows
/// per app are ranked, so one app's long backlog does not slow the claim for the others.
/// Claimed rows are leased for `lease` (they are not due again until then) and their attempt
/// counted.
#[tracing::instrument(name = "db.webhook_outbox.claim_due", level = "debug", skip_all)]
pub async fn claim_due(
    conn: &mut PgConnection,
    busy: &[(String, i32)],
    per_app: i32,
    limit: i64,
    lease: Duration,
) -> sqlx::Result<Vec<ClaimedEntry>> {
    let busy_apps: Vec<&str> = busy.iter().map(|(app, _)| app.as_str()).collect();
    let busy_counts: Vec<i32> = busy.iter().map(|(_, count)| *count).collect();
    sqlx::query_as(
        "WITH busy AS ( \
             SELECT * FROM unnest($1::text[], $2::int4[]) AS b(app_id, in_flight) \
         ), due_apps AS ( \
             SELECT DISTINCT o.app_id FROM webhook_outbox o WHERE o.next_attempt_at <= now() \
         ), ranked AS ( \
             SELECT first.id, first.next_attempt_at, first.turn \
             FROM due_apps a \
             LEFT JOIN busy b ON b.app_id = a.app_id \
             CROSS JOIN LATERAL ( \
                 SELECT o.id, o.next_attempt_at, \
                        row_number() OVER (ORDER BY o.next_attempt_at, o.id) AS turn \
                 FROM webhook_outbox o \
                 WHERE o.app_id = a.app_id AND o.next_attempt_at <= now() \
                 ORDER BY o.next_attempt_at, o.id \
                 LIMIT GREATEST($3 - COALESCE(b.in_flight, 0), 0) \
             ) first \
         ), claimed AS ( \
             SELECT o.id FROM webhook_outbox o JOIN ranked r ON r.id = o.id \
             WHERE o.next_attempt_at <= now() \
             ORDER BY r.turn, r.next_attempt_at, o.id \
             LIMIT $4 \
             FOR UPDATE OF o SKIP LOCKED \
         ) \
         UPDATE webhook_outbox o \
         SET next_attempt_at = now() + make_interval(secs => $5), \
             attempts = o.attempts + 1, \
             first_attempt_at = COALESCE(o.first_attempt_at, now()) \
         FROM claimed c WHERE o.id = c.id \
         RETURNING o.id, o.webhook_id, o.app_id, o.body, o.event_count, o.attempts, \
             EXTRACT(EPOCH FROM now() - o.first_attempt_at)::float8 \
                 AS seconds_since_first_attempt",
    )
    .bind(busy_apps)
    .bind(busy_counts)
    .bind(per_app)
    .bind(limit)
    .bind(lease.as_secs_f64())
    .fetch_all(conn)
    .await
}

/// Forgets a request (delivered, given up, or its webhook gone).
#[tracing::instrument(name = "db.webhook_outbox.remove", level = "debug", skip_all)]
pub async fn remove(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM webhook_outbox WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Makes a claimed request due again after `wait` (a retry; zero hands it back now).
#[tracing::instrument(name = "db.webhook_outbox.reschedule", level = "debug", skip_all)]
pub async fn reschedule(conn: &mut PgConnection, id: Uuid, wait: Duration) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE webhook_outbox SET next_attempt_at = now() + make_interval(secs => $2) \
         WHERE id = $1",
    )
    .bind(id)
    .bind(wait.as_secs_f64())
    .execute(conn)
    .await?;
    Ok(())
}

/// Hands back claims whose attempt was cut short (at shutdown): due now, the attempt uncounted.
#[tracing::instrument(name = "db.webhook_outbox.release", level = "debug", skip_all)]
pub async fn release(conn: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE webhook_outbox SET next_attempt_at = now(), attempts = attempts - 1 \
         WHERE id = ANY($1) AND attempts > 0",
    )
    .bind(ids)
    .execute(conn)
    .await?;
    Ok(())
}

/// Requests waiting for an app (for tests and operators).
#[tracing::instrument(name = "db.webhook_outbox.count_for_app", level = "debug", skip_all)]
pub async fn count_for_app(conn: &mut PgConnection, app_id: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM webhook_outbox WHERE app_id = $1")
        .bind(app_id)
        .fetch_one(conn)
        .await
}

/// Requests waiting (due or retrying), and the age of the oldest; for `/metrics`.
pub async fn backlog(conn: &mut PgConnection) -> sqlx::Result<super::Backlog> {
    sqlx::query_as(
        "SELECT count(*) AS waiting, \
         COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS oldest_age_seconds \
         FROM webhook_outbox",
    )
    .fetch_one(conn)
    .await
}
