//! Builds the server from its parts and a listener; shutdown is a future.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use broker::counters::{LocalMessages, MessageCounter};
use broker::{Cluster, LocalSpec};
use control::routes::ControlState;
use edge::{EdgeSettings, EdgeState, Hub};
use tenancy::{AppCatalog, AppSpec, StaticCatalog, UsageSink, WebhookSink};

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

/// An edge whose cluster is this process alone: every piece of cluster-wide state in memory
/// (`Cluster::local`), delivering to and counting for this node's hub.
fn single_node_edge(
    catalog: Arc<dyn AppCatalog>,
    settings: EdgeSettings,
    usage: Option<Arc<dyn UsageSink>>,
    webhooks: Option<Arc<dyn WebhookSink>>,
) -> Arc<EdgeState> {
    let messages: Arc<dyn MessageCounter> = Arc::new(LocalMessages::default());
    let hub = Arc::new(Hub::new(messages.clone()));
    let cluster = Cluster::local(LocalSpec {
        node: hub.clone(),
        messages,
        clock: broker::Clock::system(),
        history: broker::HistoryLimits {
            max_bytes: settings.history_max_bytes,
            max_channels_per_app: settings.history_max_channels_per_app,
        },
    });
    EdgeState::new(catalog, cluster, hub, settings, usage, webhooks)
}

/// A bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    edge: Option<Arc<EdgeState>>,
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
        let (usage, webhooks) = (parts.usage, parts.webhooks);
        let edge = parts
            .edge
            .map(|(catalog, settings)| single_node_edge(catalog, settings, usage, webhooks));
        Self::serve(host, port, edge, parts.control)
    }

    fn serve(
        host: &str,
        port: u16,
        edge: Option<Arc<EdgeState>>,
        control: Option<ControlState>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind((host, port))?;
        let port = listener.local_addr()?.port();
        if let Some(state) = &edge {
            tokio::spawn(edge::follow_catalog_changes(state.clone()));
            tokio::spawn(edge::flush_usage_periodically(state.clone()));
        }
        let edge_state = edge.clone();
        let control = control.map(web::Data::new);
        let server = HttpServer::new(move || {
            let mut app = App::new().wrap(from_fn(edge::metrics::time_requests));
            if let Some(control) = &control {
                app = app.configure(control::routes::configure(control.clone()));
            }
            if let Some(state) = &edge {
                app = app.configure(edge::configure(state.clone()));
            } else {
                app = app.route("/healthz", web::get().to(|| async { "ok" }));
            }
            app
        })
        .backlog(8192)
        .max_connections(100_000)
        .disable_signals()
        .shutdown_timeout(5)
        .listen(listener)?
        .run();
        Ok(Self {
            port,
            server,
            edge: edge_state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that stops the server: every connection is first told to reconnect (4200),
    /// then, once they are closed, usage is flushed.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            handle: self.server.handle(),
            edge: self.edge.clone(),
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
}

impl Stopper {
    /// Asks every connection to reconnect, stops the server once they are closed, then
    /// writes the usage counted so far, the current minute included.
    pub async fn stop(&self) {
        if let Some(edge) = &self.edge {
            edge.hub.shut_down_all();
        }
        self.handle.stop(true).await;
        if let Some(edge) = &self.edge {
            edge.flush_usage_at_shutdown().await;
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
