//! The operator's command line. Scripts depend on these names: keep them stable.

use clap::{Args, Parser, Subcommand};
use ingress::TrustedProxies;
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
    // Fully qualified, so clap takes the list as one value (a bare `Vec` would mean repeated
    // values, and reading the parsed list back panicked).
    pub apps_env: Option<::std::vec::Vec<AppSpec>>,
    /// Seconds of client silence before the server pings (sent to clients as activity_timeout).
    #[arg(long, default_value_t = 120)]
    pub activity_timeout: u64,
    /// Frames a connection may have queued before it is closed as a slow consumer (4100).
    #[arg(long, default_value_t = 1024)]
    pub outbox_capacity: usize,
    /// The URL clients reach this server at (scheme and host), e.g. https://rt.example.com;
    /// with https, session cookies are `Secure`.
    #[arg(long, env = "SWITCHBOARD_PUBLIC_URL", value_name = "URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,
    /// Marks session cookies `Secure` (true) or not (false) whatever the public URL says.
    #[arg(long, env = "SWITCHBOARD_SECURE_COOKIES", value_name = "true|false")]
    pub secure_cookies: Option<bool>,
    /// Proxies (comma-separated addresses or CIDR ranges) whose X-Forwarded-For names the
    /// client for per-address limits; none by default (the TCP peer is the client).
    #[arg(long, env = "SWITCHBOARD_TRUSTED_PROXIES", value_name = "CIDR,...", value_parser = TrustedProxies::parse, default_value = "")]
    pub trusted_proxies: TrustedProxies,
    /// Sign-ups allowed per client address (IPv6: per /64) per hour.
    #[arg(long, env = "SWITCHBOARD_SIGNUPS_PER_HOUR", default_value_t = control::routes::DEFAULT_SIGNUPS_PER_HOUR)]
    pub signups_per_hour: u32,
    /// Password hashes (argon2, ~19 MiB each) computed at once; sign-ups and logins past it
    /// wait, then get 503.
    #[arg(long, env = "SWITCHBOARD_MAX_CONCURRENT_PASSWORD_HASHES", default_value_t = control::service::DEFAULT_CONCURRENT_PASSWORD_HASHES)]
    pub max_concurrent_password_hashes: usize,
    #[command(flatten)]
    pub carriers: CarrierArgs,
    #[command(flatten)]
    pub admission: AdmissionArgs,
    /// Bytes a connection may have queued before it is closed as a slow consumer (4100); its
    /// own replies may take as much again.
    #[arg(long, env = "SWITCHBOARD_OUTBOX_MAX_BYTES", default_value_t = 1024 * 1024)]
    pub outbox_max_bytes: usize,
    /// WebSocket writers of one app that fan-out may have woken and not yet run on this node
    /// before its further deliveries wait their turn behind other apps' (fair fan-out).
    #[arg(long, env = "SWITCHBOARD_FANOUT_IN_FLIGHT_PER_APP", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub fanout_in_flight_per_app: u32,
    /// The largest publication pushed whole, past the bound above, for an app with at most half
    /// of it in flight on this node (an app that publishes now and then); also the most an app
    /// may have in flight, unqueued, while another app has more deliveries waiting. 0 holds
    /// every app to the bound.
    #[arg(
        long,
        env = "SWITCHBOARD_FANOUT_WHOLE_WHEN_IDLE",
        default_value_t = 4096
    )]
    pub fanout_whole_when_idle: u32,
    /// Deliveries one app may have waiting on this node; its publishes get 429 from half of
    /// it, and a publication past it closes its subscribers here with 4100 (they resume).
    #[arg(long, env = "SWITCHBOARD_FANOUT_BACKLOG_PER_APP", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1..))]
    pub fanout_backlog_per_app: u32,
    /// Milliseconds after another app's last publication on this node during which the two
    /// fan-out bounds above hold an app; an app alone on a node is never held. 0 holds every
    /// app to them always.
    #[arg(long, env = "SWITCHBOARD_FANOUT_CONTENTION_MS", default_value_t = 1000)]
    pub fanout_contention_ms: u64,
    /// Milliseconds late the workers may run, while another app is active, before the app
    /// with the most deliveries waiting is paced below what the node could push (its rate
    /// halves per late 100 ms, grows back while they are on time; its publishes get 429 once
    /// more waits than a second of its rate). 0 never paces: the node is then work-conserving.
    // 5, not 10: a quiet app's own p99 on a loaded node is about 10 ms, so 10 let its tail
    // double before pacing began (README, session 13).
    #[arg(long, env = "SWITCHBOARD_FANOUT_HEADROOM_LAG_MS", default_value_t = 5)]
    pub fanout_headroom_lag_ms: u64,
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
    /// Seconds between SIGTERM and closing the clients (4200): meanwhile /readyz answers 503
    /// and new clients are refused, so a load balancer stops sending them here. A second
    /// SIGTERM or SIGINT exits at once.
    #[arg(
        long,
        env = "SWITCHBOARD_DRAIN_DELAY",
        value_name = "SECONDS",
        default_value_t = 5
    )]
    pub drain_delay: u64,
    /// Per-app series in /metrics (connections, messages published and delivered, label
    /// `app`) for the first N apps this process counts; every later app is summed as
    /// app="(other)". Off by default: no app id is ever a label.
    #[arg(
        long,
        env = "SWITCHBOARD_METRICS_PER_APP_CAP",
        value_name = "N",
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub metrics_per_app_cap: Option<u16>,
    /// Redis URL (redis://host:port/db, or redis+cluster://host:port,host:port,... for a
    /// Redis Cluster) of the cluster this edge joins: fan-out, serials, history and presence
    /// are then shared with every edge on it. Without it the edge runs alone, in process.
    #[arg(
        long,
        env = "SWITCHBOARD_BROKER",
        value_name = "URL",
        hide_env_values = true
    )]
    pub broker: Option<String>,
    /// With --broker: seconds a node's connection slots, subscriptions and presence members
    /// keep counting after its last heartbeat (it beats every third of this), so a crashed
    /// node's are released within it (presence members within it plus one second, announced
    /// by a live node).
    #[arg(
        long,
        env = "SWITCHBOARD_NODE_HEARTBEAT_TTL",
        value_name = "SECONDS",
        default_value_t = 9,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub node_heartbeat_ttl: u64,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
    #[command(flatten)]
    pub mail: MailArgs,
    #[command(flatten)]
    pub billing: crate::billing::BillingArgs,
}

