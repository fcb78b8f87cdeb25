//! A crashed edge's presence members leave: two `switchboard serve` processes on one Redis
//! with a short `--node-heartbeat-ttl`; one is SIGKILLed, and the other's presence
//! subscriber is told `member_removed` once for the user whose only connection was there,
//! never for one still connected elsewhere, and the channel's users no longer list them.
//! And in process: a node that stops heartbeating (a broker and occupancy dropped without
//! leaving) has its departures announced by two live edges, each webhook once, also for a
//! non-presence channel of an app no live edge touches.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use broker::occupancy::Occupancy;
use broker::{Broker, Clock, NodeSettings, Redis, RedisOccupancy};
use protocol::names::{AppId, ChannelName, SocketId};
use protocol::wire::Member;
use tenancy::{WebhookEvent, WebhookSink};

use serde_json::{Value, json};
use testkit::RedisServer;

use crate::cluster::ServeProcess;
use crate::helpers::{
    APP, WsClient, channel_auth, data_of, signed_api, spawn_app_on_broker_reporting, ws_connect,
};

/// The doomed edge's ttl in seconds (the sweep runs every second, so its members leave within
/// about 3 s); the survivor's is long, so a loaded machine never makes it miss its deadline.
const DOOMED_TTL: &str = "2";
const SURVIVOR_TTL: &str = "60";

