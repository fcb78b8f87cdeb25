//! What the edge reports for webhooks, and the sink it reports to.
//!
//! The edge knows nothing of webhook configuration or HTTP: it emits `WebhookEvent`s (the
//! shapes of Pusher's webhook events) into a `WebhookSink`, which must not block. The control
//! plane's sink queues them, filters them per configured endpoint and delivers them.

use protocol::names::AppId;
use serde::Serialize;

/// One webhook event, serialised exactly as Pusher sends it inside `events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum WebhookEvent {
    /// The channel got its first subscriber.
    ChannelOccupied { channel: String },
    /// The channel lost its last subscriber (the sender delays it and drops it if the channel
    /// is occupied again meanwhile).
    ChannelVacated { channel: String },
    /// A user's first connection joined the presence channel.
    MemberAdded { channel: String, user_id: String },
    /// A user's last connection left the presence channel (delayed like `ChannelVacated`).
    MemberRemoved { channel: String, user_id: String },
    /// A client event, with the sender's socket id and, on presence channels, its user id.
    ClientEvent {
        channel: String,
        event: String,
        data: String,
        socket_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
    /// A subscriber found a cache channel's cache empty.
    CacheMiss { channel: String },
    /// The channel's subscription count changed (apps that opted in only).
    SubscriptionCount {
        channel: String,
        subscription_count: u64,
    },
}

/// Every event name, as webhooks are configured with them.
pub const WEBHOOK_EVENT_NAMES: [&str; 7] = [
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
    "subscription_count",
];

impl WebhookEvent {
    /// The event's `name`, one of `WEBHOOK_EVENT_NAMES`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ChannelOccupied { .. } => "channel_occupied",
            Self::ChannelVacated { .. } => "channel_vacated",
            Self::MemberAdded { .. } => "member_added",
            Self::MemberRemoved { .. } => "member_removed",
            Self::ClientEvent { .. } => "client_event",
            Self::CacheMiss { .. } => "cache_miss",
            Self::SubscriptionCount { .. } => "subscription_count",
        }
    }

    pub fn channel(&self) -> &str {
        match self {
            Self::ChannelOccupied { channel }
            | Self::ChannelVacated { channel }
            | Self::MemberAdded { channel, .. }
            | Self::MemberRemoved { channel, .. }
            | Self::ClientEvent { channel, .. }
            | Self::CacheMiss { channel }
            | Self::SubscriptionCount { channel, .. } => channel,
        }
    }
}

/// Where the edge reports webhook events. Called on the connection's path, so `emit` must
/// return at once (queue, never await or block on I/O).
pub trait WebhookSink: Send + Sync {
    fn emit(&self, app: &AppId, event: WebhookEvent);

    /// Whether an event named `name` may reach a webhook of the app. A cheap hint that lets
    /// the edge skip building events nobody receives; when unsure, answer true.
    fn wants(&self, app: &AppId, name: &str) -> bool {
        let _ = (app, name);
        true
    }
}

/// The sink of an edge without a database: every event is dropped.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoWebhooks;

impl WebhookSink for NoWebhooks {
    fn emit(&self, _app: &AppId, _event: WebhookEvent) {}

    fn wants(&self, _app: &AppId, _name: &str) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_in_pushers_shapes() {
        let shape = |event: WebhookEvent| serde_json::to_string(&event).unwrap();
        assert_eq!(
            shape(WebhookEvent::ChannelOccupied {
                channel: "c".into()
            }),
            r#"{"name":"channel_occupied","channel":"c"}"#
        );
        assert_eq!(
            shape(WebhookEvent::MemberRemoved {
                channel: "presence-c".into(),
                user_id: "u".into()
            }),
            r#"{"name":"member_removed","channel":"presence-c","user_id":"u"}"#
        );
        assert_eq!(
            shape(WebhookEvent::ClientEvent {
                channel: "private-c".into(),
                event: "client-x".into(),
                data: "{\"a\":1}".into(),
                socket_id: "1.2".into(),
                user_id: None,
            }),
            r#"{"name":"client_event","channel":"private-c","event":"client-x","data":"{\"a\":1}","socket_id":"1.2"}"#
        );
        assert_eq!(
            shape(WebhookEvent::SubscriptionCount {
                channel: "c".into(),
                subscription_count: 3
            }),
            r#"{"name":"subscription_count","channel":"c","subscription_count":3}"#
        );
    }

    #[test]
    fn every_event_name_is_listed() {
        let events = [
            WebhookEvent::ChannelOccupied {
                channel: "c".into(),
            },
            WebhookEvent::ChannelVacated {
                channel: "c".into(),
            },
            WebhookEvent::MemberAdded {
                channel: "c".into(),
                user_id: "u".into(),
            },
            WebhookEvent::MemberRemoved {
                channel: "c".into(),
                user_id: "u".into(),
            },
            WebhookEvent::ClientEvent {
                channel: "c".into(),
                event: "client-e".into(),
                data: String::new(),
                socket_id: "1.1".into(),
                user_id: Some("u".into()),
            },
            WebhookEvent::CacheMiss {
                channel: "c".into(),
            },
            WebhookEvent::SubscriptionCount {
                channel: "c".into(),
                subscription_count: 0,
            },
        ];
        let names: Vec<&str> = events.iter().map(WebhookEvent::name).collect();
        assert_eq!(names, WEBHOOK_EVENT_NAMES);
        let json = serde_json::to_value(&events[4]).unwrap();
        assert_eq!(json["name"], "client_event");
        assert_eq!(json["user_id"], "u");
    }
}
