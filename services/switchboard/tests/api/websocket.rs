//! The WebSocket protocol end to end.

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{APP, OTHER_APP, channel_auth, data_of, spawn_app};

#[tokio::test]
async fn connection_established_then_ping_pong() {
    let app = spawn_app().await;
    let mut client = app.connect(APP.1).await;
    let established = client.next_json().await;
    assert_eq!(established["event"], "pusher:connection_established");
    let data = data_of(&established);
    assert_eq!(data["activity_timeout"], 120);
    let socket_id = data["socket_id"].as_str().unwrap();
    protocol::names::SocketId::parse(socket_id).expect("socket id is digits.digits");

    client.send(json!({"event":"pusher:ping","data":{}})).await;
    let pong = client.next_json().await;
    assert_eq!(pong["event"], "pusher:pong");
}

#[tokio::test]
async fn refusals_carry_pusher_codes_as_error_frame_and_close() {
    let app = spawn_app().await;
    let cases = [
        ("/app/nosuchkey?protocol=7".to_string(), 4001),
        (format!("/app/{}?protocol=3", APP.1), 4007),
        (format!("/app/{}?protocol=seven", APP.1), 4006),
    ];
    for (path, code) in cases {
        let mut client = app
            .connect_url(&format!("ws://127.0.0.1:{}{path}", app.port))
            .await;
        let (closed, frames) = client.expect_close().await;
        assert_eq!(closed.code, code, "{path}");
        assert_eq!(frames[0]["event"], "pusher:error", "{path}");
        assert_eq!(frames[0]["data"]["code"], code, "{path}");
    }
}

#[tokio::test]
async fn a_path_prefix_before_app_is_accepted() {
    let app = spawn_app().await;
    let mut client = app
        .connect_url(&format!(
            "ws://127.0.0.1:{}/ws/app/{}?protocol=7",
            app.port, APP.1
        ))
        .await;
    assert_eq!(
        client.next_json().await["event"],
        "pusher:connection_established"
    );
}

