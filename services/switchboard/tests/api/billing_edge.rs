//! Billing as the edge sees it: edge and control in one server on a fake Stripe. The plan a
//! webhook activates is enforced at the edge (the catalog reloads on NOTIFY), a failed
//! payment past its grace drops the app to the free plan's limits, and paying restores them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use billing::fake::{FakeStripe, SignedEvent};
use control::billing::{Billing, BillingSettings, DEFAULT_GRACE_PERIOD};
use control::catalog::PgCatalog;
use control::crypto::SecretsKey;
use control::routes::ControlState;
use control::service::Control;
use edge::EdgeSettings;
use serde_json::{Value, json};
use switchboard::startup::{Application, Parts};
use tenancy::AppCatalog;

use crate::helpers::TestApp;
use crate::platform::{TestDatabase, fresh_database};

/// Between the sandbox's 10 KiB message size and pro's 32 KiB.
const DATA_BYTES: usize = 20_000;

struct Platform {
    app: TestApp,
    fake: FakeStripe,
    billing: Billing,
}

async fn start() -> (
    Platform,
    sqlx::PgPool,
    control::service::CreatedApp,
    uuid::Uuid,
    TestDatabase,
) {
    let (url, database) = fresh_database().await;
    let key = SecretsKey::from_base64(&SecretsKey::generate_base64()).unwrap();
    let pool = switchboard::database::connect(&url).await.unwrap();
    switchboard::database::migrate(&pool).await.unwrap();
    let fake = FakeStripe::start("sk_test_edge", "whsec_edge")
        .await
        .unwrap();
    let settings = BillingSettings::from_keys(
        Some(fake.secret_key()),
        Some(fake.webhook_secret()),
        Some(fake.base_url()),
        "http://dashboard.test/billing",
    )
    .unwrap();
    let billing = Billing::new(pool.clone(), &settings).unwrap();
    billing.sync_stripe().await.unwrap();
    let control = Control::new(pool.clone(), key.clone());
    let catalog = PgCatalog::new(pool.clone(), key.clone());
    tokio::spawn(catalog.clone().listen());
    let catalog: Arc<dyn AppCatalog> = catalog;
    let parts = Parts {
        edge: Some((catalog, EdgeSettings::default())),
        control: Some(ControlState::new(control.clone()).with_billing(billing.clone())),
        usage: None,
        webhooks: None,
    };
    let application = Application::build_with("127.0.0.1", 0, parts).expect("server binds");
    let port = application.port();
    let stopper = application.stopper();
    tokio::spawn(application.run_until_stopped());
    let app = TestApp {
        port,
        http: reqwest::Client::new(),
        stopper,
    };
    let account = control
        .sign_up("edge-billing@example.com", "correct horse battery")
        .await
        .unwrap();
    let created = control.create_app(account, "billed", None).await.unwrap();
    // Verified, once the schema has verification (the account mail flows add the column).
    sqlx::query("UPDATE accounts SET email_verified_at = now()")
        .execute(&pool)
        .await
        .unwrap();
    (
        Platform { app, fake, billing },
        pool,
        created,
        account,
        database,
    )
}

impl Platform {
    async fn deliver(&self, events: &[SignedEvent]) {
        for event in events {
            let response = self
                .app
                .http
                .post(format!(
                    "http://127.0.0.1:{}/v1/stripe/webhook",
                    self.app.port
                ))
                .header("stripe-signature", &event.signature)
                .body(event.payload.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{}", event.kind);
        }
    }

    async fn publish_large(&self, created: &control::service::CreatedApp) -> u16 {
        let body = json!({ "name": "big", "channel": "c", "data": "x".repeat(DATA_BYTES) });
        let path = format!("/apps/{}/events", created.app.id);
        let app = (
            created.app.id.as_str(),
            created.key.as_str(),
            created.secret.as_str(),
        );
        self.app
            .api(app, "POST", &path, &[], Some(&body))
            .await
            .status()
            .as_u16()
    }

    /// Publishes until the edge answers `status` (the catalog reloads on NOTIFY).
    async fn wait_for_publish_status(&self, created: &control::service::CreatedApp, status: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.publish_large(created).await;
            if got == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "publish answered {got}, never {status}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn the_edge_enforces_the_paid_plan_from_the_webhook_and_the_free_one_after_grace() {
    let (platform, pool, created, account, _database) = start().await;
    assert_eq!(
        platform.publish_large(&created).await,
        413,
        "sandbox: 10 KiB messages"
    );

    let url = platform
        .billing
        .start_checkout(account, "pro")
        .await
        .unwrap();
    let session = url.rsplit('/').next().unwrap();
    let events = platform.fake.complete_checkout(session).unwrap();
    platform.deliver(&events).await;
    platform.wait_for_publish_status(&created, 200).await;

    let completed: Value = serde_json::from_str(&events[0].payload).unwrap();
    let subscription = completed["data"]["object"]["subscription"]
        .as_str()
        .unwrap();
    platform
        .deliver(&platform.fake.fail_payment(subscription).unwrap())
        .await;
    assert_eq!(
        platform.publish_large(&created).await,
        200,
        "within the grace period"
    );
    let after_grace =
        time::OffsetDateTime::now_utc() + DEFAULT_GRACE_PERIOD + time::Duration::minutes(1);
    assert_eq!(
        platform
            .billing
            .enforce_grace_period(after_grace)
            .await
            .unwrap(),
        1
    );
    platform.wait_for_publish_status(&created, 413).await;

    platform
        .deliver(&platform.fake.pay(subscription).unwrap())
        .await;
    platform.wait_for_publish_status(&created, 200).await;
    let plan: String = sqlx::query_scalar("SELECT plan_id FROM apps WHERE id = $1")
        .bind(&created.app.id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(plan, "pro");
}
