//! The edge: holds client connections and serves the Pusher-compatible HTTP API.
//!
//! `connection` runs one WebSocket through `protocol::session::Session`; `hub` fans
//! publications out to local connections; `http_api` is Pusher's REST API.
//!
//! Architecture invariant: no sqlx, no Stripe, no import of `control`. Apps come only
//! through `tenancy::AppCatalog`.

mod connection;
mod http_api;
mod hub;
mod outbox;
mod websocket;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use broker::Broker;
use protocol::names::SocketId;
use tenancy::AppCatalog;

pub use hub::Hub;

/// The edge's tunables. Protocol-visible values default to Pusher's.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// Sent to clients as `activity_timeout`; a silent client is pinged after it.
    pub activity_timeout: Duration,
    /// How long a pinged client has to answer.
    pub pong_timeout: Duration,
    /// Frames a connection may have queued before it is closed as a slow consumer.
    pub outbox_capacity: usize,
    /// Largest WebSocket frame accepted from a client.
    pub max_frame_bytes: usize,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            activity_timeout: Duration::from_secs(120),
            pong_timeout: Duration::from_secs(30),
            outbox_capacity: 1024,
            max_frame_bytes: 64 * 1024,
        }
    }
}

/// What every edge handler shares.
pub struct EdgeState {
    pub catalog: Arc<dyn AppCatalog>,
    pub broker: Arc<dyn Broker>,
    pub hub: Arc<Hub>,
    pub settings: EdgeSettings,
    socket_ids: SocketIds,
}

impl EdgeState {
    /// An edge on a single node: the in-process broker delivering to this node's hub.
    pub fn single_node(catalog: Arc<dyn AppCatalog>, settings: EdgeSettings) -> Arc<Self> {
        let hub = Arc::new(Hub::default());
        let broker = Arc::new(broker::Local::new(hub.clone()));
        Self::new(catalog, broker, hub, settings)
    }

    pub fn new(
        catalog: Arc<dyn AppCatalog>,
        broker: Arc<dyn Broker>,
        hub: Arc<Hub>,
        settings: EdgeSettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            catalog,
            broker,
            hub,
            settings,
            socket_ids: SocketIds::new(),
        })
    }
}

/// Socket ids unique without coordination: a random per-process prefix and a counter.
struct SocketIds {
    node: u32,
    next: AtomicU64,
}

impl SocketIds {
    fn new() -> Self {
        Self {
            node: rand::random(),
            next: AtomicU64::new(1),
        }
    }

    fn next(&self) -> SocketId {
        SocketId::from_parts(self.node, self.next.fetch_add(1, Ordering::Relaxed))
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

/// Mounts the WebSocket endpoint, the HTTP API and `/healthz`.
pub fn configure(state: Arc<EdgeState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        config
            .app_data(web::Data::from(state))
            .app_data(web::JsonConfig::default().limit(1024 * 1024))
            .route(
                "/healthz",
                web::get().to(|| async { HttpResponse::Ok().body("ok") }),
            )
            .route("/app/{key}", web::get().to(connection::websocket))
            .route(
                "/{prefix:.+}/app/{key}",
                web::get().to(connection::websocket),
            )
            .configure(http_api::configure);
    }
}
