//! Every plan limit at the edge: the request before the limit succeeds, the first one past it
//! gets Pusher's code, and a plan change moves the limit without reconnecting.

use serde_json::{Value, json};

use crate::helpers::WsClient;
use crate::platform::{TestPlatform, spawn_platform};

/// A plan with tiny limits: 3 connections, 5 messages a day (hard), 2 client events/s,
/// 3 publish requests/s, 2 presence members, 2 channels per connection.
async fn tiny_plan(platform: &TestPlatform) {
    // `tiny-quota` differs only in its publish rate, so the quota test never meets the rate.
    sqlx::query(
        "INSERT INTO plans VALUES ('tiny', 'Tiny', 0, 3, 5, 10240, 2, 3, 2, 2, 10, 60, 1, TRUE, 0, 0, 9), \
         ('tiny-quota', 'Tiny quota', 0, 3, 5, 10240, 2, 1000, 2, 2, 10, 60, 1, TRUE, 0, 0, 10)",
    )
    .execute(&platform.pool)
    .await
    .unwrap();
}

async fn tiny_app(
    platform: &TestPlatform,
    email: &str,
) -> (uuid::Uuid, control::service::CreatedApp) {
    tiny_plan(platform).await;
    platform.account_with_app(email, Some("tiny")).await
}

async fn tiny_quota_app(
    platform: &TestPlatform,
    email: &str,
) -> (uuid::Uuid, control::service::CreatedApp) {
    tiny_plan(platform).await;
    platform.account_with_app(email, Some("tiny-quota")).await
}

fn private_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    data: Option<&str>,
) -> String {
    let signed = protocol::sign::channel_auth_string(socket_id, channel, data);
    format!("{key}:{}", protocol::sign::hmac_hex(secret, &signed))
}

#[tokio::test]
async fn connections_past_the_plan_are_refused_with_4004_exactly_even_when_simultaneous() {
    let platform = spawn_platform().await;
    let (account, app) = tiny_app(&platform, "conn@example.com").await;
    let attempts = (0..10).map(|_| platform.app.connect(&app.key));
    let mut clients: Vec<WsClient> = futures_util::future::join_all(attempts).await;
    let mut admitted = Vec::new();
    let mut refused = 0;
    for mut client in clients.drain(..) {
        let first = client.next_frame().await;
        if first["event"] == "pusher:connection_established" {
            admitted.push(client);
        } else {
            assert_eq!(first["data"]["code"], 4004, "{first}");
            assert_eq!(client.expect_close().await.0.code, 4004);
            refused += 1;
        }
    }
    assert_eq!(
        (admitted.len(), refused),
        (3, 7),
        "exactly the plan's 3 connections"
    );

    platform
        .control
        .change_plan(account, &app.app.id, "pro")
        .await
        .unwrap();
    wait_for_pro_plan(&platform, &app).await;
    let (_fourth, first) = connect_and_read(&platform, &app.key).await;
    assert_eq!(
        first["event"], "pusher:connection_established",
        "the new plan's ceiling applies to new connections"
    );
    // The first three were never disconnected by the change.
    for client in &mut admitted {
        client.send(json!({"event":"pusher:ping","data":{}})).await;
        assert_eq!(
            client.expect_event("pusher:pong").await["event"],
            "pusher:pong"
        );
    }
}

/// Returns once the edge serves the app on `pro`: the API then takes a 20 KB event (pro
/// allows 32 KB, tiny 10 KB).
async fn wait_for_pro_plan(platform: &TestPlatform, app: &control::service::CreatedApp) {
    let big = json!({"name":"e","channel":"nobody","data":"x".repeat(20 * 1024)});
    let path = format!("/apps/{}/events", app.app.id);
    for _ in 0..2_000 {
        let credentials = (app.app.id.as_str(), app.key.as_str(), app.secret.as_str());
        let response = platform
            .app
            .api(credentials, "POST", &path, &[], Some(&big))
            .await;
        match response.status().as_u16() {
            200 => return,
            413 | 429 => continue,
            other => panic!("unexpected status {other}"),
        }
    }
    panic!("the edge never saw the pro plan");
}

async fn connect_and_read(platform: &TestPlatform, key: &str) -> (WsClient, Value) {
    let mut client = platform.app.connect(key).await;
    let first = client.next_frame().await;
    (client, first)
}

