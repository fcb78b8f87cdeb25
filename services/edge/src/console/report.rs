//! What the edge reports to the console, called where things happen (`connection`, `link`,
//! `http_api`). Each call costs an atomic load when the app's console is not watched (events
//! are built only when it is); refusals always go to the app's refusal log.

use std::net::IpAddr;

use protocol::names::{AppId, ChannelName, EventName, SocketId};
use protocol::session::Output;
use protocol::wire;
use serde_json::Value;
use tenancy::{ConsoleEvent, ConsoleFeed, Refusal};

use crate::EdgeState;
use crate::limits::unix_millis;

/// Where a connection comes from, for its `connection_opened` event.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientOrigin {
    /// `websocket`, `sb_http` (our SDK's HTTP carriers) or `xhr` (pusher-js's).
    pub transport: &'static str,
    pub address: Option<IpAddr>,
}

/// Queues `event()` for the app's console if anyone watches it.
pub(crate) fn record(state: &EdgeState, app: &AppId, event: impl FnOnce() -> ConsoleEvent) {
    if let Some(console) = &state.console
        && console.watching(app)
    {
        console.record(app, event());
    }
}

/// Keeps a refusal in the app's log (and sends it to its console if watched).
pub(crate) fn refused(state: &EdgeState, app: &AppId, refusal: impl FnOnce() -> Refusal) {
    if let Some(console) = &state.console {
        console.refused(app, refusal());
    }
}

/// A refusal made now, with the parts every source has.
pub(crate) fn refusal(source: &'static str, code: Option<u16>, reason: &str) -> Refusal {
    Refusal {
        time_ms: unix_millis(),
        source,
        code,
        status: None,
        reason: Refusal::bounded_reason(reason),
        socket_id: None,
        channel: None,
    }
}

pub(crate) fn connection_opened(
    state: &EdgeState,
    app: &AppId,
    socket_id: &SocketId,
    origin: ClientOrigin,
) {
    record(state, app, || ConsoleEvent::ConnectionOpened {
        socket_id: socket_id.to_string(),
        transport: origin.transport,
        client_network: origin.address.map(client_network),
    });
}

pub(crate) fn connection_closed(state: &EdgeState, app: &AppId, socket_id: &SocketId, code: u16) {
    record(state, app, || ConsoleEvent::ConnectionClosed {
        socket_id: socket_id.to_string(),
        code,
    });
}

/// A new subscription; a console watcher subscribing on this node makes its app's events flow
/// at once (before it is told it is in).
pub(crate) fn subscribed(
    state: &EdgeState,
    app: &AppId,
    socket_id: &SocketId,
    channel: &ChannelName,
) {
    if let Some(console) = &state.console
        && console.system_app() == app
    {
        console.watcher_subscribed(channel);
    }
    record(state, app, || ConsoleEvent::Subscribed {
        socket_id: socket_id.to_string(),
        channel: channel.to_string(),
    });
}

pub(crate) fn unsubscribed(
    state: &EdgeState,
    app: &AppId,
    socket_id: &SocketId,
    channel: &ChannelName,
) {
    record(state, app, || ConsoleEvent::Unsubscribed {
        socket_id: socket_id.to_string(),
        channel: channel.to_string(),
    });
}

/// A client event sent on: its channel, name and frame size.
pub(crate) fn client_event(
    state: &EdgeState,
    app: &AppId,
    socket_id: &SocketId,
    (channel, event, bytes): (&ChannelName, &EventName, usize),
) {
    record(state, app, || ConsoleEvent::ClientEvent {
        socket_id: socket_id.to_string(),
        channel: channel.to_string(),
        event: event.as_str().to_owned(),
        bytes,
    });
}

pub(crate) fn is_system_app(state: &EdgeState, app: &AppId) -> bool {
    let console = state.console.as_ref();
    console.is_some_and(|console| console.system_app() == app)
}

/// The `subscription_error` for a channel the system app does not carry: its key is public
/// (every dashboard learns it), so its only channels are the signed console and live ones and
/// it is no free, unmetered messaging service.
pub(crate) fn refuse_on_system_app(
    state: &EdgeState,
    app: &AppId,
    channel: &ChannelName,
) -> Option<String> {
    if !is_system_app(state, app) || tenancy::is_console_channel(channel.as_str()) {
        return None;
    }
    let message = "only console channels on this app";
    let frame = wire::subscription_error(channel.as_str(), "AuthError", message, 403);
    Some(frame)
}

/// Whether these outputs of one client frame refuse a subscription (then its `pusher:error`
/// twin is not logged as a second refusal, see `frame_sent`).
pub(crate) fn refuses_subscription(outputs: &[Output]) -> bool {
    outputs.iter().any(|output| {
        matches!(output, Output::Send(frame) if frame.contains("\"pusher:subscription_error\""))
    })
}

/// The client's network, never its address: IPv4 to its /24, IPv6 to its /48.
pub(crate) fn client_network(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

/// Reports a frame sent to a client if it is a refusal (`pusher:error`,
/// `pusher:subscription_error`); every other frame passes with one substring search. With
/// `subscription_refused`, a `pusher:error` is the twin of a `subscription_error` (the protocol
/// sends both) and is not logged again.
pub(crate) fn frame_sent(
    state: &EdgeState,
    app: &AppId,
    socket_id: &SocketId,
    frame: &str,
    subscription_refused: bool,
) {
    if state.console.is_none()
        || !(frame.contains("\"pusher:error\"") || frame.contains("\"pusher:subscription_error\""))
    {
        return;
    }
    let Ok(Value::Object(parsed)) = serde_json::from_str::<Value>(frame) else {
        return;
    };
    // Protocol frames carry `data` as a JSON string, `pusher:error` as an object.
    let data = match parsed.get("data") {
        Some(Value::String(text)) => serde_json::from_str(text).unwrap_or(Value::Null),
        Some(data) => data.clone(),
        None => Value::Null,
    };
    let text = |field: &str| data.get(field).and_then(Value::as_str).unwrap_or_default();
    let number = |field: &str| {
        data.get(field)
            .and_then(Value::as_u64)
            .and_then(|n| u16::try_from(n).ok())
    };
    let made = match parsed.get("event").and_then(Value::as_str) {
        Some("pusher:error") if subscription_refused => return,
        Some("pusher:error") => refusal("client_message", number("code"), text("message")),
        Some("pusher:subscription_error") => {
            let reason = format!("{}: {}", text("type"), text("error"));
            Refusal {
                status: number("status"),
                channel: parsed
                    .get("channel")
                    .and_then(Value::as_str)
                    .map(Refusal::bounded_reason),
                ..refusal("subscription", None, &reason)
            }
        }
        _ => return,
    };
    refused(state, app, || Refusal {
        socket_id: Some(socket_id.to_string()),
        ..made
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_coarse() {
        assert_eq!(
            client_network("203.0.113.77".parse().unwrap()),
            "203.0.113.0/24"
        );
        assert_eq!(
            client_network("2001:db8:1234:5678::1".parse().unwrap()),
            "2001:db8:1234::/48"
        );
    }
}
