//! Our HTTP carriers against a hostile client: session hijack (guessed, pre-created or
//! forged ids and cursors, leaked and stale cursors), session floods, races between
//! downstream requests of one session.

use std::time::Duration;

use edge::EdgeSettings;
use protocol::carrier_cursor::{self, Cursor};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::carrier_client::{Carrier, Kind, ORIGIN, STEP_TIMEOUT, publish, until_unoccupied};
use crate::helpers::{
    APP, TestApp, assert_too_many_requests, channel_auth, data_of, http_from_another_address,
    spawn_app, spawn_app_with,
};
use crate::platform::spawn_platform_with;

/// One poll (`wait=0`) as an attacker scripts it: the whole answer.
async fn poll(app: &TestApp, key: &str, query: &[(&str, &str)]) -> Value {
    let url = format!("http://127.0.0.1:{}/sb/app/{key}/poll", app.port);
    let response = app.http.get(url).query(query).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn send(app: &TestApp, session: &str, cursor: &str, frames: Value) -> StatusCode {
    let url = format!("http://127.0.0.1:{}/sb/app/{}/send", app.port, APP.1);
    app.http
        .post(url)
        .query(&[("session", session), ("cursor", cursor)])
        .body(frames.to_string())
        .send()
        .await
        .unwrap()
        .status()
}

fn session_of(answer: &Value) -> String {
    answer["session"].as_str().expect("a session").to_owned()
}

#[tokio::test]
async fn socket_ids_are_unguessable_digits_dot_digits() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(app.connected(APP.1).await.1);
        ids.push(session_of(&poll(&app, APP.1, &[]).await));
    }
    for id in &ids {
        let (left, right) = id.split_once('.').expect("digits.digits");
        assert!(
            [left, right]
                .iter()
                .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())),
            "{id}"
        );
    }
    let parse = |id: &String| -> (u64, u64) {
        let (left, right) = id.split_once('.').unwrap();
        (left.parse().unwrap(), right.parse().unwrap())
    };
    let parts: Vec<(u64, u64)> = ids.iter().map(parse).collect();
    let lefts: std::collections::HashSet<u64> = parts.iter().map(|part| part.0).collect();
    assert!(lefts.len() > 1, "no per-process prefix: {ids:?}");
    for pair in parts.windows(2) {
        assert!(
            pair[1].0 != pair[0].0 || pair[1].1.abs_diff(pair[0].1) > 1_000,
            "no counter: {ids:?}"
        );
    }
}

#[tokio::test]
async fn a_hijacker_can_neither_take_over_nor_speak_as_the_victim_in_a_private_channel() {
    let app = spawn_app().await;
    let channel = "private-chat";
    let (mut listener, listener_id) = app.connected(APP.1).await;
    let auth = channel_auth(&listener_id, channel, None);
    listener
        .send(json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth}}))
        .await;
    listener
        .expect_event("pusher_internal:subscription_succeeded")
        .await;

    // The attacker pre-creates the ids it guesses the victim will get: it gets ids of its own.
    for guess in ["1.1", "123.456", "4294967295.2"] {
        let answer = poll(&app, APP.1, &[("session", guess)]).await;
        assert_ne!(session_of(&answer), guess, "nobody chooses their socket id");
    }
    // And keeps a session and a valid cursor of its own.
    let own = poll(&app, APP.1, &[]).await;
    let (attacker, attacker_cursor) =
        (session_of(&own), own["cursor"].as_str().unwrap().to_owned());

    let mut victim = Carrier::new(&app, Kind::LongPoll, Vec::new());
    victim.expect_event("pusher:connection_established").await;
    let victim_id = victim.session.clone().unwrap();
    assert_ne!(victim_id, attacker);
    let subscribe = json!([{"event":"pusher:subscribe","data":{
        "channel": channel, "auth": channel_auth(&victim_id, channel, None)}}]);
    assert_eq!(victim.send(subscribe).await, StatusCode::NO_CONTENT);
    victim
        .expect_event("pusher_internal:subscription_succeeded")
        .await;

    // Knowing the victim's id (say, from a log) with its own cursor, or a cursor it forged
    // for that id, the attacker can neither send as the victim nor attach to its session.
    let forged = Cursor {
        socket_id: victim_id.clone(),
        incarnation: "0000000000000000".into(),
        frame: 1,
        expires: u64::MAX,
        ..Cursor::default()
    }
    .encode(APP.1, "a guessed secret");
    let evil = json!([
        {"event":"pusher:subscribe","data":{"channel":channel}},
        {"event":"client-evil","channel":channel,"data":{}},
    ]);
    for cursor in [attacker_cursor.as_str(), forged.as_str(), ""] {
        assert_eq!(
            send(&app, &victim_id, cursor, evil.clone()).await,
            StatusCode::NOT_FOUND,
            "send with {cursor:?}"
        );
        let subs = json!([{"channel": channel, "auth": "key1:0000"}]).to_string();
        let query = [
            ("session", victim_id.as_str()),
            ("cursor", cursor),
            ("subs", subs.as_str()),
        ];
        let answer = poll(&app, APP.1, &query).await;
        assert_ne!(
            session_of(&answer),
            victim_id,
            "a new session, not the victim's"
        );
    }

    // The victim's session is untouched: its client event is the first the listener sees,
    // and it still receives the channel's events.
    let real = json!([{"event":"client-real","channel":channel,"data":{}}]);
    assert_eq!(victim.send(real).await, StatusCode::NO_CONTENT);
    let first = loop {
        let frame = listener.next_json().await;
        if frame["event"].as_str().unwrap().starts_with("client-") {
            break frame;
        }
    };
    assert_eq!(first["event"], "client-real");
    publish(&app, channel, "still yours").await;
    assert_eq!(victim.expect_event("tick").await["data"], "still yours");
}

