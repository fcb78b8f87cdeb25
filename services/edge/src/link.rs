//! What every carrier shares, WebSocket and HTTP alike: the client messages a connection
//! reads (`Inbound`, from a `MessageSource`), admission (`admit`), and the frames that
//! close a connection (`closing_frames`, `protocol_close`).
//!
//! `connection` (the protocol loop) and each carrier depend on this module, never on each
//! other's internals, so there is no import cycle between them.

use protocol::codes::CloseReason;
use protocol::names::AppKey;
use protocol::wire;
use tenancy::KeyedApp;

use crate::EdgeState;
use crate::console::report;
use crate::limits::ConnectionSlot;
use crate::outbox::Outgoing;

/// A complete message from the client.
#[derive(Debug)]
pub enum Inbound {
    Text(bytestring::ByteString),
    Binary(bytes::Bytes),
    /// A WebSocket ping, answered with a pong carrying the same bytes.
    Ping(bytes::Bytes),
    /// The client showed it is alive without sending a message (a WebSocket pong, an HTTP
    /// carrier's downstream request or keep-alive): resets the activity timeout.
    Activity,
    Close,
}

/// Why reading from the client stopped early.
#[derive(Debug)]
pub enum InboundError {
    /// A message larger than allowed (close with 1009).
    TooBig,
    /// Broken framing, an unmasked frame, invalid UTF-8 in a text message (close with 1002).
    Protocol(String),
}

/// Where a connection's client messages come from: a WebSocket, or the POSTs of an HTTP
/// carrier. `next` must be cancel-safe (it is raced against timers and close requests).
pub trait MessageSource {
    /// The next message, or `None` when the client is gone.
    fn next(&mut self) -> impl std::future::Future<Output = Option<Result<Inbound, InboundError>>>;
}

/// Checks that the node is not draining, the handshake, the key, the app and the browser's
/// origin (`origin`: the request's `Origin` header, `None` when it has none), and takes one of
/// the app's connection slots.
pub(crate) async fn admit(
    state: &EdgeState,
    key: &str,
    query: &str,
    origin: Option<&str>,
) -> Result<(KeyedApp, ConnectionSlot), CloseReason> {
    // A draining node takes no one new (before the catalog: a drain costs no lookups); 4200
    // sends the client straight back to the load balancer, which no longer picks this node.
    if state.readiness.is_draining() {
        return Err(CloseReason::ServerShuttingDown);
    }
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    // A missing `protocol` is taken as 7, as soketi and sockudo do, so lax clients connect.
    if let Some((_, version)) = params.iter().find(|(name, _)| name == "protocol") {
        let version: u32 = version
            .parse()
            .map_err(|_| CloseReason::InvalidProtocolFormat)?;
        if !(5..=7).contains(&version) {
            return Err(CloseReason::UnsupportedProtocol);
        }
    }
    let key = AppKey::parse(key).map_err(|_| CloseReason::UnknownAppKey)?;
    let keyed = match state.catalog.find_by_key(&key).await {
        Ok(Some(keyed)) => keyed,
        Ok(None) => return Err(CloseReason::UnknownAppKey),
        Err(error) => {
            tracing::warn!(%error, "app catalog unavailable; asking the client to back off");
            return Err(CloseReason::CatalogUnavailable);
        }
    };
    if !keyed.app.enabled {
        return Err(refused(state, &keyed, CloseReason::AppDisabled));
    }
    // 4009, as Pusher refuses an origin the app does not allow; pusher-js does not retry.
    if !keyed.app.allowed_origins.allows(origin) {
        return Err(refused(state, &keyed, CloseReason::OriginNotAllowed));
    }
    // 4100 (pusher-js backs off, then reconnects): the app is connecting faster than this
    // node admits. Checked before the slot, so a refusal never touches the app's count.
    if !state.admission.connects.admit(&keyed.app.id) {
        crate::admission::count_refusal(crate::admission::Refused::ConnectRate);
        return Err(refused(state, &keyed, CloseReason::AppConnectRateExceeded));
    }
    // 4004, not 4100: pusher-js stops instead of retrying every second, so a tenant at its
    // ceiling does not turn its clients into a reconnect storm (see ARCHITECTURE.md).
    let slot = state
        .limits
        .admit_connection(&keyed.app.id, &keyed.app.limits)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "connection count unavailable; asking the client to back off");
            refused(state, &keyed, CloseReason::ClusterUnavailable)
        })?;
    let slot = slot.ok_or_else(|| refused(state, &keyed, CloseReason::OverConnectionQuota))?;
    Ok((keyed, slot))
}

/// Logs a refusal of a known app's client for its console and refusal log.
fn refused(state: &EdgeState, keyed: &KeyedApp, reason: CloseReason) -> CloseReason {
    let disconnect = reason.disconnect();
    report::refused(state, &keyed.app.id, || {
        report::refusal("connection", Some(disconnect.code), disconnect.reason)
    });
    reason
}

/// The reason as `pusher:error`, then the close frame with its code.
pub(crate) fn closing_frames(reason: CloseReason) -> [Outgoing; 2] {
    let disconnect = reason.disconnect();
    let error = wire::error(Some(disconnect.code), disconnect.reason);
    [
        Outgoing::Text(error.into()),
        Outgoing::Close {
            code: disconnect.code,
            reason: disconnect.reason.to_owned(),
        },
    ]
}

/// The close frame for a protocol violation by the client (WebSocket's codes, which the
/// HTTP carriers pass on in their own close frames).
pub(crate) fn protocol_close(error: &InboundError, max_message_bytes: usize) -> Outgoing {
    match error {
        InboundError::TooBig => Outgoing::Close {
            code: CLOSE_TOO_BIG,
            reason: format!("message larger than {max_message_bytes} bytes"),
        },
        InboundError::Protocol(detail) => Outgoing::Close {
            code: CLOSE_PROTOCOL_ERROR,
            reason: truncate(detail),
        },
    }
}

/// RFC 6455's "message too big".
const CLOSE_TOO_BIG: u16 = 1009;
/// RFC 6455's "protocol error".
const CLOSE_PROTOCOL_ERROR: u16 = 1002;

/// Close reasons must fit a control frame (123 bytes).
fn truncate(text: &str) -> String {
    let mut end = text.len().min(120);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The request's `Origin` header: `None` when absent; one that is not text is kept as an
/// empty string, which no allowed origin matches.
pub(crate) fn origin_header(request: &actix_web::HttpRequest) -> Option<&str> {
    request
        .headers()
        .get(actix_web::http::header::ORIGIN)
        .map(|value| value.to_str().unwrap_or(""))
}
