//! What the webhook tests share besides the receiver (`webhook_receiver`): an endpoint that
//! accepts connections and never answers, fast sender settings, and waiting on the delivery
//! log.

use std::sync::Arc;
use std::time::Duration;

use control::webhooks::deliver::RetryPolicy;
use control::webhooks::{PgWebhookSink, WebhookSettings};
use protocol::names::AppId;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tenancy::{AddressPolicy, WebhookEvent};
use tokio::sync::watch;

use crate::helpers::{Caller, TestApp};
use crate::webhook_receiver::WAIT;

pub fn fast_settings() -> WebhookSettings {
    WebhookSettings {
        leave_delay: Duration::from_millis(300),
        batch_window: Duration::from_millis(200),
        retry: RetryPolicy {
            initial: Duration::from_millis(50),
            max_interval: Duration::from_millis(100),
            window: Duration::from_millis(700),
        },
        poll_interval: Duration::from_millis(20),
        addresses: AddressPolicy::AllowPrivate,
        ..WebhookSettings::default()
    }
}

/// A webhook sender of its own on the test's database, as a process of the platform runs it.
pub fn start_sender(app: &TestApp, settings: WebhookSettings) -> Arc<PgWebhookSink> {
    PgWebhookSink::start(app.pool.clone(), app.secrets.clone(), settings)
}

/// `app_id` as the sender takes it.
pub fn parse_app_id(id: &str) -> AppId {
    AppId::parse(id).unwrap()
}

/// A webhook for every event to `url`: its id.
pub async fn add_webhook_to(app: &TestApp, caller: &Caller, app_id: &str, url: &str) -> String {
    add_webhook(app, caller, app_id, json!({ "url": url })).await
}

pub async fn add_webhook(app: &TestApp, caller: &Caller, app_id: &str, body: Value) -> String {
    let created = app
        .post(caller, &format!("/v1/apps/{app_id}/webhooks"), body)
        .await;
    created.ok(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn occupied(channel: &str) -> WebhookEvent {
    WebhookEvent::ChannelOccupied {
        channel: channel.into(),
    }
}

pub fn vacated(channel: &str) -> WebhookEvent {
    WebhookEvent::ChannelVacated {
        channel: channel.into(),
    }
}

/// An endpoint that accepts every connection and never answers; counts the connections.
pub struct Silent {
    pub url: String,
    accepted: watch::Receiver<usize>,
}

impl Silent {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (count, accepted) = watch::channel(0);
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
                count.send_replace(held.len());
            }
        });
        Self {
            url: format!("http://127.0.0.1:{port}/hook"),
            accepted,
        }
    }

    pub fn accepted(&self) -> usize {
        *self.accepted.borrow()
    }

    /// Until at least `count` connections were accepted.
    pub async fn until_accepted(&mut self, count: usize) {
        tokio::time::timeout(WAIT, self.accepted.wait_for(|n| *n >= count))
            .await
            .expect("the sender connects")
            .unwrap();
    }
}

/// The app's delivery log (newest first) once `done` holds for it.
pub async fn log_until(
    app: &TestApp,
    caller: &Caller,
    app_id: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let path = format!("/v1/apps/{app_id}/webhooks/deliveries?limit=500");
    tokio::time::timeout(WAIT, async {
        loop {
            let log = app.get(caller, &path).await;
            let rows = log.ok(StatusCode::OK).as_array().unwrap().clone();
            if done(&rows) {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the delivery log gets there")
}

/// True when a row of the log is for `webhook_id` with `status`.
pub fn has(rows: &[Value], webhook_id: &str, status: &str) -> bool {
    rows.iter()
        .any(|row| row["webhook_id"] == webhook_id && row["status"] == status)
}

/// The rows of one webhook, oldest attempt first.
pub fn rows_of(rows: &[Value], webhook_id: &str) -> Vec<Value> {
    let mut rows: Vec<Value> = rows
        .iter()
        .filter(|row| row["webhook_id"] == webhook_id)
        .cloned()
        .collect();
    rows.sort_by_key(|row| row["attempt"].as_i64());
    rows
}
