//! The vocabulary edge and control share: apps, their keys and secrets, plan limits, and the
//! `AppCatalog` trait through which the edge finds apps without knowing where they live.
//!
//! Architecture invariant: no I/O here (tokio is used for its broadcast channel only). `StaticCatalog` (for `serve --app` and tests) lives in
//! memory; the Postgres catalog lives in `control` and implements the same trait.

mod catalog;
mod console;
#[doc(hidden)]
pub mod fuzzing;
mod ice;
mod origins;
mod spec;
mod usage;
mod webhook;
mod webhook_url;

pub use catalog::{AppCatalog, CatalogError, KeyedApp, LayeredCatalog, StaticCatalog};
pub use console::{
    CONSOLE_CHANNEL_PREFIX, ConsoleEvent, ConsoleFeed, LIVE_CHANNEL_PREFIX, Refusal,
    console_channel, is_console_channel, live_channel,
};
pub use ice::{
    IceServers, IceSettings, IceUrlError, MAX_ICE_URL_BYTES, MAX_ICE_URLS, MAX_TURN_SECRET_BYTES,
    TURN_CREDENTIAL_TTL, TurnCredential, check_turn_secret, turn_credential,
};
pub use origins::{AllowedOrigins, MAX_ALLOWED_ORIGINS, MAX_ORIGIN_BYTES, OriginError};
pub use spec::{AppSpec, AppSpecError};
pub use usage::{MemoryUsageSink, UsageError, UsageMinute, UsageSink};
pub use webhook::{NoWebhooks, WEBHOOK_EVENT_NAMES, WebhookEvent, WebhookSink};
pub use webhook_url::{
    AddressPolicy, ForbiddenRange, MAX_WEBHOOK_URL_BYTES, WebhookUrl, WebhookUrlError,
    forbidden_range, parse_webhook_url,
};

use protocol::names::AppId;

/// An API secret. Its `Debug` never shows the value, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The limits an app's plan sets. The edge enforces them; the control plane stores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanLimits {
    /// Included concurrent connections across the cluster; `None` means unlimited.
    pub max_connections: Option<u64>,
    /// Included messages per UTC day (each publish and each delivery counts one); `None`
    /// means unlimited.
    pub messages_per_day: Option<u64>,
    /// Paid plans admit bursts to this multiple of the included connections and messages and
    /// bill the excess; 1 makes the included amounts hard limits (the sandbox).
    pub burst_multiplier: u32,
    /// Largest event `data`, in bytes, on the HTTP API and in client events.
    pub max_message_bytes: usize,
    /// Client events each connection may send per second.
    pub client_events_per_second: u32,
    /// Requests per second to the publish endpoints (`events`, `batch_events`); `None` means
    /// unlimited.
    pub publish_requests_per_second: Option<u32>,
    /// Distinct users in one presence channel.
    pub max_presence_members: usize,
    /// Channels one connection may be subscribed to at once.
    pub max_channels_per_connection: usize,
    /// Whether the app may have webhooks.
    pub webhooks_allowed: bool,
    /// Events each channel keeps for resume and the history API (the newest ones).
    pub history_events: usize,
    /// How long, in seconds, each channel keeps an event for resume and the history API.
    pub history_seconds: u64,
    /// Bytes of history all the app's channels keep together on one node (and, apart, of its
    /// cache channels' last events); past it the app's oldest events are evicted first.
    pub history_bytes: usize,
}

impl PlanLimits {
    /// Pusher's documented defaults and no quotas, for apps given on the command line; the
    /// sandbox plan's history window (100 events, 2 minutes).
    pub fn pusher_defaults() -> Self {
        Self {
            max_connections: None,
            messages_per_day: None,
            burst_multiplier: 1,
            max_message_bytes: 10 * 1024,
            client_events_per_second: 10,
            publish_requests_per_second: None,
            max_presence_members: 100,
            max_channels_per_connection: 100,
            webhooks_allowed: true,
            history_events: 100,
            history_seconds: 120,
            history_bytes: 16 * 1024 * 1024,
        }
    }

    /// Concurrent connections admitted: the included amount times the burst multiplier.
    pub fn connection_ceiling(&self) -> Option<u64> {
        self.max_connections
            .map(|included| included.saturating_mul(u64::from(self.burst_multiplier.max(1))))
    }

    /// Messages admitted per UTC day: the included amount times the burst multiplier.
    pub fn daily_message_ceiling(&self) -> Option<u64> {
        self.messages_per_day
            .map(|included| included.saturating_mul(u64::from(self.burst_multiplier.max(1))))
    }
}

/// An app as the edge sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub id: AppId,
    pub enabled: bool,
    pub limits: PlanLimits,
    /// Whether subscribers of non-presence channels get `pusher_internal:subscription_count`
    /// (and webhooks `subscription_count`); off unless the app opts in, as on Pusher.
    pub subscription_counting: bool,
    /// Whether connections may send client events (`client-*` on private and presence
    /// channels); when off they get `pusher:error`, as on Pusher.
    pub client_events: bool,
    /// The browser origins connections (WebSocket upgrades and HTTP carriers) may come from;
    /// empty allows any.
    pub allowed_origins: AllowedOrigins,
    /// STUN/TURN servers for WebRTC, announced with each presence subscription.
    pub ice: IceSettings,
}
