//! `serve`, `edge` and `control`: which parts run, on what.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use control::billing::Billing;
use control::catalog::PgCatalog;
use control::routes::{ControlSettings, ControlState};
use control::service::Control;
use edge::EdgeSettings;
use tenancy::{AppCatalog, AppSpec, LayeredCatalog, StaticCatalog};

use crate::broker::build_node;
use crate::cli::ServeArgs;
use crate::database;
use crate::startup::{Application, Parts, ShutdownSignals};

/// The exit status after a second SIGINT/SIGTERM cut a drain short (0 after a full drain).
pub const EXIT_INTERRUPTED_DRAIN: i32 = 1;

/// Which parts a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Both,
    EdgeOnly,
    ControlOnly,
}

pub async fn run(role: Role, args: ServeArgs) -> anyhow::Result<()> {
    // The recorder first, so every part's metrics (the catalog's, the backlogs') land in it.
    edge::metrics::prometheus();
    let database = database::open(&args.database).await?;
    if let Some((pool, _)) = &database {
        database::migrate(pool).await?;
        refuse_static_clashes(pool, &args.all_apps()).await?;
        actix_web::rt::spawn(control::metrics::watch_backlogs(pool.clone()));
    }
    let mailer = mailer(&args)?;
    let links = control::mail::MailLinks::new(
        args.public_url
            .as_deref()
            .unwrap_or(&format!("http://localhost:{}", args.port)),
    );
    let control = database.as_ref().map(|(pool, key)| {
        Control::new(pool.clone(), key.clone())
            .with_mailer(mailer.clone(), links.clone())
            .with_webhook_addresses(args.webhooks.address_policy())
            .with_password_hash_limit(
                args.max_concurrent_password_hashes,
                control::service::DEFAULT_PASSWORD_HASH_WAIT,
            )
    });
    let control_part = match role {
        Role::EdgeOnly => None,
        Role::ControlOnly => Some(control.clone().context("`control` needs DATABASE_URL")?),
        Role::Both => control.clone(),
    };
    let edge_part = match role {
        Role::ControlOnly => None,
        Role::EdgeOnly | Role::Both => {
            let mut settings = edge_settings(&args);
            let mut catalog = edge_catalog(&args, database.as_ref());
            // With a database, the dashboard's console rides on a system app of this edge.
            if let Some((_, key)) = &database {
                catalog = crate::startup::with_console_app(catalog, &mut settings, key);
            }
            Some((catalog, settings))
        }
    };
    // With a database, the edge's usage goes to Postgres; without one it is not kept.
    let usage = database.as_ref().map(|(pool, _)| {
        Arc::new(control::usage::PgUsageSink::new(pool)) as Arc<dyn tenancy::UsageSink>
    });
    // With a database, the edge's webhook events go to the control plane's sender.
    let webhook_sender = match (&edge_part, database.as_ref()) {
        (Some(_), Some((pool, key))) => Some(control::webhooks::PgWebhookSink::start(
            pool.clone(),
            key.clone(),
            args.webhooks.settings(),
        )),
        _ => None,
    };
    let webhooks = webhook_sender
        .clone()
        .map(|sink| sink as Arc<dyn tenancy::WebhookSink>);
    let parts = Parts {
        edge: edge_part,
        control: control_part
            .map(|control| {
                let state = ControlState::with_settings(control.clone(), control_settings(&args));
                let public_url = args
                    .public_url
                    .clone()
                    .unwrap_or_else(|| format!("http://localhost:{}", args.port));
                match args.billing.settings(&public_url) {
                    Some(settings) => {
                        let billing = Billing::new(control.pool().clone(), &settings)?
                            .with_notices(std::sync::Arc::new(control.billing_notices()));
                        actix_web::rt::spawn(crate::billing::run_billing_loop(billing.clone()));
                        tracing::info!(api_base = %settings.api_base, "stripe billing on");
                        Ok::<_, anyhow::Error>(state.with_billing(billing))
                    }
                    None => Ok(state),
                }
            })
            .transpose()?,
        usage,
        webhooks,
    };
    let mut signals = ShutdownSignals::install().context("installing the signal handlers")?;
    let node = match (&parts.edge, &args.broker) {
        (Some((_, settings)), Some(url)) => {
            let node = broker::NodeSettings {
                heartbeat_ttl: std::time::Duration::from_secs(args.node_heartbeat_ttl),
                ..broker::NodeSettings::new()
            };
            Some(build_node(url, settings, node).await?)
        }
        _ => None,
    };
    let application = Application::build_on(&args.host, args.port, parts, node)?;
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
    if let Some(sender) = &webhook_sender {
        crate::startup::attach_console(&application, sender);
    }
    let stopper = application.stopper();
    let drain_delay = Duration::from_secs(args.drain_delay);
    let (first_signal, signalled) = tokio::sync::oneshot::channel();
    actix_web::rt::spawn(async move {
        signals.next().await;
        let _ = first_signal.send(());
        signals.next().await;
        tracing::warn!("second signal: exiting at once, without finishing the drain");
        std::process::exit(EXIT_INTERRUPTED_DRAIN);
    });
    let stopping = actix_web::rt::spawn(async move {
        if signalled.await.is_ok() {
            tracing::info!(
                delay_secs = drain_delay.as_secs(),
                "signal: draining; clients are closed with 4200 after the drain delay"
            );
            stopper.drain(drain_delay).await;
        }
    });
    application.run_until_stopped().await?;
    // The server stops only through the stopper (its own signal handling is off); wait for
    // the stopper's last step, the usage flush, before the process exits.
    let _ = stopping.await;
    // Then what the closed connections reported goes to the outbox, for the next process.
    if let Some(sender) = webhook_sender {
        sender.shutdown().await;
    }
    Ok(())
}

