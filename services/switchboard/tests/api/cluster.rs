//! Two edges on one Redis (`--broker`) behave as one platform: a subscriber on one gets
//! what is published through the other, with its serial, and presence is one view. In
//! process (`spawn_app_on_broker`) and as two `switchboard serve` processes.

use serde_json::{Value, json};
use testkit::RedisServer;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::helpers::{
    APP, TestApp, channel_auth, data_of, signed_api, spawn_app_on_broker, ws_connect,
};

#[tokio::test]
async fn an_event_published_through_one_edge_reaches_a_subscriber_on_another_with_its_serial() {
    let redis = RedisServer::start();
    fan_out_across_edges(&redis.url()).await;
}

#[tokio::test]
async fn an_event_crosses_edges_on_a_three_master_redis_cluster_too() {
    let cluster = testkit::RedisCluster::start();
    fan_out_across_edges(&cluster.url()).await;
}

async fn fan_out_across_edges(broker_url: &str) {
    let edge_a = spawn_app_on_broker(broker_url).await;
    let edge_b = spawn_app_on_broker(broker_url).await;

    let (mut subscriber, _) = edge_a.connected(APP.1).await;
    let joined = subscriber.subscribe("news", "", None).await;
    assert_eq!(joined["event"], "pusher_internal:subscription_succeeded");

    for n in 1..=2 {
        let response = edge_b
            .trigger("news", "story", &format!("s{n}"), None)
            .await;
        assert_eq!(response.status(), 200);
    }
    for n in 1..=2 {
        let event = subscriber.expect_event("story").await;
        assert_eq!(event["data"], format!("s{n}"));
        assert_eq!(event["serial"], n, "one serial order across edges: {event}");
    }

    // A subscriber arriving on edge B is told the same position edge A's events carry.
    let (mut late, _) = edge_b.connected(APP.1).await;
    let joined = late.subscribe("news", "", None).await;
    let told = data_of(&joined);
    let first = edge_a.trigger("news", "story", "s3", None).await;
    assert_eq!(first.status(), 200);
    let on_b = late.expect_event("story").await;
    let on_a = subscriber.expect_event("story").await;
    assert_eq!(on_a, on_b, "both edges deliver the same frame");
    assert_eq!(on_b["serial"], 3);
    assert_eq!(told["serial"], 2, "edge B knows edge A's serials: {told}");
    assert_eq!(on_b["epoch"], told["epoch"]);
}

#[tokio::test]
async fn presence_across_edges_is_one_view_and_members_are_announced_once() {
    let redis = RedisServer::start();
    let edge_a = spawn_app_on_broker(&redis.url()).await;
    let edge_b = spawn_app_on_broker(&redis.url()).await;
    let room = "presence-room";
    let ann = r#"{"user_id":"ann"}"#;
    let bob = r#"{"user_id":"bob"}"#;

    let (mut ann_on_a, ann_id) = edge_a.connected(APP.1).await;
    ann_on_a
        .subscribe(room, &channel_auth(&ann_id, room, Some(ann)), Some(ann))
        .await;
    let (mut bob_on_b, bob_id) = edge_b.connected(APP.1).await;
    let joined = bob_on_b
        .subscribe(room, &channel_auth(&bob_id, room, Some(bob)), Some(bob))
        .await;
    assert_eq!(data_of(&joined)["presence"]["count"], 2, "{joined}");
    let added = ann_on_a.expect_event("pusher_internal:member_added").await;
    assert_eq!(data_of(&added)["user_id"], "bob");

    // Ann's second tab, on the other edge, is not a new member: no one is told.
    let (mut ann_on_b, ann_tab_id) = edge_b.connected(APP.1).await;
    let joined = ann_on_b
        .subscribe(room, &channel_auth(&ann_tab_id, room, Some(ann)), Some(ann))
        .await;
    assert_eq!(data_of(&joined)["presence"]["count"], 2);

    let expected = json!({"users":[{"id":"ann"},{"id":"bob"}]});
    assert_eq!(users(&edge_a, room).await, expected);
    assert_eq!(users(&edge_b, room).await, expected);

    // Bob leaves on B: Ann hears it on A once; then a marker event proves nothing else came.
    bob_on_b.close().await;
    let removed = ann_on_a
        .expect_event("pusher_internal:member_removed")
        .await;
    assert_eq!(data_of(&removed)["user_id"], "bob");
    edge_b.trigger(room, "marker", "m", None).await;
    let next = ann_on_a.next_frame().await;
    assert_eq!(
        next["event"], "marker",
        "member_added/removed came once: {next}"
    );
}

