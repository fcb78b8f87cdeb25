//! Builds the server from its parts and a listener; shutdown is a future.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use control::routes::ControlState;
use edge::{EdgeSettings, EdgeState, Hub};
use tenancy::{AppCatalog, AppSpec, StaticCatalog};

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
}

/// A bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    hub: Option<Arc<Hub>>,
}

impl Application {
    pub fn build(settings: ServeSettings) -> std::io::Result<Self> {
        let catalog: Arc<dyn AppCatalog> = Arc::new(StaticCatalog::new(&settings.apps));
        let parts = Parts {
            edge: Some((catalog, settings.edge)),
            control: None,
        };
        Self::build_with(&settings.host, settings.port, parts)
    }

    pub fn build_with(host: &str, port: u16, parts: Parts) -> std::io::Result<Self> {
        let listener = TcpListener::bind((host, port))?;
        let port = listener.local_addr()?.port();
        let edge = parts
            .edge
            .map(|(catalog, settings)| EdgeState::single_node(catalog, settings));
        if let Some(state) = &edge {
            tokio::spawn(edge::follow_catalog_changes(state.clone()));
        }
        let hub = edge.as_ref().map(|state| state.hub.clone());
        let control = parts.control.map(web::Data::new);
        let server = HttpServer::new(move || {
            let mut app = App::new();
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
    hub: Option<Arc<Hub>>,
}

impl Stopper {
    pub async fn stop(&self) {
        if let Some(hub) = &self.hub {
            hub.shut_down_all();
        }
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
