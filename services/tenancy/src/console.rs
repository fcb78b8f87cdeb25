//! The debug console's vocabulary: what the edge (and the control plane's webhook dispatcher)
//! report about an app for its owner's dashboard, and the refusal log.
//!
//! Events ride on Switchboard itself: the edge publishes them on the system app's
//! `private-console-<app id>` channel (see `edge::console`). `ConsoleFeed` is the narrow
//! seam the control plane reports through and reads refusals from, so neither edge nor control
//! imports the other.

use protocol::names::AppId;
use serde::Serialize;

/// The prefix of the system app's channel carrying an app's events.
pub const CONSOLE_CHANNEL_PREFIX: &str = "private-console-";
/// The prefix of the system app's channel carrying an app's live figures.
pub const LIVE_CHANNEL_PREFIX: &str = "private-live-";

/// The system app's channel of `app`'s console events.
pub fn console_channel(app: &AppId) -> String {
    format!("{CONSOLE_CHANNEL_PREFIX}{app}")
}

/// The system app's channel of `app`'s live figures.
pub fn live_channel(app: &AppId) -> String {
    format!("{LIVE_CHANNEL_PREFIX}{app}")
}

/// Whether `channel` is one of the system app's console or live channels.
pub fn is_console_channel(channel: &str) -> bool {
    channel.starts_with(CONSOLE_CHANNEL_PREFIX) || channel.starts_with(LIVE_CHANNEL_PREFIX)
}

/// One thing that happened in an app, as its console shows it. Every string is bounded where
/// it was parsed (channel names 164 bytes, event names 200, refusal reasons cut at 200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ConsoleEvent {
    ConnectionOpened {
        socket_id: String,
        /// `websocket`, `sse`, `long_polling`, `polling`, `streaming`, `forever_frame`,
        /// `xhr_streaming` or `xhr_polling`.
        transport: &'static str,
        /// The client's network, never its address: an IPv4 /24 or an IPv6 /48.
        client_network: Option<String>,
    },
    ConnectionClosed {
        socket_id: String,
        /// The close code sent (1000 answers the client's own close).
        code: u16,
    },
    Subscribed {
        socket_id: String,
        channel: String,
    },
    Unsubscribed {
        socket_id: String,
        channel: String,
    },
    /// An event published through the HTTP API (one per channel it named).
    ApiPublish {
        channel: String,
        event: String,
        /// Bytes of `data`.
        bytes: usize,
    },
    ClientEvent {
        socket_id: String,
        channel: String,
        event: String,
        bytes: usize,
    },
    /// One attempt of the webhook dispatcher.
    WebhookSent {
        webhook_id: String,
        /// `delivered`, `retrying` or `failed`.
        status: &'static str,
        http_status: Option<u16>,
        /// The delivery log's coarse failure category, never an error's text.
        error: Option<String>,
        events: i64,
    },
    Refusal(Refusal),
}

/// A request or client message the platform refused, with the reason given to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// Unix milliseconds.
    pub time_ms: u64,
    /// `connection`, `subscription`, `client_event`, `client_message` or `api`.
    pub source: &'static str,
    /// The Pusher error or close code (4001…4302), when there is one.
    pub code: Option<u16>,
    /// The HTTP status (API refusals, `subscription_error`'s `status`).
    pub status: Option<u16>,
    /// What the client was told, cut at 200 bytes.
    pub reason: String,
    pub socket_id: Option<String>,
    pub channel: Option<String>,
}

impl Refusal {
    /// The most of a reason kept, in bytes (cut on a character boundary).
    pub const MAX_REASON_BYTES: usize = 200;

    /// `reason` cut to `MAX_REASON_BYTES`.
    pub fn bounded_reason(reason: &str) -> String {
        let mut end = reason.len().min(Self::MAX_REASON_BYTES);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason[..end].to_owned()
    }
}

/// Where console events go, and where the refusal log is read. Implemented by the edge
/// (`edge::console::Console`); `record` must never block (it is called on hot paths).
pub trait ConsoleFeed: Send + Sync + 'static {
    /// Whether anyone watches the app's console now; callers skip building events otherwise.
    fn watching(&self, app: &AppId) -> bool;
    /// Queues one event for the app's console (dropped and counted when over its bound).
    fn record(&self, app: &AppId, event: ConsoleEvent);
    /// The app's recent refusals, oldest first (this node's: see `edge::console`).
    fn refusals(&self, app: &AppId) -> Vec<Refusal>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_with_their_type() {
        let event = ConsoleEvent::Subscribed {
            socket_id: "1.2".into(),
            channel: "c".into(),
        };
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"type":"subscribed","socket_id":"1.2","channel":"c"}"#
        );
        let refusal = ConsoleEvent::Refusal(Refusal {
            time_ms: 1,
            source: "api",
            code: None,
            status: Some(401),
            reason: "bad signature".into(),
            socket_id: None,
            channel: None,
        });
        let json = serde_json::to_value(&refusal).unwrap();
        assert_eq!(json["type"], "refusal");
        assert_eq!(json["status"], 401);
    }

    #[test]
    fn reasons_are_cut_on_a_character_boundary() {
        let long = "é".repeat(150);
        let cut = Refusal::bounded_reason(&long);
        assert!(cut.len() <= Refusal::MAX_REASON_BYTES);
        assert!(long.starts_with(&cut));
    }
}