/// A static `--app` with a database app's id or key would share that tenant's channels: stop
/// before serving anything.
async fn refuse_static_clashes(pool: &sqlx::PgPool, apps: &[AppSpec]) -> anyhow::Result<()> {
    if apps.is_empty() {
        return Ok(());
    }
    let clashes = control::catalog::static_app_clashes(pool, apps)
        .await
        .context("checking the static apps against the database")?;
    if clashes.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "refusing to start: {} (a static --app must not share a database app's id or key)",
        clashes.join("; ")
    )
}

fn edge_settings(args: &ServeArgs) -> EdgeSettings {
    EdgeSettings {
        activity_timeout: Duration::from_secs(args.activity_timeout),
        outbox_capacity: args.outbox_capacity,
        sb_first_poll_grace: Duration::from_secs(args.carriers.carrier_first_poll_grace),
        sb_cursor_lifetime: Duration::from_secs(args.carriers.carrier_cursor_lifetime),
        carrier_sessions_per_address_per_minute: args
            .carriers
            .carrier_sessions_per_address_per_minute,
        carrier_sessions_per_app_per_minute: args.carriers.carrier_sessions_per_app_per_minute,
        app_connects_per_second: args.admission.app_connects_per_second,
        api_in_flight_per_app: args.admission.api_in_flight_per_app,
        trusted_proxies: args.trusted_proxies.clone(),
        outbox_max_bytes: args.outbox_max_bytes,
        history_max_bytes: args.history_max_bytes,
        history_max_channels_per_app: args.history_max_channels_per_app,
        metrics_per_app_cap: args.metrics_per_app_cap.map(usize::from),
        fanout: edge::fanout::FanoutBounds {
            in_flight_per_app: args.fanout_in_flight_per_app as usize,
            whole_when_idle: args.fanout_whole_when_idle as usize,
            backlog_per_app: args.fanout_backlog_per_app as usize,
            contention_window: std::time::Duration::from_millis(args.fanout_contention_ms),
            headroom_lag: std::time::Duration::from_millis(args.fanout_headroom_lag_ms),
        },
        ..EdgeSettings::default()
    }
}

/// SMTP when `--smtp-url` is set, else the log.
fn mailer(args: &ServeArgs) -> anyhow::Result<Arc<dyn control::mail::Mailer>> {
    match &args.mail.smtp_url {
        Some(url) => {
            let smtp = control::mail::SmtpMailer::new(url, &args.mail.mail_from)?;
            Ok(Arc::new(smtp))
        }
        None => Ok(Arc::new(control::mail::LogMailer)),
    }
}

fn control_settings(args: &ServeArgs) -> ControlSettings {
    ControlSettings {
        secure_cookies: args.secure_cookies(),
        trusted_proxies: args.trusted_proxies.clone(),
        signup_quota: control::routes::signups_per_hour(args.signups_per_hour),
        ..ControlSettings::default()
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
