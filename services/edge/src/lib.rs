//! The edge: holds client connections and serves the Pusher-compatible HTTP API.
//!
//! `connection` runs one WebSocket through `protocol::session::Session`; `hub` fans
//! publications out to local connections; `http_api` is Pusher's REST API. Every piece of
//! state shared with other nodes is in `EdgeState::cluster` (`broker::Cluster`), which the
//! binary builds and injects: the edge never picks an implementation. `metering` counts
//! usage per app and minute for the usage sink; `metrics` serves Prometheus `/metrics`;
//! `drain` answers `/readyz` and refuses new clients while draining; `health` answers
//! `/healthz` with the dependencies in trouble; `console` feeds the dashboard's debug console
//! and live view over the system app, and keeps the refusal log.
//!
//! Architecture invariant: no sqlx, no Stripe, no import of `control`. Apps come only
//! through `tenancy::AppCatalog`.

mod admission;
mod carriers;
mod channel_events;
mod connection;
pub mod console;
mod dead_nodes;
pub mod delta_bases;
pub mod drain;
pub mod fanout;
mod fanout_pace;
pub mod health;
mod http_api;
mod hub;
pub mod limits;
mod link;
pub mod listener;
pub mod metering;
pub mod metrics;
pub mod metrics_per_app;
mod node_subscriptions;
mod outbox;
mod resume;
mod watchlist;
mod websocket;
mod worker_lag;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use broker::Cluster;
use protocol::names::SocketId;
use tenancy::{AppCatalog, UsageSink, WebhookSink};

pub use dead_nodes::{DEAD_NODE_SWEEP_EVERY, sweep_dead_nodes_periodically};
pub use hub::Hub;
pub use metering::Meter;

/// The edge's tunables. Protocol-visible values default to Pusher's.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// Sent to clients as `activity_timeout`; a silent client is pinged after it.
    pub activity_timeout: Duration,
    /// How long a pinged client has to answer.
    pub pong_timeout: Duration,
    /// Frames a connection may have queued before it is closed as a slow consumer.
    pub outbox_capacity: usize,
    /// Bytes a connection may have queued before it is closed as a slow consumer (its own
    /// replies may take as much again).
    pub outbox_max_bytes: usize,
    /// Bytes of channel history this node keeps for all apps together (and, apart, of cache
    /// channels' last events); past it the largest app's oldest events are evicted.
    pub history_max_bytes: usize,
    /// Channels with kept history (or a cached event) one app may have on this node.
    pub history_max_channels_per_app: usize,
    /// Largest WebSocket frame accepted from a client.
    pub max_frame_bytes: usize,
    /// How often closed usage minutes are written to the usage sink.
    pub usage_flush_interval: Duration,
    /// How long an idle `xhr_streaming` stream waits before an `h` line, and a poll before
    /// answering `h`.
    pub xhr_heartbeat_interval: Duration,
    /// How long an xhr session outlives its last receive request before it ends.
    pub xhr_session_grace: Duration,
    /// How long a session of our SDK's HTTP carriers outlives its last downstream request.
    pub sb_session_grace: Duration,
    /// How long a new carrier session (ours or pusher-js's xhr) waits for its client to come
    /// back (a second request) before it ends; it takes a connection slot only once in use.
    pub sb_first_poll_grace: Duration,
    /// How long a carrier cursor proves owning its session (attach, send, rebuild).
    pub sb_cursor_lifetime: Duration,
    /// Carrier sessions (ours and xhr) created per minute per client address (0: no limit).
    pub carrier_sessions_per_address_per_minute: u32,
    /// Carrier sessions created per minute per app (0: no limit).
    pub carrier_sessions_per_app_per_minute: u32,
    /// New connections (any carrier) admitted per second per app on this node, with a burst
    /// of as many; past it 4100 (0: no limit). See `admission`.
    pub app_connects_per_second: u32,
    /// Authenticated HTTP API requests one app may have in flight on this node; past it 429
    /// (0: no limit). See `admission`.
    pub api_in_flight_per_app: usize,
    /// How often an idle SSE, HTTP-streaming or forever-frame response writes a heartbeat
    /// (which is also when a client that went away is noticed).
    pub sb_heartbeat_interval: Duration,
    /// Proxies whose `X-Forwarded-For` names the client for per-address limits
    /// (`ingress::client_address`); none by default.
    pub trusted_proxies: ingress::TrustedProxies,
    /// The system app the dashboard's console and live view ride on (see `console`); `None`
    /// (no control plane) has no console.
    pub console_app: Option<protocol::names::AppId>,
    /// Per-app series in `/metrics` for at most this many apps (the rest summed as one);
    /// `None`: no app id is ever a label.
    pub metrics_per_app_cap: Option<usize>,
    /// Per-app bounds of fan-out on this node: deliveries in flight before an app's wait
    /// their turn, and deliveries waiting before its publishes get 429 (from half) and its
    /// subscribers 4100 (past it). See `fanout`.
    pub fanout: fanout::FanoutBounds,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            activity_timeout: Duration::from_secs(120),
            pong_timeout: Duration::from_secs(30),
            outbox_capacity: 1024,
            outbox_max_bytes: 1024 * 1024,
            history_max_bytes: 256 * 1024 * 1024,
            history_max_channels_per_app: 10_000,
            max_frame_bytes: 64 * 1024,
            usage_flush_interval: Duration::from_secs(5),
            xhr_heartbeat_interval: Duration::from_secs(25),
            xhr_session_grace: Duration::from_secs(30),
            sb_session_grace: Duration::from_secs(30),
            sb_first_poll_grace: Duration::from_secs(10),
            sb_cursor_lifetime: Duration::from_secs(300),
            carrier_sessions_per_address_per_minute: 300,
            carrier_sessions_per_app_per_minute: 6_000,
            app_connects_per_second: 200,
            api_in_flight_per_app: 64,
            sb_heartbeat_interval: Duration::from_secs(15),
            trusted_proxies: ingress::TrustedProxies::none(),
            console_app: None,
            metrics_per_app_cap: None,
            fanout: fanout::FanoutBounds::default(),
        }
    }
}

