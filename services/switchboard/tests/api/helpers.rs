//! `spawn_app` and clients that speak the protocol and sign API requests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edge::EdgeSettings;
use futures_util::{SinkExt, StreamExt};
use protocol::sign::{body_md5_hex, hmac_hex};
use serde_json::{Value, json};
use switchboard::startup::{Application, ServeSettings};
use tenancy::AppSpec;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Two apps, so every test can check that one never sees the other.
pub const APP: (&str, &str, &str) = ("app1", "key1", "secret1");
pub const OTHER_APP: (&str, &str, &str) = ("app2", "key2", "secret2");

/// Long enough for any healthy step on a loaded CI machine; only a hang reaches it.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

pub struct TestApp {
    pub port: u16,
    pub http: reqwest::Client,
    pub stopper: switchboard::startup::Stopper,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(EdgeSettings::default()).await
}

fn test_apps() -> Vec<AppSpec> {
    [APP, OTHER_APP]
        .iter()
        .map(|(id, key, secret)| AppSpec::parse(&format!("{id}:{key}:{secret}")).unwrap())
        .collect()
}

/// An edge on the cluster whose Redis is at `broker_url`, as `serve --broker URL` runs it.
pub async fn spawn_app_on_broker(broker_url: &str) -> TestApp {
    spawn_app_on_broker_with(broker_url, tenancy::PlanLimits::pusher_defaults()).await
}

/// As `spawn_app_on_broker`, with the test apps on `limits`.
pub async fn spawn_app_on_broker_with(broker_url: &str, limits: tenancy::PlanLimits) -> TestApp {
    spawn_app_on_broker_watched(broker_url, limits).await.0
}

/// As `spawn_app_on_broker`, reporting webhook events to `webhooks`.
pub async fn spawn_app_on_broker_reporting(
    broker_url: &str,
    webhooks: std::sync::Arc<dyn tenancy::WebhookSink>,
) -> TestApp {
    let limits = tenancy::PlanLimits::pusher_defaults();
    let settings = EdgeSettings::default();
    spawn_edge_on_broker(broker_url, limits, settings, Some(webhooks))
        .await
        .0
}

/// As `spawn_app_on_broker`, with these edge settings.
pub async fn spawn_app_on_broker_with_settings(
    broker_url: &str,
    settings: EdgeSettings,
) -> TestApp {
    let limits = tenancy::PlanLimits::pusher_defaults();
    spawn_edge_on_broker(broker_url, limits, settings, None)
        .await
        .0
}

/// As `spawn_app_on_broker_with`, with the edge's health, whose `changes` tell when the
/// Redis trouble it reports starts and ends.
pub async fn spawn_app_on_broker_watched(
    broker_url: &str,
    limits: tenancy::PlanLimits,
) -> (TestApp, std::sync::Arc<edge::health::Health>) {
    spawn_edge_on_broker(broker_url, limits, EdgeSettings::default(), None).await
}

async fn spawn_edge_on_broker(
    broker_url: &str,
    limits: tenancy::PlanLimits,
    settings: EdgeSettings,
    webhooks: Option<std::sync::Arc<dyn tenancy::WebhookSink>>,
) -> (TestApp, std::sync::Arc<edge::health::Health>) {
    use std::sync::Arc;
    use switchboard::startup::Parts;

    let node = switchboard::broker::build_node(broker_url, &settings, broker::NodeSettings::new())
        .await
        .expect("joins the cluster");
    let catalog = Arc::new(tenancy::StaticCatalog::with_limits(&test_apps(), limits));
    let parts = Parts {
        edge: Some((catalog, settings)),
        control: None,
        usage: None,
        webhooks,
    };
    let application =
        Application::build_on("127.0.0.1", 0, parts, Some(node)).expect("server binds");
    let port = application.port();
    let stopper = application.stopper();
    let health = application.edge_state().expect("an edge").health.clone();
    tokio::spawn(application.run_until_stopped());
    let app = TestApp {
        port,
        http: reqwest::Client::new(),
        stopper,
    };
    (app, health)
}

pub async fn spawn_app_with(edge: EdgeSettings) -> TestApp {
    let apps = test_apps();
    let settings = ServeSettings {
        host: "127.0.0.1".into(),
        port: 0,
        apps,
        edge,
    };
    let application = Application::build(settings).expect("server binds");
    let port = application.port();
    let stopper = application.stopper();
    tokio::spawn(application.run_until_stopped());
    TestApp {
        port,
        http: reqwest::Client::new(),
        stopper,
    }
}