#[tokio::test]
async fn published_events_reach_subscribers_of_that_app_only() {
    let app = spawn_app().await;
    let (mut subscriber, _) = app.connected(APP.1).await;
    let (mut other_tenant, _) = app.connected(OTHER_APP.1).await;
    let ok = subscriber.subscribe("news", "", None).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(ok["channel"], "news");
    assert_eq!(
        other_tenant.subscribe("news", "", None).await["event"],
        "pusher_internal:subscription_succeeded"
    );

    let response = app
        .trigger("news", "headline", r#"{"title":"hi"}"#, None)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "{}");
    let mut event = subscriber.next_json().await;
    // Our extension: the channel's serial and epoch beside what pusher-js reads.
    assert_eq!(event["serial"], 1);
    assert_eq!(event["epoch"], data_of(&ok)["epoch"]);
    event.as_object_mut().unwrap().remove("serial");
    event.as_object_mut().unwrap().remove("epoch");
    assert_eq!(
        event,
        json!({"event":"headline","channel":"news","data":"{\"title\":\"hi\"}"})
    );

    // The other app's subscriber of a same-named channel sees only its own app's event.
    let body = json!({"name":"mine","channel":"news","data":"x"});
    app.api(
        OTHER_APP,
        "POST",
        &format!("/apps/{}/events", OTHER_APP.0),
        &[],
        Some(&body),
    )
    .await;
    assert_eq!(other_tenant.next_json().await["event"], "mine");
}

#[tokio::test]
async fn socket_id_exclusion_skips_only_that_connection() {
    let app = spawn_app().await;
    let (mut excluded, excluded_id) = app.connected(APP.1).await;
    let (mut other, _) = app.connected(APP.1).await;
    excluded.subscribe("room", "", None).await;
    other.subscribe("room", "", None).await;
    app.trigger("room", "first", "1", Some(&excluded_id)).await;
    app.trigger("room", "second", "2", None).await;
    assert_eq!(other.next_json().await["event"], "first");
    assert_eq!(other.next_json().await["event"], "second");
    assert_eq!(
        excluded.next_json().await["event"],
        "second",
        "the excluded connection never saw `first`"
    );
}

#[tokio::test]
async fn private_channels_check_the_signature() {
    let app = spawn_app().await;
    let (mut client, socket_id) = app.connected(APP.1).await;
    let ok = client
        .subscribe(
            "private-a",
            &channel_auth(&socket_id, "private-a", None),
            None,
        )
        .await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");

    let wrong = channel_auth(&socket_id, "private-a", None);
    let error = client.subscribe("private-b", &wrong, None).await;
    assert_eq!(error["event"], "pusher:error");
    let channel_error = client.next_json().await;
    assert_eq!(channel_error["event"], "pusher:subscription_error");
    assert_eq!(data_of(&channel_error)["status"], 401);

    // A signature made with another app's secret does not open this app's channel.
    let foreign = format!(
        "{}:{}",
        APP.1,
        protocol::sign::hmac_hex(OTHER_APP.2, &format!("{socket_id}:private-c"))
    );
    assert_eq!(
        client.subscribe("private-c", &foreign, None).await["event"],
        "pusher:error"
    );
}

#[tokio::test]
async fn presence_members_are_users_not_connections() {
    let app = spawn_app().await;
    let channel = "presence-room";
    let ann = r#"{"user_id":"ann","user_info":{"name":"Ann"}}"#;
    let bob = r#"{"user_id":7}"#;

    let (mut watcher, watcher_id) = app.connected(APP.1).await;
    let joined = watcher
        .subscribe(
            channel,
            &channel_auth(&watcher_id, channel, Some(bob)),
            Some(bob),
        )
        .await;
    assert_eq!(
        data_of(&joined)["presence"],
        json!({"ids":["7"],"hash":{"7":{}},"count":1})
    );

    let (mut ann_tab1, tab1_id) = app.connected(APP.1).await;
    let joined = ann_tab1
        .subscribe(
            channel,
            &channel_auth(&tab1_id, channel, Some(ann)),
            Some(ann),
        )
        .await;
    assert_eq!(data_of(&joined)["presence"]["count"], 2);
    let added = watcher.next_json().await;
    assert_eq!(added["event"], "pusher_internal:member_added");
    assert_eq!(
        data_of(&added),
        json!({"user_id":"ann","user_info":{"name":"Ann"}})
    );

    let (mut ann_tab2, tab2_id) = app.connected(APP.1).await;
    let joined = ann_tab2
        .subscribe(
            channel,
            &channel_auth(&tab2_id, channel, Some(ann)),
            Some(ann),
        )
        .await;
    assert_eq!(
        data_of(&joined)["presence"]["count"],
        2,
        "a second tab is not a new member"
    );

    let users = app
        .api(
            APP,
            "GET",
            &format!("/apps/{}/channels/{channel}/users", APP.0),
            &[],
            None,
        )
        .await;
    assert_eq!(
        users.json::<serde_json::Value>().await.unwrap(),
        json!({"users":[{"id":"7"},{"id":"ann"}]})
    );

    ann_tab1.close().await;
    // Still a member through tab 2: the next thing the watcher sees is this marker event.
    app.trigger(channel, "marker", "m", None).await;
    assert_eq!(watcher.next_json().await["event"], "marker");
    ann_tab2.close().await;
    let removed = watcher.next_json().await;
    assert_eq!(removed["event"], "pusher_internal:member_removed");
    assert_eq!(data_of(&removed), json!({"user_id":"ann"}));
}

#[tokio::test]
async fn client_events_reach_others_never_the_sender_and_are_rate_limited() {
    let app = spawn_app().await;
    let channel = "private-chat";
    let (mut sender, sender_id) = app.connected(APP.1).await;
    let (mut receiver, receiver_id) = app.connected(APP.1).await;
    sender
        .subscribe(channel, &channel_auth(&sender_id, channel, None), None)
        .await;
    receiver
        .subscribe(channel, &channel_auth(&receiver_id, channel, None), None)
        .await;

    for n in 0..30 {
        sender
            .send(json!({"event":"client-typing","channel":channel,"data":{"n":n}}))
            .await;
    }
    // The rate limit (10/s, Pusher's) answers with a 4301 error frame and keeps the socket.
    let refused = sender.expect_event("pusher:error").await;
    assert_eq!(refused["data"]["code"], 4301);
    sender.send(json!({"event":"pusher:ping","data":{}})).await;
    sender.expect_event("pusher:pong").await;

    app.trigger(channel, "end", "", None).await;
    let mut received = Vec::new();
    loop {
        let frame = receiver.next_json().await;
        if frame["event"] == "end" {
            break;
        }
        assert_eq!(frame["event"], "client-typing");
        received.push(data_of(&frame)["n"].as_i64().unwrap());
    }
    assert!(received.len() >= 10 && received.len() < 30, "{received:?}");
    assert_eq!(
        received,
        (0..received.len() as i64).collect::<Vec<_>>(),
        "in order, none skipped before the limit"
    );
    // The sender's own events never came back to it.
    loop {
        let frame = sender.next_json().await;
        assert_ne!(
            frame["event"], "client-typing",
            "client events are not echoed"
        );
        if frame["event"] == "end" {
            break;
        }
    }
}

#[tokio::test]
async fn malformed_frames_get_an_error_and_keep_the_connection() {
    let app = spawn_app().await;
    let (mut client, _) = app.connected(APP.1).await;
    for frame in [
        "not json",
        "{}",
        r#"{"event":"pusher:subscribe","data":{"channel":"bad name!"}}"#,
    ] {
        client.send_raw(Message::text(frame)).await;
        let error = client.next_json().await;
        assert_eq!(error["event"], "pusher:error", "{frame}");
    }
    assert_eq!(
        client.subscribe("still-works", "", None).await["event"],
        "pusher_internal:subscription_succeeded"
    );
}

#[tokio::test]
async fn an_oversize_frame_closes_with_message_too_big() {
    let app = spawn_app().await;
    let (mut client, _) = app.connected(APP.1).await;
    client.send_raw(Message::text("x".repeat(70 * 1024))).await;
    let (closed, _) = client.expect_close().await;
    assert_eq!(closed.code, 1009);
}

#[tokio::test]
async fn oversize_client_event_is_refused_with_an_error() {
    let app = spawn_app().await;
    let (mut client, socket_id) = app.connected(APP.1).await;
    client
        .subscribe(
            "private-a",
            &channel_auth(&socket_id, "private-a", None),
            None,
        )
        .await;
    client
        .send(json!({"event":"client-big","channel":"private-a","data":"x".repeat(11 * 1024)}))
        .await;
    let error = client.expect_event("pusher:error").await;
    assert!(error["data"]["message"].as_str().unwrap().contains("10240"));
}

#[tokio::test]
async fn a_silent_client_is_pinged_then_closed_with_4201() {
    use std::time::Duration;
    let settings = edge::EdgeSettings {
        activity_timeout: Duration::from_secs(1),
        pong_timeout: Duration::from_secs(1),
        ..edge::EdgeSettings::default()
    };
    let app = crate::helpers::spawn_app_with(settings).await;
    let (mut client, _) = app.connected(APP.1).await;
    assert_eq!(client.next_json().await["event"], "pusher:ping");
    let (closed, _) = client.expect_close().await;
    assert_eq!(closed.code, 4201);
}

#[tokio::test]
async fn a_client_answering_pings_stays_connected() {
    use std::time::Duration;
    let settings = edge::EdgeSettings {
        activity_timeout: Duration::from_secs(1),
        pong_timeout: Duration::from_secs(1),
        ..edge::EdgeSettings::default()
    };
    let app = crate::helpers::spawn_app_with(settings).await;
    let (mut client, _) = app.connected(APP.1).await;
    for _ in 0..3 {
        assert_eq!(client.next_json().await["event"], "pusher:ping");
        client.send(json!({"event":"pusher:pong","data":{}})).await;
    }
    client.send(json!({"event":"pusher:ping","data":{}})).await;
    assert_eq!(
        client.expect_event("pusher:pong").await["event"],
        "pusher:pong"
    );
}

#[tokio::test]
async fn stopping_the_server_asks_clients_to_reconnect_with_4200() {
    let app = spawn_app().await;
    let (mut client, _) = app.connected(APP.1).await;
    client.subscribe("news", "", None).await;
    let stopper = app.stopper.clone();
    let stopping = tokio::spawn(async move { stopper.stop().await });
    let (closed, _) = client.expect_close().await;
    assert_eq!(closed.code, 4200);
    stopping.await.unwrap();
}
