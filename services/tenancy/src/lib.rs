//! The vocabulary edge and control share: apps, their keys and secrets, plan limits, and the
//! `AppCatalog` trait through which the edge finds apps without knowing where they live.
//!
//! Architecture invariant: no I/O here (tokio is used for its broadcast channel only). `StaticCatalog` (for `serve --app` and tests) lives in
//! memory; the Postgres catalog lives in `control` and implements the same trait.

mod catalog;
mod spec;

pub use catalog::{AppCatalog, CatalogError, KeyedApp, LayeredCatalog, StaticCatalog};
pub use spec::{AppSpec, AppSpecError};

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
    /// Concurrent connections across the cluster; `None` means unlimited.
    pub max_connections: Option<u64>,
    /// Largest event `data`, in bytes, on the HTTP API and in client events.
    pub max_message_bytes: usize,
    /// Client events each connection may send per second.
    pub client_events_per_second: u32,
    /// Distinct users in one presence channel.
    pub max_presence_members: usize,
}

impl PlanLimits {
    /// Pusher's documented defaults, used for apps given on the command line.
    pub fn pusher_defaults() -> Self {
        Self {
            max_connections: None,
            max_message_bytes: 10 * 1024,
            client_events_per_second: 10,
            max_presence_members: 100,
        }
    }
}

/// An app as the edge sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub id: AppId,
    pub enabled: bool,
    pub limits: PlanLimits,
}
