//! `switchboard`: wires command-line settings to the application; nothing else.

use std::time::Duration;

use clap::Parser;
use edge::EdgeSettings;
use switchboard::cli::{Cli, Command};
use switchboard::startup::{Application, ServeSettings, shutdown_signal};
use tenancy::AppSpec;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    switchboard::telemetry::init();
    let Cli {
        command: Command::Serve(args),
    } = Cli::parse();
    let mut apps = args.all_apps();
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
    let edge = EdgeSettings {
        activity_timeout: Duration::from_secs(args.activity_timeout),
        outbox_capacity: args.outbox_capacity,
        ..EdgeSettings::default()
    };
    let settings = ServeSettings {
        host: args.host.clone(),
        port: args.port,
        apps,
        edge,
    };
    let application = Application::build(settings)?;
    println!(
        "switchboard listening on {}:{}",
        args.host,
        application.port()
    );
    tracing::info!(port = application.port(), "listening");
    let stopper = application.stopper();
    actix_web::rt::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: asking clients to reconnect");
        stopper.stop().await;
    });
    application.run_until_stopped().await?;
    Ok(())
}
