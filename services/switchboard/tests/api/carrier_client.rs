//! A client of our SDK's HTTP carriers, driven from Rust as a browser would: it keeps the
//! session id, the subscriptions and the last cursor, and reconnects with them as the SDK does.

use std::collections::VecDeque;
use std::time::Duration;

use edge::EdgeSettings;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{APP, TestApp, data_of};

/// Only a hang reaches it.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(40);
pub(crate) const ORIGIN: &str = "https://page.example";

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Sse,
    LongPoll,
    Poll,
    Stream,
    Iframe,
}

pub(crate) const KINDS: [Kind; 5] = [
    Kind::Sse,
    Kind::LongPoll,
    Kind::Poll,
    Kind::Stream,
    Kind::Iframe,
];

/// A carrier client: keeps the session id, the subscriptions and the last cursor, and
/// reconnects with them as the SDK does.
pub(crate) struct Carrier {
    pub(crate) kind: Kind,
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    pub(crate) session: Option<String>,
    pub(crate) cursor: Option<String>,
    pub(crate) subs: Vec<Value>,
    pub(crate) response: Option<reqwest::Response>,
    pub(crate) buffer: String,
    pub(crate) pending: VecDeque<(Option<String>, Value)>,
    /// Polls: the next answer is lost on the way (the client-side network drop).
    pub(crate) lose_next_answer: bool,
    /// SSE: reconnect as EventSource does, with the cursor in `Last-Event-ID` and the URL of
    /// the first request.
    pub(crate) first_url_query: Option<Vec<(String, String)>>,
    /// Streams: asks for short ids (`ids=delta`) and keeps the last full cursor to append
    /// deltas to, reopening with the URL as the SDK does.
    pub(crate) short_ids: bool,
    full_cursor: String,
    /// The cursor text that came with the last frame, as sent.
    pub(crate) last_id: String,
}

impl Carrier {
    pub(crate) fn new(app: &TestApp, kind: Kind, subs: Vec<Value>) -> Self {
        Self::on_port(app.port, kind, subs)
    }

    /// A client subscribed to the public `channel`, once the server has confirmed it.
    pub(crate) async fn subscribed(app: &TestApp, kind: Kind, channel: &str) -> Self {
        let mut carrier = Self::new(app, kind, vec![json!({ "channel": channel })]);
        carrier
            .expect_event("pusher_internal:subscription_succeeded")
            .await;
        carrier
    }

    pub(crate) fn on_port(port: u16, kind: Kind, subs: Vec<Value>) -> Self {
        Self {
            kind,
            base: format!("http://127.0.0.1:{port}/sb/app/{}", APP.1),
            http: reqwest::Client::new(),
            session: None,
            cursor: None,
            subs,
            response: None,
            buffer: String::new(),
            pending: VecDeque::new(),
            lose_next_answer: false,
            first_url_query: None,
            short_ids: false,
            full_cursor: String::new(),
            last_id: String::new(),
        }
    }

    /// The same client, its next requests going to another edge.
    pub(crate) fn move_to(&mut self, port: u16) {
        self.response = None;
        self.buffer.clear();
        self.base = format!("http://127.0.0.1:{port}/sb/app/{}", APP.1);
    }

    pub(crate) fn query(&self) -> Vec<(String, String)> {
        let mut query = Vec::new();
        if let Some(session) = &self.session {
            query.push(("session".to_owned(), session.clone()));
        }
        if !self.subs.is_empty() {
            query.push((
                "subs".to_owned(),
                Value::from(self.subs.clone()).to_string(),
            ));
        }
        if let Some(cursor) = &self.cursor {
            query.push(("cursor".to_owned(), cursor.clone()));
        }
        match self.kind {
            Kind::LongPoll => query.push(("wait".to_owned(), "25".to_owned())),
            Kind::Poll => query.push(("wait".to_owned(), "0".to_owned())),
            Kind::Iframe => {
                query.push(("callback".to_owned(), "sb.deliver".to_owned()));
                query.push(("origin".to_owned(), ORIGIN.to_owned()));
            }
            Kind::Sse | Kind::Stream => {}
        }
        if self.short_ids {
            query.push(("ids".to_owned(), "delta".to_owned()));
        }
        query
    }

