//! Two edges on one Redis (`--broker`) behave as one platform: a subscriber on one gets
//! what is published through the other, with its serial, and presence is one view.

use serde_json::{Value, json};
use testkit::RedisServer;

use crate::helpers::{APP, TestApp, channel_auth, data_of, spawn_app_on_broker};

#[tokio::test]
async fn an_event_published_through_one_edge_reaches_a_subscriber_on_another_with_its_serial() {
    let redis = RedisServer::start();
    let edge_a = spawn_app_on_broker(&redis.url()).await;
    let edge_b = spawn_app_on_broker(&redis.url()).await;

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
