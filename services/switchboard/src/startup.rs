//! Builds the server from its parts and a listener; a drain stops it (see `Stopper::drain`).

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, web};
use broker::counters::{LocalMessages, MessageCounter};
use broker::{Cluster, LocalSpec, RedisHealthWatch};
use control::routes::ControlState;
use edge::drain::Readiness;
use edge::{EdgeSettings, EdgeState, Hub};
use tenancy::{AppCatalog, AppSpec, StaticCatalog, UsageSink, WebhookSink};

/// Connections the kernel queues for accepting (capped by `net.core.somaxconn`): room for a
/// reconnect storm, which would otherwise wait out SYN retransmissions.
const LISTEN_BACKLOG: u32 = 8192;

/// An edge on static apps only, as `serve --app` without a database and most tests run it.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub host: String,
    pub port: u16,
    pub apps: Vec<AppSpec>,
    pub edge: EdgeSettings,
}

/// What one process serves: the edge, the control plane, or both on one port.
pub struct Parts {
    pub edge: Option<(Arc<dyn AppCatalog>, EdgeSettings)>,
    pub control: Option<ControlState>,
    /// Where the edge writes usage (Postgres with a database); `None` drops it.
    pub usage: Option<Arc<dyn UsageSink>>,
    /// Where the edge reports webhook events (the control plane's sender with a database);
    /// `None` reports nothing.
    pub webhooks: Option<Arc<dyn WebhookSink>>,
}

/// This node on Redis (`broker::build_node`): its hub, every part of the cluster on Redis,
/// and the watch on its Redis connections.
pub struct NodeBroker {
    pub hub: Arc<Hub>,
    pub cluster: Cluster,
    /// Started on the edge's `health` once the edge exists.
    pub health: RedisHealthWatch,
}

impl NodeBroker {
    /// A hub (and the message counter it adds to) for a broker built apart
    /// (`broker::build_broker`).
    pub fn hub() -> (Arc<Hub>, Arc<dyn MessageCounter>) {
        let messages: Arc<dyn MessageCounter> = Arc::new(LocalMessages::default());
        (Arc::new(Hub::new(messages.clone())), messages)
    }
}

/// An edge on `node`'s cluster (Redis), or, without one, on an in-memory cluster
/// (`Cluster::local`) delivering to and counting for this node's own hub.
fn node_edge(
    catalog: Arc<dyn AppCatalog>,
    settings: EdgeSettings,
    usage: Option<Arc<dyn UsageSink>>,
    webhooks: Option<Arc<dyn WebhookSink>>,
    node: Option<NodeBroker>,
) -> Arc<EdgeState> {
    let (hub, cluster, health_watch) = match node {
        Some(node) => (node.hub, node.cluster, Some(node.health)),
        None => {
            let (hub, messages) = NodeBroker::hub();
            let cluster = Cluster::local(LocalSpec {
                node: hub.clone(),
                messages,
                clock: broker::Clock::system(),
                history: broker::HistoryLimits {
                    max_bytes: settings.history_max_bytes,
                    max_channels_per_app: settings.history_max_channels_per_app,
                },
            });
            (hub, cluster, None)
        }
    };
    let state = EdgeState::new(catalog, cluster, hub, settings, usage, webhooks);
    if let Some(watch) = health_watch {
        state.health.watching("broker");
        let health: Arc<dyn broker::HealthReport> = state.health.clone();
        watch.start(Arc::downgrade(&health));
    }
    state
}

/// The edge's catalog with the console's system app first (`control::console`), and the
/// settings that name it: the dashboard's console and live view then ride on this edge.
pub fn with_console_app(
    catalog: Arc<dyn AppCatalog>,
    settings: &mut EdgeSettings,
    secrets: &control::crypto::SecretsKey,
) -> Arc<dyn AppCatalog> {
    let system = control::console::system_app(secrets);
    settings.console_app = Some(system.id.clone());
    Arc::new(tenancy::LayeredCatalog {
        first: StaticCatalog::new(&[system]),
        then: catalog,
    })
}

/// The edge's console (if any) reports webhook attempts from `sender`'s dispatcher.
pub fn attach_console(application: &Application, sender: &control::webhooks::PgWebhookSink) {
    if let Some(console) = application
        .edge
        .as_ref()
        .and_then(|edge| edge.console.clone())
    {
        sender.attach_console(console);
    }
}

/// A bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    edge: Option<Arc<EdgeState>>,
    readiness: Arc<Readiness>,
}

impl Application {
    pub fn build(settings: ServeSettings) -> std::io::Result<Self> {
        let catalog: Arc<dyn AppCatalog> = Arc::new(StaticCatalog::new(&settings.apps));
        let parts = Parts {
            edge: Some((catalog, settings.edge)),
            control: None,
            usage: None,
            webhooks: None,
        };
        Self::build_with(&settings.host, settings.port, parts)
    }

    /// An edge on static apps whose cluster `make` builds around this node's hub (tests let
    /// several edges share parts this way).
    pub fn build_on_cluster(
        settings: ServeSettings,
        make: impl FnOnce(&EdgeSettings) -> (Arc<Hub>, Cluster),
    ) -> std::io::Result<Self> {
        let catalog: Arc<dyn AppCatalog> = Arc::new(StaticCatalog::new(&settings.apps));
        let (hub, cluster) = make(&settings.edge);
        let edge = EdgeState::new(catalog, cluster, hub, settings.edge, None, None);
        Self::serve(&settings.host, settings.port, Some(edge), None)
    }

