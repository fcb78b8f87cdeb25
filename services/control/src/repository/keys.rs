//! App keys and their encrypted secrets.

use sqlx::PgConnection;
use time::OffsetDateTime;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyRow {
    pub key: String,
    pub app_id: String,
    pub secret_nonce: Vec<u8>,
    pub secret_ciphertext: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

#[tracing::instrument(name = "db.keys.insert", level = "debug", skip_all)]
pub async fn insert(
    conn: &mut PgConnection,
    app_id: &str,
    key: &str,
    nonce: &[u8],
    ciphertext: &[u8],
) -> sqlx::Result<KeyRow> {
    sqlx::query_as("INSERT INTO app_keys (key, app_id, secret_nonce, secret_ciphertext) VALUES ($1, $2, $3, $4) RETURNING key, app_id, secret_nonce, secret_ciphertext, created_at, revoked_at")
    .bind(key)
    .bind(app_id)
    .bind(nonce)
    .bind(ciphertext)
    .fetch_one(conn)
    .await
}

/// Every key of the app, revoked ones included, oldest first.
#[tracing::instrument(name = "db.keys.list", level = "debug", skip_all)]
pub async fn list(conn: &mut PgConnection, app_id: &str) -> sqlx::Result<Vec<KeyRow>> {
    sqlx::query_as("SELECT key, app_id, secret_nonce, secret_ciphertext, created_at, revoked_at FROM app_keys WHERE app_id = $1 ORDER BY created_at, key")
        .bind(app_id)
        .fetch_all(conn)
        .await
}

#[tracing::instrument(name = "db.keys.find", level = "debug", skip_all)]
pub async fn find(
    conn: &mut PgConnection,
    app_id: &str,
    key: &str,
) -> sqlx::Result<Option<KeyRow>> {
    sqlx::query_as("SELECT key, app_id, secret_nonce, secret_ciphertext, created_at, revoked_at FROM app_keys WHERE app_id = $1 AND key = $2")
        .bind(app_id)
        .bind(key)
        .fetch_optional(conn)
        .await
}

/// A key that is not revoked, whatever its app, for the edge catalog.
#[tracing::instrument(name = "db.keys.find_live", level = "debug", skip_all)]
pub async fn find_live(conn: &mut PgConnection, key: &str) -> sqlx::Result<Option<KeyRow>> {
    sqlx::query_as("SELECT key, app_id, secret_nonce, secret_ciphertext, created_at, revoked_at FROM app_keys WHERE key = $1 AND revoked_at IS NULL")
        .bind(key)
        .fetch_optional(conn)
        .await
}

/// Live keys of an app, for the edge catalog's refresh.
#[tracing::instrument(name = "db.keys.list_live", level = "debug", skip_all)]
pub async fn list_live(conn: &mut PgConnection, app_id: &str) -> sqlx::Result<Vec<KeyRow>> {
    sqlx::query_as("SELECT key, app_id, secret_nonce, secret_ciphertext, created_at, revoked_at FROM app_keys WHERE app_id = $1 AND revoked_at IS NULL")
        .bind(app_id)
        .fetch_all(conn)
        .await
}

/// Revokes a live key; false when there is no such live key.
#[tracing::instrument(name = "db.keys.revoke", level = "debug", skip_all)]
pub async fn revoke(conn: &mut PgConnection, app_id: &str, key: &str) -> sqlx::Result<bool> {
    let result = sqlx::query("UPDATE app_keys SET revoked_at = now() WHERE app_id = $1 AND key = $2 AND revoked_at IS NULL")
        .bind(app_id)
        .bind(key)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() == 1)
}

#[tracing::instrument(name = "db.keys.count_live", level = "debug", skip_all)]
pub async fn count_live(conn: &mut PgConnection, app_id: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM app_keys WHERE app_id = $1 AND revoked_at IS NULL")
        .bind(app_id)
        .fetch_one(conn)
        .await
}

/// Which of these keys exist (revoked ones too: a key names one app forever), for refusing a
/// static `--app` whose key is a database app's.
#[tracing::instrument(name = "db.keys.existing_keys", level = "debug", skip_all)]
pub async fn existing_keys(conn: &mut PgConnection, keys: &[String]) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT key FROM app_keys WHERE key = ANY($1) ORDER BY key")
        .bind(keys)
        .fetch_all(conn)
        .await
}
