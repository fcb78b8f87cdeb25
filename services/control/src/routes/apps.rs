//! Apps: create (with a first key), list, show, rename / enable / disable, delete.

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::routes::ControlState;
use crate::routes::auth::Caller;
use crate::routes::error::{ApiError, ErrorBody};
use crate::service::{AppChange, AppRow, CreatedApp, PlanAuthority};

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewApp {
    /// 1 to 100 characters, not all whitespace, no control characters; surrounding
    /// whitespace is dropped.
    #[schema(
        example = "chat",
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: String,
    /// A free plan's id from `GET /v1/plans` (price 0); `sandbox` when left out. Paid plans
    /// are set by an operator until billing exists.
    #[schema(example = "sandbox")]
    pub plan: Option<String>,
}

/// Fields left out (or null) stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AppChanges {
    /// As when creating the app.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: Option<String>,
    /// A disabled app's connections are closed and new ones refused.
    pub enabled: Option<bool>,
    /// Send `pusher_internal:subscription_count` to subscribers of non-presence channels
    /// (and the `subscription_count` webhook) on every (un)subscribe.
    pub subscription_counting: Option<bool>,
    /// Let connections send client events (`client-*` events on private and presence
    /// channels); when off they are refused with `pusher:error`.
    pub client_events: Option<bool>,
    /// Replaces the browser origins allowed to connect (WebSocket and HTTP carriers; others
    /// are refused with 4009): `https://app.example.com`, `http://localhost:8080`, or
    /// `https://*.example.com` for any subdomain. Empty allows every origin. Requests without
    /// an `Origin` header (non-browser clients) are not affected.
    #[schema(max_items = 100, example = json!(["https://app.example.com"]))]
    pub allowed_origins: Option<Vec<String>>,
    /// Replaces the STUN/TURN servers announced to presence subscribers for WebRTC
    /// (`stun:`, `stuns:`, `turn:`, `turns:` host[:port], TURN optionally
    /// `?transport=udp|tcp`). Empty announces none (none are needed on a LAN). TURN URLs are
    /// announced only while a TURN secret is set.
    #[schema(max_items = 10, example = json!(["stun:stun.example.com:3478", "turn:turn.example.com:3478"]))]
    pub ice_servers: Option<Vec<String>>,
    /// The secret shared with the TURN server (coturn's `static-auth-secret`): each presence
    /// subscriber gets a 12-hour credential derived from it (TURN REST API). Write-only,
    /// encrypted at rest; an empty string removes it. At most 256 printable characters.
    pub turn_secret: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppView {
    #[schema(example = "100001")]
    pub app_id: String,
    pub name: String,
    pub enabled: bool,
    #[schema(example = "sandbox")]
    pub plan: String,
    /// Whether subscribers get `pusher_internal:subscription_count` events (off by default).
    pub subscription_counting: bool,
    /// Whether connections may send client events (on by default).
    pub client_events: bool,
    /// Browser origins allowed to connect, normalised; empty allows every origin.
    pub allowed_origins: Vec<String>,
    /// STUN/TURN servers announced to presence subscribers.
    pub ice_servers: Vec<String>,
    /// Whether a TURN secret is set (it is never shown).
    pub turn_secret_set: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<AppRow> for AppView {
    fn from(row: AppRow) -> Self {
        Self {
            app_id: row.id,
            name: row.name,
            enabled: row.enabled,
            plan: row.plan_id,
            subscription_counting: row.subscription_counting,
            client_events: row.client_events,
            allowed_origins: row.allowed_origins,
            ice_servers: row.ice_servers,
            turn_secret_set: row.turn_secret_set,
            created_at: row.created_at,
        }
    }
}

/// A new app with its first key. The secret is shown here and on explicit reveal only.
#[derive(Serialize, ToSchema)]
pub struct CreatedAppView {
    pub app_id: String,
    pub name: String,
    pub enabled: bool,
    pub plan: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub key: String,
    pub secret: String,
}

impl From<CreatedApp> for CreatedAppView {
    fn from(created: CreatedApp) -> Self {
        let app = AppView::from(created.app);
        Self {
            app_id: app.app_id,
            name: app.name,
            enabled: app.enabled,
            plan: app.plan,
            created_at: app.created_at,
            key: created.key,
            secret: created.secret,
        }
    }
}

/// Creates an app on a plan (sandbox by default), with its first key.
#[utoipa::path(
    post, path = "/v1/apps", tag = "apps",
    security(("session" = []), ("bearer" = [])),
    request_body = NewApp,
    responses(
        (status = 201, body = CreatedAppView),
        (status = 400, description = "invalid name, unknown plan or malformed JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 402, description = "a paid plan: set by an operator until billing exists", body = ErrorBody),
        (status = 403, description = "a paid plan while the account's email is not verified, or a missing or wrong `X-CSRF-Token`", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "create_app", skip_all, fields(account_id = %caller.account_id))]
pub async fn create(
    state: web::Data<ControlState>,
    caller: Caller,
    body: web::Json<NewApp>,
) -> Result<HttpResponse, ApiError> {
    let created = state
        .control
        .create_app_as(
            PlanAuthority::SelfServe,
            caller.account_id,
            &body.name,
            body.plan.as_deref(),
        )
        .await?;
    Ok(HttpResponse::Created()
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .json(CreatedAppView::from(created)))
}

/// The caller's apps, oldest first.
#[utoipa::path(
    get, path = "/v1/apps", tag = "apps",
    security(("session" = []), ("bearer" = [])),
    responses((status = 200, body = [AppView]), (status = 401, body = ErrorBody))
)]
#[tracing::instrument(name = "list_apps", skip_all, fields(account_id = %caller.account_id))]
pub async fn list(
    state: web::Data<ControlState>,
    caller: Caller,
) -> Result<web::Json<Vec<AppView>>, ApiError> {
    let apps = state.control.list_apps(caller.account_id).await?;
    Ok(web::Json(apps.into_iter().map(AppView::from).collect()))
}

