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
    pub carriers: CarrierArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
}

/// How webhooks are sent (with a database).
#[derive(Debug, Args)]
pub struct WebhookArgs {
    /// Let webhooks reach loopback, private, link-local and other internal addresses
    /// (on-premises use); by default only public addresses are accepted and connected to.
    #[arg(long, env = "SWITCHBOARD_WEBHOOKS_ALLOW_PRIVATE")]
    pub webhooks_allow_private: bool,
    /// Webhook attempts under way at once in this process.
    #[arg(
        long,
        env = "SWITCHBOARD_WEBHOOKS_MAX_IN_FLIGHT",
        default_value_t = 256
    )]
    pub webhooks_max_in_flight: usize,
    /// Webhook attempts under way at once for one app in this process.
    #[arg(
        long,
        env = "SWITCHBOARD_WEBHOOKS_MAX_IN_FLIGHT_PER_APP",
        default_value_t = 16
    )]
    pub webhooks_max_in_flight_per_app: usize,
    /// Webhook requests kept waiting for one endpoint before new ones are dropped.
    #[arg(
        long,
        env = "SWITCHBOARD_WEBHOOKS_MAX_PENDING_PER_WEBHOOK",
        default_value_t = 1_000
    )]
    pub webhooks_max_pending_per_webhook: usize,
    /// Webhook events one app may have queued between the edge and the sender.
    #[arg(
        long,
        env = "SWITCHBOARD_WEBHOOKS_MAX_QUEUED_PER_APP",
        default_value_t = 1_000
    )]
    pub webhooks_max_queued_per_app: usize,
    /// Webhook delivery attempts kept in each app's log (the newest).
    #[arg(
        long,
        env = "SWITCHBOARD_WEBHOOKS_LOG_ROWS_PER_APP",
        default_value_t = 10_000
    )]
    pub webhooks_log_rows_per_app: usize,
}

impl WebhookArgs {
    pub fn address_policy(&self) -> tenancy::AddressPolicy {
        if self.webhooks_allow_private {
            tenancy::AddressPolicy::AllowPrivate
        } else {
            tenancy::AddressPolicy::PublicOnly
        }
    }

    pub fn settings(&self) -> control::webhooks::WebhookSettings {
        control::webhooks::WebhookSettings {
            addresses: self.address_policy(),
            max_in_flight: self.webhooks_max_in_flight.max(1),
            max_in_flight_per_app: self.webhooks_max_in_flight_per_app.max(1),
            max_pending_per_webhook: self.webhooks_max_pending_per_webhook.max(1),
            max_queued_per_app: self.webhooks_max_queued_per_app.max(1),
            max_log_rows_per_app: self.webhooks_log_rows_per_app.max(1),
            ..control::webhooks::WebhookSettings::default()
        }
    }
}

/// The HTTP carriers' sessions (ours under /sb/app/{key}, and pusher-js's xhr ones).
#[derive(Debug, Args)]
pub struct CarrierArgs {
    /// New carrier sessions allowed per minute from one client address (IPv6: per /64);
    /// past it, 429 with Retry-After. 0: no limit.
    #[arg(
        long,
        env = "SWITCHBOARD_CARRIER_SESSIONS_PER_ADDRESS_PER_MINUTE",
        default_value_t = 300
    )]
    pub carrier_sessions_per_address_per_minute: u32,
    /// New carrier sessions allowed per minute for one app; past it, 429. 0: no limit.
    #[arg(
        long,
        env = "SWITCHBOARD_CARRIER_SESSIONS_PER_APP_PER_MINUTE",
        default_value_t = 6000
    )]
    pub carrier_sessions_per_app_per_minute: u32,
    /// Seconds a new carrier session waits for its client's second request before it ends
    /// (it counts against the connection quota only once in use).
    #[arg(
        long,
        env = "SWITCHBOARD_CARRIER_FIRST_POLL_GRACE",
        default_value_t = 10
    )]
    pub carrier_first_poll_grace: u64,
    /// Seconds a carrier cursor stays valid (attach, send, rebuild on another edge); live
    /// sessions get fresh ones.
    #[arg(
        long,
        env = "SWITCHBOARD_CARRIER_CURSOR_LIFETIME",
        default_value_t = 300
    )]
    pub carrier_cursor_lifetime: u64,
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
