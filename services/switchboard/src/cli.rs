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
    /// Move an app to any plan, paid ones included (self-serve accounts may pick free plans
    /// only); prints {"app_id":…,"plan":…} as one JSON line.
    SetPlan {
        #[arg(long = "app", value_name = "APP_ID")]
        app_id: String,
        #[arg(long, value_name = "PLAN")]
        plan: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Print a fresh secrets key (base64 of 32 random bytes) for SWITCHBOARD_SECRETS_KEY.
    GenerateSecretsKey,
}
