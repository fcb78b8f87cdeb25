//! What the webhook tests share: a local receiver that records requests and answers as
//! scripted, an endpoint that accepts connections and never answers, fast sender settings,
//! and waiting on the delivery log.

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use control::webhooks::WebhookSettings;
use control::webhooks::deliver::RetryPolicy;
use reqwest::StatusCode;
use serde_json::Value;
use tenancy::{AddressPolicy, WebhookEvent};
use tokio::sync::{mpsc, watch};

use crate::helpers::{Caller, TestApp};

/// Only a hang reaches it.
pub const WAIT: Duration = Duration::from_secs(20);

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub content_type: String,
    pub key: String,
    pub signature: String,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    pub fn names(&self) -> Vec<String> {
        self.json()["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|event| event["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// A local HTTP endpoint recording every request; `script` gives the statuses a path
/// answers in turn (200 once its script is used up).
pub struct Receiver {
    pub base: String,
    pub requests: mpsc::UnboundedReceiver<Received>,
    script: Arc<Mutex<HashMap<String, VecDeque<u16>>>>,
}

impl Receiver {
    pub fn start() -> Self {
        let (sender, requests) = mpsc::unbounded_channel();
        let script: Arc<Mutex<HashMap<String, VecDeque<u16>>>> = Arc::default();
        let state = web::Data::new((sender, script.clone()));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .default_service(web::to(record))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self {
            base: format!("http://127.0.0.1:{port}"),
            requests,
            script,
        }
    }

    pub fn answer(&self, path: &str, statuses: &[u16]) {
        self.script
            .lock()
            .unwrap()
            .insert(path.to_owned(), statuses.iter().copied().collect());
    }

    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.requests.recv())
            .await
            .expect("a webhook arrives in time")
            .expect("the receiver runs")
    }

    /// Requests until one for `path` carrying an event named `name` arrives.
    pub async fn until(&mut self, path: &str, name: &str) -> Vec<Received> {
        let mut seen = Vec::new();
        loop {
            let request = self.next().await;
            let done = request.path == path && request.names().iter().any(|n| n == name);
            seen.push(request);
            if done {
                return seen;
            }
        }
    }
}

type ReceiverState = (
    mpsc::UnboundedSender<Received>,
    Arc<Mutex<HashMap<String, VecDeque<u16>>>>,
);

async fn record(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<ReceiverState>,
) -> HttpResponse {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let path = request.path().to_owned();
    let status = state
        .1
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front)
        .unwrap_or(200);
    let _ = state.0.send(Received {
        path,
        content_type: header("content-type"),
        key: header("x-pusher-key"),
        signature: header("x-pusher-signature"),
        body: String::from_utf8(body.to_vec()).unwrap(),
    });
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
}

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
