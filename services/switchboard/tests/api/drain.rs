//! Graceful drain: `/readyz` turns 503 before any client is closed, new clients are refused
//! with 4200 while connected ones carry on, then every client is closed with 4200; the binary
//! flushes usage and exits 0 on SIGTERM, and at once on a second signal.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use control::crypto::SecretsKey;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

use crate::carrier_client::{Carrier, Kind};
use crate::helpers::{APP, TestApp, WsClient, spawn_app};
use crate::platform::fresh_database;

/// Only a hang reaches it.
const HANG: Duration = Duration::from_secs(20);

async fn get(port: u16, path: &str) -> (StatusCode, String) {
    let response = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .expect("request sent");
    let status = response.status();
    (status, response.text().await.unwrap())
}

/// The `switchboard_draining` value in `/metrics`.
async fn draining_gauge(port: u16) -> String {
    let (_, text) = get(port, "/metrics").await;
    text.lines()
        .find_map(|line| line.strip_prefix("switchboard_draining "))
        .expect("switchboard_draining is reported")
        .to_owned()
}

/// A WebSocket refused at admission: `pusher:error` 4200, then the close 4200.
async fn expect_refused_with_4200(app: &TestApp) {
    let mut refused = app.connect(APP.1).await;
    let (closed, frames) = refused.expect_close().await;
    assert_eq!(closed.code, 4200, "{frames:?}");
    assert_eq!(frames[0]["event"], "pusher:error", "{frames:?}");
    assert_eq!(frames[0]["data"]["code"], 4200, "{frames:?}");
}

/// One pusher-js `xhr` poll of a new session: its whole answer.
async fn xhr_poll(app: &TestApp, session: &str) -> String {
    let url = format!(
        "http://127.0.0.1:{}/pusher/app/{}/{session}/xhr?protocol=7&client=js&version=8.6.0&t=1&n=1",
        app.port, APP.1
    );
    let response = app.http.post(url).send().await.expect("request sent");
    assert_eq!(response.status(), 200);
    tokio::time::timeout(HANG, response.text())
        .await
        .expect("answers in time")
        .unwrap()
}

async fn subscribed(app: &TestApp, channel: &str) -> WsClient {
    let (mut client, _) = app.connected(APP.1).await;
    let reply = client.subscribe(channel, "", None).await;
    assert_eq!(reply["event"], "pusher_internal:subscription_succeeded");
    client
}

#[tokio::test]
async fn readiness_turns_503_and_new_clients_are_refused_before_any_client_is_closed() {
    let app = spawn_app().await;
    assert_eq!(
        get(app.port, "/readyz").await,
        (StatusCode::OK, json!({"status":"ready"}).to_string())
    );
    assert_eq!(draining_gauge(app.port).await, "0");
    let mut client = subscribed(&app, "news").await;

    app.stopper.begin_drain();

    assert_eq!(
        get(app.port, "/readyz").await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status":"draining"}).to_string()
        )
    );
    assert_eq!(
        get(app.port, "/healthz").await,
        (StatusCode::OK, json!({"status":"ok"}).to_string()),
        "alive"
    );
    assert_eq!(draining_gauge(app.port).await, "1");
    // The connected client carries on, and the HTTP API still publishes to it.
    assert_eq!(
        app.trigger("news", "during-drain", "d", None)
            .await
            .status(),
        200
    );
    assert_eq!(client.expect_event("during-drain").await["channel"], "news");
    client.send(json!({"event":"pusher:ping","data":{}})).await;
    client.expect_event("pusher:pong").await;
    // Nobody new gets in: a WebSocket, one of our carriers' sessions, a pusher-js xhr session.
    expect_refused_with_4200(&app).await;
    let mut carrier = Carrier::new(&app, Kind::Sse, Vec::new());
    carrier.open().await;
    let error = carrier.next().await.unwrap();
    assert_eq!(
        (error["event"].as_str(), error["data"]["code"].as_u64()),
        (Some("pusher:error"), Some(4200))
    );
    let closed = carrier.next().await.unwrap();
    assert_eq!(
        (closed["event"].as_str(), closed["data"]["code"].as_u64()),
        (Some("switchboard:closed"), Some(4200))
    );
    let answer = xhr_poll(&app, "1/drainin0").await;
    assert!(
        answer.starts_with("o\n") && answer.contains("c[4200,"),
        "{answer}"
    );

    app.stopper.close_clients_and_stop().await;
    let (closed, _) = client.expect_close().await;
    assert_eq!(closed.code, 4200);
}

