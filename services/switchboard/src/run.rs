//! `serve`, `edge` and `control`: which parts run, on what.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use control::catalog::PgCatalog;
use control::routes::ControlState;
use control::service::Control;
use edge::EdgeSettings;
use tenancy::{AppCatalog, AppSpec, LayeredCatalog, StaticCatalog};

use crate::cli::ServeArgs;
use crate::database;
use crate::startup::{Application, Parts, shutdown_signal};

/// Which parts a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Both,
    EdgeOnly,
    ControlOnly,
}

pub async fn run(role: Role, args: ServeArgs) -> anyhow::Result<()> {
    let database = database::open(&args.database).await?;
    if let Some((pool, _)) = &database {
        database::migrate(pool).await?;
    }
    let control = database
        .as_ref()
        .map(|(pool, key)| Control::new(pool.clone(), key.clone()));
    let control_part = match role {
        Role::EdgeOnly => None,
        Role::ControlOnly => Some(control.clone().context("`control` needs DATABASE_URL")?),
        Role::Both => control.clone(),
    };
    let edge_part = match role {
        Role::ControlOnly => None,
        Role::EdgeOnly | Role::Both => {
            Some((edge_catalog(&args, database.as_ref()), edge_settings(&args)))
        }
    };
    // With a database, the edge's usage goes to Postgres; without one it is not kept.
    let usage = database.as_ref().map(|(pool, _)| {
        Arc::new(control::usage::PgUsageSink::new(pool)) as Arc<dyn tenancy::UsageSink>
    });
    // With a database, the edge's webhook events go to the control plane's sender.
    let webhooks = match (&edge_part, database.as_ref()) {
        (Some(_), Some((pool, key))) => {
            let settings = control::webhooks::WebhookSettings::default();
            let sink = control::webhooks::PgWebhookSink::start(pool.clone(), key.clone(), settings);
            Some(sink as Arc<dyn tenancy::WebhookSink>)
        }
        _ => None,
    };
    let parts = Parts {
        edge: edge_part,
        control: control_part.map(ControlState::new),
        usage,
        webhooks,
    };
    let application = Application::build_with(&args.host, args.port, parts)?;
    println!(
        "switchboard listening on {}:{}",
        args.host,
        application.port()
    );
    tracing::info!(
        port = application.port(),
        ?role,
        database = database.is_some(),
        "listening"
    );
    let stopper = application.stopper();
    let stopping = actix_web::rt::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: asking clients to reconnect");
        stopper.stop().await;
    });
    application.run_until_stopped().await?;
    // The server stops only through the stopper (its own signal handling is off); wait for
    // the stopper's last step, the usage flush, before the process exits.
    let _ = stopping.await;
    Ok(())
}

fn edge_settings(args: &ServeArgs) -> EdgeSettings {
    EdgeSettings {
        activity_timeout: Duration::from_secs(args.activity_timeout),
        outbox_capacity: args.outbox_capacity,
        outbox_max_bytes: args.outbox_max_bytes,
        history_max_bytes: args.history_max_bytes,
        history_max_channels_per_app: args.history_max_channels_per_app,
        ..EdgeSettings::default()
    }
}

/// Apps from flags, then (with a database) the control plane's; a demo app when there are
/// neither.
fn edge_catalog(
    args: &ServeArgs,
    database: Option<&(sqlx::PgPool, control::crypto::SecretsKey)>,
) -> Arc<dyn AppCatalog> {
    let mut apps = args.all_apps();
    let Some((pool, key)) = database else {
        if apps.is_empty() {
            let demo = AppSpec::random_demo();
            println!(
                "No app configured; serving a demo app: app_id={} key={} secret={}",
                demo.id,
                demo.key,
                demo.secret.expose()
            );
            apps.push(demo);
        }
        return Arc::new(StaticCatalog::new(&apps));
    };
    let catalog = PgCatalog::new(pool.clone(), key.clone());
    tokio::spawn(catalog.clone().listen());
    Arc::new(LayeredCatalog {
        first: StaticCatalog::new(&apps),
        then: catalog,
    })
}
