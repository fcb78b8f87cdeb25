//! OpenTelemetry traces as an operator gets them: `switchboard serve` processes exporting
//! OTLP/HTTP (protobuf) to a receiver on loopback. A publish through one node of a Redis
//! cluster and its delivery on another are one trace; a node with traces switched off exports
//! nothing; a `/v1` request comes with its SQL; no key, secret or payload is in any attribute.
//!
//! Every process is stopped with SIGTERM and waited for: a graceful exit exports what is
//! queued, so the test reads the receiver once they are gone, never after a sleep.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use control::crypto::SecretsKey;
use serde_json::json;
use testkit::RedisServer;

use crate::binary::{SERVE_ON_ANY_PORT, switchboard_command};
use crate::helpers::{WsClient, signed_api, ws_connect};
use crate::otlp_receiver::{OtlpReceiver, ReceivedSpan};
use crate::platform::fresh_database;

/// An app whose key and secret are long enough that finding them by accident is impossible.
const TRACED_APP: (&str, &str, &str) = (
    "traced-app",
    "tracedkey7c1e9a04b2f54d63",
    "tracedsecret91d2f0c7a8e34b5e",
);
const HANG: Duration = Duration::from_secs(60);

/// A `switchboard serve` process with `env`, stopped with SIGTERM.
struct Node {
    child: Child,
    port: u16,
    /// Kept open: a server writing to a closed stdout would fail.
    _stdout: BufReader<ChildStdout>,
}

impl Node {
    fn start(broker: &str, env: &[(&str, &str)]) -> Self {
        let app = format!("{}:{}:{}", TRACED_APP.0, TRACED_APP.1, TRACED_APP.2);
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .args(SERVE_ON_ANY_PORT)
            .args(["--app", &app, "--broker", broker, "--drain-delay", "0"])
            .env_remove("DATABASE_URL")
            .env_remove("SWITCHBOARD_BROKER");
        Self::spawn(command, env)
    }

    fn spawn(mut command: Command, env: &[(&str, &str)]) -> Self {
        for variable in OTEL_VARIABLES {
            command.env_remove(variable);
        }
        let mut child = command
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let port = loop {
            line.clear();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "exited early");
            let address = line.trim().strip_prefix("switchboard listening on ");
            if let Some(port) = address.and_then(|at| at.rsplit(':').next()?.parse().ok()) {
                break port;
            }
        };
        Self {
            child,
            port,
            _stdout: stdout,
        }
    }

    async fn subscriber(&self, channel: &str) -> WsClient {
        let url = format!(
            "ws://127.0.0.1:{}/app/{}?protocol=7&client=test&version=1",
            self.port, TRACED_APP.1
        );
        let mut client = ws_connect(&url).await;
        client.expect_event("pusher:connection_established").await;
        let joined = client.subscribe(channel, "", None).await;
        assert_eq!(joined["event"], "pusher_internal:subscription_succeeded");
        client
    }

    async fn publish(&self, channel: &str, data: &str) {
        let body = json!({ "name": "order-placed", "channel": channel, "data": data });
        let response = signed_api(
            (&reqwest::Client::new(), self.port),
            (TRACED_APP.1, TRACED_APP.2),
            &unix_now(),
            "POST",
            &format!("/apps/{}/events", TRACED_APP.0),
            &[],
            Some(&body),
        )
        .await;
        assert_eq!(response.status(), 200);
    }

    /// SIGTERM, then waits for the drain to finish: the process exits 0 once its last spans
    /// are exported.
    async fn stop(self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let mut child = self.child;
        let waited = tokio::task::spawn_blocking(move || child.wait());
        let status = tokio::time::timeout(HANG, waited)
            .await
            .expect("the process exits in time");
        assert_eq!(status.unwrap().unwrap().code(), Some(0));
    }
}

/// Cleared for every process: only what a test sets reaches it.
const OTEL_VARIABLES: [&str; 8] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
];

fn traced(receiver: &OtlpReceiver, service: &'static str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("OTEL_SERVICE_NAME", service.to_owned()),
        // Short batches; the test still waits on the processes' exits, not on this.
        ("OTEL_BSP_SCHEDULE_DELAY", "50".to_owned()),
    ]
}

fn as_env<'a>(variables: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    variables
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect()
}

fn unix_now() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string()
}

fn named<'a>(spans: &'a [ReceivedSpan], service: &str, name: &str) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|span| span.service == service && span.name == name)
        .collect()
}

fn parent_of<'a>(spans: &'a [ReceivedSpan], child: &ReceivedSpan) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|span| span.span_id == child.parent_span_id && span.trace_id == child.trace_id)
        .unwrap_or_else(|| panic!("the parent of {} was exported", child.name))
}

/// No span carries any of `secrets` in its name, attributes, events or resource.
fn assert_nothing_leaks(spans: &[ReceivedSpan], secrets: &[&str]) {
    for span in spans {
        for text in span.all_strings() {
            for secret in secrets {
                assert!(
                    !text.contains(secret),
                    "{secret:?} in span {} ({}): {text:?}",
                    span.name,
                    span.service
                );
            }
        }
    }
}

