//! Accounts.

use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountRow {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
}

/// Fails with a unique violation when the email (case-insensitively) is taken.
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

pub async fn find_by_email(
    conn: &mut PgConnection,
    email: &str,
) -> sqlx::Result<Option<AccountRow>> {
    sqlx::query_as("SELECT id, email, password_hash FROM accounts WHERE lower(email) = lower($1)")
        .bind(email)
        .fetch_optional(conn)
        .await
}

pub async fn find(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<AccountRow>> {
    sqlx::query_as("SELECT id, email, password_hash FROM accounts WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}
