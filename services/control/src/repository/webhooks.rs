//! Webhooks and their delivery log; the account-facing reads and writes are scoped by the
//! owning account, the sender's reads (any app) are not.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WebhookRow {
    pub id: Uuid,
    pub app_id: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub batching: bool,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub app_id: String,
    pub attempt: i32,
    pub status: String,
    pub http_status: Option<i32>,
    pub error: Option<String>,
    pub event_count: i32,
    pub created_at: OffsetDateTime,
}

/// Inserts a webhook for an app of the account; `None` when the account has no such app.
#[tracing::instrument(name = "db.webhooks.insert", level = "debug", skip_all)]
pub async fn insert(
    conn: &mut PgConnection,
    account_id: Uuid,
    app_id: &str,
    id: Uuid,
    url: &str,
    event_types: &[String],
    batching: bool,
) -> sqlx::Result<Option<WebhookRow>> {
    sqlx::query_as(
        "INSERT INTO webhooks (id, app_id, url, event_types, batching) \
         SELECT $1, a.id, $3, $4, $5 FROM apps a WHERE a.id = $2 AND a.account_id = $6 \
         RETURNING id, app_id, url, event_types, batching, created_at",
    )
    .bind(id)
    .bind(app_id)
    .bind(url)
    .bind(event_types)
    .bind(batching)
    .bind(account_id)
    .fetch_optional(conn)
    .await
}

/// The webhooks of an app of the account, oldest first.
#[tracing::instrument(name = "db.webhooks.list", level = "debug", skip_all)]
pub async fn list(
    conn: &mut PgConnection,
    account_id: Uuid,
    app_id: &str,
) -> sqlx::Result<Vec<WebhookRow>> {
    sqlx::query_as(
        "SELECT w.id, w.app_id, w.url, w.event_types, w.batching, w.created_at \
         FROM webhooks w JOIN apps a ON a.id = w.app_id \
         WHERE w.app_id = $1 AND a.account_id = $2 ORDER BY w.created_at, w.id",
    )
    .bind(app_id)
    .bind(account_id)
    .fetch_all(conn)
    .await
}

#[tracing::instrument(name = "db.webhooks.count_for_app", level = "debug", skip_all)]
pub async fn count_for_app(conn: &mut PgConnection, app_id: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM webhooks WHERE app_id = $1")
        .bind(app_id)
        .fetch_one(conn)
        .await
}

/// Deletes a webhook of an app of the account; false when there is no such webhook.
#[tracing::instrument(name = "db.webhooks.delete", level = "debug", skip_all)]
pub async fn delete(
    conn: &mut PgConnection,
    account_id: Uuid,
    app_id: &str,
    id: Uuid,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "DELETE FROM webhooks w USING apps a \
         WHERE w.id = $1 AND w.app_id = $2 AND a.id = w.app_id AND a.account_id = $3",
    )
    .bind(id)
    .bind(app_id)
    .bind(account_id)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// The newest delivery attempts of an app of the account, newest first.
#[tracing::instrument(name = "db.webhooks.list_deliveries", level = "debug", skip_all)]
pub async fn list_deliveries(
    conn: &mut PgConnection,
    account_id: Uuid,
    app_id: &str,
    limit: i64,
) -> sqlx::Result<Vec<DeliveryRow>> {
    sqlx::query_as(
        "SELECT d.id, d.webhook_id, d.app_id, d.attempt, d.status, d.http_status, d.error, \
         d.event_count, d.created_at \
         FROM webhook_deliveries d JOIN apps a ON a.id = d.app_id \
         WHERE d.app_id = $1 AND a.account_id = $2 \
         ORDER BY d.created_at DESC, d.id LIMIT $3",
    )
    .bind(app_id)
    .bind(account_id)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// What the sender needs to deliver an app's events: its webhooks, unless its plan has no
/// webhooks (not scoped: the sender serves every app).
#[tracing::instrument(name = "db.webhooks.list_for_delivery", level = "debug", skip_all)]
pub async fn list_for_delivery(
    conn: &mut PgConnection,
    app_id: &str,
) -> sqlx::Result<Vec<WebhookRow>> {
    sqlx::query_as(
        "SELECT w.id, w.app_id, w.url, w.event_types, w.batching, w.created_at \
         FROM webhooks w JOIN apps a ON a.id = w.app_id JOIN plans p ON p.id = a.plan_id \
         WHERE w.app_id = $1 AND p.webhooks_allowed ORDER BY w.created_at, w.id",
    )
    .bind(app_id)
    .fetch_all(conn)
    .await
}

/// Records one delivery attempt.
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(name = "db.webhooks.insert_delivery", level = "debug", skip_all)]
pub async fn insert_delivery(
    conn: &mut PgConnection,
    webhook_id: Uuid,
    app_id: &str,
    attempt: i32,
    status: &str,
    http_status: Option<i32>,
    error: Option<&str>,
    event_count: i32,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO webhook_deliveries \
         (id, webhook_id, app_id, attempt, status, http_status, error, event_count) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM webhooks WHERE id = $2)",
    )
    .bind(Uuid::new_v4())
    .bind(webhook_id)
    .bind(app_id)
    .bind(attempt)
    .bind(status)
    .bind(http_status)
    .bind(error)
    .bind(event_count)
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets delivery attempts older than `days`.
#[tracing::instrument(name = "db.webhooks.prune_deliveries", level = "debug", skip_all)]
pub async fn prune_deliveries(conn: &mut PgConnection, days: i32) -> sqlx::Result<u64> {
    let result = sqlx::query(
        "DELETE FROM webhook_deliveries WHERE created_at < now() - make_interval(days => $1)",
    )
    .bind(days)
    .execute(conn)
    .await?;
    Ok(result.rows_affected())
}

/// Keeps only the newest `keep` delivery attempts of each app that has more.
#[tracing::instrument(name = "db.webhooks.trim_deliveries", level = "debug", skip_all)]
pub async fn trim_deliveries(conn: &mut PgConnection, keep: i64) -> sqlx::Result<u64> {
    let result = sqlx::query(
        "DELETE FROM webhook_deliveries d USING ( \
             SELECT id FROM ( \
                 SELECT id, row_number() OVER (PARTITION BY app_id ORDER BY created_at DESC, id) AS newer \
                 FROM webhook_deliveries \
                 WHERE app_id IN (SELECT app_id FROM webhook_deliveries GROUP BY app_id HAVING count(*) > $1) \
             ) ranked WHERE newer > $1 \
         ) old WHERE d.id = old.id",
    )
    .bind(keep)
    .execute(conn)
    .await?;
    Ok(result.rows_affected())
}
