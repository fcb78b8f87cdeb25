//! Plans.

use sqlx::PgConnection;

use crate::domain::Plan;

#[tracing::instrument(name = "db.plans.list", level = "debug", skip_all)]
pub async fn list(conn: &mut PgConnection) -> sqlx::Result<Vec<Plan>> {
    sqlx::query_as("SELECT id, display_name, price_cents, max_connections, messages_per_day, max_message_bytes, client_events_per_second, publish_requests_per_second, max_presence_members, max_channels_per_connection, history_events, history_seconds, burst_multiplier, webhooks_allowed, overage_cents_per_million_messages, overage_cents_per_thousand_connections FROM plans ORDER BY sort_order").fetch_all(conn).await
}

#[tracing::instrument(name = "db.plans.find", level = "debug", skip_all)]
pub async fn find(conn: &mut PgConnection, id: &str) -> sqlx::Result<Option<Plan>> {
    sqlx::query_as("SELECT id, display_name, price_cents, max_connections, messages_per_day, max_message_bytes, client_events_per_second, publish_requests_per_second, max_presence_members, max_channels_per_connection, history_events, history_seconds, burst_multiplier, webhooks_allowed, overage_cents_per_million_messages, overage_cents_per_thousand_connections FROM plans WHERE id = $1").bind(id).fetch_optional(conn).await
}