#[tokio::test]
async fn a_drain_closes_every_kind_of_client_with_4200() {
    let app = spawn_app().await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(subscribed(&app, "news").await);
    }
    let subs = vec![json!({"channel":"news"})];
    let mut stream = Carrier::new(&app, Kind::Stream, subs.clone());
    stream
        .expect_event("pusher_internal:subscription_succeeded")
        .await;
    // Attached downstreams (a poller between two requests would find the server gone, and
    // reconnect as after a 4200).
    let mut sse = Carrier::new(&app, Kind::Sse, subs);
    sse.expect_event("pusher_internal:subscription_succeeded")
        .await;
    let url = format!(
        "http://127.0.0.1:{}/pusher/app/{}/2/drainall/xhr_streaming?protocol=7&client=js&version=8.6.0&t=1&n=1",
        app.port, APP.1
    );
    let mut xhr = app.http.post(url).send().await.unwrap();
    let mut xhr_text = String::new();
    while !xhr_text.contains("connection_established") {
        let chunk = tokio::time::timeout(HANG, xhr.chunk()).await.unwrap();
        xhr_text.push_str(std::str::from_utf8(&chunk.unwrap().unwrap()).unwrap());
    }

    app.stopper.stop().await;

    for mut socket in sockets {
        let (closed, frames) = socket.expect_close().await;
        assert_eq!(closed.code, 4200, "{frames:?}");
    }
    for carrier in [&mut stream, &mut sse] {
        let error = carrier.expect_event("pusher:error").await;
        assert_eq!(error["data"]["code"], 4200, "{:?}", carrier.kind);
        let closed = carrier.expect_event("switchboard:closed").await;
        assert_eq!(closed["data"]["code"], 4200, "{:?}", carrier.kind);
    }
    while let Some(chunk) = tokio::time::timeout(HANG, xhr.chunk())
        .await
        .unwrap()
        .unwrap()
    {
        xhr_text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(xhr_text.contains("c[4200,"), "{xhr_text}");
}

#[tokio::test]
async fn healthz_reports_a_dependency_in_trouble_until_it_recovers_and_stays_200() {
    let settings = switchboard::startup::ServeSettings {
        host: "127.0.0.1".into(),
        port: 0,
        apps: Vec::new(),
        edge: edge::EdgeSettings::default(),
    };
    let application = switchboard::startup::Application::build(settings).expect("binds");
    let (port, edge) = (application.port(), application.edge_state().unwrap());
    tokio::spawn(application.run_until_stopped());
    let trouble_gauge = |text: String| {
        text.lines()
            .find_map(|line| {
                line.strip_prefix("switchboard_dependency_trouble{dependency=\"broker\"} ")
                    .map(str::to_owned)
            })
            .expect("the broker's figure")
    };

    edge.health
        .trouble("broker", "redis unreachable: connection refused");

    let (status, body) = get(port, "/healthz").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "alive: the node serves what it can alone"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"status":"degraded","troubles":{"broker":"redis unreachable: connection refused"}})
    );
    assert_eq!(trouble_gauge(get(port, "/metrics").await.1), "1");

    edge.health.recovered("broker");

    assert_eq!(
        get(port, "/healthz").await,
        (StatusCode::OK, json!({"status":"ok"}).to_string())
    );
    assert_eq!(trouble_gauge(get(port, "/metrics").await.1), "0");
}

