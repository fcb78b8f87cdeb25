//! An app's webhooks (Pusher's webhook events POSTed to the app's endpoints) and the log of
//! their delivery attempts.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::routes::ControlState;
use crate::routes::auth::Caller;
use crate::routes::error::{ApiError, ErrorBody};
use crate::service::{DeliveryRow, WebhookRow};

pub const DEFAULT_DELIVERIES: i64 = 50;
pub const MAX_DELIVERIES: i64 = 500;

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewWebhook {
    /// Where events are POSTed: an `http://` or `https://` URL of a public host, at most
    /// 2048 characters (no loopback, private, link-local, CGNAT, unique-local, multicast or
    /// other internal address, and no local name such as `localhost`, unless the operator
    /// allows private targets).
    #[schema(example = "https://example.com/pusher/webhooks")]
    pub url: String,
    /// Which events to send: any of `channel_occupied`, `channel_vacated`, `member_added`,
    /// `member_removed`, `client_event`, `cache_miss`, `subscription_count`. Empty or left
    /// out: all of them.
    #[serde(default)]
    #[schema(example = json!(["channel_occupied", "channel_vacated"]))]
    pub event_types: Vec<String>,
    /// Up to 100 events per request instead of one.
    #[serde(default)]
    pub batching: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: Uuid,
    #[schema(example = "100001")]
    pub app_id: String,
    pub url: String,
    /// Empty means every event.
    pub event_types: Vec<String>,
    pub batching: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<WebhookRow> for WebhookView {
    fn from(row: WebhookRow) -> Self {
        Self {
            id: row.id,
            app_id: row.app_id,
            url: row.url,
            event_types: row.event_types,
            batching: row.batching,
            created_at: row.created_at,
        }
    }
}

/// One delivery attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: Uuid,
    pub webhook_id: Uuid,
    /// 1 for the first attempt of a request, then 2, 3, … for its retries.
    pub attempt: i32,
    /// `delivered` (2xx), `retrying` (failed, will be retried) or `failed` (the last try).
    #[schema(example = "delivered")]
    pub status: String,
    /// The endpoint's HTTP status, if it answered.
    pub http_status: Option<i32>,
    /// Why the attempt failed, as a category: `timeout`, `dns`, `forbidden_address`,
    /// `connect_refused`, `connect_failed`, `tls`, `connection_closed`, `request_failed`,
    /// `http_status_NNN`, `no_signing_key` or `backlog_full` (dropped unsent: the endpoint
    /// already had too many requests waiting).
    #[schema(example = "http_status_503")]
    pub error: Option<String>,
    /// Events in the request.
    pub event_count: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<DeliveryRow> for DeliveryView {
    fn from(row: DeliveryRow) -> Self {
        Self {
            id: row.id,
            webhook_id: row.webhook_id,
            attempt: row.attempt,
            status: row.status,
            http_status: row.http_status,
            error: row.error,
            event_count: row.event_count,
            created_at: row.created_at,
        }
    }
}

/// The app and webhook a webhook route names.
#[derive(Debug, Deserialize)]
pub struct WebhookPath {
    pub app_id: String,
    pub id: Uuid,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// How many attempts, 1 to 500 (50 when left out); values outside are brought inside.
    pub limit: Option<i64>,
}

/// The app's webhooks, oldest first.
#[utoipa::path(
    get, path = "/v1/apps/{app_id}/webhooks", tag = "webhooks",
    security(("session" = []), ("bearer" = [])),
    params(("app_id" = String, Path)),
    responses(
        (status = 200, body = [WebhookView]),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no such app in this account", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "list_webhooks", skip_all, fields(account_id = %caller.account_id, app_id = %ingress::Untrusted(app_id.as_str())))]
pub async fn list(
    state: web::Data<ControlState>,
    caller: Caller,
    app_id: web::Path<String>,
) -> Result<web::Json<Vec<WebhookView>>, ApiError> {
    let rows = state
        .control
        .list_webhooks(caller.account_id, &app_id)
        .await?;
    Ok(web::Json(rows.into_iter().map(WebhookView::from).collect()))
}

/// Adds a webhook; events start flowing to it within a second.
#[utoipa::path(
    post, path = "/v1/apps/{app_id}/webhooks", tag = "webhooks",
    security(("session" = []), ("bearer" = [])),
    params(("app_id" = String, Path)),
    request_body = NewWebhook,
    responses(
        (status = 201, body = WebhookView),
        (status = 400, description = "invalid URL, a URL to an internal address or local name, unknown event type, too many webhooks or malformed JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "missing or wrong `X-CSRF-Token`, or the app's plan has no webhooks", body = ErrorBody),
        (status = 404, description = "no such app in this account", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "create_webhook", skip_all, fields(account_id = %caller.account_id, app_id = %ingress::Untrusted(app_id.as_str())))]
pub async fn create(
    state: web::Data<ControlState>,
    caller: Caller,
    app_id: web::Path<String>,
    body: web::Json<NewWebhook>,
) -> Result<HttpResponse, ApiError> {
    let row = state
        .control
        .create_webhook(
            caller.account_id,
            &app_id,
            &body.url,
            &body.event_types,
            body.batching,
        )
        .await?;
    Ok(HttpResponse::Created().json(WebhookView::from(row)))
}

#[utoipa::path(
    delete, path = "/v1/apps/{app_id}/webhooks/{id}", tag = "webhooks",
    security(("session" = []), ("bearer" = [])),
    params(("app_id" = String, Path), ("id" = Uuid, Path)),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, body = ErrorBody),
        (status = 403, description = "missing or wrong `X-CSRF-Token`", body = ErrorBody),
        (status = 404, description = "no such webhook of an app in this account", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "delete_webhook", skip_all, fields(account_id = %caller.account_id, app_id = %ingress::Untrusted(path.app_id.as_str())))]
pub async fn delete(
    state: web::Data<ControlState>,
    caller: Caller,
    path: web::Path<WebhookPath>,
) -> Result<HttpResponse, ApiError> {
    state
        .control
        .delete_webhook(caller.account_id, &path.app_id, path.id)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The app's latest delivery attempts, newest first.
#[utoipa::path(
    get, path = "/v1/apps/{app_id}/webhooks/deliveries", tag = "webhooks",
    security(("session" = []), ("bearer" = [])),
    params(("app_id" = String, Path), DeliveriesQuery),
    responses(
        (status = 200, body = [DeliveryView]),
        (status = 400, description = "malformed query string", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no such app in this account", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "webhook_deliveries", skip_all, fields(account_id = %caller.account_id, app_id = %ingress::Untrusted(app_id.as_str())))]
pub async fn deliveries(
    state: web::Data<ControlState>,
    caller: Caller,
    app_id: web::Path<String>,
    query: web::Query<DeliveriesQuery>,
) -> Result<web::Json<Vec<DeliveryView>>, ApiError> {
    let limit = query
        .limit
        .unwrap_or(DEFAULT_DELIVERIES)
        .clamp(1, MAX_DELIVERIES);
    let rows = state
        .control
        .webhook_deliveries(caller.account_id, &app_id, limit)
        .await?;
    Ok(web::Json(
        rows.into_iter().map(DeliveryView::from).collect(),
    ))
}
