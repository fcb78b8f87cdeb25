//! The debug console's control-plane side: where the dashboard connects (`GET /v1/console`),
//! the channel authorisation of the system app's per-app channels for their owner only
//! (`POST /v1/console/auth`), and an app's refusal log (`GET /v1/apps/{app_id}/refusals`).

use actix_web::{HttpRequest, HttpResponse, web};
use protocol::names::SocketId;
use protocol::sign::{channel_auth_string, hmac_hex};
use serde::{Deserialize, Serialize};
use tenancy::{CONSOLE_CHANNEL_PREFIX, LIVE_CHANNEL_PREFIX, Refusal};
use utoipa::ToSchema;

use crate::routes::ControlState;
use crate::routes::auth::Caller;
use crate::routes::error::{ApiError, ErrorBody};
use crate::service::ControlError;

/// How the dashboard reaches the system app. (Unsigned figures are declared `i64`: response
/// bodies carry no request constraints for the OpenAPI walk.)
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsoleInfo {
    /// The system app's key, for our SDK or pusher-js.
    pub key: String,
    /// The host and port this request came to: the edge serves the same port (`serve`).
    pub ws_host: String,
    #[schema(value_type = i64)]
    pub ws_port: u16,
    /// Whether to connect with `wss` (the request came over https).
    pub tls: bool,
    /// The WebSocket path, `/app/{key}`.
    pub ws_path: String,
    /// Where to authorise the channels (`channelAuthorization.endpoint`).
    pub auth_endpoint: String,
    /// `private-console-`: followed by an app id, that app's events (event `console`).
    pub console_channel_prefix: String,
    /// `private-live-`: followed by an app id, its live figures every second (event `live`).
    pub live_channel_prefix: String,
}

/// What pusher-js and our SDK send to a channel authorisation endpoint (form-encoded; JSON
/// is taken as well).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ConsoleAuthRequest {
    pub socket_id: String,
    /// `private-console-{app_id}` or `private-live-{app_id}` of an app of the caller's.
    pub channel_name: String,
}

/// The channel signature, as pusher-js expects it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsoleAuth {
    /// `key:signature`.
    pub auth: String,
}

/// An app's recent refusals.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefusalLog {
    /// `node`: the refusals of the node that serves this request (each node keeps its own).
    pub scope: String,
    /// Oldest first, at most 100.
    pub refusals: Vec<RefusalView>,
}

/// One refusal, with what the client was told.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefusalView {
    /// Unix milliseconds.
    #[schema(value_type = i64)]
    pub time_ms: u64,
    /// `connection`, `subscription`, `client_message` or `api`.
    pub source: String,
    /// The Pusher error or close code, when there is one.
    #[schema(value_type = Option<i64>)]
    pub code: Option<u16>,
    /// The HTTP status, or a `subscription_error`'s status.
    #[schema(value_type = Option<i64>)]
    pub status: Option<u16>,
    pub reason: String,
    pub socket_id: Option<String>,
    pub channel: Option<String>,
}

impl From<Refusal> for RefusalView {
    fn from(refusal: Refusal) -> Self {
        Self {
            time_ms: refusal.time_ms,
            source: refusal.source.to_owned(),
            code: refusal.code,
            status: refusal.status,
            reason: refusal.reason,
            socket_id: refusal.socket_id,
            channel: refusal.channel,
        }
    }
}

/// Where the dashboard connects for the console and the live view.
#[utoipa::path(
    get, path = "/v1/console", tag = "console",
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 200, body = ConsoleInfo),
        (status = 401, body = ErrorBody),
    )
)]
#[tracing::instrument(name = "console_info", skip_all, fields(account_id = %caller.account_id))]
pub async fn info(
    state: web::Data<ControlState>,
    caller: Caller,
    request: HttpRequest,
) -> web::Json<ConsoleInfo> {
    let connection = request.connection_info();
    let tls = connection.scheme() == "https";
    let default_port = if tls { 443 } else { 80 };
    let (ws_host, ws_port) = split_host(connection.host(), default_port);
    let key = state.control.system_app().key.to_string();
    web::Json(ConsoleInfo {
        ws_path: format!("/app/{key}"),
        key,
        ws_host,
        ws_port,
        tls,
        auth_endpoint: "/v1/console/auth".into(),
        console_channel_prefix: CONSOLE_CHANNEL_PREFIX.into(),
        live_channel_prefix: LIVE_CHANNEL_PREFIX.into(),
    })
}