#[tokio::test]
async fn the_daily_message_quota_counts_publishes_and_deliveries_exactly() {
    let platform = spawn_platform().await;
    let (account, app) = tiny_quota_app(&platform, "quota@example.com").await;
    let (mut subscriber, socket_id) = platform.connected(&app.key).await;
    subscriber
        .subscribe(
            "private-q",
            &private_auth(&app.key, &app.secret, &socket_id, "private-q", None),
            None,
        )
        .await;
    // Each publish is 2 messages (the publish and one delivery): 0 → 2 → 4 → 6 of 5.
    for n in 1..=3 {
        let status = platform
            .publish(
                &app.app.id,
                &app.key,
                &app.secret,
                "private-q",
                &format!("e{n}"),
            )
            .await;
        assert_eq!(status, 200, "publish {n} is under the quota");
        assert_eq!(subscriber.next_json().await["event"], format!("e{n}"));
    }
    let body = json!({"name":"over","channel":"private-q","data":"d"});
    let path = format!("/apps/{}/events", app.app.id);
    let over = platform
        .app
        .api(
            (&app.app.id, &app.key, &app.secret),
            "POST",
            &path,
            &[],
            Some(&body),
        )
        .await;
    assert_eq!(over.status(), 403);
    assert!(
        over.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("daily message quota")
    );
    subscriber
        .send(json!({"event":"client-x","channel":"private-q","data":{}}))
        .await;
    let refused = subscriber.expect_event("pusher:error").await;
    assert!(
        refused["data"]["message"]
            .as_str()
            .unwrap()
            .contains("daily message quota")
    );

    platform
        .control
        .change_plan(account, &app.app.id, "pro")
        .await
        .unwrap();
    wait_for_pro_plan(&platform, &app).await;
    let published = platform
        .publish(&app.app.id, &app.key, &app.secret, "private-q", "after")
        .await
        == 200;
    assert!(published, "the new plan's quota applies");
    assert_eq!(
        subscriber.expect_event("after").await["channel"],
        "private-q"
    );
}

#[tokio::test]
async fn publish_requests_past_the_plans_rate_get_429() {
    let platform = spawn_platform().await;
    let (_, app) = tiny_app(&platform, "rate@example.com").await;
    let mut statuses = Vec::new();
    for n in 0..10 {
        statuses.push(
            platform
                .publish(
                    &app.app.id,
                    &app.key,
                    &app.secret,
                    "nobody",
                    &format!("e{n}"),
                )
                .await,
        );
    }
    assert_eq!(statuses[..3], [200, 200, 200], "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|status| *status == 200 || *status == 429),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn presence_channels_stop_at_the_plans_member_count() {
    let platform = spawn_platform().await;
    let (_, app) = tiny_app(&platform, "presence@example.com").await;
    let channel = "presence-small";
    let mut clients = Vec::new();
    for user in ["u1", "u2"] {
        let (mut client, socket_id) = platform.connected(&app.key).await;
        let data = format!(r#"{{"user_id":"{user}"}}"#);
        let auth = private_auth(&app.key, &app.secret, &socket_id, channel, Some(&data));
        let joined = client.subscribe(channel, &auth, Some(&data)).await;
        assert_eq!(
            joined["event"], "pusher_internal:subscription_succeeded",
            "{user} joins"
        );
        clients.push(client);
    }
    let (mut third, socket_id) = platform.connected(&app.key).await;
    let data = r#"{"user_id":"u3"}"#;
    let refused = third
        .subscribe(
            channel,
            &private_auth(&app.key, &app.secret, &socket_id, channel, Some(data)),
            Some(data),
        )
        .await;
    assert_eq!(refused["event"], "pusher:subscription_error");
    let error = crate::helpers::data_of(&refused);
    assert_eq!(
        (error["type"].as_str(), error["status"].as_i64()),
        (Some("LimitReached"), Some(4100))
    );
}

#[tokio::test]
async fn channels_per_connection_and_client_event_rate_follow_the_plan_live() {
    let platform = spawn_platform().await;
    let (account, app) = tiny_app(&platform, "channels@example.com").await;
    let (mut client, socket_id) = platform.connected(&app.key).await;
    let auth = |channel: &str| private_auth(&app.key, &app.secret, &socket_id, channel, None);
    assert_eq!(
        client
            .subscribe("private-a", &auth("private-a"), None)
            .await["event"],
        "pusher_internal:subscription_succeeded"
    );
    assert_eq!(
        client
            .subscribe("private-b", &auth("private-b"), None)
            .await["event"],
        "pusher_internal:subscription_succeeded"
    );
    let error = client
        .subscribe("private-c", &auth("private-c"), None)
        .await;
    assert_eq!(error["event"], "pusher:error");
    let refused = client.next_json().await;
    assert_eq!(crate::helpers::data_of(&refused)["type"], "LimitReached");

    for _ in 0..5 {
        client
            .send(json!({"event":"client-x","channel":"private-a","data":{}}))
            .await;
    }
    let limited = client.expect_event("pusher:error").await;
    assert_eq!(
        limited["data"]["code"], 4301,
        "the plan's 2 client events per second"
    );

    platform
        .control
        .change_plan(account, &app.app.id, "pro")
        .await
        .unwrap();
    // Once the API sees the new plan, the change is also queued for the connection, which
    // applies it before judging its next frame.
    wait_for_pro_plan(&platform, &app).await;
    // The change reaches the connection a moment after the API; a refused try changes nothing.
    let mut moved = false;
    for _ in 0..20 {
        client
            .send(json!({"event":"pusher:subscribe","data":{"channel":"private-c","auth":auth("private-c")}}))
            .await;
        if client.next_json().await["event"] == "pusher_internal:subscription_succeeded" {
            moved = true;
            break;
        }
        client.next_json().await;
    }
    assert!(
        moved,
        "the new plan's channel limit applies without reconnecting"
    );
}
