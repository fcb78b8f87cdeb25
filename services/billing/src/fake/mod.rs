//! A local Stripe for tests: the endpoints billing calls, with Stripe's request shapes
//! (form-encoded, `Authorization: Bearer`, `Idempotency-Key` replays) and its JSON objects,
//! plus what Stripe does on its own (a customer paying at checkout, a failed renewal, a
//! period ending), each returning the webhook events Stripe would send, signed as Stripe
//! signs them. Tests deliver those events themselves, in whatever order they need.
//!
//! The only stand-in in the project: everything else in a billing test is the real thing.

mod checkout_page;
mod delivery;
mod routes;
mod state;
mod subscriptions;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpServer, web};
use serde_json::Value;

pub use state::FakeState;

/// One webhook event as Stripe would POST it.
#[derive(Debug, Clone)]
pub struct SignedEvent {
    pub id: String,
    pub kind: String,
    pub payload: String,
    /// The `Stripe-Signature` header.
    pub signature: String,
}

/// A running fake Stripe on a free local port; stops when dropped.
pub struct FakeStripe {
    base_url: String,
    secret_key: String,
    webhook_secret: String,
    state: Arc<Mutex<FakeState>>,
    server: actix_web::dev::ServerHandle,
}

impl FakeStripe {
    /// Starts on 127.0.0.1, accepting `secret_key` and signing events with `webhook_secret`.
    pub async fn start(secret_key: &str, webhook_secret: &str) -> std::io::Result<Self> {
        Self::start_on(0, secret_key, webhook_secret).await
    }

    /// The same on 127.0.0.1:`port` (0: a free one).
    pub async fn start_on(
        port: u16,
        secret_key: &str,
        webhook_secret: &str,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let base_url = format!("http://{}/", listener.local_addr()?);
        let state = Arc::new(Mutex::new(FakeState::new(&base_url)));
        let shared = web::Data::new(routes::Shared {
            state: state.clone(),
            secret_key: secret_key.to_owned(),
            signer: routes::Signer {
                webhook_secret: webhook_secret.to_owned(),
            },
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .configure(routes::configure)
        })
        .workers(1)
        // Not actix's signal handling: it would stop the server on SIGTERM and leave the
        // `fake-stripe` process running; without it SIGTERM ends the process.
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            base_url,
            secret_key: secret_key.to_owned(),
            webhook_secret: webhook_secret.to_owned(),
            state,
            server: handle,
        })
    }

    /// What `STRIPE_API_BASE` should be.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    pub fn webhook_secret(&self) -> &str {
        &self.webhook_secret
    }

    /// Reads or changes the fake's state (objects, meter events, the outage switch).
    pub fn with_state<T>(&self, look: impl FnOnce(&mut FakeState) -> T) -> T {
        look(&mut self.state.lock().expect("fake stripe state"))
    }

    /// Events are POSTed to `url` (e.g. `…/v1/stripe/webhook`) as they happen: the checkout
    /// page's "Pay", and what our API calls make Stripe send (a plan change's
    /// `customer.subscription.updated`). Without it they wait for `take_events`.
    pub fn deliver_webhooks_to(&self, url: &str) {
        self.with_state(|state| state.webhook_endpoint = Some(url.to_owned()));
    }

    /// The events our API calls made Stripe send that were not delivered, oldest first,
    /// signed now; the test delivers them.
    pub fn take_events(&self) -> Vec<SignedEvent> {
        let events: Vec<Value> = self.with_state(|state| state.pending_events.drain(..).collect());
        self.sign_all(events)
    }

    /// While on, every meter event request fails with a 500 (an outage).
    pub fn set_meter_outage(&self, on: bool) {
        self.with_state(|state| state.meter_outage = on);
    }

    /// The customer pays on the checkout page: the subscription starts, its first invoice is
    /// paid. Events: `checkout.session.completed`, `customer.subscription.created`,
    /// `invoice.paid`.
    pub fn complete_checkout(&self, session_id: &str) -> Option<Vec<SignedEvent>> {
        let events = self.with_state(|state| state.complete_checkout(session_id))?;
        Some(self.sign_all(events))
    }

    /// A renewal's charge fails: `invoice.payment_failed`, `customer.subscription.updated`
    /// (`past_due`).
    pub fn fail_payment(&self, subscription_id: &str) -> Option<Vec<SignedEvent>> {
        let events = self.with_state(|state| state.fail_payment(subscription_id))?;
        Some(self.sign_all(events))
    }

    /// The customer pays what was due: `invoice.paid`, `customer.subscription.updated`
    /// (`active`).
    pub fn pay(&self, subscription_id: &str) -> Option<Vec<SignedEvent>> {
        let events = self.with_state(|state| state.pay(subscription_id))?;
        Some(self.sign_all(events))
    }

    /// The period ends: a subscription set to cancel is `canceled`
    /// (`customer.subscription.deleted`); others renew (`customer.subscription.updated`).
    pub fn end_period(&self, subscription_id: &str) -> Option<Vec<SignedEvent>> {
        let events = self.with_state(|state| state.end_period(subscription_id))?;
        Some(self.sign_all(events))
    }

    /// `event` signed now, as Stripe signs it.
    pub fn sign(&self, event: &Value) -> SignedEvent {
        self.sign_at(event, time::OffsetDateTime::now_utc().unix_timestamp())
    }

    /// `event` signed at `timestamp` (a stale event, for tests of the tolerance).
    pub fn sign_at(&self, event: &Value, timestamp: i64) -> SignedEvent {
        routes::Signer {
            webhook_secret: self.webhook_secret.clone(),
        }
        .sign_at(event, timestamp)
    }

    fn sign_all(&self, events: Vec<Value>) -> Vec<SignedEvent> {
        events.iter().map(|event| self.sign(event)).collect()
    }
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        // Stopping is a future; dropping it still tells the server to stop.
        drop(self.server.stop(false));
    }
}
