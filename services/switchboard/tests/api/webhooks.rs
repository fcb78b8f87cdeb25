//! What the edge reports to webhooks, end to end (edge → sender → a local endpoint), and
//! the opt-in `subscription_count` events.

use std::net::TcpListener;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{WsClient, channel_auth_with, data_of};
use crate::platform::{restart_platform, spawn_platform};
use crate::webhook_receiver::{Receiver, WAIT};

/// Events until one equal to `wanted` arrives, each request checked as pusher-http-node
/// checks it.
async fn events_until(
    receiver: &mut Receiver,
    key: &str,
    secret: &str,
    wanted: &Value,
) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let request = receiver
            .next_in_time()
            .await
            .unwrap_or_else(|| panic!("waiting for {wanted}, got {events:?}"));
        assert_eq!(request.content_type, "application/json");
        assert_eq!(request.key, key);
        assert_eq!(
            request.signature,
            protocol::sign::hmac_hex(secret, &request.body)
        );
        let body = request.json();
        let batch = body["events"].as_array().unwrap();
        assert_eq!(batch.len(), 1, "one event per request without batching");
        events.push(batch[0].clone());
        if &batch[0] == wanted {
            return events;
        }
    }
}

/// Where `receiver` takes webhooks.
fn hooks_url(receiver: &Receiver) -> String {
    format!("{}/hooks", receiver.base)
}

#[tokio::test]
async fn the_edge_reports_channel_presence_client_and_cache_events() {
    let platform = spawn_platform().await;
    let (account, created) = platform.account_with_app("ann@example.com", None).await;
    let (app_id, key, secret) = (&created.app.id, &created.key, &created.secret);
    let mut receiver = Receiver::start();
    platform
        .control
        .create_webhook(account, app_id, &hooks_url(&receiver), &[], false)
        .await
        .unwrap();
    let auth = |socket_id: &str, channel: &str, data: Option<&str>| {
        channel_auth_with(key, secret, socket_id, channel, data)
    };

    let (mut ann, ann_id) = platform.connected(key).await;
    ann.subscribe("room", "", None).await;
    events_until(
        &mut receiver,
        key,
        secret,
        &json!({ "name": "channel_occupied", "channel": "room" }),
    )
    .await;

    let lobby = "presence-lobby";
    let ann_data = r#"{"user_id":"ann"}"#;
    ann.subscribe(lobby, &auth(&ann_id, lobby, Some(ann_data)), Some(ann_data))
        .await;
    let (mut bob, bob_id) = platform.connected(key).await;
    let bob_data = r#"{"user_id":"bob","user_info":{"name":"Bob"}}"#;
    bob.subscribe(lobby, &auth(&bob_id, lobby, Some(bob_data)), Some(bob_data))
        .await;
    let seen = events_until(
        &mut receiver,
        key,
        secret,
        &json!({ "name": "member_added", "channel": lobby, "user_id": "bob" }),
    )
    .await;
    assert!(seen.contains(&json!({ "name": "member_added", "channel": lobby, "user_id": "ann" })));

    bob.send(json!({ "event": "client-wave", "channel": lobby, "data": { "hand": "left" } }))
        .await;
    events_until(
        &mut receiver,
        key,
        secret,
        &json!({
            "name": "client_event", "channel": lobby, "event": "client-wave",
            "data": "{\"hand\":\"left\"}", "socket_id": bob_id, "user_id": "bob",
        }),
    )
    .await;

    // (Ann has presence and client frames queued before these.)
    ann.subscribe("cache-score", "", None).await;
    ann.expect_event("pusher:cache_miss").await;
    events_until(
        &mut receiver,
        key,
        secret,
        &json!({ "name": "cache_miss", "channel": "cache-score" }),
    )
    .await;

    // Leaving: after the grace period, per channel and per user (also on disconnect).
    ann.send(json!({ "event": "pusher:unsubscribe", "data": { "channel": "room" } }))
        .await;
    events_until(
        &mut receiver,
        key,
        secret,
        &json!({ "name": "channel_vacated", "channel": "room" }),
    )
    .await;
    bob.close().await;
    let seen = events_until(
        &mut receiver,
        key,
        secret,
        &json!({ "name": "member_removed", "channel": lobby, "user_id": "bob" }),
    )
    .await;
    assert!(
        !seen.iter().any(|event| event["name"] == "channel_vacated"),
        "ann is still in the lobby: {seen:?}"
    );
}