async fn connected(port: u16) -> (WsClient, String) {
    let mut client = ws_connect(&format!(
        "ws://127.0.0.1:{port}/app/{}?protocol=7&client=test&version=1",
        APP.1
    ))
    .await;
    let established = client.expect_event("pusher:connection_established").await;
    let socket_id = data_of(&established)["socket_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (client, socket_id)
}

async fn join(port: u16, room: &str, user: &str) -> (WsClient, Value) {
    let (mut client, socket_id) = connected(port).await;
    let data = json!({ "user_id": user }).to_string();
    let auth = channel_auth(&socket_id, room, Some(&data));
    let joined = client.subscribe(room, &auth, Some(&data)).await;
    assert_eq!(
        joined["event"], "pusher_internal:subscription_succeeded",
        "{joined}"
    );
    (client, joined)
}

async fn api(port: u16, method: &str, path: &str, body: Option<&Value>) -> reqwest::Response {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let http = reqwest::Client::new();
    signed_api(
        (&http, port),
        (APP.1, APP.2),
        &timestamp,
        method,
        path,
        &[],
        body,
    )
    .await
}

#[tokio::test]
async fn a_sigkilled_edges_members_are_removed_once_by_the_other_edge() {
    let redis = RedisServer::start();
    let url = redis.url();
    let args = |ttl| ["--broker", url.as_str(), "--node-heartbeat-ttl", ttl];
    let mut doomed = ServeProcess::start(&args(DOOMED_TTL), &[]);
    let survivor = ServeProcess::start(&args(SURVIVOR_TTL), &[]);
    let room = "presence-room";

    let (mut bob, _) = join(survivor.port, room, "bob").await;
    // Ann only on the doomed edge; Cat on both.
    let (_ann, _) = join(doomed.port, room, "ann").await;
    let (_cat_on_doomed, _) = join(doomed.port, room, "cat").await;
    let (_cat_on_survivor, joined) = join(survivor.port, room, "cat").await;
    assert_eq!(data_of(&joined)["presence"]["count"], 3, "{joined}");
    for user in ["ann", "cat"] {
        let added = bob.expect_event("pusher_internal:member_added").await;
        assert_eq!(data_of(&added)["user_id"], user);
    }

    doomed.kill();
    // `expect_event` waits up to 20 s per frame: far beyond the ttl, so only a bug fails it.
    let removed = bob.expect_event("pusher_internal:member_removed").await;
    assert_eq!(data_of(&removed)["user_id"], "ann", "{removed}");

    let path = format!("/apps/{}/channels/{room}/users", APP.0);
    let response = api(survivor.port, "GET", &path, None).await;
    assert_eq!(response.status(), 200);
    let users: Value = response.json().await.unwrap();
    assert_eq!(users, json!({"users":[{"id":"bob"},{"id":"cat"}]}));

    // A marker after it proves nothing else came: no second member_removed for Ann, none for
    // Cat, whose other connection lives on.
    let body = json!({ "name": "marker", "channel": room, "data": "m" });
    let response = api(
        survivor.port,
        "POST",
        &format!("/apps/{}/events", APP.0),
        Some(&body),
    )
    .await;
    assert_eq!(response.status(), 200);
    let next = bob.next_frame().await;
    assert_eq!(next["event"], "marker", "member_removed came once: {next}");
}

/// Every webhook event the edges emit, in order.
#[derive(Default)]
struct RecordingWebhooks {
    events: Mutex<Vec<WebhookEvent>>,
}

impl RecordingWebhooks {
    /// Waits until every one of `expected` was emitted (20 s: only a bug takes that long).
    async fn wait_for(&self, expected: &[WebhookEvent]) {
        let started = Instant::now();
        loop {
            let events = self.events.lock().unwrap().clone();
            if expected.iter().all(|event| events.contains(event)) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the dead node's departures never all reached the webhooks: {events:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl WebhookSink for RecordingWebhooks {
    fn emit(&self, _app: &AppId, event: WebhookEvent) {
        self.events.lock().unwrap().push(event);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_departures_reach_webhooks_once_and_its_empty_channel_is_vacated() {
    let redis = RedisServer::start();
    let url = redis.url();
    let webhooks = Arc::new(RecordingWebhooks::default());
    // Two live edges, both sweeping, both reporting to one sink.
    let survivor = spawn_app_on_broker_reporting(&url, webhooks.clone()).await;
    let _other_survivor = spawn_app_on_broker_reporting(&url, webhooks.clone()).await;
    let (room, gone) = ("presence-room", "presence-gone");
    let (mut bob, _) = join(survivor.port, room, "bob").await;

    // The dying node: a broker and its occupancy under one node id, as `build_node` makes.
    let node = NodeSettings {
        heartbeat_ttl: Duration::from_secs(1),
        ..NodeSettings::new()
    };
    let sink = Arc::new(broker::testing::RecordingSink::default());
    let dying = Redis::connect_node(&url, "sb:", sink, Clock::system(), node.clone())
        .await
        .unwrap();
    let dying_occupancy = RedisOccupancy::connect(&url, "sb:", node).await.unwrap();
    let app = AppId::parse(APP.0).unwrap();
    let ann = Member {
        user_id: protocol::names::UserId::parse("ann").unwrap(),
        user_info: json!(null),
    };
    for (channel, socket) in [(room, "9.1"), (gone, "9.2")] {
        let channel = ChannelName::parse(channel).unwrap();
        dying_occupancy.subscribed(&app, &channel).await.unwrap();
        let socket = SocketId::parse(socket).unwrap();
        dying
            .presence_join(&app, &channel, &socket, ann.clone(), 100)
            .await
            .unwrap();
    }
    webhooks.events.lock().unwrap().clear();
    drop((dying, dying_occupancy));

    let removed = bob.expect_event("pusher_internal:member_removed").await;
    assert_eq!(data_of(&removed)["user_id"], "ann", "{removed}");
    let expected = [
        WebhookEvent::MemberRemoved {
            channel: room.into(),
            user_id: "ann".into(),
        },
        WebhookEvent::MemberRemoved {
            channel: gone.into(),
            user_id: "ann".into(),
        },
        WebhookEvent::ChannelVacated {
            channel: gone.into(),
        },
    ];
    webhooks.wait_for(&expected).await;
    // Bob's marker round trip passes at least one more chance for a duplicate.
    let response = survivor.trigger(room, "marker", "m", None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        bob.next_frame().await["event"],
        "marker",
        "member_removed came once"
    );
    let mut events = webhooks.events.lock().unwrap().clone();
    events.sort_by_key(|event| format!("{event:?}"));
    let mut wanted = expected.to_vec();
    wanted.sort_by_key(|event| format!("{event:?}"));
    assert_eq!(
        events, wanted,
        "each once, across both live edges; Bob keeps presence-room occupied"
    );
}

/// A node's broker and occupancy under one node id, as `build_node` makes them, with a 1 s
/// heartbeat ttl; dropping it stops its heartbeats, as a crash would.
async fn dying_node(url: &str) -> (Redis, RedisOccupancy) {
    let node = NodeSettings {
        heartbeat_ttl: Duration::from_secs(1),
        ..NodeSettings::new()
    };
    let sink = Arc::new(broker::testing::RecordingSink::default());
    let broker = Redis::connect_node(url, "sb:", sink, Clock::system(), node.clone())
        .await
        .unwrap();
    let occupancy = RedisOccupancy::connect(url, "sb:", node).await.unwrap();
    (broker, occupancy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_channel_in_an_app_no_live_edge_touches_is_vacated_once() {
    let redis = RedisServer::start();
    let url = redis.url();
    let webhooks = Arc::new(RecordingWebhooks::default());
    // Two live edges, both sweeping, both reporting to one sink; neither has a client, so no
    // occupancy step on the app ever runs there.
    let _survivor = spawn_app_on_broker_reporting(&url, webhooks.clone()).await;
    let _other_survivor = spawn_app_on_broker_reporting(&url, webhooks.clone()).await;
    let app = AppId::parse(APP.0).unwrap();
    let vacated = |channel: &str| WebhookEvent::ChannelVacated {
        channel: channel.into(),
    };

    let dying = dying_node(&url).await;
    let quiet = ChannelName::parse("quiet").unwrap();
    assert_eq!(dying.1.subscribed(&app, &quiet).await.unwrap(), 1);
    drop(dying);
    webhooks.wait_for(&[vacated("quiet")]).await;

    // A second death after it: by the time its channel is reported, a duplicate of the first
    // (both edges sweep the same dead node) would have come long before.
    let marker_node = dying_node(&url).await;
    let marker = ChannelName::parse("marker").unwrap();
    marker_node.1.subscribed(&app, &marker).await.unwrap();
    drop(marker_node);
    webhooks.wait_for(&[vacated("marker")]).await;
    assert_eq!(
        webhooks.events.lock().unwrap().clone(),
        [vacated("quiet"), vacated("marker")],
        "each channel_vacated once, across both live edges"
    );
}
