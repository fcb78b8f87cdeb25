//! The whole platform on a fresh Postgres database: apps and keys made by the control plane,
//! served by the edge, changed while clients are connected.

use std::sync::Arc;
use std::time::Duration;

use control::catalog::PgCatalog;
use control::crypto::SecretsKey;
use control::routes::ControlState;
use control::service::{Control, CreatedApp};
use control::usage::PgUsageSink;
use control::webhooks::deliver::RetryPolicy;
use control::webhooks::{PgWebhookSink, WebhookSettings};
use edge::EdgeSettings;
use serde_json::json;
use sqlx::PgPool;
use switchboard::startup::{Application, Parts};
use tenancy::{AddressPolicy, AppCatalog};

use crate::helpers::{TestApp, WsClient};

pub struct TestPlatform {
    pub app: TestApp,
    pub control: Control,
    pub pool: PgPool,
    /// The webhook sender, to stop it as `switchboard serve` does after the server.
    pub webhooks: Arc<PgWebhookSink>,
    /// The database's URL and secrets key, for starting another platform on them.
    pub database_url: String,
    pub secrets: SecretsKey,
    /// The edge's catalog, for counting the queries its misses make.
    pub catalog: Arc<PgCatalog>,
    _database: Option<TestDatabase>,
}

/// Drops the test's database when the test ends, pass or fail.
pub struct TestDatabase {
    admin_url: String,
    name: String,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot block on itself: use a thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let admin = PgPool::connect(&admin_url).await?;
                let statement = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                sqlx::query(sqlx::AssertSqlSafe(statement))
                    .execute(&admin)
                    .await?;
                Ok::<_, sqlx::Error>(())
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
    }
}

/// A fresh, empty database: its URL and the guard that drops it.
pub async fn fresh_database() -> (String, TestDatabase) {
    let admin_url = std::env::var("SWITCHBOARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let admin = PgPool::connect(&admin_url)
        .await
        .expect("the test Postgres is reachable");
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&admin)
        .await
        .expect("create test database");
    let url = match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => unreachable!("a database URL has a path"),
    };
    (url, TestDatabase { admin_url, name })
}

/// Pusher's webhook behaviour on a faster clock: leave events wait 300 ms, retries start
/// after 100 ms; private targets allowed (the tests' receivers are on 127.0.0.1).
pub fn test_webhook_settings() -> WebhookSettings {
    WebhookSettings {
        addresses: AddressPolicy::AllowPrivate,
        poll_interval: Duration::from_millis(50),
        leave_delay: Duration::from_millis(300),
        batch_window: Duration::from_millis(100),
        retry: RetryPolicy {
            initial: Duration::from_millis(100),
            max_interval: Duration::from_millis(400),
            window: Duration::from_secs(5),
        },
        ..WebhookSettings::default()
    }
}

/// A database of its own for each test, migrated; the server on port 0 runs edge and control.
pub async fn spawn_platform() -> TestPlatform {
    let (url, database) = fresh_database().await;
    let key = SecretsKey::from_base64(&SecretsKey::generate_base64()).unwrap();
    let mut platform = start_platform(&url, key).await;
    platform._database = Some(database);
    platform
}

/// Another platform (as after a restart) on the database and secrets key of `platform`.
pub async fn restart_platform(platform: &TestPlatform) -> TestPlatform {
    start_platform(&platform.database_url, platform.secrets.clone()).await
}

/// The platform on the database at `url` (migrated here), with private webhook targets
/// allowed.
pub async fn start_platform(url: &str, key: SecretsKey) -> TestPlatform {
    start_platform_on(url, key, None).await
}

/// As `start_platform`, as one node of the cluster on the Redis at `broker_url` (if given).
pub async fn start_platform_on(
    url: &str,
    key: SecretsKey,
    broker_url: Option<&str>,
) -> TestPlatform {
    start_platform_with(url, key, broker_url, EdgeSettings::default()).await
}

