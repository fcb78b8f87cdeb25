//! A control plane with Stripe billing on, pointed at a fake Stripe (`billing::fake`), and
//! what billing tests share: delivering signed events, a subscribed account, notices kept.

use std::sync::{Arc, Mutex};

use billing::fake::{FakeStripe, SignedEvent};
use control::billing::{Billing, BillingNotices, BillingSettings};
use control::routes::ControlSettings;
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::helpers::{Caller, Response, TestApp, spawn_app_with_state};

pub struct BillingTest {
    pub app: TestApp,
    pub fake: FakeStripe,
    pub billing: Billing,
    pub notices: Arc<KeptNotices>,
}

/// Every notice billing gave, in order: ("payment_failed" | "downgraded" | "restored", email).
#[derive(Default)]
pub struct KeptNotices(Mutex<Vec<(String, String)>>);

impl KeptNotices {
    pub fn kinds(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(kind, _)| kind.clone())
            .collect()
    }

    fn keep(&self, kind: &str, email: &str) {
        self.0
            .lock()
            .unwrap()
            .push((kind.to_owned(), email.to_owned()));
    }
}

#[async_trait::async_trait]
impl BillingNotices for KeptNotices {
    async fn payment_failed(&self, email: &str, _grace_ends: OffsetDateTime) {
        self.keep("payment_failed", email);
    }
    async fn downgraded(&self, email: &str) {
        self.keep("downgraded", email);
    }
    async fn restored(&self, email: &str) {
        self.keep("restored", email);
    }
}

pub const RETURN_URL: &str = "http://dashboard.test/billing";

pub async fn spawn_billing() -> BillingTest {
    let fake = FakeStripe::start("sk_test_switchboard", "whsec_switchboard")
        .await
        .expect("fake stripe starts");
    let settings = BillingSettings::from_keys(
        Some(fake.secret_key()),
        Some(fake.webhook_secret()),
        Some(fake.base_url()),
        RETURN_URL,
    )
    .expect("both keys given");
    let notices = Arc::new(KeptNotices::default());
    let kept = notices.clone();
    let made = Arc::new(Mutex::new(None));
    let made_inside = made.clone();
    let app = spawn_app_with_state(
        ControlSettings::default(),
        |c| c,
        move |state, pool| {
            let billing = Billing::new(pool.clone(), &settings)
                .expect("stripe client")
                .with_notices(kept);
            *made_inside.lock().unwrap() = Some(billing.clone());
            state.with_billing(billing)
        },
    )
    .await;
    let billing = made.lock().unwrap().take().expect("billing made");
    billing.sync_stripe().await.expect("sync-stripe");
    BillingTest {
        app,
        fake,
        billing,
        notices,
    }
}

impl BillingTest {
    /// POSTs the event to `/v1/stripe/webhook` as Stripe does.
    pub async fn deliver(&self, event: &SignedEvent) -> Response {
        self.deliver_raw(&event.payload, Some(&event.signature))
            .await
    }

    pub async fn deliver_raw(&self, payload: &str, signature: Option<&str>) -> Response {
        let mut request = self
            .app
            .http
            .post(format!("{}/v1/stripe/webhook", self.app.address))
            .header("content-type", "application/json")
            .body(payload.to_owned());
        if let Some(signature) = signature {
            request = request.header("stripe-signature", signature);
        }
        let response = request.send().await.expect("webhook request");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        Response {
            status,
            headers,
            body,
        }
    }

    pub async fn deliver_all(&self, events: &[SignedEvent]) {
        for event in events {
            let response = self.deliver(event).await;
            assert_eq!(
                response.status,
                StatusCode::OK,
                "{}: {:?}",
                event.kind,
                response.body
            );
        }
    }

    /// Marks every account's email verified.
    pub async fn verify_every_email(&self) {
        sqlx::query(
            "UPDATE accounts SET email_verified_at = now() WHERE email_verified_at IS NULL",
        )
        .execute(&self.app.pool)
        .await
        .expect("verifies emails");
    }

    /// Starts a checkout for `plan` (the owner's email verified) and answers the Checkout
    /// Session's id.
    pub async fn checkout(&self, caller: &Caller, plan: &str) -> String {
        self.verify_every_email().await;
        let response = self
            .app
            .post(caller, "/v1/billing/checkout", json!({ "plan": plan }))
            .await;
        let url = response.ok(StatusCode::OK)["url"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(url.starts_with(self.fake.base_url()), "{url}");
        url.rsplit('/').next().unwrap().to_owned()
    }

    /// A new account with one app, subscribed to `plan` through checkout and its webhooks.
    /// Answers the caller, the app id and the subscription id.
    pub async fn subscribed(&self, email: &str, plan: &str) -> (Caller, String, String) {
        let (caller, app_id) = self.app.signed_up_with_app(email, "billed").await;
        let session = self.checkout(&caller, plan).await;
        let events = self
            .fake
            .complete_checkout(&session)
            .expect("session exists");
        self.deliver_all(&events).await;
        let subscription = subscription_of(&events[0]);
        assert_eq!(self.app_plan(&app_id).await, plan);
        (caller, app_id, subscription)
    }

    pub async fn app_plan(&self, app_id: &str) -> String {
        sqlx::query_scalar("SELECT plan_id FROM apps WHERE id = $1")
            .bind(app_id)
            .fetch_one(&self.app.pool)
            .await
            .expect("app exists")
    }
}

/// The subscription a `checkout.session.completed` event names.
pub fn subscription_of(event: &SignedEvent) -> String {
    let payload: Value = serde_json::from_str(&event.payload).unwrap();
    payload["data"]["object"]["subscription"]
        .as_str()
        .unwrap()
        .to_owned()
}
