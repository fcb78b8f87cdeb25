//! Every way an HTTP API call fails, and the one mapping to its HTTP status.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use protocol::sign::RequestAuthError;
use tenancy::CatalogError;

/// `Retry-After` on every 429 of the HTTP API: each cause clears within about a second (the
/// fan-out sizes a paced storm's backlog by it).
pub(crate) const RETRY_AFTER_SECONDS: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(#[from] RequestAuthError),
    #[error("app is disabled")]
    AppDisabled,
    #[error("unknown app")]
    UnknownApp,
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    /// Over the plan's publish request rate, or the app's fan-out backlog is over half full
    /// (429 with `Retry-After`).
    #[error("{0}")]
    RateLimited(String),
    /// The app has its most HTTP API requests in flight on this node (answered at once, with
    /// `Retry-After: 1`, rather than queued behind them).
    #[error(
        "the app has {0} HTTP API requests in flight on this node, its most; retry in a second"
    )]
    TooManyInFlight(usize),
    /// Over the plan's daily message quota (Pusher answers 403 for this).
    #[error("{0}")]
    OverQuota(String),
    /// Some events after the serial asked for are no longer kept, or the epoch asked for is
    /// not the channel's (410 Gone: they will not come back).
    #[error("the events after that serial are no longer available")]
    HistoryGap {
        epoch: String,
        latest: u64,
        oldest_available: u64,
    },
}

impl From<CatalogError> for ApiError {
    fn from(error: CatalogError) -> Self {
        Self::Unavailable(error.to_string())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::AppDisabled => StatusCode::FORBIDDEN,
            Self::UnknownApp => StatusCode::NOT_FOUND,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited(_) | Self::TooManyInFlight(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::OverQuota(_) => StatusCode::FORBIDDEN,
            Self::HistoryGap { .. } => StatusCode::GONE,
        }
    }

    /// A short JSON body; the SDKs surface it as the error message.
    fn error_response(&self) -> HttpResponse {
        let mut body = serde_json::json!({ "error": self.to_string() });
        if let Self::HistoryGap {
            epoch,
            latest,
            oldest_available,
        } = self
        {
            body["epoch"] = serde_json::json!(epoch);
            body["serial"] = serde_json::json!(latest);
            body["oldest_available"] = serde_json::json!(oldest_available);
        }
        let mut response = HttpResponse::build(self.status_code());
        if let Self::RateLimited(_) | Self::TooManyInFlight(_) = self {
            // Every cause (the plan's per-second rate, the app's fan-out backlog, its
            // requests in flight) clears within about a second.
            response.insert_header((
                actix_web::http::header::RETRY_AFTER,
                RETRY_AFTER_SECONDS.to_string(),
            ));
        }
        response.json(body)
    }
}