/// What every edge handler shares.
pub struct EdgeState {
    pub catalog: Arc<dyn AppCatalog>,
    /// Fan-out, history, presence, counters, occupancy, broadcasts and cache channels.
    pub cluster: Cluster,
    /// The plans applied to the cluster's counters.
    pub limits: Arc<limits::Limits>,
    pub hub: Arc<Hub>,
    pub settings: EdgeSettings,
    /// Usage counters (the hub's): see `metering`.
    pub meter: Arc<Meter>,
    /// Where usage is written; without one, closed minutes are dropped.
    pub usage: Option<Arc<dyn UsageSink>>,
    /// Where webhook events are reported; without one (no database), nowhere.
    pub webhooks: Option<Arc<dyn WebhookSink>>,
    /// When each channel's `subscription_count` was last sent.
    count_throttle: channel_events::CountThrottle,
    socket_ids: SocketIds,
    /// What every outbox of this node holds (`/metrics`).
    pub outbox_stats: Arc<outbox::OutboxStats>,
    /// pusher-js's `xhr_streaming` / `xhr_polling` sessions.
    xhr_sessions: carriers::xhr_sessions::XhrSessions,
    /// Sessions of our SDK's HTTP carriers (a cache: see `carriers::session`).
    sb_sessions: carriers::SbRegistry,
    /// Who watches whom among signed-in connections, per app.
    watchlists: watchlist::Watchlists,
    /// How fast carrier sessions may be created, per client address and per app.
    carrier_limiter: carriers::creation_limit::CreationLimiter,
    /// Per-app connect rate and HTTP API requests in flight on this node (see `admission`).
    admission: admission::TenantAdmission,
    /// Ready, or draining: new clients refused, `/readyz` 503 (see `drain`).
    pub readiness: Arc<drain::Readiness>,
    /// Dependencies in trouble, reported by `/healthz` and `/metrics` (see `health`).
    pub health: Arc<health::Health>,
    /// The console feed, live view and refusal log (with a system app, see `console`).
    pub console: Option<Arc<console::Console>>,
}

impl EdgeState {
    /// An edge on `cluster`, whose broker delivers to `hub` and whose broadcasts reach it
    /// (and whose message counter the hub adds its deliveries to).
    pub fn new(
        catalog: Arc<dyn AppCatalog>,
        cluster: Cluster,
        hub: Arc<Hub>,
        settings: EdgeSettings,
        usage: Option<Arc<dyn UsageSink>>,
        webhooks: Option<Arc<dyn WebhookSink>>,
    ) -> Arc<Self> {
        let console = console::for_settings(&settings);
        hub.set_fanout_bounds(settings.fanout);
        if let Some(cap) = settings.metrics_per_app_cap {
            hub.meter().with_per_app_metrics(cap);
        }
        if let Some(console) = &console {
            // The console's own traffic is nobody's usage.
            hub.exempt_from_metering(console.system_app().clone());
        }
        Arc::new(Self {
            console,
            catalog,
            limits: Arc::new(limits::Limits::new(&cluster, hub.meter().clone())),
            cluster,
            meter: hub.meter().clone(),
            hub,
            usage,
            webhooks,
            count_throttle: channel_events::CountThrottle::default(),
            socket_ids: SocketIds::new(),
            outbox_stats: Arc::default(),
            xhr_sessions: Default::default(),
            sb_sessions: Default::default(),
            watchlists: Default::default(),
            carrier_limiter: carriers::creation_limit::CreationLimiter::new(
                settings.carrier_sessions_per_address_per_minute,
                settings.carrier_sessions_per_app_per_minute,
            ),
            admission: admission::TenantAdmission::new(&settings),
            readiness: Arc::default(),
            health: Arc::default(),
            settings,
        })
    }

