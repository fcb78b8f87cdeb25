//! How a `/v1` call fails: the one mapping from `ControlError` to an HTTP status, and the
//! extractor error handlers that turn malformed input into the same JSON body.

use std::time::Duration;

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::http::header::{ALLOW, RETRY_AFTER};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::service::ControlError;

/// Every error response's body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, lowercase, for a person to read.
    #[schema(example = "not found")]
    pub error: String,
}

/// A failed call: the service's error, plus how long to wait when it was rate limited.
#[derive(Debug)]
pub struct ApiError {
    error: ControlError,
    retry_after: Option<Duration>,
}

impl ApiError {
    /// Too many login attempts; the client may try again after `wait`.
    pub fn rate_limited(wait: Duration) -> Self {
        Self {
            error: ControlError::RateLimited,
            retry_after: Some(wait),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(error: ControlError) -> Self {
        // A busy hasher frees a slot within a second or so.
        let retry_after = matches!(error, ControlError::Busy).then_some(Duration::from_secs(1));
        Self { error, retry_after }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// The HTTP status of each service error. No `_` arm: a new variant must be placed here.
pub fn status_of(error: &ControlError) -> StatusCode {
    match error {
        ControlError::Validation(_) => StatusCode::BAD_REQUEST,
        ControlError::EmailTaken => StatusCode::CONFLICT,
        ControlError::InvalidCredentials => StatusCode::UNAUTHORIZED,
        ControlError::Unauthenticated => StatusCode::UNAUTHORIZED,
        ControlError::Csrf => StatusCode::FORBIDDEN,
        ControlError::NotFound => StatusCode::NOT_FOUND,
        ControlError::UnknownPlan(_) => StatusCode::BAD_REQUEST,
        ControlError::LastKey => StatusCode::CONFLICT,
        ControlError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ControlError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        ControlError::NotInPlan(_) => StatusCode::FORBIDDEN,
        ControlError::PaymentRequired(_) => StatusCode::PAYMENT_REQUIRED,
        ControlError::EmailUnverified => StatusCode::FORBIDDEN,
        ControlError::AlreadyVerified => StatusCode::CONFLICT,
        ControlError::InvalidToken => StatusCode::BAD_REQUEST,
        ControlError::WrongPassword => StatusCode::FORBIDDEN,
        ControlError::BillingDisabled => StatusCode::NOT_FOUND,
        ControlError::AlreadySubscribed => StatusCode::CONFLICT,
        ControlError::NoSubscription => StatusCode::CONFLICT,
        ControlError::InvalidWebhook(_) => StatusCode::BAD_REQUEST,
        ControlError::StripeUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ControlError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        status_of(&self.error)
    }

    /// `{"error": "..."}`. An unexpected error's detail goes to the log only; its message is
    /// just "internal error".
    fn error_response(&self) -> HttpResponse {
        if let ControlError::Unexpected(detail) = &self.error {
            // Debug-escaped: a database error may quote a value a client sent.
            tracing::error!(error = ?format!("{detail:#}"), "control API call failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        if let Some(wait) = self.retry_after {
            // Whole seconds, rounded up, and never 0: a client retrying at once would only
            // be refused again.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.insert_header((RETRY_AFTER, seconds.max(1).to_string()));
        }
        response.json(ErrorBody {
            error: self.error.to_string(),
        })
    }
}

/// Malformed or oversized JSON bodies and wrong content types are 400s with a JSON body.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|error, _request| {
            let message = match &error {
                JsonPayloadError::ContentType => {
                    "the body must be JSON with Content-Type: application/json".to_owned()
                }
                JsonPayloadError::Deserialize(detail) => format!("malformed JSON body: {detail}"),
                JsonPayloadError::Overflow { limit }
                | JsonPayloadError::OverflowKnownLength { limit, .. } => {
                    format!("the JSON body is larger than {limit} bytes")
                }
                // `JsonPayloadError` is non-exhaustive; what is left is a broken transfer.
                _ => "the JSON body could not be read".to_owned(),
            };
            ApiError::from(ControlError::Validation(message)).into()
        })
}

/// A path segment that does not parse (a token id that is not a UUID) names nothing.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|_error: PathError, _request| ApiError::from(ControlError::NotFound).into())
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error: QueryPayloadError, _request| {
        let message = match &error {
            QueryPayloadError::Deserialize(detail) => format!("malformed query string: {detail}"),
            _ => "malformed query string".to_owned(),
        };
        ApiError::from(ControlError::Validation(message)).into()
    })
}

/// Any path under `/v1` that no route claims.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ControlError::NotFound.into())
}

/// A known path with a method it does not serve, with the methods it does in `Allow` (as HTTP
/// requires for a 405). Not a service outcome, so it is not a `ControlError`; it still
/// answers with the same JSON body.
pub async fn method_not_allowed(request: HttpRequest, allow: &'static str) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((ALLOW, allow))
        .json(ErrorBody {
            error: format!(
                "method {} not allowed here; allowed: {allow}",
                request.method()
            ),
        })
}
