//! Browser sessions, stored by the hash of their cookie token.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub account_id: Uuid,
    pub csrf_token: String,
}

#[tracing::instrument(name = "db.sessions.insert", level = "debug", skip_all)]
pub async fn insert(
    conn: &mut PgConnection,
    token_hash: &[u8],
    account_id: Uuid,
    csrf_token: &str,
    expires_at: OffsetDateTime,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO sessions (token_hash, account_id, csrf_token, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(token_hash)
        .bind(account_id)
        .bind(csrf_token)
        .bind(expires_at)
        .execute(conn)
        .await?;
    Ok(())
}

/// A session that has not expired.
#[tracing::instrument(name = "db.sessions.find_live", level = "debug", skip_all)]
pub async fn find_live(
    conn: &mut PgConnection,
    token_hash: &[u8],
) -> sqlx::Result<Option<SessionRow>> {
    sqlx::query_as(
        "SELECT account_id, csrf_token FROM sessions WHERE token_hash = $1 AND expires_at > now()",
    )
    .bind(token_hash)
    .fetch_optional(conn)
    .await
}

#[tracing::instrument(name = "db.sessions.delete", level = "debug", skip_all)]
pub async fn delete(conn: &mut PgConnection, token_hash: &[u8]) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends every session of the account but `keep` (the caller's own, on a password change).
#[tracing::instrument(name = "db.sessions.delete_for_account", level = "debug", skip_all)]
pub async fn delete_for_account(
    conn: &mut PgConnection,
    account_id: Uuid,
    keep: Option<&[u8]>,
) -> sqlx::Result<u64> {
    let result = sqlx::query(
        "DELETE FROM sessions WHERE account_id = $1 AND ($2::bytea IS NULL OR token_hash <> $2)",
    )
    .bind(account_id)
    .bind(keep)
    .execute(conn)
    .await?;
    Ok(result.rows_affected())
}
