//! `POST /apps/{app_id}/users/{user_id}/terminate_connections`, and the same call without the
//! `/apps/{app_id}` prefix as pusher-http-python sends it.

use actix_web::{HttpRequest, HttpResponse, web};
use broker::broadcast::NodeMessage;
use protocol::names::UserId;

use crate::EdgeState;
use crate::http_api::{ApiError, Authenticated, authenticate};

/// Closes (4009) every connection signed in as the user; presence-only members are untouched,
/// as Pusher documents. On the path without `/apps/{app_id}`, the app is the signing key's.
#[tracing::instrument(skip_all, fields(app_id))]
pub async fn terminate_connections(
    state: web::Data<EdgeState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let authenticated = authenticate(&state, &request, &body).await?;
    terminate(&state, &request, &authenticated).await
}

/// Every node closes the user's connections it holds (a broadcast: the user may be anywhere).
async fn terminate(
    state: &EdgeState,
    request: &HttpRequest,
    authenticated: &Authenticated,
) -> Result<HttpResponse, ApiError> {
    let user = request.match_info().get("user_id").unwrap_or_default();
    let user = UserId::parse(user).map_err(|error| ApiError::BadRequest(error.to_string()))?;
    let message = NodeMessage::TerminateUser {
        app: authenticated.app.id.clone(),
        user,
    };
    let sent = state.cluster.broadcast.broadcast(message).await;
    sent.map_err(|error| ApiError::Unavailable(error.to_string()))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({})))
}
