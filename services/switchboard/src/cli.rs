//! The operator's command line. Scripts depend on these names: keep them stable.

use clap::{Args, Parser, Subcommand};
use tenancy::AppSpec;

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Realtime messaging, Pusher protocol 7 compatible"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the edge: WebSocket connections and the HTTP API on one port.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port to listen on; 0 picks a free one (printed at start).
    #[arg(long, default_value_t = 6001)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub host: String,
    /// An app as ID:KEY:SECRET; repeat for more. With none, a demo app is made and printed.
    #[arg(long = "app", value_name = "ID:KEY:SECRET", value_parser = AppSpec::parse)]
    pub apps: Vec<AppSpec>,
    /// More apps, comma-separated ID:KEY:SECRET.
    #[arg(long, env = "SWITCHBOARD_APPS", value_name = "ID:KEY:SECRET,...", value_parser = AppSpec::parse_list, hide_env_values = true)]
    pub apps_env: Option<Vec<AppSpec>>,
    /// Seconds of client silence before the server pings (sent to clients as activity_timeout).
    #[arg(long, default_value_t = 120)]
    pub activity_timeout: u64,
    /// Frames a connection may have queued before it is closed as a slow consumer (4100).
    #[arg(long, default_value_t = 1024)]
    pub outbox_capacity: usize,
}

impl ServeArgs {
    /// Every app given by flag or environment.
    pub fn all_apps(&self) -> Vec<AppSpec> {
        let mut apps = self.apps.clone();
        apps.extend(self.apps_env.iter().flatten().cloned());
        apps
    }
}