/// How the control plane mails account owners (verification and password-reset links).
#[derive(Debug, Args)]
pub struct MailArgs {
    /// SMTP server for account mail, as smtp://host:25, smtp://user:pass@host:587?tls=required
    /// (STARTTLS) or smtps://user:pass@host:465; without it each mail, link included, is
    /// written to the log at info.
    #[arg(long, env = "SMTP_URL", value_name = "URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The sender of account mail.
    #[arg(
        long,
        env = "SWITCHBOARD_MAIL_FROM",
        default_value = "Switchboard <no-reply@localhost>"
    )]
    pub mail_from: String,
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

/// Per-app limits at this node's admission points, so one app's storm spares the others.
#[derive(Debug, Args)]
pub struct AdmissionArgs {
    /// New connections (WebSocket and HTTP carriers) admitted per second for one app on this
    /// node, with a burst of as many; past it the connection is refused with 4100 (pusher-js
    /// backs off and reconnects). 0: no limit.
    #[arg(
        long,
        env = "SWITCHBOARD_APP_CONNECTS_PER_SECOND",
        value_name = "N",
        default_value_t = 200
    )]
    pub app_connects_per_second: u32,
    /// Authenticated Pusher HTTP API requests one app may have in flight on this node; past
    /// it, 429 with Retry-After: 1. 0: no limit.
    #[arg(
        long,
        env = "SWITCHBOARD_API_IN_FLIGHT_PER_APP",
        value_name = "K",
        default_value_t = 64
    )]
    pub api_in_flight_per_app: usize,
}

