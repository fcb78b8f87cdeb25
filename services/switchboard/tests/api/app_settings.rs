//! App settings set through the control plane and enforced by the edge: allowed origins on
//! the WebSocket upgrade and the HTTP carriers (4009), client events on or off, and a key
//! rotation in one step.

use std::time::{Duration, Instant};

use control::service::AppChange;
use protocol::names::AppKey;
use serde_json::json;
use tenancy::AppCatalog;

use crate::carrier_client::{Carrier, Kind, ORIGIN};
use crate::helpers::{WsClient, ws_connect_from};
use crate::platform::{TestPlatform, spawn_platform};

/// How long a catalog change may take to reach the edge before the test fails.
const PROPAGATION: Duration = Duration::from_secs(15);

fn ws_url(platform: &TestPlatform, key: &str) -> String {
    format!(
        "ws://127.0.0.1:{}/app/{key}?protocol=7&client=test&version=1",
        platform.app.port
    )
}

/// Polls the edge's catalog until the app of `key` satisfies `done` (the NOTIFY arrived).
async fn until_edge_sees(platform: &TestPlatform, key: &str, done: impl Fn(&tenancy::App) -> bool) {
    let key = AppKey::parse(key).unwrap();
    let deadline = Instant::now() + PROPAGATION;
    loop {
        let keyed = platform.catalog.find_by_key(&key).await.unwrap();
        if keyed.is_some_and(|keyed| done(&keyed.app)) {
            return;
        }
        assert!(Instant::now() < deadline, "the edge never saw the change");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn established(client: &mut WsClient) -> String {
    let frame = client.expect_event("pusher:connection_established").await;
    let data: serde_json::Value = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
    data["socket_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn allowed_origins_refuse_other_browsers_with_4009_on_every_carrier() {
    let platform = spawn_platform().await;
    let (account, app) = platform.account_with_app("origins@example.com", None).await;
    let only_app_example = AppChange {
        allowed_origins: Some(vec!["https://app.example".to_owned()]),
        ..AppChange::default()
    };
    platform
        .control
        .change_app(account, &app.app.id, &only_app_example)
        .await
        .unwrap();
    until_edge_sees(&platform, &app.key, |app| !app.allowed_origins.is_any()).await;

    // A WebSocket from another origin: `pusher:error` 4009, then the close with 4009.
    let mut refused = ws_connect_from(&ws_url(&platform, &app.key), "https://evil.example").await;
    let (closed, frames) = refused.expect_close().await;
    assert_eq!(closed.code, 4009);
    assert_eq!(frames[0]["event"], "pusher:error");
    assert_eq!(frames[0]["data"]["message"], "Origin not allowed");

    // The allowed origin (in another case and with its default port) and a client without
    // an Origin header (not a browser) are admitted.
    let mut allowed =
        ws_connect_from(&ws_url(&platform, &app.key), "HTTPS://app.example:443").await;
    established(&mut allowed).await;
    let (_no_origin, _) = platform.connected(&app.key).await;

    // Our SDK's HTTP carriers send the page's origin, which is not allowed.
    let mut carrier = Carrier::on_port(platform.app.port, Kind::Sse, Vec::new());
    carrier.base = format!("http://127.0.0.1:{}/sb/app/{}", platform.app.port, app.key);
    carrier.open().await;
    let error = carrier.next().await.unwrap();
    assert_eq!(error["event"], "pusher:error");
    assert_eq!(error["data"]["code"], 4009);

    // pusher-js's xhr_streaming: refused in the body, as its WebSocket would be.
    let refusal = platform
        .app
        .http
        .post(format!(
            "http://127.0.0.1:{}/pusher/app/{}/1/origin0/xhr_streaming?protocol=7&client=js&version=8.6.0&t=1&n=1",
            platform.app.port, app.key
        ))
        .header("content-type", "application/json")
        .header("origin", "http://page.example")
        .send()
        .await
        .unwrap();
    let body = tokio::time::timeout(PROPAGATION, refusal.text())
        .await
        .expect("the refusal ends its stream")
        .unwrap();
    assert!(
        body.contains("4009") && body.contains("Origin not allowed"),
        "{body}"
    );

    // Allowing the page's origin opens the carriers to it.
    let with_page = AppChange {
        allowed_origins: Some(vec!["https://app.example".to_owned(), ORIGIN.to_owned()]),
        ..AppChange::default()
    };
    platform
        .control
        .change_app(account, &app.app.id, &with_page)
        .await
        .unwrap();
    until_edge_sees(&platform, &app.key, |app| {
        app.allowed_origins.as_slice().len() == 2
    })
    .await;
    let mut carrier = Carrier::on_port(
        platform.app.port,
        Kind::Sse,
        vec![json!({ "channel": "c" })],
    );
    carrier.base = format!("http://127.0.0.1:{}/sb/app/{}", platform.app.port, app.key);
    carrier
        .expect_event("pusher_internal:subscription_succeeded")
        .await;
}

#[tokio::test]
async fn client_events_are_refused_while_the_app_has_them_off() {
    let platform = spawn_platform().await;
    let (account, app) = platform.account_with_app("ce@example.com", None).await;
    let set_client_events = |enabled: bool| AppChange {
        client_events: Some(enabled),
        ..AppChange::default()
    };
    platform
        .control
        .change_app(account, &app.app.id, &set_client_events(false))
        .await
        .unwrap();
    until_edge_sees(&platform, &app.key, |app| !app.client_events).await;

    let channel = "private-room";
    let auth = |socket_id: &str| {
        let signature = protocol::sign::hmac_hex(&app.secret, &format!("{socket_id}:{channel}"));
        format!("{}:{signature}", app.key)
    };
    let (mut sender, sender_id) = platform.connected(&app.key).await;
    sender.subscribe(channel, &auth(&sender_id), None).await;
    sender
        .send(json!({"event":"client-typing","channel":channel,"data":{}}))
        .await;
    let refused = sender.expect_event("pusher:error").await;
    assert!(
        refused["data"]["message"]
            .as_str()
            .unwrap()
            .contains("you must enable this feature"),
        "{refused}"
    );

    platform
        .control
        .change_app(account, &app.app.id, &set_client_events(true))
        .await
        .unwrap();
    until_edge_sees(&platform, &app.key, |app| app.client_events).await;
    let (mut sender, sender_id) = platform.connected(&app.key).await;
    let (mut receiver, receiver_id) = platform.connected(&app.key).await;
    sender.subscribe(channel, &auth(&sender_id), None).await;
    receiver.subscribe(channel, &auth(&receiver_id), None).await;
    sender
        .send(json!({"event":"client-typing","channel":channel,"data":{"n":1}}))
        .await;
    let delivered = receiver.expect_event("client-typing").await;
    assert_eq!(delivered["channel"], channel);
}

#[tokio::test]
async fn rotating_a_key_closes_its_sockets_and_the_new_key_works_at_once() {
    let platform = spawn_platform().await;
    let (account, app) = platform.account_with_app("rotate@example.com", None).await;
    let (mut old_client, _) = platform.connected(&app.key).await;
    let (new_key, new_secret) = platform
        .control
        .rotate_key(account, &app.app.id, &app.key)
        .await
        .unwrap();
    assert_eq!(old_client.expect_close().await.0.code, 4009);
    let mut refused = platform.app.connect(&app.key).await;
    assert_eq!(refused.expect_close().await.0.code, 4001);
    let (mut client, _) = platform.connected(&new_key).await;
    client.subscribe("c", "", None).await;
    assert_eq!(
        platform
            .publish(&app.app.id, &new_key, &new_secret, "c", "rotated")
            .await,
        200
    );
    assert_eq!(client.next_json().await["event"], "rotated");
}

#[tokio::test]
async fn deleting_an_app_closes_its_sockets_and_forgets_its_keys() {
    let platform = spawn_platform().await;
    let (account, app) = platform.account_with_app("delete@example.com", None).await;
    let (mut client, _) = platform.connected(&app.key).await;
    platform
        .control
        .delete_app(account, &app.app.id)
        .await
        .unwrap();
    // Its key is gone: the socket closes as a revoked key's does.
    assert_eq!(client.expect_close().await.0.code, 4009);
    let mut refused = platform.app.connect(&app.key).await;
    assert_eq!(refused.expect_close().await.0.code, 4001);
    assert_eq!(
        platform
            .publish(&app.app.id, &app.key, &app.secret, "c", "gone")
            .await,
        401
    );
}

#[tokio::test]
async fn ice_servers_reach_presence_subscribers_with_short_lived_turn_credentials() {
    let platform = spawn_platform().await;
    let (account, app) = platform.account_with_app("ice@example.com", None).await;
    let bad_url = AppChange {
        ice_servers: Some(vec!["http://stun.example.com".to_owned()]),
        ..AppChange::default()
    };
    let refused = platform
        .control
        .change_app(account, &app.app.id, &bad_url)
        .await;
    assert!(matches!(
        refused,
        Err(control::service::ControlError::Validation(_))
    ));
    let bad_secret = AppChange {
        turn_secret: Some("has a space".to_owned()),
        ..AppChange::default()
    };
    let refused = platform
        .control
        .change_app(account, &app.app.id, &bad_secret)
        .await;
    assert!(matches!(
        refused,
        Err(control::service::ControlError::Validation(_))
    ));

    let ice = AppChange {
        ice_servers: Some(vec![
            "stun:stun.example.com:3478".to_owned(),
            "turn:turn.example.com:3478?transport=udp".to_owned(),
        ]),
        turn_secret: Some("north-wind".to_owned()),
        ..AppChange::default()
    };
    let row = platform
        .control
        .change_app(account, &app.app.id, &ice)
        .await
        .unwrap();
    assert!(row.turn_secret_set);
    assert_eq!(row.ice_servers.len(), 2);
    // Encrypted at rest: the stored bytes are not the secret.
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT turn_secret_ciphertext FROM apps WHERE id = $1")
            .bind(&app.app.id)
            .fetch_one(&platform.pool)
            .await
            .unwrap();
    assert!(!stored.windows(10).any(|w| w == b"north-wind"));
    until_edge_sees(&platform, &app.key, |app| app.ice.turn_secret.is_some()).await;

    let channel = "presence-call";
    let channel_data = r#"{"user_id":"alice"}"#;
    let (mut client, socket_id) = platform.connected(&app.key).await;
    let signed = format!("{socket_id}:{channel}:{channel_data}");
    let auth = format!(
        "{}:{}",
        app.key,
        protocol::sign::hmac_hex(&app.secret, &signed)
    );
    let joined = client.subscribe(channel, &auth, Some(channel_data)).await;
    let data: serde_json::Value = serde_json::from_str(joined["data"].as_str().unwrap()).unwrap();
    let servers = &data["ice_servers"];
    assert_eq!(servers[0], json!({"urls":["stun:stun.example.com:3478"]}));
    let turn = &servers[1];
    assert_eq!(
        turn["urls"],
        json!(["turn:turn.example.com:3478?transport=udp"])
    );
    let username = turn["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, "alice");
    let expiry: u64 = expiry.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ttl = tenancy::TURN_CREDENTIAL_TTL.as_secs();
    assert!(
        expiry > now && expiry <= now + ttl + 1,
        "short-lived: {expiry}"
    );
    let alice = protocol::names::UserId::parse("alice").unwrap();
    let expected = tenancy::turn_credential("north-wind", &alice, expiry);
    assert_eq!(turn["credential"], expected.credential);
    // Other channels carry none: pusher-js sees the frames it always saw.
    let joined = client.subscribe("news", "", None).await;
    assert!(!joined["data"].as_str().unwrap().contains("ice_servers"));

    // Removing the secret stops announcing TURN; STUN stays.
    let remove = AppChange {
        turn_secret: Some(String::new()),
        ..AppChange::default()
    };
    let row = platform
        .control
        .change_app(account, &app.app.id, &remove)
        .await
        .unwrap();
    assert!(!row.turn_secret_set);
    until_edge_sees(&platform, &app.key, |app| app.ice.turn_secret.is_none()).await;
    let (mut client, socket_id) = platform.connected(&app.key).await;
    let signed = format!("{socket_id}:{channel}:{channel_data}");
    let auth = format!(
        "{}:{}",
        app.key,
        protocol::sign::hmac_hex(&app.secret, &signed)
    );
    let joined = client.subscribe(channel, &auth, Some(channel_data)).await;
    let data: serde_json::Value = serde_json::from_str(joined["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        data["ice_servers"],
        json!([{"urls":["stun:stun.example.com:3478"]}])
    );
}