/// Proves nothing else was queued for the client: the next frame is the pong to this ping.
async fn expect_nothing_more(client: &mut WsClient) {
    client
        .send(json!({ "event": "pusher:ping", "data": {} }))
        .await;
    assert_eq!(client.next_json().await["event"], "pusher:pong");
}

fn count_of(frame: &Value, channel: &str) -> u64 {
    assert_eq!(
        frame["event"], "pusher_internal:subscription_count",
        "{frame}"
    );
    assert_eq!(frame["channel"], channel);
    data_of(frame)["subscription_count"].as_u64().unwrap()
}

#[tokio::test]
async fn subscribers_get_subscription_counts_when_the_app_opted_in() {
    let platform = spawn_platform().await;
    let (account, created) = platform.account_with_app("ann@example.com", None).await;
    platform
        .control
        .set_subscription_counting(account, &created.app.id, true)
        .await
        .unwrap();
    let key = &created.key;
    // The edge may have cached the app (from its creation's notification) before the change:
    // wait until a probe sees counts.
    tokio::time::timeout(WAIT, async {
        loop {
            let (mut probe, _) = platform.connected(key).await;
            probe.subscribe("probe", "", None).await;
            probe
                .send(json!({ "event": "pusher:ping", "data": {} }))
                .await;
            if probe.next_json().await["event"] == "pusher_internal:subscription_count" {
                return;
            }
            probe.close().await;
        }
    })
    .await
    .expect("the edge sees the app's new setting");
    let (mut ann, _) = platform.connected(key).await;
    let (mut bob, _) = platform.connected(key).await;

    let ok = ann.subscribe("room", "", None).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(count_of(&ann.next_json().await, "room"), 1);
    bob.subscribe("room", "", None).await;
    assert_eq!(count_of(&bob.next_json().await, "room"), 2);
    assert_eq!(count_of(&ann.next_json().await, "room"), 2);
    bob.send(json!({ "event": "pusher:unsubscribe", "data": { "channel": "room" } }))
        .await;
    assert_eq!(count_of(&ann.next_json().await, "room"), 1);
    expect_nothing_more(&mut bob).await;

    // Not on presence channels.
    let (mut carol, carol_id) = platform.connected(key).await;
    let lobby = "presence-lobby";
    let data = r#"{"user_id":"carol"}"#;
    let auth = channel_auth_with(key, &created.secret, &carol_id, lobby, Some(data));
    carol.subscribe(lobby, &auth, Some(data)).await;
    expect_nothing_more(&mut carol).await;

    // An app that did not opt in gets none.
    let (_, plain) = platform.account_with_app("bob@example.com", None).await;
    let (mut dave, _) = platform.connected(&plain.key).await;
    dave.subscribe("room", "", None).await;
    expect_nothing_more(&mut dave).await;
}

/// A free port, with nothing listening on it yet.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_pending_webhook_survives_a_restart_of_the_platform() {
    let first = spawn_platform().await;
    let (account, created) = first.account_with_app("ann@example.com", None).await;
    let (app_id, key, secret) = (&created.app.id, &created.key, &created.secret);
    // The endpoint is down while the first process runs.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hooks");
    let hook = first
        .control
        .create_webhook(account, app_id, &url, &[], false)
        .await
        .unwrap();
    let (mut ann, _) = first.connected(key).await;
    ann.subscribe("room", "", None).await;
    tokio::time::timeout(WAIT, async {
        loop {
            let log = first
                .control
                .webhook_deliveries(account, app_id, 10)
                .await
                .unwrap();
            if log
                .iter()
                .any(|row| row.error.as_deref() == Some("connect_refused"))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the first attempt fails");
    // Stopped as `switchboard serve` stops: connections (ann's leave is still held), then
    // the webhook sender.
    first.app.stopper.stop().await;
    first.webhooks.shutdown().await;

    let mut receiver = Receiver::start_on(port);
    let second = restart_platform(&first).await;
    let seen = events_until(
        &mut receiver,
        key,
        secret,
        &json!({ "name": "channel_vacated", "channel": "room" }),
    )
    .await;
    let occupied = json!({ "name": "channel_occupied", "channel": "room" });
    let occupied = if seen.contains(&occupied) {
        seen
    } else {
        events_until(&mut receiver, key, secret, &occupied).await
    };
    assert!(!occupied.is_empty());
    let log = second
        .control
        .webhook_deliveries(account, app_id, 50)
        .await
        .unwrap();
    assert!(log.iter().all(|row| row.webhook_id == hook.id));
    second.webhooks.shutdown().await;
}
