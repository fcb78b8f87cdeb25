//! Our SDK's HTTP carriers under `/sb/app/{key}`: SSE, long polling, polling, HTTP streaming
//! and the forever frame, each driven from Rust as a browser would, with the cursor.

use std::collections::HashMap;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::carrier_client::{Carrier, KINDS, Kind, ORIGIN, publish, short_grace, until_unoccupied};
use crate::helpers::{APP, channel_auth, data_of, spawn_app, spawn_app_with};

#[tokio::test]
async fn every_carrier_connects_subscribes_and_receives_across_origins() {
    let app = spawn_app().await;
    for kind in KINDS {
        let channel = format!("news-{kind:?}");
        let mut carrier = Carrier::new(&app, kind, vec![json!({ "channel": channel })]);
        let headers = carrier.open().await;
        assert_eq!(headers["access-control-allow-origin"], ORIGIN, "{kind:?}");
        assert!(
            headers["access-control-allow-headers"]
                .to_str()
                .unwrap()
                .contains("Last-Event-ID")
        );
        let content_type = headers["content-type"].to_str().unwrap().to_owned();
        let expected = match kind {
            Kind::Sse => "text/event-stream",
            Kind::LongPoll | Kind::Poll => "application/json",
            Kind::Stream => "application/x-ndjson",
            Kind::Iframe => "text/html",
        };
        assert!(
            content_type.starts_with(expected),
            "{kind:?}: {content_type}"
        );
        let established = carrier.next().await.unwrap();
        assert_eq!(
            established["event"], "pusher:connection_established",
            "{kind:?}"
        );
        let succeeded = carrier
            .expect_event("pusher_internal:subscription_succeeded")
            .await;
        assert_eq!(succeeded["channel"], channel.as_str());
        assert_eq!(data_of(&succeeded)["serial"], 0);
        publish(&app, &channel, "hello").await;
        let event = carrier.expect_event("tick").await;
        assert_eq!(
            (event["data"].clone(), event["serial"].clone()),
            (json!("hello"), json!(1)),
            "{kind:?}"
        );
        assert!(
            carrier.cursor.is_some(),
            "{kind:?}: a cursor came with the frame"
        );
    }
}