/// A platform on a fresh database whose edge runs with `settings`.
pub async fn spawn_platform_with(settings: EdgeSettings) -> TestPlatform {
    let (url, database) = fresh_database().await;
    let key = SecretsKey::from_base64(&SecretsKey::generate_base64()).unwrap();
    let mut platform = start_platform_with(&url, key, None, settings).await;
    platform._database = Some(database);
    platform
}

/// As `start_platform_on`, the edge with `settings`.
pub async fn start_platform_with(
    url: &str,
    key: SecretsKey,
    broker_url: Option<&str>,
    mut settings: EdgeSettings,
) -> TestPlatform {
    let pool = switchboard::database::connect(url).await.unwrap();
    switchboard::database::migrate(&pool).await.unwrap();
    let control =
        Control::new(pool.clone(), key.clone()).with_webhook_addresses(AddressPolicy::AllowPrivate);
    let webhooks = PgWebhookSink::start(pool.clone(), key.clone(), test_webhook_settings());
    let pg_catalog = PgCatalog::new(pool.clone(), key.clone());
    tokio::spawn(pg_catalog.clone().listen());
    let catalog: Arc<dyn AppCatalog> = pg_catalog.clone();
    let catalog = switchboard::startup::with_console_app(catalog, &mut settings, &key);
    let parts = Parts {
        edge: Some((catalog, settings)),
        control: Some(ControlState::new(control.clone())),
        usage: Some(Arc::new(PgUsageSink::new(&pool))),
        webhooks: Some(webhooks.clone()),
    };
    let node = match broker_url {
        Some(broker_url) => Some(
            switchboard::broker::build_node(
                broker_url,
                &EdgeSettings::default(),
                broker::NodeSettings::new(),
            )
            .await
            .expect("joins the cluster"),
        ),
        None => None,
    };
    let application = Application::build_on("127.0.0.1", 0, parts, node).expect("server binds");
    switchboard::startup::attach_console(&application, &webhooks);
    let port = application.port();
    let stopper = application.stopper();
    tokio::spawn(application.run_until_stopped());
    let app = TestApp {
        port,
        http: reqwest::Client::new(),
        stopper,
    };
    TestPlatform {
        app,
        control,
        pool,
        webhooks,
        database_url: url.to_owned(),
        secrets: key,
        catalog: pg_catalog,
        _database: None,
    }
}

impl TestPlatform {
    /// A fresh account with one app on `plan`.
    pub async fn account_with_app(
        &self,
        email: &str,
        plan: Option<&str>,
    ) -> (uuid::Uuid, CreatedApp) {
        let account = self
            .control
            .sign_up(email, "correct horse battery")
            .await
            .unwrap();
        let created = self.control.create_app(account, "app", plan).await.unwrap();
        (account, created)
    }

    /// A free plan `id` that allows `max_connections`, with room for everything else a test
    /// does on it.
    pub async fn add_plan_with_connections(&self, id: &str, max_connections: i32) {
        sqlx::query(
            "INSERT INTO plans (id, display_name, price_cents, max_connections, messages_per_day, \
             max_message_bytes, client_events_per_second, publish_requests_per_second, \
             max_presence_members, max_channels_per_connection, history_events, history_seconds, \
             burst_multiplier, webhooks_allowed, overage_cents_per_million_messages, \
             overage_cents_per_thousand_connections, sort_order) \
             VALUES ($1, $1, 0, $2, 200000, 10240, 10, 100, 10, 10, 10, 60, 1, TRUE, 0, 0, 9)",
        )
        .bind(id)
        .bind(max_connections)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    /// Connects with `key` and returns the client and its socket id.
    pub async fn connected(&self, key: &str) -> (WsClient, String) {
        self.app.connected(key).await
    }

    /// Publishes one event on `app_id` signed with `key`/`secret`; returns the HTTP status.
    pub async fn publish(
        &self,
        app_id: &str,
        key: &str,
        secret: &str,
        channel: &str,
        event: &str,
    ) -> u16 {
        let body = json!({ "name": event, "channel": channel, "data": "d" });
        let path = format!("/apps/{app_id}/events");
        let response = self
            .app
            .api((app_id, key, secret), "POST", &path, &[], Some(&body))
            .await;
        response.status().as_u16()
    }
}
