//! A crashed edge's presence members leave: two `switchboard serve` processes on one Redis
//! with a short `--node-heartbeat-ttl`; one is SIGKILLed, and the other's presence
//! subscriber is told `member_removed` once for the user whose only connection was there,
//! never for one still connected elsewhere, and the channel's users no longer list them.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use testkit::RedisServer;

use crate::cluster::ServeProcess;
use crate::helpers::{APP, WsClient, channel_auth, data_of, signed_api, ws_connect};

/// Seconds; the sweep runs every second, so members leave within about 3 s.
const TTL: &str = "2";

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
    let args = ["--broker", url.as_str(), "--node-heartbeat-ttl", TTL];
    let mut doomed = ServeProcess::start(&args, &[]);
    let survivor = ServeProcess::start(&args, &[]);
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
