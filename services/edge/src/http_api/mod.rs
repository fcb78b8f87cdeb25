//! Pusher's HTTP API: one file per endpoint, every request verified as Pusher signs it.

mod channels;
mod error;
mod events;
mod history;
mod users;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{HttpRequest, web};
use protocol::names::AppId;
use protocol::sign::{RequestAuthError, SignedRequest};
use tenancy::App;

use crate::EdgeState;
pub use error::ApiError;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/apps/{app_id}/events", web::post().to(events::trigger))
        .route(
            "/apps/{app_id}/batch_events",
            web::post().to(events::trigger_batch),
        )
        .route("/apps/{app_id}/channels", web::get().to(channels::list))
        .route(
            "/apps/{app_id}/channels/{channel}",
            web::get().to(channels::show),
        )
        .route(
            "/apps/{app_id}/channels/{channel}/users",
            web::get().to(channels::users),
        )
        .route(
            "/apps/{app_id}/channels/{channel}/history",
            web::get().to(history::history),
        )
        .route(
            "/apps/{app_id}/users/{user_id}/terminate_connections",
            web::post().to(users::terminate_connections),
        )
        // pusher-http-python (3.x) posts its terminate call without the `/apps/{app_id}`
        // prefix, and signs that path; the signing key names the app.
        .route(
            "/users/{user_id}/terminate_connections",
            web::post().to(users::terminate_connections_of_signing_app),
        );
}

/// A request whose signature checked out, for the app named in its path.
pub struct Authenticated {
    pub app: Arc<App>,
    pub query: Vec<(String, String)>,
}

impl Authenticated {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Verifies the request's signature for the app in its path: unknown app 404, bad or
/// foreign key or signature 401, disabled app 403.
pub async fn authenticate(
    state: &EdgeState,
    request: &HttpRequest,
    body: &[u8],
) -> Result<Authenticated, ApiError> {
    let app_id = request.match_info().get("app_id").unwrap_or_default();
    let app_id = AppId::parse(app_id).map_err(|_| ApiError::UnknownApp)?;
    let app = state
        .catalog
        .find_by_id(&app_id)
        .await?
        .ok_or(ApiError::UnknownApp)?;
    let query: Vec<(String, String)> = serde_urlencoded::from_str(request.query_string())
        .map_err(|_| ApiError::BadRequest("the query string is not valid URL encoding".into()))?;
    let signed = SignedRequest {
        method: request.method().as_str(),
        path: request.path(),
        query: &query,
        body,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let key = signed.preflight(now)?;
    let key = protocol::names::AppKey::parse(key).map_err(|_| RequestAuthError::KeyMissing)?;
    let keyed = state.catalog.find_by_key(&key).await?;
    // A key of another app is as unknown here as a key of no app.
    let keyed = keyed
        .filter(|keyed| keyed.app.id == app.id)
        .ok_or(RequestAuthError::KeyMissing)?;
    signed.verify(keyed.secret.expose())?;
    if !app.enabled {
        return Err(ApiError::AppDisabled);
    }
    // Every API handler's span has an `app_id` field; fill it here once.
    tracing::Span::current().record("app_id", app.id.as_str());
    Ok(Authenticated { app, query })
}

/// Verifies a request whose path names no app: the app is the one its `auth_key` belongs to.
/// An unknown key is 401 (the path has no app to be unknown), a disabled app 403.
pub async fn authenticate_by_key(
    state: &EdgeState,
    request: &HttpRequest,
    body: &[u8],
) -> Result<Authenticated, ApiError> {
    let query: Vec<(String, String)> = serde_urlencoded::from_str(request.query_string())
        .map_err(|_| ApiError::BadRequest("the query string is not valid URL encoding".into()))?;
    let signed = SignedRequest {
        method: request.method().as_str(),
        path: request.path(),
        query: &query,
        body,
    };
    let key = signed.preflight(crate::limits::unix_now())?;
    let key = protocol::names::AppKey::parse(key).map_err(|_| RequestAuthError::KeyMissing)?;
    let keyed = state
        .catalog
        .find_by_key(&key)
        .await?
        .ok_or(RequestAuthError::KeyMissing)?;
    signed.verify(keyed.secret.expose())?;
    if !keyed.app.enabled {
        return Err(ApiError::AppDisabled);
    }
    tracing::Span::current().record("app_id", keyed.app.id.as_str());
    Ok(Authenticated {
        app: keyed.app,
        query,
    })
}
