//! The account's audit log: who changed what, latest first.

use actix_web::web;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::repository::audit::AuditRow;
use crate::routes::ControlState;
use crate::routes::auth::Caller;
use crate::routes::error::{ApiError, ErrorBody};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// How many entries, 1 to 200 (50 when left out); values outside are brought inside.
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    /// What happened, such as `app.created` or `key.revoked`.
    #[schema(example = "app.created")]
    pub action: String,
    /// What it happened to: an app id, a token id or an account id.
    pub subject: String,
    /// Non-secret particulars of the change.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<AuditRow> for AuditEntry {
    fn from(row: AuditRow) -> Self {
        Self {
            id: row.id,
            action: row.action,
            subject: row.subject,
            details: row.details,
            created_at: row.created_at,
        }
    }
}

#[utoipa::path(
    get, path = "/v1/audit", tag = "audit",
    security(("session" = []), ("bearer" = [])),
    params(AuditQuery),
    responses(
        (status = 200, body = [AuditEntry]),
        (status = 400, description = "malformed query string", body = ErrorBody),
        (status = 401, body = ErrorBody),
    )
)]
#[tracing::instrument(name = "audit_log", skip_all, fields(account_id = %caller.account_id))]
pub async fn list(
    state: web::Data<ControlState>,
    caller: Caller,
    query: web::Query<AuditQuery>,
) -> Result<web::Json<Vec<AuditEntry>>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let rows = state.control.audit_log(caller.account_id, limit).await?;
    Ok(web::Json(rows.into_iter().map(AuditEntry::from).collect()))
}
