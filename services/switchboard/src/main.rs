//! `switchboard`: parses the command line and hands it to the matching module; nothing else.

use clap::Parser;
use switchboard::cli::{Cli, Command};
use switchboard::run::{Role, run};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = switchboard::telemetry::init();
    let result = match Cli::parse().command {
        Command::Serve(args) => run(Role::Both, args).await,
        Command::Edge(args) => run(Role::EdgeOnly, args).await,
        Command::Control(args) => run(Role::ControlOnly, args).await,
        Command::Migrate(database) => {
            let url = database
                .database_url
                .ok_or_else(|| anyhow::anyhow!("DATABASE_URL is required"))?;
            let pool = switchboard::database::connect(&url).await?;
            switchboard::database::migrate(&pool).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Admin(command) => switchboard::admin::run(command).await,
    };
    // After a drain (or any other return): the spans still queued are exported.
    telemetry.shutdown();
    result
}
