//! The account's mail flows and password: verify the email (and ask for the link again),
//! reset a forgotten password by a mailed link, change the password with the current one.

use std::net::{IpAddr, Ipv4Addr};

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::domain::Email;
use crate::routes::ControlState;
use crate::routes::auth::{Caller, client_address};
use crate::routes::error::{ApiError, ErrorBody};
use crate::service::ControlError;

/// A one-time token from a mailed link. No `Debug`: it is a credential.
#[derive(Deserialize, ToSchema)]
pub struct EmailToken {
    /// The `token` query parameter of the link.
    pub token: String,
}

#[derive(Deserialize, ToSchema)]
pub struct PasswordResetRequest {
    /// At most 254 characters; surrounding whitespace is ignored.
    #[schema(example = "ann@example.com", format = Email, max_length = 254, pattern = r"^[^@\s]+@[^@\s.][^@\s]*\.[^@\s]*[^@\s.]$")]
    pub email: String,
}

/// A reset token and the new password. No `Debug`, so neither ends up in a log line.
#[derive(Deserialize, ToSchema)]
pub struct PasswordReset {
    /// The `token` query parameter of the reset link.
    pub token: String,
    /// As at sign-up: 10 to 256 characters, not one of the most common passwords.
    #[schema(format = Password, min_length = 10, max_length = 256)]
    pub password: String,
}

/// No `Debug`, so neither password ends up in a log line.
#[derive(Deserialize, ToSchema)]
pub struct PasswordChange {
    #[schema(format = Password)]
    pub current_password: String,
    /// As at sign-up: 10 to 256 characters, not one of the most common passwords.
    #[schema(format = Password, min_length = 10, max_length = 256)]
    pub new_password: String,
}

/// Mails a new verification link (the earlier one stops working). Rate limited per address.
#[utoipa::path(
    post, path = "/v1/account/verification", tag = "accounts",
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 202, description = "a verification mail is on its way"),
        (status = 401, description = "not signed in", body = ErrorBody),
        (status = 403, description = "missing or wrong `X-CSRF-Token`", body = ErrorBody),
        (status = 409, description = "the email is already verified", body = ErrorBody),
        (status = 429, description = "too many mails to this address; see `Retry-After`", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "resend_verification", skip_all, fields(account_id = %caller.account_id))]
pub async fn resend_verification(
    state: web::Data<ControlState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let email = state.control.account_email(caller.account_id).await?;
    if state.control.email_verified(caller.account_id).await? {
        return Err(ControlError::AlreadyVerified.into());
    }
    state
        .mail_limiter
        .check_email(&email)
        .map_err(ApiError::rate_limited)?;
    state.control.resend_verification(caller.account_id).await?;
    Ok(HttpResponse::Accepted().finish())
}

/// Verifies the email the token was mailed to. Needs no session: the link may be opened in
/// another browser.
#[utoipa::path(
    post, path = "/v1/account/verify", tag = "accounts",
    request_body = EmailToken,
    responses(
        (status = 204, description = "verified"),
        (status = 400, description = "the token is unknown, expired or used, or malformed JSON", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "verify_email", skip_all)]
pub async fn verify_email(
    state: web::Data<ControlState>,
    body: web::Json<EmailToken>,
) -> Result<HttpResponse, ApiError> {
    state.control.verify_email(&body.token).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Mails a password-reset link if an account has this email. The answer is the same whether
/// one does or not; past the per-address quota of mails nothing more is sent, silently.
#[utoipa::path(
    post, path = "/v1/account/password-reset", tag = "accounts",
    request_body = PasswordResetRequest,
    responses(
        (status = 202, description = "if an account has this email, a reset mail is on its way"),
        (status = 400, description = "not an email address, or malformed JSON", body = ErrorBody),
        (status = 429, description = "too many reset requests from this client address; see `Retry-After`", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "request_password_reset", skip_all, fields(client_address))]
pub async fn request_password_reset(
    state: web::Data<ControlState>,
    request: HttpRequest,
    body: web::Json<PasswordResetRequest>,
) -> Result<HttpResponse, ApiError> {
    let address = client_address(&request, &state).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    tracing::Span::current().record("client_address", tracing::field::display(address));
    state
        .mail_limiter
        .check_address(address)
        .map_err(ApiError::rate_limited)?;
    let email = Email::parse(&body.email).map_err(|e| ControlError::Validation(e.to_string()))?;
    // Counted for every address, known or not, so the quota reveals nothing either.
    if state.mail_limiter.check_email(email.as_str()).is_ok() {
        state.control.request_password_reset(email.as_str()).await?;
    } else {
        tracing::info!("reset mail not sent: this address's mail quota is used up");
    }
    Ok(HttpResponse::Accepted().finish())
}

/// Sets a new password with a reset token. Every session of the account ends; sign in again.
#[utoipa::path(
    post, path = "/v1/account/password-reset/confirm", tag = "accounts",
    request_body = PasswordReset,
    responses(
        (status = 204, description = "the password is changed and every session ended"),
        (status = 400, description = "the token is unknown, expired or used, a weak password, or malformed JSON", body = ErrorBody),
        (status = 503, description = "too many password hashes under way; see `Retry-After`", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "reset_password", skip_all)]
pub async fn reset_password(
    state: web::Data<ControlState>,
    body: web::Json<PasswordReset>,
) -> Result<HttpResponse, ApiError> {
    state
        .control
        .reset_password(&body.token, &body.password)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Changes the password, given the current one. The account's other sessions end; this one
/// stays.
#[utoipa::path(
    put, path = "/v1/account/password", tag = "accounts",
    security(("session" = []), ("bearer" = [])),
    request_body = PasswordChange,
    responses(
        (status = 204, description = "changed; the account's other sessions ended"),
        (status = 400, description = "a weak new password, or malformed JSON", body = ErrorBody),
        (status = 401, description = "not signed in", body = ErrorBody),
        (status = 403, description = "the current password is wrong, or a missing or wrong `X-CSRF-Token`", body = ErrorBody),
        (status = 429, description = "too many attempts, counted with logins; see `Retry-After`", body = ErrorBody),
        (status = 503, description = "too many password hashes under way; see `Retry-After`", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "change_password", skip_all, fields(account_id = %caller.account_id))]
pub async fn change_password(
    state: web::Data<ControlState>,
    request: HttpRequest,
    caller: Caller,
    body: web::Json<PasswordChange>,
) -> Result<HttpResponse, ApiError> {
    // Guessing the current password from a stolen session counts as logins do.
    let email = state.control.account_email(caller.account_id).await?;
    let address = client_address(&request, &state).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    state
        .login_limiter
        .check(&email, &address.to_string())
        .map_err(ApiError::rate_limited)?;
    state
        .control
        .change_password(
            caller.account_id,
            &body.current_password,
            &body.new_password,
            caller.session_token(),
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
