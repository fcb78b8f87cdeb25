//! Accounts.

use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountRow {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub email_verified: bool,
}

/// Fails with a unique violation when the email (case-insensitively) is taken.
#[tracing::instrument(name = "db.accounts.insert", level = "debug", skip_all)]
pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    email: &str,
    password_hash: &str,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO accounts (id, email, password_hash) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(email)
        .bind(password_hash)
        .execute(conn)
        .await?;
    Ok(())
}

#[tracing::instrument(name = "db.accounts.find_by_email", level = "debug", skip_all)]
pub async fn find_by_email(
    conn: &mut PgConnection,
    email: &str,
) -> sqlx::Result<Option<AccountRow>> {
    sqlx::query_as("SELECT id, email, password_hash, email_verified_at IS NOT NULL AS email_verified FROM accounts WHERE lower(email) = lower($1)")
        .bind(email)
        .fetch_optional(conn)
        .await
}

#[tracing::instrument(name = "db.accounts.find", level = "debug", skip_all)]
pub async fn find(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<AccountRow>> {
    sqlx::query_as("SELECT id, email, password_hash, email_verified_at IS NOT NULL AS email_verified FROM accounts WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Marks the email verified (once: a later verification keeps the first time).
#[tracing::instrument(name = "db.accounts.mark_verified", level = "debug", skip_all)]
pub async fn mark_verified(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE accounts SET email_verified_at = COALESCE(email_verified_at, now()) WHERE id = $1",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(name = "db.accounts.set_password_hash", level = "debug", skip_all)]
pub async fn set_password_hash(
    conn: &mut PgConnection,
    id: Uuid,
    password_hash: &str,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE accounts SET password_hash = $2 WHERE id = $1")
        .bind(id)
        .bind(password_hash)
        .execute(conn)
        .await?;
    Ok(())
}
