//! The control plane: accounts, apps, keys and plans in Postgres; the `/v1` management API;
//! the dashboard's assets at `/` (`dashboard`); and `PgCatalog`, the `AppCatalog` edges use to serve the apps it holds.
//!
//! Architecture invariant: SQL only in `repository`; routes stay thin and call `service`.

pub mod billing;
pub mod catalog;
pub mod console;
pub mod crypto;
pub mod dashboard;
pub mod domain;
pub mod mail;
pub mod metrics;
pub mod password;
pub mod repository;
pub mod routes;
pub mod service;
pub mod usage;
pub mod webhooks;

/// The embedded migrations (`migrations/` at the repository root).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");