/// An absolute http(s) URL with a host.
fn parse_public_url(text: &str) -> Result<String, String> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or_else(|| format!("{text:?} must start with https:// or http://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{text:?} has no host"));
    }
    Ok(text.to_owned())
}

impl ServeArgs {
    /// Cookies are `Secure` when the public URL is https, unless `--secure-cookies` says.
    pub fn secure_cookies(&self) -> bool {
        self.secure_cookies.unwrap_or_else(|| {
            self.public_url
                .as_deref()
                .is_some_and(|url| url.starts_with("https://"))
        })
    }

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
    /// Create (idempotently) Stripe's meters, products, flat monthly and metered prices from
    /// the plans table, and record their ids; one JSON line each.
    SyncStripe {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        billing: crate::billing::BillingArgs,
    },
    /// Compare this period's metered overage with Stripe's meter totals; one JSON line per
    /// account and meter.
    ReconcileBilling {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        billing: crate::billing::BillingArgs,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> ServeArgs {
        let mut all = vec!["switchboard", "serve"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).expect("parses").command {
            Command::Serve(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cookies_are_secure_behind_an_https_public_url_unless_overridden() {
        assert!(!serve(&[]).secure_cookies());
        assert!(!serve(&["--public-url", "http://localhost:6001"]).secure_cookies());
        assert!(serve(&["--public-url", "https://rt.example.com"]).secure_cookies());
        let overridden = [
            "--public-url",
            "https://rt.example.com",
            "--secure-cookies",
            "false",
        ];
        assert!(!serve(&overridden).secure_cookies());
        assert!(serve(&["--secure-cookies", "true"]).secure_cookies());
        assert!(
            Cli::try_parse_from(["switchboard", "serve", "--public-url", "rt.example.com"])
                .is_err()
        );
    }

    #[test]
    fn apps_come_from_flags_and_one_comma_separated_list() {
        let args = serve(&["--app", "a:ka:sa", "--apps-env", "b:kb:sb, c:kc:sc,"]);
        let ids: Vec<String> = args
            .all_apps()
            .iter()
            .map(|app| app.id.to_string())
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn trusted_proxies_and_limits_have_safe_defaults() {
        let defaults = serve(&[]);
        assert!(defaults.trusted_proxies.is_empty());
        assert_eq!(defaults.signups_per_hour, 10);
        assert_eq!(defaults.max_concurrent_password_hashes, 4);
        assert_eq!(defaults.drain_delay, 5);
        assert_eq!(serve(&["--drain-delay", "0"]).drain_delay, 0);
        assert_eq!(defaults.metrics_per_app_cap, None, "off by default");
        let capped = serve(&["--metrics-per-app-cap", "50"]);
        assert_eq!(capped.metrics_per_app_cap, Some(50));
        let zero = ["switchboard", "serve", "--metrics-per-app-cap", "0"];
        assert!(Cli::try_parse_from(zero).is_err(), "a cap of 0 is refused");
        let behind = serve(&["--trusted-proxies", "10.0.0.0/8,192.168.0.1"]);
        assert!(behind.trusted_proxies.trusts("10.2.3.4".parse().unwrap()));
        let bad = ["switchboard", "serve", "--trusted-proxies", "10.0.0.0/99"];
        assert!(Cli::try_parse_from(bad).is_err());
    }

    #[test]
    fn per_app_admission_limits_default_on_and_zero_turns_them_off() {
        let defaults = serve(&[]);
        assert_eq!(defaults.admission.app_connects_per_second, 200);
        assert_eq!(defaults.admission.api_in_flight_per_app, 64);
        let set = serve(&[
            "--app-connects-per-second",
            "5",
            "--api-in-flight-per-app",
            "0",
        ]);
        assert_eq!(set.admission.app_connects_per_second, 5);
        assert_eq!(set.admission.api_in_flight_per_app, 0);
    }
}
