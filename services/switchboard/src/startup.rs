//! Builds the server from settings and a listener; shutdown is a future.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer};
use edge::{EdgeSettings, EdgeState, Hub};
use tenancy::{AppSpec, StaticCatalog};

/// What `serve` runs.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub host: String,
    pub port: u16,
    pub apps: Vec<AppSpec>,
    pub edge: EdgeSettings,
}

/// A bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    hub: Arc<Hub>,
}

impl Application {
    pub fn build(settings: ServeSettings) -> std::io::Result<Self> {
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))?;
        let port = listener.local_addr()?.port();
        let catalog = Arc::new(StaticCatalog::new(&settings.apps));
        let state = EdgeState::single_node(catalog, settings.edge);
        let hub = state.hub.clone();
        let server = HttpServer::new(move || App::new().configure(edge::configure(state.clone())))
            .backlog(8192)
            .max_connections(100_000)
            .disable_signals()
            .shutdown_timeout(5)
            .listen(listener)?
            .run();
        Ok(Self { port, server, hub })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that stops the server: every connection is first told to reconnect (4200).
    pub fn stopper(&self) -> Stopper {
        Stopper {
            handle: self.server.handle(),
            hub: self.hub.clone(),
        }
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

#[derive(Clone)]
pub struct Stopper {
    handle: ServerHandle,
    hub: Arc<Hub>,
}

impl Stopper {
    pub async fn stop(&self) {
        self.hub.shut_down_all();
        self.handle.stop(true).await;
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