/// The channel's users as one edge's HTTP API answers.
async fn users(edge: &TestApp, room: &str) -> Value {
    let path = format!("/apps/{}/channels/{room}/users", APP.0);
    let response = edge.api(APP, "GET", &path, &[], None).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// A `switchboard serve` process, killed on drop.
pub struct ServeProcess {
    child: Child,
    pub port: u16,
}

impl ServeProcess {
    /// Kills the process with SIGKILL, as a crash would: it leaves nothing, says nothing.
    pub fn kill(&mut self) {
        self.child.kill().expect("the process is killed");
        self.child.wait().expect("the killed process is reaped");
    }

    /// Starts the binary with `args` (and `env`) and waits for it to say where it listens.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let app = format!("{}:{}:{}", APP.0, APP.1, APP.2);
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["serve", "--host", "127.0.0.1", "--port", "0", "--app", &app])
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("SWITCHBOARD_BROKER")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let port = stdout
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                let address = line.strip_prefix("switchboard listening on ")?;
                address.rsplit(':').next()?.parse().ok()
            })
            .expect("the server says where it listens");
        Self { child, port }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn two_serve_processes_on_one_redis_by_flag_and_by_env_are_one_platform() {
    let redis = RedisServer::start();
    let url = redis.url();
    let edge_a = ServeProcess::start(&["--broker", &url], &[]);
    let edge_b = ServeProcess::start(&[], &[("SWITCHBOARD_BROKER", &url)]);

    let mut subscriber = ws_connect(&format!(
        "ws://127.0.0.1:{}/app/{}?protocol=7&client=test&version=1",
        edge_a.port, APP.1
    ))
    .await;
    subscriber
        .expect_event("pusher:connection_established")
        .await;
    let joined = subscriber.subscribe("news", "", None).await;
    assert_eq!(joined["event"], "pusher_internal:subscription_succeeded");

    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let body = json!({ "name": "story", "channel": "news", "data": "through B" });
    let response = signed_api(
        (&reqwest::Client::new(), edge_b.port),
        (APP.1, APP.2),
        &timestamp,
        "POST",
        &format!("/apps/{}/events", APP.0),
        &[],
        Some(&body),
    )
    .await;
    assert_eq!(response.status(), 200);
    let event = subscriber.expect_event("story").await;
    assert_eq!(event["data"], "through B");
    assert_eq!(event["serial"], 1, "{event}");
}

#[tokio::test]
async fn a_broker_url_that_is_not_redis_or_not_reachable_is_refused_at_start() {
    let (hub, _) = switchboard::startup::NodeBroker::hub();
    let settings = edge::EdgeSettings::default();
    let build =
        |url: &'static str| switchboard::broker::build_broker(Some(url), hub.clone(), &settings);
    let not_redis = build("http://127.0.0.1:6379").await.err().expect("refused");
    assert!(not_redis.to_string().contains("redis://"), "{not_redis}");
    // Port 1 on loopback refuses connections: the edge stops with a clear error.
    let unreachable = build("redis://:hunter2@127.0.0.1:1/0")
        .await
        .err()
        .expect("refused");
    let message = format!("{unreachable:#}");
    assert!(message.contains("connecting to the broker"), "{message}");
    assert!(
        !message.contains("hunter2"),
        "the password is not logged: {message}"
    );
}

/// How many connections are subscribed to the pub/sub channel of `news` of the test app.
async fn node_subscriptions(redis: &RedisServer) -> i64 {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let channel = format!("sb:m:{{{}:news}}", APP.0);
    let (_, count): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(&channel)
        .query_async(&mut connection)
        .await
        .unwrap();
    count
}