#[tokio::test]
async fn a_leaked_cursor_expires_while_the_client_keeps_fresh_ones() {
    let app = spawn_app_with(EdgeSettings {
        sb_cursor_lifetime: Duration::from_secs(1),
        ..EdgeSettings::default()
    })
    .await;
    let mut client = Carrier::subscribed(&app, Kind::Sse, "news").await;
    let session = client.session.clone().unwrap();
    let leaked = client.cursor.clone().unwrap();
    assert_eq!(
        send(&app, &session, &leaked, json!([])).await,
        StatusCode::NO_CONTENT
    );
    // Until it expires: waited for, not timed.
    tokio::time::timeout(STEP_TIMEOUT, async {
        while send(&app, &session, &leaked, json!([])).await != StatusCode::NOT_FOUND {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the leaked cursor expires");
    let answer = poll(&app, APP.1, &[("session", &session), ("cursor", &leaked)]).await;
    assert_ne!(
        session_of(&answer),
        session,
        "an expired cursor rebuilds nothing"
    );
    // The attached client is given fresh cursors meanwhile (an idle session's refresh); the
    // first pongs read may be old ones, buffered while the test was not reading.
    tokio::time::timeout(STEP_TIMEOUT, async {
        loop {
            client.expect_event("pusher:pong").await;
            if client.send(json!([])).await == StatusCode::NO_CONTENT {
                return;
            }
        }
    })
    .await
    .expect("a fresh cursor arrives");
    let fresh = client.cursor.clone().unwrap();
    let expires = carrier_cursor::decode_unverified(&fresh).unwrap().expires;
    let leaked_expires = carrier_cursor::decode_unverified(&leaked).unwrap().expires;
    assert!(expires > leaked_expires);
}

#[tokio::test]
async fn a_client_back_after_its_cursor_expired_gets_a_new_session_that_resumes() {
    let app = spawn_app_with(EdgeSettings {
        sb_cursor_lifetime: Duration::from_secs(1),
        ..crate::carrier_client::short_grace()
    })
    .await;
    let mut client = Carrier::subscribed(&app, Kind::Sse, "late").await;
    publish(&app, "late", "seen").await;
    assert_eq!(client.expect_event("tick").await["data"], "seen");
    let session = client.session.clone().unwrap();
    client.cut();
    until_unoccupied(&app, "late").await;
    publish(&app, "late", "missed").await;
    // Until the client's cursor has expired: waited for on the clock the cursor names.
    let expires = carrier_cursor::decode_unverified(client.cursor.as_deref().unwrap())
        .unwrap()
        .expires;
    tokio::time::timeout(STEP_TIMEOUT, async {
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        };
        while now() <= expires {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    let established = client.expect_event("pusher:connection_established").await;
    assert_ne!(data_of(&established)["socket_id"], session.as_str());
    let succeeded = client
        .expect_event("pusher_internal:subscription_succeeded")
        .await;
    assert_eq!(
        data_of(&succeeded)["serial"],
        1,
        "resumed after what it saw"
    );
    assert_eq!(client.expect_event("tick").await["data"], "missed");
}

#[tokio::test]
async fn send_requires_the_current_incarnation_of_the_session() {
    let app = spawn_app_with(crate::carrier_client::short_grace()).await;
    let mut client = Carrier::subscribed(&app, Kind::Sse, "inc").await;
    let session = client.session.clone().unwrap();
    let old = client.cursor.clone().unwrap();
    // The session expires and is rebuilt, with the same id, from the cursor.
    client.cut();
    until_unoccupied(&app, "inc").await;
    let established = client.expect_event("pusher:connection_established").await;
    assert_eq!(data_of(&established)["socket_id"], session.as_str());
    client
        .expect_event("pusher_internal:subscription_succeeded")
        .await;
    assert_eq!(
        send(&app, &session, &old, json!([])).await,
        StatusCode::NOT_FOUND,
        "a cursor of the previous incarnation"
    );
    assert_eq!(client.send(json!([])).await, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_flood_of_anonymous_polls_gets_429_and_a_small_plans_user_still_connects() {
    // The per-address limit is what is tested: the app's own connect pace (200 a second) is
    // off, or a fast machine's flood would meet its 4100 first (and a slow one's would not).
    let platform = spawn_platform_with(EdgeSettings {
        app_connects_per_second: 0,
        ..EdgeSettings::default()
    })
    .await;
    platform.add_plan_with_connections("three", 3).await;
    let (_, created) = platform
        .account_with_app("flood@example.com", Some("three"))
        .await;
    let app = &platform.app;
    // Anonymous polls that never come back, from one address, until refused.
    let mut created_sessions = 0;
    let limited = loop {
        let url = format!("http://127.0.0.1:{}/sb/app/{}/poll", app.port, created.key);
        let response = app.http.get(url).send().await.unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            break response;
        }
        let answer: Value = response.json().await.unwrap();
        assert!(answer["session"].is_string(), "not refused: {answer}");
        created_sessions += 1;
        assert!(created_sessions <= 1_000, "the flood is never limited");
    };
    assert!(
        created_sessions > 3,
        "more than the plan's connections were tried"
    );
    assert_too_many_requests(&limited);
    let body: Value = limited.json().await.unwrap();
    assert!(body["error"].is_string());

    // A real user, from another address, still gets in: over a carrier and a WebSocket.
    let http = http_from_another_address();
    let url = format!("http://127.0.0.1:{}/sb/app/{}/poll", app.port, created.key);
    let answer: Value = http.get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        answer["frames"][0]["event"], "pusher:connection_established",
        "{answer}"
    );
    let mut ws = app.connect(&created.key).await;
    let first = ws.next_frame().await;
    assert_eq!(first["event"], "pusher:connection_established", "{first}");
}

#[tokio::test]
async fn a_session_never_polled_again_ends_after_the_first_poll_grace() {
    let app = spawn_app_with(EdgeSettings {
        sb_first_poll_grace: Duration::from_millis(300),
        // Far beyond the test: only the end of probation can end the polled session.
        sb_session_grace: Duration::from_secs(3_600),
        sb_heartbeat_interval: Duration::from_millis(100),
        ..EdgeSettings::default()
    })
    .await;
    let mut kept = Carrier::subscribed(&app, Kind::Sse, "kept").await;
    let subs = json!([{"channel": "abandoned"}]).to_string();
    poll(&app, APP.1, &[("subs", &subs)]).await;
    until_unoccupied(&app, "abandoned").await;
    // A session whose downstream stayed attached is in use, and lives on.
    publish(&app, "kept", "alive").await;
    assert_eq!(kept.expect_event("tick").await["data"], "alive");
}

#[tokio::test]
async fn concurrent_downstream_requests_on_one_session_all_answer() {
    let first = spawn_app().await;
    let second = spawn_app().await;
    let client = Carrier::subscribed(&first, Kind::Poll, "race").await;
    let session = client.session.clone().unwrap();
    let cursor = client.cursor.clone().unwrap();
    // Many subscriptions: a rebuild takes a while to send them all, and racing requests
    // find the session meanwhile.
    let subs: Vec<Value> = (0..100)
        .map(|n| json!({"channel": format!("race-{n}")}))
        .collect();
    let subs = Value::from(subs).to_string();
    // On the edge that holds the session, then on one that must rebuild it: at once.
    for app in [&first, &second] {
        let requests = (0..40).map(|n| {
            let url = format!("http://127.0.0.1:{}/sb/app/{}/poll", app.port, APP.1);
            let wait = (n % 2).to_string();
            let query = [
                ("session", session.clone()),
                ("cursor", cursor.clone()),
                ("subs", subs.clone()),
                ("wait", wait),
            ];
            let request = app.http.get(url).header("Origin", ORIGIN).query(&query);
            async move {
                let response = request.send().await.expect("an answer, not a reset");
                assert_eq!(response.status(), StatusCode::OK);
                response.json::<Value>().await.expect("a whole JSON answer")
            }
        });
        for answer in futures_util::future::join_all(requests).await {
            assert!(answer["frames"].is_array(), "{answer}");
        }
    }
    // Both edges still serve the session.
    for app in [&first, &second] {
        let answer = poll(app, APP.1, &[("session", &session), ("cursor", &cursor)]).await;
        assert!(answer["session"].is_string(), "{answer}");
    }
}

#[tokio::test]
async fn malformed_or_oversized_subs_are_refused_with_the_reason() {
    let app = spawn_app().await;
    let url = format!("http://127.0.0.1:{}/sb/app/{}/poll", app.port, APP.1);
    let many: Vec<Value> = (0..1_001)
        .map(|n| json!({"channel": format!("c{n}")}))
        .collect();
    for (subs, reason) in [
        (json!([{"channel": "bad name"}]), "invalid channel"),
        (json!([{"channel": "x".repeat(201)}]), "invalid channel"),
        (json!({"channel": "news"}), "JSON array"),
        (Value::from(many), "at most 1000"),
    ] {
        let subs = subs.to_string();
        let response = app
            .http
            .get(&url)
            .query(&[("subs", &subs)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains(reason), "{body}");
    }
}