    pub fn build_with(host: &str, port: u16, parts: Parts) -> std::io::Result<Self> {
        Self::build_on(host, port, parts, None)
    }

    /// As `build_with`, with the edge on `node`'s broker (from `broker::build_broker`)
    /// rather than on its own `Local` one.
    pub fn build_on(
        host: &str,
        port: u16,
        parts: Parts,
        node: Option<NodeBroker>,
    ) -> std::io::Result<Self> {
        let (usage, webhooks) = (parts.usage, parts.webhooks);
        let edge = parts
            .edge
            .map(|(catalog, settings)| node_edge(catalog, settings, usage, webhooks, node));
        Self::serve(host, port, edge, parts.control)
    }

    fn serve(
        host: &str,
        port: u16,
        edge: Option<Arc<EdgeState>>,
        control: Option<ControlState>,
    ) -> std::io::Result<Self> {
        let listener = edge::listener::bind(host, port, LISTEN_BACKLOG)?;
        let port = listener.local_addr()?.port();
        if let Some(state) = &edge {
            tokio::spawn(edge::follow_catalog_changes(state.clone()));
            tokio::spawn(edge::flush_usage_periodically(state.clone()));
            tokio::spawn(edge::sweep_dead_nodes_periodically(state.clone()));
            if state.console.is_some() {
                tokio::spawn(edge::console::run(Arc::downgrade(state)));
            }
        }
        let edge_state = edge.clone();
        // The edge's, whose admissions it governs; a control plane alone has its own.
        let readiness = edge
            .as_ref()
            .map_or_else(Arc::default, |state| state.readiness.clone());
        let control_readiness = web::Data::from(readiness.clone());
        let control_health = web::Data::new(edge::health::Health::default());
        // The refusal log `/v1` reads is the edge's console, when both run here.
        let control = control.map(|mut control| {
            if let Some(console) = edge.as_ref().and_then(|edge| edge.console.clone()) {
                control.console = Some(console as Arc<dyn tenancy::ConsoleFeed>);
            }
            web::Data::new(control)
        });
        let listener_settings = edge::listener::ListenerSettings {
            max_connections_per_worker: 100_000,
            shutdown_timeout_seconds: 5,
        };
        // Not `HttpServer`: the edge's listener takes WebSocket upgrades before actix's
        // HTTP/1 dispatcher and hands every other connection to this same app.
        let server = edge::listener::serve(listener, edge.clone(), listener_settings, move || {
            let mut app = App::new()
                .wrap(from_fn(edge::metrics::time_requests))
                .wrap(from_fn(crate::request_spans::trace_requests));
            if let Some(control) = &control {
                app = app
                    .configure(control::routes::configure(control.clone()))
                    .default_service(web::to(control::dashboard::serve));
            }
            if let Some(state) = &edge {
                app = app.configure(edge::configure(state.clone()));
            } else {
                app = app
                    .app_data(control_readiness.clone())
                    .app_data(control_health.clone())
                    .route("/healthz", web::get().to(edge::health::healthz))
                    .route("/readyz", web::get().to(edge::drain::readyz))
                    .route("/metrics", web::get().to(edge::metrics::render_process));
            }
            app
        })?;
        Ok(Self {
            port,
            server,
            edge: edge_state,
            readiness,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The edge's shared state (with an edge part), e.g. to hand `health` to what watches a
    /// dependency.
    pub fn edge_state(&self) -> Option<Arc<EdgeState>> {
        self.edge.clone()
    }

    /// A handle that drains and stops the server (see `Stopper::drain`).
    pub fn stopper(&self) -> Stopper {
        Stopper {
            handle: self.server.handle(),
            edge: self.edge.clone(),
            readiness: self.readiness.clone(),
        }
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

#[derive(Clone)]
pub struct Stopper {
    handle: ServerHandle,
    edge: Option<Arc<EdgeState>>,
    readiness: Arc<Readiness>,
}

impl Stopper {
    /// The drain, in this order: unready and refusing new clients (4200) at once, so a load
    /// balancer stops sending them; after `delay`, every connected client closed with 4200
    /// (pusher-js reconnects at once, elsewhere); the server stopped once they are closed;
    /// then the usage counted so far written, the current minute included. The HTTP API
    /// serves until the server stops.
    pub async fn drain(&self, delay: Duration) {
        self.begin_drain();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.close_clients_and_stop().await;
    }

    /// A drain without delay.
    pub async fn stop(&self) {
        self.drain(Duration::ZERO).await;
    }

    /// The drain's first step: `/readyz` answers 503 and new WebSockets and carrier sessions
    /// are refused with 4200; connected clients are left alone.
    pub fn begin_drain(&self) {
        if self.readiness.start_draining() {
            tracing::info!("draining: /readyz answers 503, new clients are refused with 4200");
        }
    }

    /// The drain's last steps: every connection is asked to reconnect (4200), the server
    /// stops once they are closed, and the usage is flushed.
    pub async fn close_clients_and_stop(&self) {
        self.begin_drain();
        if let Some(edge) = &self.edge {
            tracing::info!(
                connections = edge.hub.connection_count(),
                "closing every client with 4200"
            );
            edge.hub.shut_down_all();
        }
        self.handle.stop(true).await;
        if let Some(edge) = &self.edge {
            edge.flush_usage_at_shutdown().await;
        }
    }
}

/// SIGINT and SIGTERM, listened to from start to exit: the first begins the drain, a second
/// one exits at once (the handlers stay installed, so without listening it would be ignored).
pub struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers; call before serving, so no signal is missed.
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves on the next SIGINT or SIGTERM.
    pub async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
