//! Account API tokens, stored by hash.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiTokenRow {
    pub id: Uuid,
    pub name: String,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

#[tracing::instrument(name = "db.tokens.insert", level = "debug", skip_all)]
pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    account_id: Uuid,
    name: &str,
    token_hash: &[u8],
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO api_tokens (id, account_id, name, token_hash) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(account_id)
    .bind(name)
    .bind(token_hash)
    .execute(conn)
    .await?;
    Ok(())
}

/// The account a live (not revoked) token belongs to.
#[tracing::instrument(name = "db.tokens.find_account", level = "debug", skip_all)]
pub async fn find_account(
    conn: &mut PgConnection,
    token_hash: &[u8],
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar(
        "SELECT account_id FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
    )
    .bind(token_hash)
    .fetch_optional(conn)
    .await
}

#[tracing::instrument(name = "db.tokens.list", level = "debug", skip_all)]
pub async fn list(conn: &mut PgConnection, account_id: Uuid) -> sqlx::Result<Vec<ApiTokenRow>> {
    sqlx::query_as("SELECT id, name, created_at, revoked_at FROM api_tokens WHERE account_id = $1 ORDER BY created_at")
        .bind(account_id)
        .fetch_all(conn)
        .await
}

/// Revokes the account's token; false when the account has no such live token.
#[tracing::instrument(name = "db.tokens.revoke", level = "debug", skip_all)]
pub async fn revoke(conn: &mut PgConnection, account_id: Uuid, id: Uuid) -> sqlx::Result<bool> {
    let result = sqlx::query("UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND account_id = $2 AND revoked_at IS NULL")
        .bind(id)
        .bind(account_id)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() == 1)
}
