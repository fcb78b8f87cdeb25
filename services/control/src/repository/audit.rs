//! The audit log: who changed what.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub action: String,
    pub subject: String,
    pub details: serde_json::Value,
    pub created_at: OffsetDateTime,
}

#[tracing::instrument(name = "db.audit.record", level = "debug", skip_all)]
pub async fn record(
    conn: &mut PgConnection,
    account_id: Option<Uuid>,
    action: &str,
    subject: &str,
    details: serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (account_id, action, subject, details) VALUES ($1, $2, $3, $4)",
    )
    .bind(account_id)
    .bind(action)
    .bind(subject)
    .bind(details)
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(name = "db.audit.list", level = "debug", skip_all)]
pub async fn list(
    conn: &mut PgConnection,
    account_id: Uuid,
    limit: i64,
) -> sqlx::Result<Vec<AuditRow>> {
    sqlx::query_as(
        "SELECT id, action, subject, details, created_at FROM audit_log WHERE account_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(account_id)
    .bind(limit)
    .fetch_all(conn)
    .await
}
