//! Apps, always scoped by their owning account except for the edge catalog's reads.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AppRow {
    pub id: String,
    pub account_id: Uuid,
    pub name: String,
    pub enabled: bool,
    pub plan_id: String,
    pub subscription_counting: bool,
    pub client_events: bool,
    pub allowed_origins: Vec<String>,
    /// STUN/TURN URLs (`tenancy::IceServers`).
    pub ice_servers: Vec<String>,
    /// Whether a TURN secret is stored; the secret itself is never read back here.
    pub turn_secret_set: bool,
    pub created_at: OffsetDateTime,
}

#[tracing::instrument(name = "db.apps.insert", level = "debug", skip_all)]
pub async fn insert(
    conn: &mut PgConnection,
    account_id: Uuid,
    name: &str,
    plan_id: &str,
) -> sqlx::Result<AppRow> {
    sqlx::query_as("INSERT INTO apps (account_id, name, plan_id) VALUES ($1, $2, $3) RETURNING id, account_id, name, enabled, plan_id, subscription_counting, client_events, allowed_origins, ice_servers, turn_secret_ciphertext IS NOT NULL AS turn_secret_set, created_at")
        .bind(account_id)
        .bind(name)
        .bind(plan_id)
        .fetch_one(conn)
        .await
}

#[tracing::instrument(name = "db.apps.list", level = "debug", skip_all)]
pub async fn list(conn: &mut PgConnection, account_id: Uuid) -> sqlx::Result<Vec<AppRow>> {
    sqlx::query_as("SELECT id, account_id, name, enabled, plan_id, subscription_counting, client_events, allowed_origins, ice_servers, turn_secret_ciphertext IS NOT NULL AS turn_secret_set, created_at FROM apps WHERE account_id = $1 ORDER BY created_at, id")
        .bind(account_id)
        .fetch_all(conn)
        .await
}

#[tracing::instrument(name = "db.apps.find", level = "debug", skip_all)]
pub async fn find(
    conn: &mut PgConnection,
    account_id: Uuid,
    app_id: &str,
) -> sqlx::Result<Option<AppRow>> {
    sqlx::query_as("SELECT id, account_id, name, enabled, plan_id, subscription_counting, client_events, allowed_origins, ice_servers, turn_secret_ciphertext IS NOT NULL AS turn_secret_set, created_at FROM apps WHERE id = $1 AND account_id = $2")
        .bind(app_id)
        .bind(account_id)
        .fetch_optional(conn)
        .await
}

/// Changes name and/or enabled; `None` leaves a field as it is.
#[tracing::instrument(name = "db.apps.update", level = "debug", skip_all)]
pub async fn update(
    conn: &mut PgConnection,
    account_id: Uuid,
    app_id: &str,
    name: Option<&str>,
    enabled: Option<bool>,
) -> sqlx::Result<Option<AppRow>> {
    sqlx::query_as("UPDATE apps SET name = COALESCE($3, name), enabled = COALESCE($4, enabled) WHERE id = $1 AND account_id = $2 RETURNING id, account_id, name, enabled, plan_id, subscription_counting, client_events, allowed_origins, ice_servers, turn_secret_ciphertext IS NOT NULL AS turn_secret_set, created_at")
    .bind(app_id)
    .bind(account_id)
    .bind(name)
    .bind(enabled)
    .fetch_optional(conn)
    .await
}

#[tracing::instrument(name = "db.apps.set_plan", level = "debug", skip_all)]
pub async fn set_plan(
    conn: &mut PgConnection,
    account_id: Uuid,
    app_id: &str,
    plan_id: &str,
) -> sqlx::Result<Option<AppRow>> {
    sqlx::query_as("UPDATE apps SET plan_id = $3 WHERE id = $1 AND account_id = $2 RETURNING id, account_id, name, enabled, plan_id, subscription_counting, client_events, allowed_origins, ice_servers, turn_secret_ciphertext IS NOT NULL AS turn_secret_set, created_at")
        .bind(app_id)
        .bind(account_id)
        .bind(plan_id)
        .fetch_optional(conn)
        .await
}

/// Moves any app to a plan, whoever owns it: for the operator's `admin set-plan` only, the one
/// write here not scoped by account.
#[tracing::instrument(name = "db.apps.set_plan_as_operator", level = "debug", skip_all)]
pub async fn set_plan_as_operator(
    conn: &mut PgConnection,
    app_id: &str,
    plan_id: &str,
) -> sqlx::Result<Option<AppRow>> {
    sqlx::query_as("UPDATE apps SET plan_id = $2 WHERE id = $1 RETURNING id, account_id, name, enabled, plan_id, subscription_counting, client_events, allowed_origins, ice_servers, turn_secret_ciphertext IS NOT NULL AS turn_secret_set, created_at")
        .bind(app_id)
        .bind(plan_id)
        .fetch_optional(conn)
        .await
}

