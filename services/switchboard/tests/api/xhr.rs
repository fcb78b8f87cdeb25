//! pusher-js's own HTTP fallbacks, `xhr_streaming` and `xhr_polling`, spoken on the wire as
//! pusher-js does (`core/http/http_socket.ts`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use edge::EdgeSettings;
use serde_json::{Value, json};

use crate::helpers::{APP, OTHER_APP, TestApp, channel_auth, data_of, spawn_app, spawn_app_with};

/// Only a hang reaches it.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// One SockJS-style line of a receive response.
#[derive(Debug, Clone, PartialEq)]
enum Line {
    Open,
    Frames(Vec<Value>),
    Heartbeat,
    Close(u16, String),
}

fn parse_line(line: &str) -> Line {
    match line.split_at(1) {
        ("o", "") => Line::Open,
        ("h", "") => Line::Heartbeat,
        ("a", array) => {
            let frames: Vec<String> = serde_json::from_str(array).expect("a[…] of strings");
            Line::Frames(
                frames
                    .iter()
                    .map(|frame| serde_json::from_str(frame).expect("each frame is JSON"))
                    .collect(),
            )
        }
        ("c", close) => {
            let (code, reason): (u16, String) = serde_json::from_str(close).expect("c[code,…]");
            Line::Close(code, reason)
        }
        _ => panic!("unexpected line {line:?}"),
    }
}

/// One pusher-js xhr socket: a session path and the counter pusher-js puts in `n`.
struct XhrClient {
    http: reqwest::Client,
    base: String,
    n: AtomicU64,
}

impl XhrClient {
    fn new(app: &TestApp, key: &str, session: &str) -> Self {
        Self {
            http: app.http.clone(),
            base: format!("http://127.0.0.1:{}/pusher/app/{key}/{session}", app.port),
            n: AtomicU64::new(1),
        }
    }

    fn url(&self, kind: &str, protocol: bool) -> String {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        let query = if protocol {
            "protocol=7&client=js&version=8.6.0&"
        } else {
            ""
        };
        format!("{}/{kind}?{query}t=1&n={n}", self.base)
    }

    async fn receive(&self, kind: &str) -> reqwest::Response {
        let response = self
            .http
            .post(self.url(kind, true))
            .header("content-type", "application/json")
            .header("origin", "http://page.example")
            .send()
            .await
            .expect("receive request sent");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "http://page.example"
        );
        response
    }

    /// Opens an `xhr_streaming` stream.
    async fn stream(&self) -> Lines {
        Lines::new(self.receive("xhr_streaming").await)
    }

    /// One `xhr` poll: every line of its answer.
    async fn poll(&self) -> Vec<Line> {
        let mut lines = Lines::new(self.receive("xhr").await);
        let mut all = Vec::new();
        while let Some(line) = lines.next_or_end().await {
            all.push(line);
        }
        all
    }

    /// `xhr_send` with these frames; returns the status.
    async fn send(&self, frames: &[Value]) -> u16 {
        let body: Vec<String> = frames.iter().map(Value::to_string).collect();
        self.http
            .post(self.url("xhr_send", false))
            .header("content-type", "application/json")
            .body(serde_json::to_string(&body).unwrap())
            .send()
            .await
            .expect("send request sent")
            .status()
            .as_u16()
    }

    async fn subscribe(&self, channel: &str, auth: &str) {
        let frame = json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth}});
        assert_eq!(self.send(&[frame]).await, 204);
    }
}

/// The lines of one receive response, read as they arrive.
struct Lines {
    response: reqwest::Response,
    buffer: String,
    /// Lines received, each with its length as `responseText.length` counts it (newline in).
    lines: VecDeque<(Line, usize)>,
    /// The length of the lines returned so far, as pusher-js measures its buffer.
    consumed: usize,
    /// Frames of a line read by `next_frame`, not yet returned.
    frames: VecDeque<Value>,
}

