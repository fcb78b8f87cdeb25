//! An app's keys. Rotation is: create a new key, move clients to it, revoke the old one; both
//! work in between. Secrets are shown when a key is created and on explicit reveal only.

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::routes::ControlState;
use crate::routes::auth::Caller;
use crate::routes::error::{ApiError, ErrorBody};
use crate::service::KeyInfo;

/// A key as listed: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub key: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

impl From<KeyInfo> for KeyView {
    fn from(info: KeyInfo) -> Self {
        Self {
            key: info.key,
            created_at: info.created_at,
            revoked_at: info.revoked_at,
        }
    }
}

/// A new key and its secret.
#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    pub key: String,
    pub secret: String,
}

#[derive(Serialize, ToSchema)]
pub struct RevealedSecret {
    pub secret: String,
}

/// The app and key a key route names.
#[derive(Debug, Deserialize)]
pub struct KeyPath {
    pub app_id: String,
    pub key: String,
}

/// The app's keys, revoked ones included, oldest first.
#[utoipa::path(
    get, path = "/v1/apps/{app_id}/keys", tag = "keys",
    security(("session" = []), ("bearer" = [])),
    params(("app_id" = String, Path)),
    responses(
        (status = 200, body = [KeyView]),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no such app in this account", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "list_keys", skip_all, fields(account_id = %caller.account_id, app_id = %ingress::Untrusted(app_id.as_str())))]
pub async fn list(
    state: web::Data<ControlState>,
    caller: Caller,
    app_id: web::Path<String>,
) -> Result<web::Json<Vec<KeyView>>, ApiError> {
    let keys = state.control.list_keys(caller.account_id, &app_id).await?;
    Ok(web::Json(keys.into_iter().map(KeyView::from).collect()))
}

/// Adds a key beside the app's others (the first step of a rotation).
#[utoipa::path(
    post, path = "/v1/apps/{app_id}/keys", tag = "keys",
    security(("session" = []), ("bearer" = [])),
    params(("app_id" = String, Path)),
    responses(
        (status = 201, body = CreatedKey),
        (status = 401, body = ErrorBody),
        (status = 403, description = "missing or wrong `X-CSRF-Token`", body = ErrorBody),
        (status = 404, description = "no such app in this account", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "create_key", skip_all, fields(account_id = %caller.account_id, app_id = %ingress::Untrusted(app_id.as_str())))]
pub async fn create(
    state: web::Data<ControlState>,
    caller: Caller,
    app_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (key, secret) = state.control.create_key(caller.account_id, &app_id).await?;
    Ok(HttpResponse::Created()
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .json(CreatedKey { key, secret }))
}

/// Revokes a key: its connections are closed and its signatures refused.
#[utoipa::path(
    post, path = "/v1/apps/{app_id}/keys/{key}/revoke", tag = "keys",
    security(("session" = []), ("bearer" = [])),
    params(("app_id" = String, Path), ("key" = String, Path)),
    responses(
        (status = 204, description = "revoked"),
        (status = 401, body = ErrorBody),
        (status = 403, description = "missing or wrong `X-CSRF-Token`", body = ErrorBody),
        (status = 404, description = "no such live key of an app in this account", body = ErrorBody),
        (status = 409, description = "the app's last live key; create another first", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "revoke_key", skip_all, fields(account_id = %caller.account_id, app_id = %ingress::Untrusted(path.app_id.as_str())))]
pub async fn revoke(
    state: web::Data<ControlState>,
    caller: Caller,
    path: web::Path<KeyPath>,
) -> Result<HttpResponse, ApiError> {
    state
        .control
        .revoke_key(caller.account_id, &path.app_id, &path.key)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A live key's secret, on explicit request (recorded in the audit log).
#[utoipa::path(
    get, path = "/v1/apps/{app_id}/keys/{key}/secret", tag = "keys",
    security(("session" = []), ("bearer" = [])),
    params(("app_id" = String, Path), ("key" = String, Path)),
    responses(
        (status = 200, body = RevealedSecret),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no such live key of an app in this account", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "reveal_secret", skip_all, fields(account_id = %caller.account_id, app_id = %ingress::Untrusted(path.app_id.as_str())))]
pub async fn reveal_secret(
    state: web::Data<ControlState>,
    caller: Caller,
    path: web::Path<KeyPath>,
) -> Result<HttpResponse, ApiError> {
    let secret = state
        .control
        .reveal_secret(caller.account_id, &path.app_id, &path.key)
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .json(RevealedSecret { secret }))
}

/// Replaces a live key by a new one in one step: the old key's connections are closed (4009)
/// and its signatures refused from now on. For a rotation without downtime, create a key,
/// move clients, then revoke the old one.
#[utoipa::path(
    post, path = "/v1/apps/{app_id}/keys/{key}/rotate", tag = "keys",
    security(("session" = []), ("bearer" = [])),
    params(("app_id" = String, Path), ("key" = String, Path)),
    responses(
        (status = 201, description = "the new key; the old one is revoked", body = CreatedKey),
        (status = 401, body = ErrorBody),
        (status = 403, description = "missing or wrong `X-CSRF-Token`", body = ErrorBody),
        (status = 404, description = "no such live key of an app in this account", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "rotate_key", skip_all, fields(account_id = %caller.account_id, app_id = %ingress::Untrusted(path.app_id.as_str())))]
pub async fn rotate(
    state: web::Data<ControlState>,
    caller: Caller,
    path: web::Path<KeyPath>,
) -> Result<HttpResponse, ApiError> {
    let (key, secret) = state
        .control
        .rotate_key(caller.account_id, &path.app_id, &path.key)
        .await?;
    Ok(HttpResponse::Created()
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .json(CreatedKey { key, secret }))
}