#[tokio::test]
async fn a_node_subscribes_to_a_channel_once_however_many_of_its_clients_do() {
    let redis = RedisServer::start();
    let edge = spawn_app_on_broker(&redis.url()).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (mut client, _) = edge.connected(APP.1).await;
        client.subscribe("news", "", None).await;
        clients.push(client);
    }
    assert_eq!(
        node_subscriptions(&redis).await,
        1,
        "one subscription for the node"
    );
    let last = clients.pop().unwrap();
    for client in clients {
        client.close().await;
    }
    assert_eq!(
        node_subscriptions(&redis).await,
        1,
        "kept while a client is on it"
    );
    last.close().await;
    assert_eq!(
        node_subscriptions(&redis).await,
        0,
        "dropped with the last one"
    );
}

/// `subscription_succeeded` data of a subscription to `channel` with `resume` (if any).
async fn subscribe_resuming(client: &mut crate::helpers::WsClient, resume: Option<Value>) -> Value {
    let mut data = json!({ "channel": "news" });
    if let Some(resume) = resume {
        data["resume"] = resume;
    }
    client
        .send(json!({ "event": "pusher:subscribe", "data": data }))
        .await;
    let succeeded = client.next_json().await;
    assert_eq!(
        succeeded["event"], "pusher_internal:subscription_succeeded",
        "{succeeded}"
    );
    data_of(&succeeded)
}

#[tokio::test]
async fn a_client_that_resumes_on_another_edge_gets_exactly_what_it_missed() {
    let redis = RedisServer::start();
    let edge_a = spawn_app_on_broker(&redis.url()).await;
    let edge_b = spawn_app_on_broker(&redis.url()).await;
    let (mut client, _) = edge_a.connected(APP.1).await;
    let told = subscribe_resuming(&mut client, None).await;
    let epoch = told["epoch"].clone();
    for n in 1..=2 {
        edge_a.trigger("news", "tick", &n.to_string(), None).await;
        assert_eq!(client.expect_event("tick").await["serial"], n);
    }
    drop(client); // edge A is lost to this client: no close frame

    for n in 3..=5 {
        edge_a.trigger("news", "tick", &n.to_string(), None).await;
    }
    let (mut client, _) = edge_b.connected(APP.1).await;
    let resumed = subscribe_resuming(&mut client, Some(json!({"serial": 2, "epoch": epoch}))).await;
    assert_eq!(resumed, json!({"epoch": epoch, "serial": 2}));
    for n in 3..=5 {
        let tick = client.next_json().await;
        assert_eq!(
            (&tick["data"], &tick["serial"]),
            (&json!(n.to_string()), &json!(n)),
            "{tick}"
        );
    }
    edge_a.trigger("news", "tick", "6", None).await;
    let live = client.next_json().await;
    assert_eq!(
        live["serial"], 6,
        "then live from edge A's publications: {live}"
    );
}

#[tokio::test]
async fn a_plan_of_two_connections_holds_across_two_edges_the_third_on_either_gets_4004() {
    let redis = RedisServer::start();
    let limits = tenancy::PlanLimits {
        max_connections: Some(2),
        burst_multiplier: 1,
        ..tenancy::PlanLimits::pusher_defaults()
    };
    let edge_a = crate::helpers::spawn_app_on_broker_with(&redis.url(), limits.clone()).await;
    let edge_b = crate::helpers::spawn_app_on_broker_with(&redis.url(), limits).await;
    let mut held = Vec::new();
    for edge in [&edge_a, &edge_b] {
        let mut client = edge.connect(APP.1).await;
        let first = client.next_frame().await;
        assert_eq!(first["event"], "pusher:connection_established", "{first}");
        held.push(client);
    }
    for edge in [&edge_a, &edge_b] {
        let mut client = edge.connect(APP.1).await;
        let first = client.next_frame().await;
        assert_eq!(first["data"]["code"], 4004, "{first}");
        assert_eq!(client.expect_close().await.0.code, 4004);
    }
}