impl TestApp {
    pub async fn connect(&self, key: &str) -> WsClient {
        let url = format!(
            "ws://127.0.0.1:{}/app/{key}?protocol=7&client=test&version=1",
            self.port
        );
        self.connect_url(&url).await
    }

    pub async fn connect_url(&self, url: &str) -> WsClient {
        ws_connect(url).await
    }

    /// The value of `series` (its name and labels, as `/metrics` writes them, e.g.
    /// `switchboard_stored_bytes{store="history"}`), if there.
    pub async fn metric_if_any(&self, series: &str) -> Option<u64> {
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        let text = self
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.parse().unwrap())
    }

    /// The value of `series` in `/metrics`; panics if it is not there.
    pub async fn metric(&self, series: &str) -> u64 {
        self.metric_if_any(series)
            .await
            .unwrap_or_else(|| panic!("{series} is not in /metrics"))
    }

    /// A connected client with its socket id.
    pub async fn connected(&self, key: &str) -> (WsClient, String) {
        let mut client = self.connect(key).await;
        let established = client.expect_event("pusher:connection_established").await;
        let data: Value = serde_json::from_str(established["data"].as_str().unwrap()).unwrap();
        (client, data["socket_id"].as_str().unwrap().to_owned())
    }

    /// A signed API request for `app`.
    pub async fn api(
        &self,
        app: (&str, &str, &str),
        method: &str,
        path: &str,
        params: &[(&str, &str)],
        body: Option<&Value>,
    ) -> reqwest::Response {
        let (_, key, secret) = app;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string();
        self.api_signed_at(key, secret, &timestamp, method, path, params, body)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn api_signed_at(
        &self,
        key: &str,
        secret: &str,
        timestamp: &str,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
        body: Option<&Value>,
    ) -> reqwest::Response {
        let to = (&self.http, self.port);
        signed_api(to, (key, secret), timestamp, method, path, params, body).await
    }

    pub async fn trigger(
        &self,
        channel: &str,
        event: &str,
        data: &str,
        socket_id: Option<&str>,
    ) -> reqwest::Response {
        let mut body = json!({ "name": event, "channel": channel, "data": data });
        if let Some(socket_id) = socket_id {
            body["socket_id"] = json!(socket_id);
        }
        self.api(
            APP,
            "POST",
            &format!("/apps/{}/events", APP.0),
            &[],
            Some(&body),
        )
        .await
    }
}

pub fn channel_auth(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    let (_, key, secret) = APP;
    channel_auth_with(key, secret, socket_id, channel, channel_data)
}

/// A channel authorization signed with the credentials of any app.
pub fn channel_auth_with(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    let signed = protocol::sign::channel_auth_string(socket_id, channel, channel_data);
    format!("{key}:{}", hmac_hex(secret, &signed))
}

pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq)]
pub struct Closed {
    pub code: u16,
}

impl WsClient {
    pub async fn send(&mut self, frame: Value) {
        self.stream
            .send(Message::text(frame.to_string()))
            .await
            .expect("frame sent");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.stream.send(message).await.expect("frame sent");
    }

