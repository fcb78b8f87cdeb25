//! Webhooks: configured per app through `/v1`, and the sender (`PgWebhookSink`) against a
//! local receiver: filtering per endpoint, Pusher's signature, batching, the leave delay,
//! retries with backoff and the delivery log.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenancy::{WebhookEvent, WebhookSink};

use crate::helpers::{spawn_app, spawn_app_allowing_private_webhooks};
use crate::webhook_receiver::{Received, Receiver};
use crate::webhook_support::{
    add_webhook, fast_settings, has, log_until, occupied, parse_app_id, rows_of, start_sender,
    vacated,
};

#[tokio::test]
async fn webhooks_are_created_listed_and_deleted_within_the_account() {
    let app = spawn_app().await;
    let session = app.signed_up("ann@example.com").await;
    let token = app.api_token(&session).await;
    let (app_id, _, _) = app.app(&session, "chat").await;
    let path = format!("/v1/apps/{app_id}/webhooks");

    let created = app
        .post(
            &token,
            &path,
            json!({ "url": "https://example.com/hook", "event_types": ["member_removed", "member_added"] }),
        )
        .await;
    let created = created.ok(StatusCode::CREATED).clone();
    assert_eq!(created["url"], "https://example.com/hook");
    assert_eq!(created["app_id"], app_id.as_str());
    assert_eq!(
        created["event_types"],
        json!(["member_added", "member_removed"])
    );
    assert_eq!(created["batching"], false);
    let all = app
        .post(
            &session,
            &path,
            json!({ "url": "http://hooks.example.com:8443/x", "batching": true }),
        )
        .await;
    assert_eq!(all.ok(StatusCode::CREATED)["event_types"], json!([]));

    let listed = app.get(&session, &path).await;
    let ids: Vec<&Value> = listed
        .ok(StatusCode::OK)
        .as_array()
        .unwrap()
        .iter()
        .map(|hook| &hook["id"])
        .collect();
    assert_eq!(ids, [&created["id"], &all.body["id"]]);

    for (body, needle) in [
        (json!({ "url": "ftp://example.com" }), "http"),
        (json!({ "url": "not a url" }), "http"),
        (
            json!({ "url": "https://example.com", "event_types": ["channel_exploded"] }),
            "channel_exploded",
        ),
    ] {
        let refused = app.post(&session, &path, body).await;
        assert!(refused.error(StatusCode::BAD_REQUEST).contains(needle));
    }

    // Another account sees none of it.
    let other = app.signed_up("bob@example.com").await;
    app.get(&other, &path).await.error(StatusCode::NOT_FOUND);
    app.post(&other, &path, json!({ "url": "https://evil.example" }))
        .await
        .error(StatusCode::NOT_FOUND);
    let hook_path = format!("{path}/{}", created["id"].as_str().unwrap());
    app.request(&other, Method::DELETE, &hook_path, None)
        .await
        .error(StatusCode::NOT_FOUND);
    app.get(&other, &format!("{path}/deliveries"))
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(app.count("webhooks").await, 2);

    let deleted = app
        .request(&session, Method::DELETE, &hook_path, None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.request(&session, Method::DELETE, &hook_path, None)
        .await
        .error(StatusCode::NOT_FOUND);
    app.request(
        &session,
        Method::DELETE,
        &format!("{path}/not-a-uuid"),
        None,
    )
    .await
    .error(StatusCode::NOT_FOUND);
    assert_eq!(app.count("webhooks").await, 1);
    let deliveries = app.get(&session, &format!("{path}/deliveries")).await;
    assert_eq!(deliveries.ok(StatusCode::OK), &json!([]));

    let audit = app.get(&session, "/v1/audit").await;
    let actions: Vec<&str> = audit
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"webhook.created") && actions.contains(&"webhook.deleted"));
}

#[tokio::test]
async fn a_plan_without_webhooks_refuses_them() {
    let app = spawn_app().await;
    let session = app.signed_up("ann@example.com").await;
    let (app_id, _, _) = app.app(&session, "chat").await;
    sqlx::query("UPDATE plans SET webhooks_allowed = FALSE WHERE id = 'sandbox'")
        .execute(&app.pool)
        .await
        .unwrap();
    let refused = app
        .post(
            &session,
            &format!("/v1/apps/{app_id}/webhooks"),
            json!({ "url": "https://example.com/hook" }),
        )
        .await;
    assert!(refused.error(StatusCode::FORBIDDEN).contains("webhooks"));
    assert_eq!(app.count("webhooks").await, 0);
}

