//! Who is calling: the `Caller` extractor, and the session and CSRF cookies.
//!
//! A caller is either a script with `Authorization: Bearer sbt_...` (an account API token) or
//! a browser with the `sb_session` cookie. A cookie is sent by the browser on its own, so with
//! it every state-changing call must also carry `X-CSRF-Token` equal to the session's CSRF
//! token, which only pages of our own origin can read (from the login response or the
//! `sb_csrf` cookie). A Bearer token is never sent implicitly, so it needs no CSRF token.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::Method;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, web};
use uuid::Uuid;

use crate::routes::ControlState;
use crate::routes::error::ApiError;
use crate::service::{ControlError, NewSession, SESSION_LIFETIME};

/// The session cookie: HttpOnly, so scripts never see it.
pub const SESSION_COOKIE: &str = "sb_session";
/// The CSRF token as a cookie scripts of our origin can read, to echo in `X-CSRF-Token`.
pub const CSRF_COOKIE: &str = "sb_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Every API token starts with this, so a leaked one is easy to recognise and scan for.
pub const API_TOKEN_PREFIX: &str = "sbt_";

/// The authenticated account of a request. Its `Debug` leaves the session token out.
#[derive(Clone)]
pub struct Caller {
    pub account_id: Uuid,
    /// The session's cookie token when the caller came with one, so logout can end it.
    session_token: Option<String>,
}

impl Caller {
    pub fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref()
    }
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("account_id", &self.account_id)
            .field("session", &self.session_token.is_some())
            .finish()
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move { authenticate(&request).await })
    }
}

async fn authenticate(request: &HttpRequest) -> Result<Caller, ApiError> {
    let state = request
        .app_data::<web::Data<ControlState>>()
        .ok_or_else(|| ControlError::Unexpected(anyhow::anyhow!("ControlState is not mounted")))?;
    let control = &state.control;
    // An Authorization header decides on its own: a bad token is not rescued by a cookie.
    if let Some(header) = request.headers().get(AUTHORIZATION) {
        let token = header
            .to_str()
            .ok()
            .and_then(bearer_token)
            .ok_or(ControlError::Unauthenticated)?;
        let account_id = control
            .api_token_account(token)
            .await?
            .ok_or(ControlError::Unauthenticated)?;
        return Ok(Caller {
            account_id,
            session_token: None,
        });
    }
    let cookie = request
        .cookie(SESSION_COOKIE)
        .ok_or(ControlError::Unauthenticated)?;
    let session_token = cookie.value().to_owned();
    let (account_id, csrf_token) = control
        .session(&session_token)
        .await?
        .ok_or(ControlError::Unauthenticated)?;
    if changes_state(request.method()) {
        let sent = request
            .headers()
            .get(CSRF_HEADER)
            .and_then(|value| value.to_str().ok());
        if !sent.is_some_and(|sent| constant_time_eq(sent.as_bytes(), csrf_token.as_bytes())) {
            return Err(ControlError::Csrf.into());
        }
    }
    Ok(Caller {
        account_id,
        session_token: Some(session_token),
    })
}

/// The token of `Bearer sbt_...` (the scheme name is case-insensitive, as HTTP says).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && token.starts_with(API_TOKEN_PREFIX)).then_some(token)
}

/// Everything but the methods HTTP defines as safe; those must not change anything here.
fn changes_state(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Compares without returning early, so timing does not tell how much of a guess was right.
fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

/// The cookies that carry a new session.
pub fn session_cookies(session: &NewSession, secure: bool) -> [Cookie<'static>; 2] {
    let max_age = actix_web::cookie::time::Duration::seconds(SESSION_LIFETIME.whole_seconds());
    let mut session_cookie = base_cookie(SESSION_COOKIE, session.token.clone(), secure);
    session_cookie.set_http_only(true);
    session_cookie.set_max_age(max_age);
    let mut csrf_cookie = base_cookie(CSRF_COOKIE, session.csrf_token.clone(), secure);
    csrf_cookie.set_max_age(max_age);
    [session_cookie, csrf_cookie]
}

/// Cookies that make the browser forget the session.
pub fn removal_cookies(secure: bool) -> [Cookie<'static>; 2] {
    let mut session_cookie = base_cookie(SESSION_COOKIE, String::new(), secure);
    session_cookie.set_http_only(true);
    session_cookie.make_removal();
    let mut csrf_cookie = base_cookie(CSRF_COOKIE, String::new(), secure);
    csrf_cookie.make_removal();
    [session_cookie, csrf_cookie]
}

fn base_cookie(name: &'static str, value: String, secure: bool) -> Cookie<'static> {
    let mut cookie = Cookie::new(name, value);
    cookie.set_path("/");
    cookie.set_same_site(SameSite::Lax);
    cookie.set_secure(secure);
    cookie
}

/// The client address the per-address limits count against, as the limiter keys it (IPv6 by
/// its /64); `None` only for a request without a peer (never over TCP).
pub fn client_address(request: &HttpRequest, state: &ControlState) -> Option<IpAddr> {
    ingress::client_address(request, &state.settings.trusted_proxies)
        .map(crate::routes::login_limit::limit_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_recognised() {
        assert_eq!(bearer_token("Bearer sbt_abc"), Some("sbt_abc"));
        assert_eq!(bearer_token("bearer  sbt_abc "), Some("sbt_abc"));
        assert_eq!(bearer_token("Bearer abc"), None);
        assert_eq!(bearer_token("Basic sbt_abc"), None);
        assert_eq!(bearer_token("sbt_abc"), None);
    }

    #[test]
    fn only_unsafe_methods_need_csrf() {
        assert!(!changes_state(&Method::GET));
        assert!(!changes_state(&Method::HEAD));
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(changes_state(&method));
        }
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