#[utoipa::path(
    get, path = "/v1/apps/{app_id}", tag = "apps",
    security(("session" = []), ("bearer" = [])),
    params(("app_id" = String, Path)),
    responses(
        (status = 200, body = AppView),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no such app in this account", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "show_app", skip_all, fields(account_id = %caller.account_id, app_id = %ingress::Untrusted(app_id.as_str())))]
pub async fn show(
    state: web::Data<ControlState>,
    caller: Caller,
    app_id: web::Path<String>,
) -> Result<web::Json<AppView>, ApiError> {
    let app = state.control.app(caller.account_id, &app_id).await?;
    Ok(web::Json(AppView::from(app)))
}

/// Renames, enables or disables an app, or changes its settings (client events, subscription
/// counting, allowed origins); all the fields given change together, or none does.
#[utoipa::path(
    patch, path = "/v1/apps/{app_id}", tag = "apps",
    security(("session" = []), ("bearer" = [])),
    params(("app_id" = String, Path)),
    request_body = AppChanges,
    responses(
        (status = 200, body = AppView),
        (status = 400, description = "invalid name, origin, ICE server URL or TURN secret, too many origins or URLs, or malformed JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "missing or wrong `X-CSRF-Token`", body = ErrorBody),
        (status = 404, description = "no such app in this account", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "update_app", skip_all, fields(account_id = %caller.account_id, app_id = %ingress::Untrusted(app_id.as_str())))]
pub async fn update(
    state: web::Data<ControlState>,
    caller: Caller,
    app_id: web::Path<String>,
    body: web::Json<AppChanges>,
) -> Result<web::Json<AppView>, ApiError> {
    let body = body.into_inner();
    let change = AppChange {
        name: body.name,
        enabled: body.enabled,
        subscription_counting: body.subscription_counting,
        client_events: body.client_events,
        allowed_origins: body.allowed_origins,
        ice_servers: body.ice_servers,
        turn_secret: body.turn_secret,
    };
    let app = state
        .control
        .change_app(caller.account_id, &app_id, &change)
        .await?;
    Ok(web::Json(AppView::from(app)))
}

/// Deletes an app and its keys; its connections are closed.
#[utoipa::path(
    delete, path = "/v1/apps/{app_id}", tag = "apps",
    security(("session" = []), ("bearer" = [])),
    params(("app_id" = String, Path)),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, body = ErrorBody),
        (status = 403, description = "missing or wrong `X-CSRF-Token`", body = ErrorBody),
        (status = 404, description = "no such app in this account", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "delete_app", skip_all, fields(account_id = %caller.account_id, app_id = %ingress::Untrusted(app_id.as_str())))]
pub async fn delete(
    state: web::Data<ControlState>,
    caller: Caller,
    app_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.control.delete_app(caller.account_id, &app_id).await?;
    Ok(HttpResponse::NoContent().finish())
}