#[tokio::test]
async fn a_publish_on_one_node_and_its_delivery_on_another_are_one_trace_without_secrets() {
    let redis = RedisServer::start();
    let receiver = OtlpReceiver::start();
    let node_a = Node::start(&redis.url(), &as_env(&traced(&receiver, "edge-a")));
    let node_b = Node::start(&redis.url(), &as_env(&traced(&receiver, "edge-b")));
    // Pointed at the receiver too, but switched off the standard way.
    let mut untraced = traced(&receiver, "edge-untraced");
    untraced.push(("OTEL_SDK_DISABLED", "true".to_owned()));
    let node_off = Node::start(&redis.url(), &as_env(&untraced));

    let channel = "orders-for-customer-4711";
    let payload = "card ending 4242, deliver to 1 Main St";
    let mut on_b = Vec::new();
    for _ in 0..3 {
        on_b.push(node_b.subscriber(channel).await);
    }
    let mut on_a = node_a.subscriber(channel).await;

    node_a.publish(channel, payload).await;
    for subscriber in on_b.iter_mut().chain([&mut on_a]) {
        let event = subscriber.expect_event("order-placed").await;
        assert_eq!(event["data"], payload);
    }
    // Through the node with traces off: its message carries no context, and B still delivers.
    node_off.publish(channel, "untraced").await;
    for subscriber in on_b.iter_mut().chain([&mut on_a]) {
        let event = subscriber.expect_event("order-placed").await;
        assert_eq!(event["data"], "untraced");
    }
    for node in [node_a, node_b, node_off] {
        node.stop().await;
    }

    let spans = receiver.spans();
    assert_eq!(receiver.refused(), Vec::<String>::new());
    assert!(
        spans.iter().all(|span| span.service != "edge-untraced"),
        "a node with OTEL_SDK_DISABLED=true exports nothing"
    );
    // Node A: the request, its publish, the Redis step.
    let publishes = named(&spans, "edge-a", "publish");
    assert_eq!(publishes.len(), 1, "one publish span per event published");
    let publish = publishes[0];
    assert_eq!(publish.attribute("app_id"), Some(TRACED_APP.0));
    let handler = parent_of(&spans, publish);
    assert_eq!(handler.name, "trigger");
    let request = parent_of(&spans, handler);
    assert_eq!(request.name, "POST /apps/{app_id}/events");
    assert_eq!(request.attribute("http.response.status_code"), Some("200"));
    let redis_publish = named(&spans, "edge-a", "redis.publish");
    let redis_publish = redis_publish
        .iter()
        .find(|span| span.trace_id == publish.trace_id)
        .expect("the Redis step is in the publish's trace");
    assert_eq!(redis_publish.parent_span_id, publish.span_id);

    // Node B: one delivery span per publication, not one per subscriber; the traced one is a
    // child of node A's Redis step, in the same trace.
    let deliveries = named(&spans, "edge-b", "broker.deliver");
    assert_eq!(deliveries.len(), 2, "one per publication: {deliveries:#?}");
    let delivery = deliveries
        .iter()
        .find(|span| span.trace_id == publish.trace_id)
        .expect("node B's delivery is in node A's trace");
    assert_eq!(delivery.parent_span_id, redis_publish.span_id);
    assert_eq!(delivery.attribute("subscribers"), Some("3"));
    let untraced_delivery = deliveries
        .iter()
        .find(|span| span.trace_id != publish.trace_id)
        .unwrap();
    assert!(
        untraced_delivery.parent_span_id.is_empty(),
        "a message without a context starts a trace of its own"
    );
    // Node A delivers to its own subscriber in the same trace.
    let own = named(&spans, "edge-a", "broker.deliver");
    assert!(
        own.iter()
            .any(|span| span.trace_id == publish.trace_id
                && span.attribute("subscribers") == Some("1")),
        "{own:#?}"
    );

    assert_nothing_leaks(
        &spans,
        &[
            TRACED_APP.1,
            TRACED_APP.2,
            payload,
            "card ending",
            channel,
            "order-placed",
            "auth_signature",
            "auth_key",
        ],
    );
}

#[tokio::test]
async fn a_v1_request_is_traced_with_its_sql_and_without_its_password() {
    let (url, _database) = fresh_database().await;
    let receiver = OtlpReceiver::start();
    let secrets_key = SecretsKey::generate_base64();
    let mut command = switchboard_command(&url, &secrets_key);
    command.args(SERVE_ON_ANY_PORT).args(["--drain-delay", "0"]);
    let env = traced(&receiver, "control");
    let node = Node::spawn(command, &as_env(&env));

    let password = "correct horse battery staple 9f2c";
    let email = "traced-owner@example.com";
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/signup", node.port))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .map(|value| value.split(';').next().unwrap_or_default().to_owned())
        .expect("a session cookie");
    node.stop().await;

    let spans = receiver.spans();
    assert_eq!(receiver.refused(), Vec::<String>::new());
    let signups = named(&spans, "control", "POST /v1/signup");
    assert_eq!(signups.len(), 1, "{spans:#?}");
    let signup = signups[0];
    assert_eq!(signup.attribute("http.route"), Some("/v1/signup"));
    assert_eq!(signup.attribute("http.response.status_code"), Some("201"));
    // Its repository calls are spans in the same trace, each with sqlx's statements.
    let in_trace: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|span| span.trace_id == signup.trace_id && span.name.starts_with("db."))
        .collect();
    let insert = in_trace
        .iter()
        .find(|span| span.name == "db.accounts.insert")
        .unwrap_or_else(|| panic!("the account's INSERT is traced: {in_trace:#?}"));
    let handler = parent_of(&spans, insert);
    assert_eq!(handler.name, "sign_up");
    assert_eq!(handler.parent_span_id, signup.span_id);
    assert!(
        in_trace.iter().any(|span| span
            .other_strings
            .iter()
            .any(|text| text.to_ascii_uppercase().contains("INSERT INTO"))),
        "sqlx's statement is recorded on the repository span: {in_trace:#?}"
    );
    let session = cookie.split_once('=').map(|(_, value)| value).unwrap();
    assert_nothing_leaks(&spans, &[password, session, &secrets_key, email]);
}