#[tokio::test]
async fn preflight_and_errors_carry_cors_headers() {
    let app = spawn_app().await;
    let url = |path: &str| format!("http://127.0.0.1:{}/sb/app/{}/{path}", app.port, APP.1);
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, url("send"))
        .header("Origin", ORIGIN)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    let headers = preflight.headers();
    assert_eq!(headers["access-control-allow-origin"], ORIGIN);
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    let unknown = app
        .http
        .post(url("send"))
        .query(&[("session", "1.1"), ("cursor", "x")])
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.headers()["access-control-allow-origin"], "*");
    let bad_callback = app
        .http
        .get(url("iframe"))
        .query(&[("callback", "alert(1)"), ("origin", ORIGIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_callback.status(), StatusCode::BAD_REQUEST);
    for origin in [None, Some("*"), Some("http://page.example/path")] {
        let mut query = vec![("callback", "sb")];
        query.extend(origin.map(|origin| ("origin", origin)));
        let bad_origin = app
            .http
            .get(url("iframe"))
            .query(&query)
            .send()
            .await
            .unwrap();
        assert_eq!(bad_origin.status(), StatusCode::BAD_REQUEST, "{origin:?}");
    }
}

#[tokio::test]
async fn a_refusal_is_a_pusher_error_and_a_close_in_a_200() {
    let app = spawn_app().await;
    let mut carrier = Carrier::new(&app, Kind::Sse, Vec::new());
    carrier.base = format!("http://127.0.0.1:{}/sb/app/nosuchkey", app.port);
    carrier.open().await;
    let error = carrier.next().await.unwrap();
    assert_eq!(error["event"], "pusher:error");
    assert_eq!(error["data"]["code"], 4001);
    let closed = carrier.next().await.unwrap();
    assert_eq!(closed["event"], "switchboard:closed");
    assert_eq!(closed["data"]["code"], 4001);
    assert!(carrier.next().await.is_none(), "the stream ends");
}

#[tokio::test]
async fn a_client_event_sent_upstream_reaches_a_websocket_subscriber() {
    let app = spawn_app().await;
    let (mut ws, ws_socket) = app.connected(APP.1).await;
    ws.send(json!({"event":"pusher:subscribe","data":{
        "channel":"private-chat","auth": channel_auth(&ws_socket, "private-chat", None)}}))
        .await;
    ws.expect_event("pusher_internal:subscription_succeeded")
        .await;
    for kind in KINDS {
        let mut carrier = Carrier::new(&app, kind, Vec::new());
        carrier.expect_event("pusher:connection_established").await;
        let socket_id = carrier.session.clone().unwrap();
        let subscribe = json!([{"event":"pusher:subscribe","data":{
            "channel":"private-chat","auth": channel_auth(&socket_id, "private-chat", None)}}]);
        assert_eq!(carrier.send(subscribe).await, StatusCode::NO_CONTENT);
        carrier
            .expect_event("pusher_internal:subscription_succeeded")
            .await;
        let event = json!([{"event":"client-typing","channel":"private-chat","data":{"kind":format!("{kind:?}")}}]);
        assert_eq!(carrier.send(event).await, StatusCode::NO_CONTENT);
        let received = ws.expect_event("client-typing").await;
        assert_eq!(
            serde_json::from_str::<Value>(received["data"].as_str().unwrap()).unwrap(),
            json!({"kind": format!("{kind:?}")})
        );
        // Without a cursor of the session, nobody else may post to it.
        let forged = app
            .http
            .post(format!("{}/send", carrier.base))
            .query(&[("session", socket_id.as_str())])
            .body("[]")
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn another_edge_rebuilds_the_session_with_its_id_and_resumes_from_the_cursor() {
    // Two edges sharing nothing but the apps: each its own broker and history.
    let first = spawn_app_with(short_grace()).await;
    let second = spawn_app_with(short_grace()).await;
    for kind in KINDS {
        let channel = format!("moved-{kind:?}");
        let mut carrier = Carrier::subscribed(&first, kind, &channel).await;
        publish(&first, &channel, "on the first edge").await;
        carrier.expect_event("tick").await;
        let socket_id = carrier.session.clone().unwrap();

        // The next request lands on the second edge, which never saw the session.
        carrier.move_to(second.port);
        let established = carrier.expect_event("pusher:connection_established").await;
        assert_eq!(
            data_of(&established)["socket_id"],
            socket_id.as_str(),
            "{kind:?}"
        );
        carrier
            .expect_event("pusher_internal:subscription_succeeded")
            .await;
        // Its history is not the first edge's: said so, never silently skipped.
        let failed = carrier.expect_event("switchboard:resume_failed").await;
        assert_eq!(data_of(&failed)["reason"], "epoch_changed");
        publish(&second, &channel, "b1").await;
        assert_eq!(carrier.expect_event("tick").await["data"], "b1");

        // Gone long enough for the second edge to forget the session too; it comes back
        // with the cursor and gets what it missed from that edge's history.
        carrier.cut();
        if matches!(kind, Kind::LongPoll | Kind::Poll) {
            carrier.lose_next_answer = false;
        }
        until_unoccupied(&second, &channel).await;
        publish(&second, &channel, "b2").await;
        publish(&second, &channel, "b3").await;
        let established = carrier.expect_event("pusher:connection_established").await;
        assert_eq!(data_of(&established)["socket_id"], socket_id.as_str());
        let succeeded = carrier
            .expect_event("pusher_internal:subscription_succeeded")
            .await;
        assert_eq!(
            data_of(&succeeded)["serial"],
            1,
            "{kind:?}: resumes after b1"
        );
        let next = carrier.next().await.unwrap();
        assert_eq!(
            (next["event"].clone(), next["data"].clone()),
            (json!("tick"), json!("b2"))
        );
        assert_eq!(carrier.next().await.unwrap()["data"], "b3");
    }
}

/// Events published while the client is cut and resumes.
const LOSS_TEST_EVENTS: u64 = 2_000;
/// The publisher stays at most this far ahead of what the client has, so every gap fits the
/// static apps' 100-event window (flow control, not timing).
const PUBLISHER_LEAD: u64 = 50;

enum Cut {
    /// The client's network drops the open request (and what was in flight).
    Client,
    /// The server closes the session (terminate_connections: 4009).
    Server,
    /// The client stays away until the session expires on the server.
    Expiry,
}

async fn loss_test(kind: Kind) {
    loss_test_with(kind, false).await;
}

async fn loss_test_with(kind: Kind, short_ids: bool) {
    let app = Arc::new(spawn_app_with(short_grace()).await);
    let cuts: HashMap<u64, Cut> = [
        (150, Cut::Client),
        (420, Cut::Expiry),
        (777, Cut::Server),
        (1001, Cut::Client),
        (1333, Cut::Expiry),
        (1600, Cut::Server),
        (1999, Cut::Client),
    ]
    .into_iter()
    .collect();
    let (received_tx, received_rx) = watch::channel(0u64);
    let mut publisher = None;
    let mut received: Vec<u64> = Vec::new();
    let mut last_serial = 0;
    let (mut duplicates, mut closed_by_server) = (0, 0);
    let mut carrier = Carrier::new(&app, kind, vec![json!({"channel": "loss"})]);
    carrier.short_ids = short_ids;
    let mut awaiting_close = false;
    while (received.len() as u64) < LOSS_TEST_EVENTS || awaiting_close {
        let Some(frame) = carrier.next().await else {
            continue; // a stream ended: the next `next` reconnects with the cursor
        };
        match frame["event"].as_str().unwrap() {
            "pusher_internal:subscription_succeeded" => {
                publisher.get_or_insert_with(|| {
                    let (app, mut received_rx) = (app.clone(), received_rx.clone());
                    tokio::spawn(async move {
                        for n in 1..=LOSS_TEST_EVENTS {
                            received_rx
                                .wait_for(|received| received + PUBLISHER_LEAD >= n)
                                .await
                                .expect("the client is alive");
                            publish(&app, "loss", &n.to_string()).await;
                        }
                    })
                });
                assert_eq!(
                    data_of(&frame)["serial"],
                    last_serial,
                    "resumed where it left off"
                );
            }
            "switchboard:resume_failed" => panic!("{frame}"),
            "pusher:signin_success" => {
                let path = format!("/apps/{}/users/reader/terminate_connections", APP.0);
                let response = app.api(APP, "POST", &path, &[], Some(&json!({}))).await;
                assert_eq!(response.status(), 200);
            }
            "switchboard:closed" => {
                assert!(awaiting_close, "only the cuts close the session: {frame}");
                assert_eq!(frame["data"]["code"], 4009);
                awaiting_close = false;
                closed_by_server += 1;
            }
            "tick" => {
                let serial = frame["serial"].as_u64().expect("a serial");
                if serial <= last_serial {
                    duplicates += 1;
                    continue;
                }
                assert_eq!(serial, last_serial + 1, "{kind:?}: no serial skipped");
                last_serial = serial;
                received.push(frame["data"].as_str().unwrap().parse().unwrap());
                let count = received.len() as u64;
                received_tx.send_replace(count);
                match cuts.get(&count) {
                    Some(Cut::Client) => carrier.cut(),
                    Some(Cut::Expiry) => {
                        carrier.cut();
                        until_unoccupied(&app, "loss").await;
                        if matches!(kind, Kind::LongPoll | Kind::Poll) {
                            carrier.lose_next_answer = false;
                        }
                    }
                    Some(Cut::Server) => {
                        // Signed in, so terminate_connections reaches it (on signin_success).
                        let socket_id = carrier.session.clone().unwrap();
                        let user_data = r#"{"id":"reader"}"#;
                        let signature = protocol::sign::hmac_hex(
                            APP.2,
                            &protocol::sign::user_auth_string(&socket_id, user_data),
                        );
                        let auth = format!("{}:{signature}", APP.1);
                        let signin = json!([{"event":"pusher:signin","data":{"auth":auth,"user_data":user_data}}]);
                        assert_eq!(carrier.send(signin).await, StatusCode::NO_CONTENT);
                        awaiting_close = true;
                    }
                    None => {}
                }
            }
            _ => {}
        }
    }
    let publisher = publisher.expect("the publisher started");
    publisher.await.expect("the publisher finished");
    assert_eq!(
        received,
        (1..=LOSS_TEST_EVENTS).collect::<Vec<_>>(),
        "{kind:?}"
    );
    assert_eq!(
        closed_by_server, 2,
        "{kind:?}: every server cut took effect"
    );
    assert_eq!(duplicates, 0, "{kind:?}: each serial once");
}

#[tokio::test]
async fn sse_loses_nothing_across_cuts() {
    loss_test(Kind::Sse).await;
}

#[tokio::test]
async fn sse_with_short_ids_loses_nothing_across_cuts() {
    loss_test_with(Kind::Sse, true).await;
}

#[tokio::test]
async fn http_streaming_with_short_ids_loses_nothing_across_cuts() {
    loss_test_with(Kind::Stream, true).await;
}

/// With short ids, most frames carry only a delta of the last full cursor: a stream cut
/// between two such frames resumes after the last one processed, from this edge's buffer
/// and, once the session has expired, from the channel's history: nothing lost or repeated.
#[tokio::test]
async fn an_sse_stream_cut_between_delta_frames_resumes_exactly() {
    let app = spawn_app_with(short_grace()).await;
    let mut carrier = Carrier::new(&app, Kind::Sse, vec![json!({"channel": "deltas"})]);
    carrier.short_ids = true;
    carrier
        .expect_event("pusher_internal:subscription_succeeded")
        .await;
    for round in 0..3 {
        let (from, upto) = (round * 4 + 1, round * 4 + 4);
        for n in from..=upto {
            publish(&app, "deltas", &n.to_string()).await;
        }
        // Two frames processed, each with a delta id; the cut loses the rest in flight.
        for n in from..from + 2 {
            let tick = carrier.expect_event("tick").await;
            assert_eq!(tick["data"], n.to_string());
            assert!(
                carrier.last_id.starts_with('~') && carrier.last_id.len() < 16,
                "a short delta id: {}",
                carrier.last_id
            );
        }
        carrier.cut();
        if round == 2 {
            // The session expires: another incarnation rebuilds from the cursor's positions.
            until_unoccupied(&app, "deltas").await;
        }
        for n in from + 2..=upto {
            let tick = carrier.expect_event("tick").await;
            assert_eq!(
                tick["data"],
                n.to_string(),
                "round {round}: exactly the next"
            );
        }
    }
    publish(&app, "deltas", "last").await;
    assert_eq!(carrier.expect_event("tick").await["data"], "last");
}

#[tokio::test]
async fn long_polling_loses_nothing_across_cuts() {
    loss_test(Kind::LongPoll).await;
}

#[tokio::test]
async fn polling_loses_nothing_across_cuts() {
    loss_test(Kind::Poll).await;
}

#[tokio::test]
async fn http_streaming_loses_nothing_across_cuts() {
    loss_test(Kind::Stream).await;
}

#[tokio::test]
async fn the_forever_frame_loses_nothing_across_cuts() {
    loss_test(Kind::Iframe).await;
}