    pub(crate) fn path(&self) -> &'static str {
        match self.kind {
            Kind::Sse => "sse",
            Kind::LongPoll | Kind::Poll => "poll",
            Kind::Stream => "stream",
            Kind::Iframe => "iframe",
        }
    }

    /// Opens the downstream request (streaming carriers); returns its response headers.
    pub(crate) async fn open(&mut self) -> reqwest::header::HeaderMap {
        let mut request = self
            .http
            .get(format!("{}/{}", self.base, self.path()))
            .header("Origin", ORIGIN);
        if self.kind == Kind::Sse
            && !self.short_ids
            && let (Some(first), Some(cursor)) = (&self.first_url_query, &self.cursor)
        {
            request = request
                .query(first)
                .header("Last-Event-ID", cursor.as_str());
        } else {
            let query = self.query();
            if self.kind == Kind::Sse {
                self.first_url_query = Some(query.clone());
            }
            request = request.query(&query);
        }
        let response = tokio::time::timeout(STEP_TIMEOUT, request.send())
            .await
            .expect("answers in time")
            .expect("request sent");
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers().clone();
        if matches!(self.kind, Kind::LongPoll | Kind::Poll) {
            let body: Value = tokio::time::timeout(STEP_TIMEOUT, response.json())
                .await
                .expect("answers in time")
                .expect("JSON");
            if std::mem::take(&mut self.lose_next_answer) {
                return headers;
            }
            if let Some(session) = body["session"].as_str() {
                self.session = Some(session.to_owned());
            }
            let frames = body["frames"].as_array().unwrap();
            for (index, frame) in frames.iter().enumerate() {
                // One cursor for the batch, after its last frame.
                let cursor = (index + 1 == frames.len())
                    .then(|| body["cursor"].as_str().map(str::to_owned))
                    .flatten();
                self.pending.push_back((cursor, frame.clone()));
            }
        } else {
            self.response = Some(response);
            self.buffer.clear();
        }
        headers
    }

    /// The next frame, or `None` when the downstream ended (a stream closed by the server).
    pub(crate) async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some((cursor, frame)) = self.pending.pop_front() {
                if let Some(cursor) = cursor {
                    self.take_cursor(cursor);
                }
                if frame["event"] == "pusher:connection_established" {
                    let data = data_of(&frame);
                    self.session = Some(data["socket_id"].as_str().unwrap().to_owned());
                }
                return Some(frame);
            }
            match self.kind {
                Kind::LongPoll => {
                    self.open().await;
                }
                Kind::Poll => {
                    self.open().await;
                    if self.pending.is_empty() {
                        // Polling's own interval, not a synchronisation.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                _ => {
                    if self.response.is_none() {
                        self.open().await;
                    }
                    let response = self.response.as_mut().unwrap();
                    let chunk = tokio::time::timeout(STEP_TIMEOUT, response.chunk())
                        .await
                        .expect("a chunk in time");
                    match chunk {
                        Ok(Some(bytes)) => {
                            self.buffer.push_str(std::str::from_utf8(&bytes).unwrap());
                            self.parse();
                        }
                        Ok(None) | Err(_) => {
                            self.response = None;
                            self.parse();
                            if self.pending.is_empty() {
                                return None;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Keeps the cursor after a frame: a delta (`~…`) follows the last full cursor.
    fn take_cursor(&mut self, cursor: String) {
        self.last_id.clone_from(&cursor);
        if cursor.starts_with('~') {
            assert!(self.short_ids, "a delta only when asked for: {cursor}");
            assert!(!self.full_cursor.is_empty(), "a full cursor came first");
            self.cursor = Some(format!("{}{cursor}", self.full_cursor));
        } else {
            self.full_cursor = cursor.split('~').next().unwrap_or_default().to_owned();
            self.cursor = Some(cursor);
        }
    }

    /// Moves complete frames from the buffer to `pending`.
    pub(crate) fn parse(&mut self) {
        match self.kind {
            Kind::Sse => {
                while let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let (mut id, mut data) = (None, None);
                    for line in block.lines() {
                        if let Some(value) = line.strip_prefix("id: ") {
                            id = Some(value.to_owned());
                        } else if let Some(value) = line.strip_prefix("data: ") {
                            data = Some(serde_json::from_str::<Value>(value).unwrap());
                        }
                    }
                    if let Some(data) = data {
                        self.pending.push_back((id, data));
                    }
                }
            }
            Kind::Stream => {
                while let Some(end) = self.buffer.find('\n') {
                    let line: String = self.buffer.drain(..end + 1).collect();
                    if line.trim().is_empty() {
                        continue;
                    }
                    let item: Value = serde_json::from_str(&line).unwrap();
                    let cursor = item["cursor"].as_str().map(str::to_owned);
                    self.pending
                        .push_back((cursor.filter(|c| !c.is_empty()), item["frame"].clone()));
                }
            }
            Kind::Iframe => {
                const OPEN: &str = "<script>parent.postMessage(";
                let close = format!(",{});</script>", Value::from(ORIGIN));
                let close = close.as_str();
                while let Some(start) = self.buffer.find(OPEN) {
                    let Some(end) = self.buffer[start..].find(close) else {
                        break;
                    };
                    let json = self.buffer[start + OPEN.len()..start + end].to_owned();
                    self.buffer.drain(..start + end + close.len());
                    assert!(!json.contains('<'), "escaped for a script: {json}");
                    let item: Value = serde_json::from_str(&json).unwrap();
                    assert_eq!(item["type"], "switchboard", "{json}");
                    assert_eq!(item["callback"], "sb.deliver", "{json}");
                    let cursor = item["cursor"].as_str().map(str::to_owned);
                    self.pending
                        .push_back((cursor.filter(|c| !c.is_empty()), item["frame"].clone()));
                }
            }
            Kind::LongPoll | Kind::Poll => {}
        }
    }

    /// The client's network drops: the open response is gone with whatever was in flight.
    /// Polls: the batch in hand was received; the next answer is lost instead.
    pub(crate) fn cut(&mut self) {
        if matches!(self.kind, Kind::LongPoll | Kind::Poll) {
            self.lose_next_answer = true;
        } else {
            self.response = None;
            self.buffer.clear();
            self.pending.clear();
        }
    }

    /// Skips frames until one with this event arrives.
    pub(crate) async fn expect_event(&mut self, event: &str) -> Value {
        loop {
            let frame = self.next().await.expect("the downstream is open");
            if frame["event"] == event {
                return frame;
            }
        }
    }

    /// Sends client frames upstream.
    pub(crate) async fn send(&self, frames: Value) -> StatusCode {
        let session = self.session.as_deref().unwrap_or_default();
        let cursor = self.cursor.as_deref().unwrap_or_default();
        self.http
            .post(format!("{}/send", self.base))
            .query(&[("session", session), ("cursor", cursor)])
            .header("Origin", ORIGIN)
            .header("Content-Type", "text/plain")
            .body(frames.to_string())
            .send()
            .await
            .expect("request sent")
            .status()
    }
}

pub(crate) async fn publish(app: &TestApp, channel: &str, data: &str) {
    let response = app.trigger(channel, "tick", data, None).await;
    assert_eq!(response.status(), 200);
}

/// Waits until no one on `app` is subscribed to `channel` (a session expired).
pub(crate) async fn until_unoccupied(app: &TestApp, channel: &str) {
    let path = format!("/apps/{}/channels/{channel}", APP.0);
    tokio::time::timeout(STEP_TIMEOUT, async {
        loop {
            let info: Value = app
                .api(APP, "GET", &path, &[], None)
                .await
                .json()
                .await
                .unwrap();
            if info["occupied"] == false {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the session expires in time");
}

pub(crate) fn short_grace() -> EdgeSettings {
    EdgeSettings {
        sb_session_grace: Duration::from_millis(500),
        // A dropped stream is noticed on its next write.
        sb_heartbeat_interval: Duration::from_millis(100),
        ..EdgeSettings::default()
    }
}
