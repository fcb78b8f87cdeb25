//! Sign up, log in, log out, and who am I.

use std::net::{IpAddr, Ipv4Addr};

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::routes::ControlState;
use crate::routes::auth::{Caller, client_address, removal_cookies, session_cookies};
use crate::routes::error::{ApiError, ErrorBody};
use crate::service::NewSession;

/// An email and password. No `Debug`, so the password cannot end up in a log line.
#[derive(Deserialize, ToSchema)]
pub struct Credentials {
    /// At most 254 characters; surrounding whitespace is ignored.
    #[schema(example = "ann@example.com", format = Email, max_length = 254, pattern = r"^[^@\s]+@[^@\s.][^@\s]*\.[^@\s]*[^@\s.]$")]
    pub email: String,
    /// 10 to 256 characters, and not one of the most common passwords (refused with 400).
    #[schema(format = Password, min_length = 10, max_length = 256)]
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    pub id: Uuid,
    pub email: String,
    /// Whether the owner followed a verification link; paid plans need it.
    pub email_verified: bool,
}

/// The new account, signed in: the session is in the `sb_session` cookie.
#[derive(Serialize, ToSchema)]
pub struct SignedUp {
    pub id: Uuid,
    pub email: String,
    /// Send it as `X-CSRF-Token` on every state-changing call made with the session cookie.
    pub csrf_token: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoggedIn {
    /// Send it as `X-CSRF-Token` on every state-changing call made with the session cookie.
    pub csrf_token: String,
}

/// Creates an account and signs it in, and mails a verification link to the address. Rate
/// limited per client address.
#[utoipa::path(
    post, path = "/v1/signup", tag = "accounts",
    request_body = Credentials,
    responses(
        (status = 201, description = "signed up; sets the `sb_session` and `sb_csrf` cookies", body = SignedUp),
        (status = 400, description = "invalid email, weak password or malformed JSON", body = ErrorBody),
        (status = 409, description = "an account with this email (in any case) exists", body = ErrorBody),
        (status = 429, description = "too many sign-ups from this address; see `Retry-After`", body = ErrorBody),
        (status = 503, description = "too many password checks under way; see `Retry-After`", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "sign_up", skip_all, fields(client_address))]
pub async fn sign_up(
    state: web::Data<ControlState>,
    request: HttpRequest,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let address = client_address(&request, &state).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    tracing::Span::current().record("client_address", tracing::field::display(address));
    if let Err(wait) = state.signup_limiter.check(address) {
        tracing::info!("sign-up refused: rate limited");
        return Err(ApiError::rate_limited(wait));
    }
    let control = &state.control;
    let account_id = control.sign_up(&body.email, &body.password).await?;
    let session = control.create_session(account_id).await?;
    let mut response = with_session(HttpResponse::Created(), &state, &session);
    Ok(response.json(SignedUp {
        id: account_id,
        email: body.email.trim().to_owned(),
        csrf_token: session.csrf_token,
    }))
}

/// Signs in with email and password. Rate limited per email and per client IP.
#[utoipa::path(
    post, path = "/v1/login", tag = "accounts",
    request_body = Credentials,
    responses(
        (status = 200, description = "signed in; sets the `sb_session` and `sb_csrf` cookies", body = LoggedIn),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 401, description = "wrong email or password", body = ErrorBody),
        (status = 429, description = "too many attempts; see `Retry-After`", body = ErrorBody),
        (status = 503, description = "too many password checks under way; see `Retry-After`", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "log_in", skip_all, fields(client_address))]
pub async fn log_in(
    state: web::Data<ControlState>,
    request: HttpRequest,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let address = client_address(&request, &state).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    tracing::Span::current().record("client_address", tracing::field::display(address));
    if let Err(wait) = state.login_limiter.check(&body.email, &address.to_string()) {
        tracing::info!("login refused: rate limited");
        return Err(ApiError::rate_limited(wait));
    }
    let control = &state.control;
    let account_id = control.check_password(&body.email, &body.password).await?;
    let session = control.create_session(account_id).await?;
    let mut response = with_session(HttpResponse::Ok(), &state, &session);
    Ok(response.json(LoggedIn {
        csrf_token: session.csrf_token,
    }))
}

/// Ends the caller's session (if it came with one) and clears the cookies.
#[utoipa::path(
    post, path = "/v1/logout", tag = "accounts",
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 204, description = "signed out"),
        (status = 401, description = "not signed in", body = ErrorBody),
        (status = 403, description = "missing or wrong `X-CSRF-Token`", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "log_out", skip_all, fields(account_id = %caller.account_id))]
pub async fn log_out(
    state: web::Data<ControlState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    if let Some(token) = caller.session_token() {
        state.control.end_session(token).await?;
    }
    let mut response = HttpResponse::NoContent();
    for cookie in removal_cookies(state.settings.secure_cookies) {
        response.cookie(cookie);
    }
    Ok(response.finish())
}

/// The signed-in account.
#[utoipa::path(
    get, path = "/v1/me", tag = "accounts",
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 200, body = AccountView),
        (status = 401, description = "not signed in", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "me", skip_all, fields(account_id = %caller.account_id))]
pub async fn me(
    state: web::Data<ControlState>,
    caller: Caller,
) -> Result<web::Json<AccountView>, ApiError> {
    let email = state.control.account_email(caller.account_id).await?;
    let email_verified = state.control.email_verified(caller.account_id).await?;
    Ok(web::Json(AccountView {
        id: caller.account_id,
        email,
        email_verified,
    }))
}

fn with_session(
    mut response: HttpResponseBuilder,
    state: &ControlState,
    session: &NewSession,
) -> HttpResponseBuilder {
    for cookie in session_cookies(session, state.settings.secure_cookies) {
        response.cookie(cookie);
    }
    response.insert_header(CacheControl(vec![CacheDirective::NoStore]));
    response
}
