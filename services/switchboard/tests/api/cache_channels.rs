//! Cache channels: the last HTTP API event replayed to new subscribers, `pusher:cache_miss`
//! when there is none, `info=cache`.

use serde_json::{Value, json};

use crate::helpers::{APP, OTHER_APP, WsClient, channel_auth, spawn_app};

/// Proves nothing else was queued for the client: the next frame is the pong to this ping.
async fn expect_nothing_more(client: &mut WsClient) {
    client
        .send(json!({ "event": "pusher:ping", "data": {} }))
        .await;
    assert_eq!(client.next_json().await["event"], "pusher:pong");
}

#[tokio::test]
async fn a_new_subscriber_gets_the_last_api_event_right_after_subscription_succeeded() {
    let app = spawn_app().await;
    for price in ["1", "2"] {
        let response = app.trigger("cache-prices", "price", price, None).await;
        assert_eq!(response.status(), 200);
    }
    let (mut client, _) = app.connected(APP.1).await;
    let ok = client.subscribe("cache-prices", "", None).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(
        client.next_json().await,
        json!({ "event": "price", "channel": "cache-prices", "data": "2" })
    );
    expect_nothing_more(&mut client).await;

    // Later events arrive as usual and replace the cached one.
    app.trigger("cache-prices", "price", "3", None).await;
    assert_eq!(client.next_json().await["data"], "3");
    let (mut late, _) = app.connected(APP.1).await;
    late.subscribe("cache-prices", "", None).await;
    assert_eq!(late.next_json().await["data"], "3");

    // Batches fill the cache too; other channels have no cache.
    let batch = json!({ "batch": [
        { "name": "a", "channel": "cache-batch", "data": "x" },
        { "name": "b", "channel": "plain", "data": "y" },
    ] });
    let path = format!("/apps/{}/batch_events", APP.0);
    assert_eq!(
        app.api(APP, "POST", &path, &[], Some(&batch))
            .await
            .status(),
        200
    );
    late.subscribe("cache-batch", "", None).await;
    assert_eq!(late.next_json().await["event"], "a");
    assert_eq!(
        late.subscribe("plain", "", None).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    expect_nothing_more(&mut late).await;
}

#[tokio::test]
async fn an_empty_cache_channel_answers_cache_miss_and_client_events_are_not_cached() {
    let app = spawn_app().await;
    let (mut sender, sender_id) = app.connected(APP.1).await;
    let channel = "private-cache-room";
    sender
        .subscribe(channel, &channel_auth(&sender_id, channel, None), None)
        .await;
    let miss = sender.next_json().await;
    assert_eq!(
        miss,
        json!({ "event": "pusher:cache_miss", "channel": channel, "data": "{}" })
    );
    sender
        .send(json!({ "event": "client-typing", "channel": channel, "data": {} }))
        .await;
    // Once the sender's pong is back, its client event has been handled.
    expect_nothing_more(&mut sender).await;

    let (mut next, next_id) = app.connected(APP.1).await;
    let ok = next
        .subscribe(channel, &channel_auth(&next_id, channel, None), None)
        .await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(next.next_json().await["event"], "pusher:cache_miss");

    // Presence cache channels: after the member list.
    let presence = "presence-cache-lobby";
    let data = r#"{"user_id":"u1"}"#;
    let ok = next
        .subscribe(
            presence,
            &channel_auth(&next_id, presence, Some(data)),
            Some(data),
        )
        .await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(next.next_json().await["event"], "pusher:cache_miss");
}

#[tokio::test]
async fn the_cache_is_per_app_and_shown_by_info_cache() {
    let app = spawn_app().await;
    app.trigger("cache-score", "goal", r#"{"home":1}"#, None)
        .await;
    let show = |app_key: (&'static str, &'static str, &'static str), channel: &str| {
        let path = format!("/apps/{}/channels/{channel}", app_key.0);
        let app = &app;
        async move {
            let response = app
                .api(app_key, "GET", &path, &[("info", "cache")], None)
                .await;
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = show(APP, "cache-score").await;
    assert_eq!(status, 200);
    assert_eq!(body["occupied"], false);
    assert_eq!(body["cache"]["data"], r#"{"home":1}"#);
    let ttl = body["cache"]["ttl"].as_u64().unwrap();
    assert!((1790..=1800).contains(&ttl), "{ttl}");

    let (status, body) = show(OTHER_APP, "cache-score").await;
    assert_eq!((status, body), (200, json!({ "occupied": false })));
    let (_, nothing) = show(APP, "cache-empty").await;
    assert_eq!(nothing, json!({ "occupied": false }));
    let (status, _) = show(APP, "score").await;
    assert_eq!(status, 400, "info=cache is for cache channels only");

    let (mut other, _) = app.connected(OTHER_APP.1).await;
    other.subscribe("cache-score", "", None).await;
    assert_eq!(other.next_json().await["event"], "pusher:cache_miss");
}