impl Lines {
    fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            buffer: String::new(),
            lines: VecDeque::new(),
            consumed: 0,
            frames: VecDeque::new(),
        }
    }

    /// The next line, or `None` when the response has ended.
    async fn next_or_end(&mut self) -> Option<Line> {
        loop {
            if let Some((line, length)) = self.lines.pop_front() {
                self.consumed += length;
                return Some(line);
            }
            let chunk = tokio::time::timeout(STEP_TIMEOUT, self.response.chunk())
                .await
                .expect("a line or the end arrives in time")
                .expect("the response reads");
            let chunk = chunk?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = self.buffer.find('\n') {
                let line: String = self.buffer.drain(..=end).collect();
                let length = line.encode_utf16().count();
                self.lines
                    .push_back((parse_line(line.trim_end_matches('\n')), length));
            }
        }
    }

    async fn next(&mut self) -> Line {
        assert!(self.frames.is_empty(), "frames of the last line are unread");
        self.next_or_end().await.expect("the stream is open")
    }

    /// Frames as they arrive, skipping heartbeats; panics on a close.
    async fn next_frame(&mut self) -> Value {
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return frame;
            }
            match self.next().await {
                Line::Frames(frames) => self.frames.extend(frames),
                Line::Heartbeat => {}
                other => panic!("expected frames, got {other:?}"),
            }
        }
    }

    async fn expect_event(&mut self, event: &str) -> Value {
        loop {
            let frame = self.next_frame().await;
            if frame["event"] == event {
                return frame;
            }
        }
    }

    /// Reads until the close line; returns it with the frames before it.
    async fn expect_close(&mut self) -> ((u16, String), Vec<Value>) {
        let mut frames = Vec::new();
        frames.extend(self.frames.drain(..));
        loop {
            match self.next().await {
                Line::Frames(more) => frames.extend(more),
                Line::Close(code, reason) => {
                    assert!(self.next_or_end().await.is_none(), "nothing after c[…]");
                    return ((code, reason), frames);
                }
                _ => {}
            }
        }
    }
}

/// Frames of a series of polls, until one with this event arrives.
async fn poll_until(client: &XhrClient, event: &str) -> Value {
    for _ in 0..20 {
        for line in client.poll().await {
            assert_ne!(line, Line::Open, "o is sent once per session");
            if let Line::Frames(frames) = line
                && let Some(frame) = frames.into_iter().find(|frame| frame["event"] == event)
            {
                return frame;
            }
        }
    }
    panic!("{event} did not arrive in 20 polls");
}

