//! A local webhook endpoint that records every request and answers as scripted. Shared by
//! control's tests and switchboard's (which include this file by `#[path]`), so it uses
//! nothing of either crate's helpers.

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::Value;
use tokio::sync::mpsc;

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
        Self::start_on(0)
    }

    /// On `port` of 127.0.0.1 (0: any free one).
    pub fn start_on(port: u16) -> Self {
        let (sender, requests) = mpsc::unbounded_channel();
        let script: Arc<Mutex<HashMap<String, VecDeque<u16>>>> = Arc::default();
        let state = web::Data::new((sender, script.clone()));
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
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
        self.next_in_time()
            .await
            .expect("a webhook arrives in time")
    }

    /// The next request, or `None` if none arrives within `WAIT`.
    pub async fn next_in_time(&mut self) -> Option<Received> {
        let next = tokio::time::timeout(WAIT, self.requests.recv())
            .await
            .ok()?;
        Some(next.expect("the receiver runs"))
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