/// `host[:port]` (IPv6 in brackets) into host and port.
fn split_host(authority: &str, default_port: u16) -> (String, u16) {
    if let Some((host, port)) = authority.rsplit_once(':')
        && !host.is_empty()
        && (!host.contains(':') || host.ends_with(']'))
        && let Ok(port) = port.parse()
    {
        return (host.to_owned(), port);
    }
    (authority.to_owned(), default_port)
}

/// Signs a console or live channel of the system app for a connection, if the caller owns
/// the app; another account's app is 403 (whether it exists or not).
#[utoipa::path(
    post, path = "/v1/console/auth", tag = "console",
    security(("session" = []), ("bearer" = [])),
    request_body(content = ConsoleAuthRequest, content_type = "application/x-www-form-urlencoded",
        description = "as pusher-js and our SDK send it; `application/json` is taken too"),
    responses(
        (status = 200, body = ConsoleAuth),
        (status = 400, description = "a bad socket id or body", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "missing or wrong `X-CSRF-Token`, or not a console channel of an app of this account", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "console_auth", skip_all, fields(account_id = %caller.account_id))]
pub async fn authorize(
    state: web::Data<ControlState>,
    caller: Caller,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let asked = parse_auth_request(&request, &body)?;
    let socket_id = SocketId::parse(&asked.socket_id)
        .map_err(|_| ControlError::Validation("socket_id must be digits.digits".into()))?;
    let forbidden = || {
        HttpResponse::Forbidden().json(ErrorBody {
            error: "not a console channel of an app of this account".into(),
        })
    };
    let channel = asked.channel_name.as_str();
    let Some(app_id) = channel
        .strip_prefix(CONSOLE_CHANNEL_PREFIX)
        .or_else(|| channel.strip_prefix(LIVE_CHANNEL_PREFIX))
    else {
        return Ok(forbidden());
    };
    match state.control.app(caller.account_id, app_id).await {
        Ok(_) => {}
        Err(ControlError::NotFound) => return Ok(forbidden()),
        Err(error) => return Err(error.into()),
    }
    let system = state.control.system_app();
    let signed = channel_auth_string(socket_id.as_str(), channel, None);
    let signature = hmac_hex(system.secret.expose(), &signed);
    Ok(HttpResponse::Ok().json(ConsoleAuth {
        auth: format!("{}:{signature}", system.key),
    }))
}

fn parse_auth_request(request: &HttpRequest, body: &[u8]) -> Result<ConsoleAuthRequest, ApiError> {
    let invalid = || ControlError::Validation("give socket_id and channel_name".into());
    let json = request
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if json {
        return serde_json::from_slice(body).map_err(|_| invalid().into());
    }
    let text = std::str::from_utf8(body).map_err(|_| invalid())?;
    let form = web::Query::<ConsoleAuthRequest>::from_query(text).map_err(|_| invalid())?;
    Ok(form.into_inner())
}

/// The app's recent refusals (bad signatures, over quota, bad channel names…), so a
/// developer sees why clients are refused.
#[utoipa::path(
    get, path = "/v1/apps/{app_id}/refusals", tag = "console",
    security(("session" = []), ("bearer" = [])),
    params(("app_id" = String, Path)),
    responses(
        (status = 200, body = RefusalLog),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no such app in this account", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "app_refusals", skip_all, fields(account_id = %caller.account_id, app_id = %ingress::Untrusted(app_id.as_str())))]
pub async fn refusals(
    state: web::Data<ControlState>,
    caller: Caller,
    app_id: web::Path<String>,
) -> Result<web::Json<RefusalLog>, ApiError> {
    let app = state.control.app(caller.account_id, &app_id).await?;
    let refusals = match (&state.console, protocol::names::AppId::parse(&app.id)) {
        (Some(console), Ok(app_id)) => console.refusals(&app_id),
        _ => Vec::new(),
    };
    Ok(web::Json(RefusalLog {
        scope: "node".into(),
        refusals: refusals.into_iter().map(RefusalView::from).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_split_from_their_ports() {
        assert_eq!(split_host("a.example:6001", 80), ("a.example".into(), 6001));
        assert_eq!(split_host("a.example", 443), ("a.example".into(), 443));
        assert_eq!(split_host("[::1]:7000", 80), ("[::1]".into(), 7000));
        assert_eq!(split_host("[::1]", 80), ("[::1]".into(), 80));
    }
}
