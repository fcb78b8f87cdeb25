//! Account API tokens: Bearer credentials for scripts, shown once and stored as hashes.

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::routes::ControlState;
use crate::routes::auth::Caller;
use crate::routes::error::{ApiError, ErrorBody};
use crate::service::ApiTokenRow;

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewToken {
    /// What the token is for: 1 to 100 characters, not all whitespace, no control characters.
    #[schema(
        example = "deploy script",
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: String,
}

/// A new token. `token` is shown this once; only its hash is kept.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    pub id: Uuid,
    pub name: String,
    #[schema(example = "sbt_0123456789abcdef")]
    pub token: String,
}

/// A token as listed: never its value.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub id: Uuid,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

impl From<ApiTokenRow> for TokenView {
    fn from(row: ApiTokenRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            created_at: row.created_at,
            revoked_at: row.revoked_at,
        }
    }
}

/// Creates an API token for the caller's account.
#[utoipa::path(
    post, path = "/v1/tokens", tag = "tokens",
    security(("session" = []), ("bearer" = [])),
    request_body = NewToken,
    responses(
        (status = 201, body = CreatedToken),
        (status = 400, description = "invalid name or malformed JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "missing or wrong `X-CSRF-Token`", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "create_token", skip_all, fields(account_id = %caller.account_id))]
pub async fn create(
    state: web::Data<ControlState>,
    caller: Caller,
    body: web::Json<NewToken>,
) -> Result<HttpResponse, ApiError> {
    let (id, token) = state
        .control
        .create_api_token(caller.account_id, &body.name)
        .await?;
    Ok(HttpResponse::Created()
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .json(CreatedToken {
            id,
            name: body.name.trim().to_owned(),
            token,
        }))
}

/// The caller's tokens, revoked ones included, without their values.
#[utoipa::path(
    get, path = "/v1/tokens", tag = "tokens",
    security(("session" = []), ("bearer" = [])),
    responses((status = 200, body = [TokenView]), (status = 401, body = ErrorBody))
)]
#[tracing::instrument(name = "list_tokens", skip_all, fields(account_id = %caller.account_id))]
pub async fn list(
    state: web::Data<ControlState>,
    caller: Caller,
) -> Result<web::Json<Vec<TokenView>>, ApiError> {
    let rows = state.control.list_api_tokens(caller.account_id).await?;
    Ok(web::Json(rows.into_iter().map(TokenView::from).collect()))
}

/// Revokes one of the caller's tokens; it stops working at once.
#[utoipa::path(
    delete, path = "/v1/tokens/{token_id}", tag = "tokens",
    security(("session" = []), ("bearer" = [])),
    params(("token_id" = Uuid, Path, description = "the token's id")),
    responses(
        (status = 204, description = "revoked"),
        (status = 401, body = ErrorBody),
        (status = 403, description = "missing or wrong `X-CSRF-Token`", body = ErrorBody),
        (status = 404, description = "no such live token in this account", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "revoke_token", skip_all, fields(account_id = %caller.account_id))]
pub async fn revoke(
    state: web::Data<ControlState>,
    caller: Caller,
    token_id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    state
        .control
        .revoke_api_token(caller.account_id, token_id.into_inner())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
