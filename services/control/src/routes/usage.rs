//! An app's metered usage as a time series.

use actix_web::web;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use utoipa::{IntoParams, ToSchema};

use crate::repository::usage::UsageRow;
use crate::routes::ControlState;
use crate::routes::auth::Caller;
use crate::routes::error::{ApiError, ErrorBody};
use crate::service::ControlError;
use crate::usage::Resolution;

/// Most points one request may span: a week of minutes.
pub const MAX_POINTS: i64 = 7 * 24 * 60;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Start of the range (inclusive), RFC 3339. Default: `to` minus 1 hour (minute), 2 days
    /// (hour) or 30 days (day).
    #[param(example = "2026-11-26T00:00:00Z", format = DateTime)]
    pub from: Option<String>,
    /// End of the range (exclusive), RFC 3339. Default: now.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// `minute` (default), `hour` or `day`; periods are UTC.
    #[param(inline)]
    pub resolution: Option<Resolution>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageSeries {
    pub resolution: Resolution,
    /// Periods with activity, oldest first; a period that is absent had none.
    pub points: Vec<UsagePoint>,
}

/// One period's usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsagePoint {
    /// Start of the period (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// Most connections open at once during the period (per edge node).
    pub peak_connections: i64,
    pub connections_opened: i64,
    /// One per channel an API trigger names, one per client event.
    pub messages_published: i64,
    /// One per subscriber a message reached.
    pub messages_delivered: i64,
    /// Published plus delivered: messages as Pusher counts them toward a plan's quota.
    pub messages: i64,
    /// Bytes of the delivered frames.
    pub bytes_out: i64,
}

impl From<UsageRow> for UsagePoint {
    fn from(row: UsageRow) -> Self {
        Self {
            time: row.time,
            peak_connections: row.peak_connections,
            connections_opened: row.connections_opened,
            messages_published: row.messages_published,
            messages_delivered: row.messages_delivered,
            messages: row
                .messages_published
                .saturating_add(row.messages_delivered),
            bytes_out: row.bytes_out,
        }
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ControlError::Validation(message.into()).into()
}

fn parse_time(name: &str, value: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(value, &Rfc3339).map_err(|_| {
        invalid(format!(
            "{name} must be an RFC 3339 time such as 2026-11-26T00:00:00Z"
        ))
    })
}

/// The range asked for, checked: `from` before `to`, and at most `MAX_POINTS` periods.
fn range(
    query: &UsageQuery,
    resolution: Resolution,
    now: OffsetDateTime,
) -> Result<(OffsetDateTime, OffsetDateTime), ApiError> {
    let to = match &query.to {
        Some(to) => parse_time("to", to)?,
        None => now,
    };
    let from = match &query.from {
        Some(from) => parse_time("from", from)?,
        None => {
            to - match resolution {
                Resolution::Minute => Duration::hours(1),
                Resolution::Hour => Duration::days(2),
                Resolution::Day => Duration::days(30),
            }
        }
    };
    if from >= to {
        return Err(invalid("from must be before to"));
    }
    let periods = (to - from).whole_seconds() / resolution.seconds();
    if periods > MAX_POINTS {
        return Err(invalid(format!(
            "the range spans {periods} periods; at most {MAX_POINTS} per request"
        )));
    }
    Ok((from, to))
}

/// The app's usage per minute, hour or day (UTC) over a range.
#[utoipa::path(
    get, path = "/v1/apps/{app_id}/usage", tag = "usage",
    security(("session" = []), ("bearer" = [])),
    params(("app_id" = String, Path), UsageQuery),
    responses(
        (status = 200, body = UsageSeries),
        (status = 400, description = "bad from, to or resolution, or a range too long", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no such app in this account", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "app_usage", skip_all, fields(account_id = %caller.account_id, app_id = %ingress::Untrusted(app_id.as_str())))]
pub async fn show(
    state: web::Data<ControlState>,
    caller: Caller,
    app_id: web::Path<String>,
    query: web::Query<UsageQuery>,
) -> Result<web::Json<UsageSeries>, ApiError> {
    let resolution = query.resolution.unwrap_or_default();
    let (from, to) = range(&query, resolution, OffsetDateTime::now_utc())?;
    let rows = state
        .control
        .usage(caller.account_id, &app_id, resolution, from, to)
        .await?;
    Ok(web::Json(UsageSeries {
        resolution,
        points: rows.into_iter().map(UsagePoint::from).collect(),
    }))
}
