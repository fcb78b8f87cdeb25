//! Pusher's HTTP API: one file per endpoint, every request verified as Pusher signs it.

mod channels;
pub(crate) mod error;
mod events;
mod history;
mod users;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::http::header::ALLOW;
use actix_web::{HttpRequest, HttpResponse, web};
use protocol::names::{AppId, AppKey};
use protocol::sign::{RequestAuthError, SignedRequest, decode_query};
use tenancy::App;

use crate::EdgeState;
use crate::admission::{InFlightPermit, Refused, count_refusal};
pub use error::ApiError;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/apps/{app_id}/events", "POST").route(web::post().to(events::trigger)))
        .service(
            resource("/apps/{app_id}/batch_events", "POST")
                .route(web::post().to(events::trigger_batch)),
        )
        .service(resource("/apps/{app_id}/channels", "GET").route(web::get().to(channels::list)))
        .service(
            resource("/apps/{app_id}/channels/{channel}", "GET")
                .route(web::get().to(channels::show)),
        )
        .service(
            resource("/apps/{app_id}/channels/{channel}/users", "GET")
                .route(web::get().to(channels::users)),
        )
        .service(
            resource("/apps/{app_id}/channels/{channel}/history", "GET")
                .route(web::get().to(history::history)),
        )
        .service(
            resource(
                "/apps/{app_id}/users/{user_id}/terminate_connections",
                "POST",
            )
            .route(web::post().to(users::terminate_connections)),
        )
        // pusher-http-python (3.x) posts its terminate call without the `/apps/{app_id}`
        // prefix, and signs that path; the signing key names the app (see `authenticate`).
        .service(
            resource("/users/{user_id}/terminate_connections", "POST")
                .route(web::post().to(users::terminate_connections)),
        );
}

/// A resource whose other methods get a JSON 405 with `Allow: allow`, the methods routed on
/// it (HTTP requires the header on a 405).
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move |request: HttpRequest| async move {
        HttpResponse::MethodNotAllowed()
            .insert_header((ALLOW, allow))
            .json(serde_json::json!({
                "error": format!("method {} not allowed here; allowed: {allow}", request.method())
            }))
    }))
}

/// A request whose signature checked out, for the app named in its path.
pub struct Authenticated {
    pub app: Arc<App>,
    pub query: Vec<(String, String)>,
    /// One of the app's in-flight slots, held until the handler drops this (returns or is
    /// cancelled).
    _in_flight: InFlightPermit,
}

impl Authenticated {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Verifies the request's signature for the app in its path: bad or foreign key or signature
/// 401, unknown app 404 (only for a request signed with a live key), disabled app 403.
///
/// Everything that needs no secret is checked before the catalog is asked anything, so a
/// request that could never be valid (unsigned, expired, malformed, a body that does not
/// match its `body_md5`) costs no lookup, and an unknown app id answers it exactly as a
/// known one does.
pub async fn authenticate(
    state: &EdgeState,
    request: &HttpRequest,
    body: &[u8],
) -> Result<Authenticated, ApiError> {
    let query = decode_query(request.query_string())
        .ok_or_else(|| ApiError::BadRequest("the query string is not valid URL encoding".into()))?;
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
    let key = AppKey::parse(key).map_err(|_| RequestAuthError::KeyMissing)?;
    signed.check_shape()?;
    // A path without `{app_id}` (some server libraries' `/users/{id}/…`) means the key's app.
    let app_id = match request.match_info().get("app_id") {
        Some(app_id) => Some(AppId::parse(app_id).map_err(|_| ApiError::UnknownApp)?),
        None => None,
    };
    let keyed = state
        .catalog
        .find_by_key(&key)
        .await?
        .ok_or(RequestAuthError::KeyMissing)?;
    if let Err(error) = signed.verify(keyed.secret.expose()) {
        // The key is the app's own, so its owner may want to know: a client signing wrongly.
        report_refusal(state, &keyed.app.id, &ApiError::from(error.clone()));
        return Err(error.into());
    }
    // A key of another app is as unknown here as a key of no app; only a caller holding a
    // live key and its secret learns whether the app in the path exists.
    if let Some(app_id) = app_id.filter(|app_id| *app_id != keyed.app.id) {
        return match state.catalog.find_by_id(&app_id).await? {
            Some(_) => Err(RequestAuthError::KeyMissing.into()),
            None => Err(ApiError::UnknownApp),
        };
    }
    let app = keyed.app;
    if !app.enabled {
        return Err(ApiError::AppDisabled);
    }
    // Every API handler's span has an `app_id` field; fill it here once.
    tracing::Span::current().record("app_id", app.id.as_str());
    // Only now, signed and enabled: an unsigned flood never takes a tenant's slot.
    let Some(in_flight) = state.admission.api.try_acquire(&app.id) else {
        let error = ApiError::TooManyInFlight(state.admission.api.per_app());
        count_refusal(Refused::ApiInFlight);
        report_refusal(state, &app.id, &error);
        return Err(error);
    };
    Ok(Authenticated {
        app,
        query,
        _in_flight: in_flight,
    })
}

/// Keeps an API refusal of `app` for its console and refusal log.
pub(crate) fn report_refusal(state: &EdgeState, app: &AppId, error: &ApiError) {
    let status = actix_web::ResponseError::status_code(error).as_u16();
    crate::console::report::refused(state, app, || tenancy::Refusal {
        status: Some(status),
        ..crate::console::report::refusal("api", None, &error.to_string())
    });
}