/// The built binary, serving on a free port.
struct Served {
    child: Child,
    port: u16,
    /// Kept open, so the process never writes to a closed pipe.
    _stdout: std::io::BufReader<std::process::ChildStdout>,
    /// Its log lines (info and up), as they come.
    logged: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Served {
    fn start(args: &[&str], database: Option<(&str, &str)>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("SWITCHBOARD_DRAIN_DELAY")
            .env_remove("SWITCHBOARD_LOG_FORMAT")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((url, key)) = database {
            command
                .env("DATABASE_URL", url)
                .env("SWITCHBOARD_SECRETS_KEY", key);
        }
        let mut child = command.spawn().expect("the binary starts");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let port = first.trim().rsplit(':').next().unwrap().parse();
        let port = port.unwrap_or_else(|_| panic!("the port in {first:?}"));
        let (lines, logged) = tokio::sync::mpsc::unbounded_channel();
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            port,
            _stdout: stdout,
            logged,
        }
    }

    /// Waits for a log line containing `text`.
    async fn until_logged(&mut self, text: &str) {
        loop {
            let line = tokio::time::timeout(HANG, self.logged.recv()).await;
            let line = line.expect("logged in time").expect("the process logs");
            if line.contains(text) {
                return;
            }
        }
    }

    /// Clients and signed API calls for the binary. (`TestApp` comes with an in-process
    /// server's stopper, unused here: the binary is stopped by signals.)
    async fn app(&self) -> TestApp {
        let mut app = spawn_app().await;
        app.port = self.port;
        app
    }

    /// Sends SIGTERM, as an orchestrator does.
    fn terminate(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
    }

    /// Waits for the process to exit; its exit code.
    async fn exit_code(self) -> Option<i32> {
        let mut child = self.child;
        let waited = tokio::task::spawn_blocking(move || child.wait());
        let status = tokio::time::timeout(HANG, waited)
            .await
            .expect("the process exits in time");
        status.unwrap().unwrap().code()
    }
}

#[tokio::test]
async fn sigterm_closes_every_client_with_4200_flushes_usage_and_exits_0() {
    let (url, _database) = fresh_database().await;
    let key = SecretsKey::generate_base64();
    let app_spec = format!("{}:{}:{}", APP.0, APP.1, APP.2);
    let served = Served::start(
        &["--app", &app_spec, "--drain-delay", "0"],
        Some((&url, &key)),
    );
    let app = served.app().await;
    let mut first = subscribed(&app, "news").await;
    let mut second = subscribed(&app, "news").await;
    assert_eq!(app.trigger("news", "before", "d", None).await.status(), 200);
    for client in [&mut first, &mut second] {
        client.expect_event("before").await;
    }

    served.terminate();

    for mut client in [first, second] {
        let (closed, _) = client.expect_close().await;
        assert_eq!(closed.code, 4200);
    }
    assert_eq!(served.exit_code().await, Some(0));
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let (opened, published, delivered): (i64, i64, i64) = sqlx::query_as(
        "SELECT SUM(connections_opened)::bigint, SUM(messages_published)::bigint, \
         SUM(messages_delivered)::bigint FROM usage_minutes WHERE app_id = $1",
    )
    .bind(APP.0)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        (opened, published, delivered),
        (2, 1, 2),
        "usage flushed at exit"
    );
}

#[tokio::test]
async fn a_client_open_during_the_drain_delay_sees_readyz_503_and_a_second_signal_exits_at_once() {
    let app_spec = format!("{}:{}:{}", APP.0, APP.1, APP.2);
    let mut served = Served::start(&["--app", &app_spec, "--drain-delay", "600"], None);
    let app = served.app().await;
    let mut client = subscribed(&app, "news").await;
    assert_eq!(get(app.port, "/readyz").await.0, StatusCode::OK);

    served.terminate();

    // Logged once the node is marked draining.
    served.until_logged("draining: /readyz answers 503").await;
    assert_eq!(
        get(app.port, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Still open, still served, while the load balancer takes the node out.
    client.send(json!({"event":"pusher:ping","data":{}})).await;
    client.expect_event("pusher:pong").await;
    assert_eq!(app.trigger("news", "still", "d", None).await.status(), 200);
    client.expect_event("still").await;
    assert_eq!(draining_gauge(app.port).await, "1");
    expect_refused_with_4200(&app).await;

    served.terminate();

    assert_eq!(
        served.exit_code().await,
        Some(switchboard::run::EXIT_INTERRUPTED_DRAIN)
    );
    let after: Option<Value> = client.next_json_or_closed().await;
    assert_eq!(after, None, "the connection is gone with the process");
}