fn socket_id(established: &Value) -> String {
    data_of(established)["socket_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn streaming_opens_subscribes_and_receives_published_events() {
    let app = spawn_app().await;
    let client = XhrClient::new(&app, APP.1, "123/abcdefgh");
    let mut stream = client.stream().await;
    assert_eq!(stream.next().await, Line::Open);
    let established = stream.next_frame().await;
    assert_eq!(established["event"], "pusher:connection_established");
    assert_eq!(data_of(&established)["activity_timeout"], 120);

    client.subscribe("news", "").await;
    let succeeded = stream.next_frame().await;
    assert_eq!(succeeded["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(succeeded["channel"], "news");

    let response = app.trigger("news", "headline", r#"{"n":1}"#, None).await;
    assert_eq!(response.status(), 200);
    let event = stream.expect_event("headline").await;
    assert_eq!(event["channel"], "news");
    assert_eq!(event["data"], r#"{"n":1}"#);

    // pusher-js's heartbeat is `[]`; ping/pong work as on a WebSocket.
    assert_eq!(client.send(&[]).await, 204);
    assert_eq!(
        client
            .send(&[json!({"event":"pusher:ping","data":{}})])
            .await,
        204
    );
    assert_eq!(stream.next_frame().await["event"], "pusher:pong");
}

#[tokio::test]
async fn polling_sends_open_once_then_frames_one_batch_per_poll() {
    let app = spawn_app().await;
    let client = XhrClient::new(&app, APP.1, "7/pollpoll");
    let first = client.poll().await;
    assert_eq!(first[0], Line::Open, "a new session starts with o");
    let established = match first.get(1) {
        Some(Line::Frames(frames)) => frames[0].clone(),
        _ => poll_until(&client, "pusher:connection_established").await,
    };
    assert_eq!(established["event"], "pusher:connection_established");

    client.subscribe("news", "").await;
    poll_until(&client, "pusher_internal:subscription_succeeded").await;
    // A poll waiting for frames is answered by the next event.
    let waiting = tokio::spawn({
        let client = XhrClient::new(&app, APP.1, "7/pollpoll");
        async move { client.poll().await }
    });
    let published = async {
        // The trigger may come before or after the poll arrives; either way the poll gets it.
        app.trigger("news", "headline", "1", None).await
    };
    assert_eq!(published.await.status(), 200);
    let lines = waiting.await.unwrap();
    let Some(Line::Frames(frames)) = lines.first() else {
        panic!("expected frames, got {lines:?}");
    };
    assert_eq!(frames[0]["event"], "headline");
    assert_eq!(lines.len(), 1, "a poll ends after its batch");
}

#[tokio::test]
async fn private_channels_and_client_events_between_xhr_and_websocket() {
    let app = spawn_app().await;
    let channel = "private-chat";
    let xhr = XhrClient::new(&app, APP.1, "42/chatchat");
    let mut stream = xhr.stream().await;
    assert_eq!(stream.next().await, Line::Open);
    let xhr_id = socket_id(&stream.next_frame().await);

    xhr.subscribe(channel, "key1:0000").await;
    assert_eq!(stream.next_frame().await["event"], "pusher:error");
    let refused = stream.next_frame().await;
    assert_eq!(refused["event"], "pusher:subscription_error");
    assert_eq!(data_of(&refused)["status"], 401);

    xhr.subscribe(channel, &channel_auth(&xhr_id, channel, None))
        .await;
    assert_eq!(
        stream.next_frame().await["event"],
        "pusher_internal:subscription_succeeded"
    );
    let (mut ws, ws_id) = app.connected(APP.1).await;
    ws.subscribe(channel, &channel_auth(&ws_id, channel, None), None)
        .await;

    let from_xhr = json!({"event":"client-typing","channel":channel,"data":{"who":"xhr"}});
    assert_eq!(xhr.send(&[from_xhr]).await, 204);
    let got = ws.expect_event("client-typing").await;
    assert_eq!(data_of(&got), json!({"who":"xhr"}));

    ws.send(json!({"event":"client-typing","channel":channel,"data":{"who":"ws"}}))
        .await;
    let got = stream.expect_event("client-typing").await;
    assert_eq!(data_of(&got), json!({"who":"ws"}));
    assert_eq!(got["user_id"], Value::Null);
}

#[tokio::test]
async fn unknown_keys_are_refused_like_websockets() {
    let app = spawn_app().await;
    for kind in ["xhr_streaming", "xhr"] {
        let client = XhrClient::new(&app, "nosuchkey", "1/refused0");
        let mut lines = Lines::new(client.receive(kind).await);
        assert_eq!(lines.next().await, Line::Open);
        let ((code, _), frames) = lines.expect_close().await;
        assert_eq!(code, 4001, "{kind}");
        assert_eq!(frames[0]["event"], "pusher:error");
        assert_eq!(frames[0]["data"]["code"], 4001);
    }
    // Nothing was opened: sending to that session finds nothing.
    let client = XhrClient::new(&app, "nosuchkey", "1/refused0");
    assert_eq!(client.send(&[json!({"event":"pusher:ping"})]).await, 404);
}

#[tokio::test]
async fn sessions_belong_to_their_key() {
    let app = spawn_app().await;
    // The same session path under two apps' keys: two sessions, each in its own app.
    let mine = XhrClient::new(&app, APP.1, "5/samesame");
    let other = XhrClient::new(&app, OTHER_APP.1, "5/samesame");
    let mut streams = Vec::new();
    for client in [&mine, &other] {
        let mut stream = client.stream().await;
        assert_eq!(stream.next().await, Line::Open);
        stream.expect_event("pusher:connection_established").await;
        client.subscribe("news", "").await;
        stream
            .expect_event("pusher_internal:subscription_succeeded")
            .await;
        streams.push(stream);
    }
    app.trigger("news", "for-app1", "x", None).await;
    let body = json!({"name":"for-app2","channel":"news","data":"y"});
    let path = format!("/apps/{}/events", OTHER_APP.0);
    let response = app.api(OTHER_APP, "POST", &path, &[], Some(&body)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(streams[0].next_frame().await["event"], "for-app1");
    assert_eq!(streams[1].next_frame().await["event"], "for-app2");
}

#[tokio::test]
async fn a_new_stream_takes_over_the_session_without_a_second_open() {
    let app = spawn_app().await;
    let client = XhrClient::new(&app, APP.1, "9/takeover");
    let mut first = client.stream().await;
    assert_eq!(first.next().await, Line::Open);
    first.expect_event("pusher:connection_established").await;
    client.subscribe("news", "").await;
    first
        .expect_event("pusher_internal:subscription_succeeded")
        .await;

    // pusher-js opens a fresh stream on the same session after 256 KB.
    let mut second = client.stream().await;
    assert!(
        first.next_or_end().await.is_none(),
        "the superseded stream ends"
    );
    app.trigger("news", "after", "1", None).await;
    let frame = second.next_frame().await;
    assert_eq!(frame["event"], "after", "no o, no new connection");
    client
        .send(&[json!({"event":"pusher:ping","data":{}})])
        .await;
    assert_eq!(second.next_frame().await["event"], "pusher:pong");
}

#[tokio::test]
async fn an_oversize_frame_closes_with_message_too_big() {
    let app = spawn_app().await;
    let client = XhrClient::new(&app, APP.1, "3/bigbig00");
    let mut stream = client.stream().await;
    assert_eq!(stream.next().await, Line::Open);
    stream.expect_event("pusher:connection_established").await;
    let big = json!({"event":"client-x","channel":"private-a","data":"x".repeat(70_000)});
    client.send(&[big]).await;
    let ((code, _), _) = stream.expect_close().await;
    assert_eq!(code, 1009);
    assert_eq!(client.send(&[json!({"event":"pusher:ping"})]).await, 404);
}

#[tokio::test]
async fn stopping_the_server_asks_xhr_clients_to_reconnect_with_4200() {
    let app = spawn_app().await;
    let client = XhrClient::new(&app, APP.1, "4/stopstop");
    let mut stream = client.stream().await;
    assert_eq!(stream.next().await, Line::Open);
    stream.expect_event("pusher:connection_established").await;
    let stopper = app.stopper.clone();
    let stopping = tokio::spawn(async move { stopper.stop().await });
    let ((code, _), _) = stream.expect_close().await;
    assert_eq!(code, 4200);
    stopping.await.unwrap();
}

#[tokio::test]
async fn idle_streams_get_heartbeats_and_an_abandoned_session_leaves_its_channels() {
    let app = spawn_app_with(EdgeSettings {
        xhr_heartbeat_interval: Duration::from_millis(200),
        xhr_session_grace: Duration::from_millis(500),
        ..EdgeSettings::default()
    })
    .await;
    let channel = "presence-room";
    let (mut watcher, watcher_id) = app.connected(APP.1).await;
    let bob = r#"{"user_id":"bob"}"#;
    watcher
        .subscribe(
            channel,
            &channel_auth(&watcher_id, channel, Some(bob)),
            Some(bob),
        )
        .await;

    let client = XhrClient::new(&app, APP.1, "8/leaving0");
    let mut stream = client.stream().await;
    assert_eq!(stream.next().await, Line::Open);
    let xhr_id = socket_id(&stream.next_frame().await);
    let ann = r#"{"user_id":"ann"}"#;
    let subscribe = json!({"event":"pusher:subscribe","data":{
        "channel":channel,"auth":channel_auth(&xhr_id, channel, Some(ann)),"channel_data":ann}});
    assert_eq!(client.send(&[subscribe]).await, 204);
    stream
        .expect_event("pusher_internal:subscription_succeeded")
        .await;
    let added = watcher.expect_event("pusher_internal:member_added").await;
    assert_eq!(data_of(&added)["user_id"], "ann");
    loop {
        if stream.next().await == Line::Heartbeat {
            break;
        }
    }

    // The client goes away without a word: after the grace period it has left.
    drop(stream);
    let removed = watcher.expect_event("pusher_internal:member_removed").await;
    assert_eq!(data_of(&removed), json!({"user_id":"ann"}));
    assert_eq!(client.send(&[json!({"event":"pusher:ping"})]).await, 404);
}

#[tokio::test]
async fn preflight_allows_cross_origin_posts() {
    let app = spawn_app().await;
    let url = format!(
        "http://127.0.0.1:{}/pusher/app/{}/1/preflite/xhr_send",
        app.port, APP.1
    );
    let response = app
        .http
        .request(reqwest::Method::OPTIONS, url)
        .header("origin", "http://page.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let headers = response.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://page.example"
    );
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert_eq!(headers["access-control-allow-headers"], "content-type");
}

#[tokio::test]
async fn a_stream_past_pusher_js_buffer_limit_waits_for_the_next_one_and_loses_nothing() {
    let app = spawn_app().await;
    let client = XhrClient::new(&app, APP.1, "6/rotation");
    let mut first = client.stream().await;
    assert_eq!(first.next().await, Line::Open);
    first.expect_event("pusher:connection_established").await;
    client.subscribe("bulk", "").await;
    first
        .expect_event("pusher_internal:subscription_succeeded")
        .await;
    // 40 events of 8,000 characters (some outside ASCII, counted as JavaScript counts them):
    // well past the 256 K characters after which pusher-js opens a fresh stream.
    let data = format!("{}é😀", "x".repeat(7_996));
    for n in 0..40 {
        let response = app.trigger("bulk", &format!("e{n}"), &data, None).await;
        assert_eq!(response.status(), 200);
    }
    let mut received = Vec::new();
    let read = |frames: Vec<Value>, received: &mut Vec<String>| {
        for frame in frames {
            if let Some(event) = frame["event"].as_str().filter(|e| e.starts_with('e')) {
                received.push(event.to_owned());
            }
        }
    };
    // Read the first stream as pusher-js does, until it has given more than 256 K.
    while first.consumed <= 256 * 1024 {
        if let Line::Frames(frames) = first.next().await {
            read(frames, &mut received);
        }
    }
    assert!(received.len() < 40);
    // The server stopped there (each write is one batch line): the rest waits for the next
    // stream, which supersedes this one.
    let mut second = client.stream().await;
    assert_eq!(first.next_or_end().await, None, "nothing after the limit");
    while received.len() < 40 {
        if let Line::Frames(frames) = second.next().await {
            read(frames, &mut received);
        }
    }
    let expected: Vec<String> = (0..40).map(|n| format!("e{n}")).collect();
    assert_eq!(received, expected, "every event once, in order");
}

/// Every `httpPath` works, `/sb` too, whose paths our own carriers' scope takes first, and
/// the empty one.
#[tokio::test]
async fn xhr_sessions_work_under_any_http_path() {
    let app = spawn_app().await;
    for (path, session) in [
        ("/sb", "8/underours"),
        ("", "9/noprefix"),
        ("/a/b", "10/deeper"),
    ] {
        let mut client = XhrClient::new(&app, APP.1, session);
        client.base = format!(
            "http://127.0.0.1:{}{path}/app/{}/{session}",
            app.port, APP.1
        );
        let first = client.poll().await;
        assert_eq!(
            first[0],
            Line::Open,
            "{path:?}: a new session starts with o"
        );
        client.subscribe("news", "").await;
        poll_until(&client, "pusher_internal:subscription_succeeded").await;
    }
}
