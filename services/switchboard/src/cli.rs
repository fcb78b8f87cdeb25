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
    /// Run edge and control plane in one process on one port (edge alone without a database).
    Serve(ServeArgs),
    /// Run only the edge: WebSocket connections and the Pusher HTTP API.
    Edge(ServeArgs),
    /// Run only the control plane: the /v1 management API.
    Control(ServeArgs),
    /// Apply the database migrations and exit.
    Migrate(DatabaseArgs),
    /// Operator commands against the database.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Postgres URL of the control plane's database.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Base64 of the 32-byte key that encrypts app secrets at rest.
    #[arg(long, env = "SWITCHBOARD_SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port to listen on; 0 picks a free one (printed at start).
    #[arg(long, default_value_t = 6001)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub host: String,
    /// An app as ID:KEY:SECRET; repeat for more. With none and no database, a demo app is made
    /// and printed.
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
    /// Bytes a connection may have queued before it is closed as a slow consumer (4100); its
    /// own replies may take as much again.
    #[arg(long, env = "SWITCHBOARD_OUTBOX_MAX_BYTES", default_value_t = 1024 * 1024)]
    pub outbox_max_bytes: usize,
    /// Bytes of channel history (and of cache channels' last events) this node keeps for all
    /// apps together; past it the largest app's oldest events go first.
    #[arg(long, env = "SWITCHBOARD_HISTORY_MAX_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub history_max_bytes: usize,
    /// Channels with kept history (or a cached event) one app may have on this node; a new one
    /// past it evicts the app's oldest.
    #[arg(
        long,
        env = "SWITCHBOARD_HISTORY_MAX_CHANNELS_PER_APP",
        default_value_t = 10_000
    )]
    pub history_max_channels_per_app: usize,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

impl ServeArgs {
    /// Every app given by flag or environment.
    pub fn all_apps(&self) -> Vec<AppSpec> {
        let mut apps = self.apps.clone();
        apps.extend(self.apps_env.iter().flatten().cloned());
        apps
    }
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an account; the password is read from the first line of standard input.
    CreateAccount {
        #[arg(long)]
        email: String,
        /// Read the password from standard input (the only way: never on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Create an app for an account; prints {"app_id":…,"key":…,"secret":…} as one JSON line.
    CreateApp {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// sandbox (default), startup, pro or business.
        #[arg(long)]
        plan: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Print a fresh secrets key (base64 of 32 random bytes) for SWITCHBOARD_SECRETS_KEY.
    GenerateSecretsKey,
}