/// An app's settings the edge enforces; `None` leaves a setting as it is.
pub struct SettingsChange<'a> {
    pub subscription_counting: Option<bool>,
    pub client_events: Option<bool>,
    pub allowed_origins: Option<&'a [String]>,
    pub ice_servers: Option<&'a [String]>,
}

#[tracing::instrument(name = "db.apps.update_settings", level = "debug", skip_all)]
pub async fn update_settings(
    conn: &mut PgConnection,
    account_id: Uuid,
    app_id: &str,
    change: &SettingsChange<'_>,
) -> sqlx::Result<Option<AppRow>> {
    sqlx::query_as("UPDATE apps SET subscription_counting = COALESCE($3, subscription_counting), client_events = COALESCE($4, client_events), allowed_origins = COALESCE($5, allowed_origins), ice_servers = COALESCE($6, ice_servers) WHERE id = $1 AND account_id = $2 RETURNING id, account_id, name, enabled, plan_id, subscription_counting, client_events, allowed_origins, ice_servers, turn_secret_ciphertext IS NOT NULL AS turn_secret_set, created_at")
        .bind(app_id)
        .bind(account_id)
        .bind(change.subscription_counting)
        .bind(change.client_events)
        .bind(change.allowed_origins)
        .bind(change.ice_servers)
        .fetch_optional(conn)
        .await
}

#[tracing::instrument(name = "db.apps.set_turn_secret", level = "debug", skip_all)]
/// Stores the app's TURN secret, sealed (`None` removes it); false when no such app.
pub async fn set_turn_secret(
    conn: &mut PgConnection,
    account_id: Uuid,
    app_id: &str,
    sealed: Option<(&[u8], &[u8])>,
) -> sqlx::Result<bool> {
    let (nonce, ciphertext) = sealed.unzip();
    let result = sqlx::query(
        "UPDATE apps SET turn_secret_nonce = $3, turn_secret_ciphertext = $4 WHERE id = $1 AND account_id = $2",
    )
    .bind(app_id)
    .bind(account_id)
    .bind(nonce)
    .bind(ciphertext)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

#[tracing::instrument(name = "db.apps.delete", level = "debug", skip_all)]
pub async fn delete(conn: &mut PgConnection, account_id: Uuid, app_id: &str) -> sqlx::Result<bool> {
    let result = sqlx::query("DELETE FROM apps WHERE id = $1 AND account_id = $2")
        .bind(app_id)
        .bind(account_id)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Which of these ids name an app, for refusing a static `--app` that would share a tenant's
/// channels (not scoped: the operator's check at start).
#[tracing::instrument(name = "db.apps.existing_ids", level = "debug", skip_all)]
pub async fn existing_ids(conn: &mut PgConnection, ids: &[String]) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT id FROM apps WHERE id = ANY($1) ORDER BY id")
        .bind(ids)
        .fetch_all(conn)
        .await
}

/// The app with its plan's limits, for the edge catalog (not scoped: edges serve every app).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CatalogAppRow {
    pub id: String,
    pub enabled: bool,
    pub max_connections: i32,
    pub messages_per_day: i64,
    pub burst_multiplier: i32,
    pub max_message_bytes: i32,
    pub client_events_per_second: i32,
    pub publish_requests_per_second: i32,
    pub max_presence_members: i32,
    pub max_channels_per_connection: i32,
    pub webhooks_allowed: bool,
    pub subscription_counting: bool,
    pub client_events: bool,
    pub allowed_origins: Vec<String>,
    pub ice_servers: Vec<String>,
    pub turn_secret_nonce: Option<Vec<u8>>,
    pub turn_secret_ciphertext: Option<Vec<u8>>,
    pub history_events: i32,
    pub history_seconds: i32,
    pub history_bytes: i64,
}

#[tracing::instrument(name = "db.apps.find_for_catalog", level = "debug", skip_all)]
pub async fn find_for_catalog(
    conn: &mut PgConnection,
    app_id: &str,
) -> sqlx::Result<Option<CatalogAppRow>> {
    sqlx::query_as(
        "SELECT a.id, a.enabled, p.max_connections, p.messages_per_day, p.burst_multiplier, \
         p.max_message_bytes, p.client_events_per_second, p.publish_requests_per_second, \
         p.max_presence_members, p.max_channels_per_connection, p.webhooks_allowed, \
         a.subscription_counting, a.client_events, a.allowed_origins, a.ice_servers, \
         a.turn_secret_nonce, a.turn_secret_ciphertext, p.history_events, p.history_seconds, p.history_bytes \
         FROM apps a JOIN plans p ON p.id = a.plan_id WHERE a.id = $1",
    )
    .bind(app_id)
    .fetch_optional(conn)
    .await
}
