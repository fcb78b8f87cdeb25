//! Two edges on one Redis share node broadcasts and cache channels: `terminate_connections`
//! through one edge closes the user's socket on the other, and a cache channel's last event
//! published through one is replayed to a new subscriber on the other; a Redis outage shows in
//! `/healthz`, closes the node's subscribers with 4202 (they resume), and every part works
//! again once Redis is back.

use std::time::Duration;

use edge::health::Health;
use serde_json::json;
use testkit::RedisServer;

use crate::helpers::{APP, TestApp, WsClient, spawn_app_on_broker, spawn_app_on_broker_watched};

/// Bounds a wait for the health watch (a ping a second) to see Redis go or come back.
const HEALTH_GUARD: Duration = Duration::from_secs(30);

/// A connection on `edge` signed in as user 42.
async fn signed_in_as_42(edge: &TestApp) -> WsClient {
    let (mut client, socket_id) = edge.connected(APP.1).await;
    let user_data = json!({"id":"42"}).to_string();
    let signature = protocol::sign::hmac_hex(
        APP.2,
        &protocol::sign::user_auth_string(&socket_id, &user_data),
    );
    let auth = format!("{}:{signature}", APP.1);
    client
        .send(json!({"event":"pusher:signin","data":{"auth":auth,"user_data":user_data}}))
        .await;
    client.expect_event("pusher:signin_success").await;
    client
}

#[tokio::test]
async fn terminate_connections_through_one_edge_closes_the_users_socket_on_another() {
    let redis = RedisServer::start();
    let edge_a = spawn_app_on_broker(&redis.url()).await;
    let edge_b = spawn_app_on_broker(&redis.url()).await;

    let mut victim = signed_in_as_42(&edge_b).await;
    let path = format!("/apps/{}/users/42/terminate_connections", APP.0);
    let response = edge_a.api(APP, "POST", &path, &[], Some(&json!({}))).await;
    assert_eq!(response.status(), 200);
    let (closed, _) = victim.expect_close().await;
    assert_eq!(closed.code, 4009, "edge B closed the user's socket");
}

#[tokio::test]
async fn a_cache_event_published_through_one_edge_is_replayed_on_another() {
    let redis = RedisServer::start();
    let edge_a = spawn_app_on_broker(&redis.url()).await;
    let edge_b = spawn_app_on_broker(&redis.url()).await;

    let response = edge_a.trigger("cache-prices", "price", "7", None).await;
    assert_eq!(response.status(), 200);
    let (mut subscriber, _) = edge_b.connected(APP.1).await;
    let ok = subscriber.subscribe("cache-prices", "", None).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(
        subscriber.next_json().await,
        json!({ "event": "price", "channel": "cache-prices", "data": "7" })
    );
}

/// `/healthz`'s `status`, once it is `wanted`: read again each time the edge's health
/// changes (the watch pings Redis every second), bounded so a broken watch fails, not hangs.
async fn healthz_becomes(app: &TestApp, health: &Health, wanted: &str) -> serde_json::Value {
    let url = format!("http://127.0.0.1:{}/healthz", app.port);
    let mut changes = health.changes();
    let reached = tokio::time::timeout(HEALTH_GUARD, async {
        loop {
            // Marked seen before the read, so a change during it wakes the next wait.
            changes.borrow_and_update();
            let response = reqwest::get(&url).await.expect("healthz answers");
            assert_eq!(
                response.status(),
                200,
                "a dependency's trouble is not fatal"
            );
            let body: serde_json::Value = response.json().await.expect("healthz is JSON");
            if body["status"] == wanted {
                return body;
            }
            changes.changed().await.expect("the edge's health lives");
        }
    })
    .await;
    reached.unwrap_or_else(|_| panic!("/healthz never said {wanted}"))
}

#[tokio::test]
async fn a_redis_outage_makes_healthz_degraded_until_it_is_back_and_delivery_resumes() {
    let mut redis = RedisServer::start();
    let (edge, health) =
        spawn_app_on_broker_watched(&redis.url(), tenancy::PlanLimits::pusher_defaults()).await;
    let (mut subscriber, _) = edge.connected(APP.1).await;
    subscriber.subscribe("news", "", None).await;
    assert_eq!(healthz_becomes(&edge, &health, "ok").await["status"], "ok");

    redis.stop();
    // Deliveries to this node stopped: its subscribers are told to reconnect and resume.
    assert_eq!(subscriber.expect_close().await.0.code, 4202);
    let degraded = healthz_becomes(&edge, &health, "degraded").await;
    assert!(
        degraded["troubles"]["broker"].is_string(),
        "the broker is the trouble: {degraded}"
    );

    redis.restart();
    healthz_becomes(&edge, &health, "ok").await;
    // Every part reconnected: a new connection is admitted (its slot is taken on Redis),
    // and an event published now reaches it.
    let (mut subscriber, _) = edge.connected(APP.1).await;
    subscriber.subscribe("news", "", None).await;
    let response = edge.trigger("news", "story", "after", None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(subscriber.expect_event("story").await["data"], "after");
    // The broadcasts' subscription is back too, and the cache writes to the new Redis.
    let mut victim = signed_in_as_42(&edge).await;
    let path = format!("/apps/{}/users/42/terminate_connections", APP.0);
    let response = edge.api(APP, "POST", &path, &[], Some(&json!({}))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(victim.expect_close().await.0.code, 4009);
    let response = edge.trigger("cache-prices", "price", "8", None).await;
    assert_eq!(response.status(), 200);
    let (mut late, _) = edge.connected(APP.1).await;
    late.subscribe("cache-prices", "", None).await;
    assert_eq!(late.next_json().await["data"], "8");
}
