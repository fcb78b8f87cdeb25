//! One-time tokens mailed to account owners (email verification, password reset), stored by
//! their SHA-256 hash.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

/// What a token is for; stored as text, checked by the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    ResetPassword,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
        }
    }
}

/// Stores a new token and deletes the account's other unused ones of this purpose, so each
/// account holds at most one live token per purpose.
#[tracing::instrument(name = "db.account_tokens.replace", level = "debug", skip_all)]
pub async fn replace(
    conn: &mut PgConnection,
    token_hash: &[u8],
    account_id: Uuid,
    purpose: Purpose,
    expires_at: OffsetDateTime,
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM account_tokens WHERE account_id = $1 AND purpose = $2")
        .bind(account_id)
        .bind(purpose.as_str())
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO account_tokens (token_hash, account_id, purpose, expires_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(token_hash)
    .bind(account_id)
    .bind(purpose.as_str())
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks a live token of this purpose used and returns its account; `None` when the token is
/// unknown, expired, already used or for another purpose. Atomic: of two concurrent uses,
/// one wins.
#[tracing::instrument(name = "db.account_tokens.consume", level = "debug", skip_all)]
pub async fn consume(
    conn: &mut PgConnection,
    token_hash: &[u8],
    purpose: Purpose,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar(
        "UPDATE account_tokens SET used_at = now() \
         WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now() \
         RETURNING account_id",
    )
    .bind(token_hash)
    .bind(purpose.as_str())
    .fetch_optional(conn)
    .await
}

/// Deletes the account's unused tokens of this purpose (after a password change, a reset
/// link mailed earlier must no longer work).
#[tracing::instrument(name = "db.account_tokens.delete_unused", level = "debug", skip_all)]
pub async fn delete_unused(
    conn: &mut PgConnection,
    account_id: Uuid,
    purpose: Purpose,
) -> sqlx::Result<()> {
    sqlx::query(
        "DELETE FROM account_tokens WHERE account_id = $1 AND purpose = $2 AND used_at IS NULL",
    )
    .bind(account_id)
    .bind(purpose.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether a token of this purpose is unused and unexpired (without using it).
#[tracing::instrument(name = "db.account_tokens.is_live", level = "debug", skip_all)]
pub async fn is_live(
    conn: &mut PgConnection,
    token_hash: &[u8],
    purpose: Purpose,
) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM account_tokens \
         WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now())",
    )
    .bind(token_hash)
    .bind(purpose.as_str())
    .fetch_one(conn)
    .await
}