#[tokio::test]
async fn subscription_counting_is_an_app_setting_off_by_default() {
    let app = spawn_app().await;
    let session = app.signed_up("ann@example.com").await;
    let (app_id, _, _) = app.app(&session, "chat").await;
    let path = format!("/v1/apps/{app_id}");
    assert_eq!(
        app.get(&session, &path).await.body["subscription_counting"],
        false
    );
    let patch = |body: Value| app.request(&session, Method::PATCH, &path, Some(body));
    let changed = patch(json!({ "subscription_counting": true })).await;
    assert_eq!(changed.ok(StatusCode::OK)["subscription_counting"], true);
    let renamed = patch(json!({ "name": "renamed" })).await;
    assert_eq!(renamed.ok(StatusCode::OK)["subscription_counting"], true);
    let other = app.signed_up("bob@example.com").await;
    app.request(
        &other,
        Method::PATCH,
        &path,
        Some(json!({ "subscription_counting": false })),
    )
    .await
    .error(StatusCode::NOT_FOUND);
    assert_eq!(
        app.get(&session, &path).await.body["subscription_counting"],
        true
    );
}

#[tokio::test]
async fn events_reach_the_endpoints_that_asked_for_them_signed_as_pusher_signs() {
    let app = spawn_app_allowing_private_webhooks().await;
    let session = app.signed_up("ann@example.com").await;
    let (app_id, key, secret) = app.app(&session, "chat").await;
    let mut receiver = Receiver::start();
    let channels_only = json!({
        "url": format!("{}/channels", receiver.base),
        "event_types": ["channel_occupied", "channel_vacated"],
    });
    add_webhook(&app, &session, &app_id, channels_only).await;
    let everything = json!({ "url": format!("{}/all", receiver.base), "batching": true });
    add_webhook(&app, &session, &app_id, everything).await;
    let sink = start_sender(&app, fast_settings());
    let app_id = parse_app_id(&app_id);
    // An app without webhooks: its events go nowhere.
    let (bare_app, _, _) = app.app(&session, "bare").await;
    sink.emit(&parse_app_id(&bare_app), occupied("lost"));

    sink.emit(&app_id, occupied("room"));
    let client_event = WebhookEvent::ClientEvent {
        channel: "private-room".into(),
        event: "client-typing".into(),
        data: "{\"on\":true}".into(),
        socket_id: "1.2".into(),
        user_id: None,
    };
    sink.emit(&app_id, client_event);
    let member = WebhookEvent::MemberAdded {
        channel: "presence-room".into(),
        user_id: "u1".into(),
    };
    sink.emit(&app_id, member);

    let mut seen = Vec::new();
    while !(seen.iter().any(|r: &Received| r.path == "/channels")
        && seen
            .iter()
            .filter(|r| r.path == "/all")
            .map(|r| r.names().len())
            .sum::<usize>()
            == 3)
    {
        seen.push(receiver.next().await);
    }
    for request in &seen {
        // Exactly this header: pusher-http-node compares it whole.
        assert_eq!(request.content_type, "application/json");
        assert_eq!(request.key, key);
        assert_eq!(
            request.signature,
            protocol::sign::hmac_hex(&secret, &request.body),
            "signed over the exact body"
        );
        assert!(request.json()["time_ms"].as_u64().unwrap() > 1_600_000_000_000);
    }
    let channels: Vec<&Received> = seen.iter().filter(|r| r.path == "/channels").collect();
    assert_eq!(channels.len(), 1, "{seen:?}");
    assert_eq!(
        channels[0].json()["events"],
        json!([{ "name": "channel_occupied", "channel": "room" }])
    );
    // The batching endpoint got all three, in order, in as many requests as its window made.
    let all: Vec<Value> = seen
        .iter()
        .filter(|r| r.path == "/all")
        .flat_map(|r| r.json()["events"].as_array().unwrap().clone())
        .collect();
    assert_eq!(
        all,
        [
            json!({ "name": "channel_occupied", "channel": "room" }),
            json!({ "name": "client_event", "channel": "private-room", "event": "client-typing", "data": "{\"on\":true}", "socket_id": "1.2" }),
            json!({ "name": "member_added", "channel": "presence-room", "user_id": "u1" }),
        ]
    );

    // A channel vacated and occupied again within the delay: neither is sent. One vacated for
    // good: sent after the delay.
    sink.emit(&app_id, vacated("room"));
    sink.emit(&app_id, occupied("room"));
    sink.emit(&app_id, vacated("hall"));
    let seen = receiver.until("/channels", "channel_vacated").await;
    let last = seen.last().unwrap();
    assert_eq!(
        last.json()["events"],
        json!([{ "name": "channel_vacated", "channel": "hall" }])
    );
    // The suppressed pair would have gone out before "hall"'s; a later event proves nothing
    // else was on its way.
    sink.emit(&app_id, occupied("marker"));
    let mut after = receiver.until("/channels", "channel_occupied").await;
    after.extend(seen);
    let rooms: Vec<&Received> = after
        .iter()
        .filter(|r| r.body.contains("\"room\""))
        .collect();
    assert!(rooms.is_empty(), "{rooms:?}");

    let deliveries = app
        .get(&session, &format!("/v1/apps/{app_id}/webhooks/deliveries"))
        .await;
    let deliveries = deliveries.ok(StatusCode::OK).as_array().unwrap().clone();
    assert!(
        deliveries
            .iter()
            .all(|d| d["status"] == "delivered" && d["attempt"] == 1 && d["http_status"] == 200)
    );
    assert_eq!(sink.dropped(), 0);
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_backoff_then_given_up_and_every_attempt_is_logged() {
    let app = spawn_app_allowing_private_webhooks().await;
    let session = app.signed_up("ann@example.com").await;
    let (app_id, _, _) = app.app(&session, "chat").await;
    let mut receiver = Receiver::start();
    receiver.answer("/flaky", &[500, 503]);
    let flaky = add_webhook(
        &app,
        &session,
        &app_id,
        json!({ "url": format!("{}/flaky", receiver.base) }),
    )
    .await;
    // Nothing listens on port 9 (discard) here: every attempt is refused.
    let dead = add_webhook(
        &app,
        &session,
        &app_id,
        json!({ "url": "http://127.0.0.1:9/dead" }),
    )
    .await;
    let sink = start_sender(&app, fast_settings());
    sink.emit(&parse_app_id(&app_id), occupied("room"));

    let attempts: Vec<Received> = vec![
        receiver.next().await,
        receiver.next().await,
        receiver.next().await,
    ];
    assert!(
        attempts
            .iter()
            .all(|a| a.path == "/flaky" && a.body == attempts[0].body)
    );

    // The log: the flaky endpoint's three attempts; the dead one's retries, then "failed".
    let log = log_until(&app, &session, &app_id, |rows| {
        has(rows, &flaky, "delivered") && has(rows, &dead, "failed")
    })
    .await;
    let of = |id: &str| rows_of(&log, id);
    let flaky_rows: Vec<(i64, String, Value)> = of(&flaky)
        .iter()
        .map(|d| {
            (
                d["attempt"].as_i64().unwrap(),
                d["status"].as_str().unwrap().to_owned(),
                d["http_status"].clone(),
            )
        })
        .collect();
    assert_eq!(
        flaky_rows,
        [
            (1, "retrying".to_owned(), json!(500)),
            (2, "retrying".to_owned(), json!(503)),
            (3, "delivered".to_owned(), json!(200)),
        ]
    );
    // Coarse categories, never an error's text.
    let flaky_errors: Vec<Value> = of(&flaky).iter().map(|d| d["error"].clone()).collect();
    assert_eq!(
        flaky_errors,
        [
            json!("http_status_500"),
            json!("http_status_503"),
            Value::Null
        ]
    );
    let dead_rows = of(&dead);
    assert!(dead_rows.len() >= 3, "{dead_rows:?}");
    assert!(
        dead_rows.iter().all(|d| d["error"] == "connect_refused"),
        "{dead_rows:?}"
    );
    let (last, earlier) = dead_rows.split_last().unwrap();
    assert_eq!(last["status"], "failed");
    assert!(earlier.iter().all(|d| d["status"] == "retrying"));
    assert!(
        dead_rows
            .iter()
            .all(|d| d["http_status"].is_null() && d["error"].is_string() && d["event_count"] == 1)
    );
    let attempts: Vec<i64> = dead_rows
        .iter()
        .map(|d| d["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, (1..=dead_rows.len() as i64).collect::<Vec<_>>());
}