    /// The bounds of a new connection's outbox, from the settings.
    pub(crate) fn outbox_bounds(&self) -> outbox::OutboxBounds {
        outbox::OutboxBounds {
            frames: self.settings.outbox_capacity,
            bytes: self.settings.outbox_max_bytes,
            stats: self.outbox_stats.clone(),
        }
    }

    /// Writes every usage minute, the current one included; call once connections are closed.
    /// The periodic flush stops.
    pub async fn flush_usage_at_shutdown(&self) {
        match self.meter.flush_at_shutdown(self.usage.as_deref()).await {
            Ok(rows) => tracing::info!(rows, "usage flushed at shutdown"),
            Err(error) => tracing::error!(%error, "usage could not be written at shutdown"),
        }
    }
}

/// Writes closed usage minutes every `usage_flush_interval` until the shutdown flush; rows that
/// fail are kept for the next round. Also keeps the metrics recorder's histograms bounded.
/// Spawn once per edge.
pub async fn flush_usage_periodically(state: Arc<EdgeState>) {
    let mut ticks = tokio::time::interval(state.settings.usage_flush_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        metrics::run_upkeep();
        if state.meter.is_closed() {
            return;
        }
        sample_cluster_connections(&state).await;
        if let Err(error) = state.meter.flush(state.usage.as_deref(), false).await {
            tracing::warn!(%error, "usage flush failed; the rows are kept for the next one");
        }
    }
}

/// For each app with connections here whose current minute has no cluster-wide count yet
/// (no admission anywhere on this node this minute), reads it once: a quiet minute's peak is
/// then the cluster's too, not this node's share.
async fn sample_cluster_connections(state: &EdgeState) {
    for app in state.meter.apps_to_sample() {
        match state.cluster.connections.count(&app).await {
            Ok(in_use) => state.meter.cluster_connections(&app, in_use),
            Err(error) => tracing::warn!(%error, "cluster connection count unavailable"),
        }
    }
}

/// Socket ids: two random numbers (`\d+\.\d+`, the form Pusher's server libraries check),
/// 96 bits from the thread's CSPRNG. Unique without coordination, and unguessable: an id
/// seen or predicted gives no hold on a session (that takes a signed cursor, see
/// `carriers::session`), and nobody can pre-create the id someone else will get.
#[derive(Default)]
struct SocketIds;

impl SocketIds {
    fn new() -> Self {
        Self
    }

    fn next(&self) -> SocketId {
        SocketId::from_parts(rand::random::<u32>(), rand::random::<u64>())
    }
}

/// Follows the catalog's changes until it stops sending them: each changed app's connections
/// re-read it. Spawn once per edge; returns at once for a catalog that never changes.
pub async fn follow_catalog_changes(state: Arc<EdgeState>) {
    let Some(mut changes) = state.catalog.changes() else {
        return;
    };
    loop {
        match changes.recv().await {
            Ok(app_id) => state.hub.app_changed(&app_id),
            // Missed some: tell every app's connections, which is always safe.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                state.hub.all_apps_changed()
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Mounts the WebSocket endpoint, the HTTP API, `/healthz` (liveness) and `/readyz`.
pub fn configure(state: Arc<EdgeState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        config
            .app_data(web::Data::from(state.readiness.clone()))
            .app_data(web::Data::from(state.health.clone()))
            .app_data(web::Data::from(state))
            .app_data(web::JsonConfig::default().limit(1024 * 1024))
            .route("/healthz", web::get().to(health::healthz))
            .route("/readyz", web::get().to(drain::readyz))
            .route("/metrics", web::get().to(metrics::render))
            // The busiest first: actix tries routes in order, and a dynamic one costs a regex.
            .configure(http_api::configure)
            .configure(carriers::configure_sb)
            .route("/app/{key}", web::get().to(websocket::websocket))
            .configure(carriers::xhr::configure)
            // Last: `{prefix:.+}` reads the whole path, and would take `/apps/…/app/users`.
            .route(
                "/{prefix:.+}/app/{key}",
                web::get().to(websocket::websocket),
            )
            .configure(carriers::xhr::configure_prefixed);
    }
}