    /// The next text frame, parsed; panics on close or timeout.
    pub async fn next_json(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(STEP_TIMEOUT, self.stream.next())
                .await
                .expect("a frame arrives in time")
                .expect("the connection is open")
                .expect("a valid frame");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
                Message::Close(frame) => panic!("connection closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// The next text frame, parsed, or `None` once the connection has closed (either side).
    pub async fn next_json_or_closed(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(STEP_TIMEOUT, self.stream.next())
                .await
                .expect("a frame or the close arrives in time");
            match message {
                Some(Ok(Message::Text(text))) => {
                    return Some(serde_json::from_str(&text).expect("JSON frame"));
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next text frame, parsed, or how the connection ended.
    pub async fn next_json_or_close(&mut self) -> Result<Value, Closed> {
        loop {
            let message = tokio::time::timeout(STEP_TIMEOUT, self.stream.next())
                .await
                .expect("a frame or the close arrives in time");
            match message {
                Some(Ok(Message::Text(text))) => {
                    return Ok(serde_json::from_str(&text).expect("JSON frame"));
                }
                Some(Ok(Message::Close(Some(CloseFrame { code, .. })))) => {
                    return Err(Closed { code: code.into() });
                }
                Some(Ok(Message::Close(None))) | Some(Err(_)) | None => {
                    return Err(Closed { code: 1006 });
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next text frame, whatever it is (alias of `next_json` for admission checks).
    pub async fn next_frame(&mut self) -> Value {
        self.next_json().await
    }

    /// Skips frames until one with this event name arrives.
    pub async fn expect_event(&mut self, event: &str) -> Value {
        loop {
            let frame = self.next_json().await;
            if frame["event"] == event {
                return frame;
            }
        }
    }

    /// Reads until the server closes; returns the close code and the frames before it.
    pub async fn expect_close(&mut self) -> (Closed, Vec<Value>) {
        let mut frames = Vec::new();
        loop {
            let next = tokio::time::timeout(STEP_TIMEOUT, self.stream.next())
                .await
                .expect("closes in time");
            match next {
                Some(Ok(Message::Text(text))) => frames.push(serde_json::from_str(&text).unwrap()),
                Some(Ok(Message::Close(Some(CloseFrame { code, .. })))) => {
                    return (Closed { code: code.into() }, frames);
                }
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                    return (Closed { code: 1006 }, frames);
                }
                Some(Ok(_)) => {}
            }
        }
    }

    pub async fn subscribe(
        &mut self,
        channel: &str,
        auth: &str,
        channel_data: Option<&str>,
    ) -> Value {
        let mut data = json!({ "channel": channel, "auth": auth });
        if let Some(channel_data) = channel_data {
            data["channel_data"] = json!(channel_data);
        }
        self.send(json!({ "event": "pusher:subscribe", "data": data }))
            .await;
        self.next_json().await
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
        // Wait for the server's side of the close so its clean-up has run.
        while let Some(Ok(_)) = self.stream.next().await {}
    }
}

/// An HTTP client whose requests come from 127.0.0.2: another client address than the tests'
/// own, for checking that a limit per address spares everyone else.
pub fn http_from_another_address() -> reqwest::Client {
    let other: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    reqwest::Client::builder()
        .local_address(other)
        .build()
        .unwrap()
}

/// Asserts a 429 whose `Retry-After` asks for one second to a minute.
pub fn assert_too_many_requests(response: &reqwest::Response) {
    assert_eq!(response.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
}

/// A WebSocket client on `url`.
pub async fn ws_connect(url: &str) -> WsClient {
    let (stream, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects");
    WsClient { stream }
}

/// A WebSocket client on `url` whose handshake carries `Origin: origin`, as a browser's does.
pub async fn ws_connect_from(url: &str, origin: &str) -> WsClient {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().expect("a WebSocket URL");
    request
        .headers_mut()
        .insert("Origin", origin.parse().expect("an origin header value"));
    let (stream, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket connects");
    WsClient { stream }
}

/// A request to the HTTP API on `port`, signed with `(key, secret)` at `timestamp`.
pub async fn signed_api(
    (http, port): (&reqwest::Client, u16),
    (key, secret): (&str, &str),
    timestamp: &str,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: Option<&Value>,
) -> reqwest::Response {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut query: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    query.push(("auth_key".into(), key.into()));
    query.push(("auth_timestamp".into(), timestamp.into()));
    query.push(("auth_version".into(), "1.0".into()));
    if !body.is_empty() {
        query.push(("body_md5".into(), body_md5_hex(body.as_bytes())));
    }
    query.sort();
    let canonical: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let signature = hmac_hex(
        secret,
        &format!("{method}\n{path}\n{}", canonical.join("&")),
    );
    query.push(("auth_signature".into(), signature));
    let url = format!("http://127.0.0.1:{port}{path}");
    let request = match method {
        "POST" => http
            .post(url)
            .header("content-type", "application/json")
            .body(body),
        _ => http.get(url),
    };
    request.query(&query).send().await.expect("request sent")
}

/// Parses the string `data` of a server frame.
pub fn data_of(frame: &Value) -> Value {
    serde_json::from_str(frame["data"].as_str().expect("data is a string")).expect("data is JSON")
}
