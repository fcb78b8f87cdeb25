//! Webhook fairness and durability: an app whose endpoints never answer (or always fail) does
//! not delay another app's webhooks, retries hold no delivery slot, an endpoint's backlog is
//! bounded, and pending requests survive a restart of the sender (kept in Postgres).

use std::time::Duration;

use control::webhooks::WebhookSettings;
use control::webhooks::deliver::RetryPolicy;
use serde_json::json;
use tenancy::WebhookSink;

use crate::helpers::{TestApp, spawn_app_allowing_private_webhooks};
use crate::webhook_receiver::{Received, Receiver, WAIT};
use crate::webhook_support::{
    Silent, add_webhook_to, fast_settings, has, log_until, occupied, parse_app_id, rows_of,
    start_sender, vacated,
};

/// Requests waiting in the outbox for the app.
async fn pending(app: &TestApp, app_id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM webhook_outbox WHERE app_id = $1")
        .bind(app_id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Until `count` requests of the app wait in the outbox.
async fn pending_until(app: &TestApp, app_id: &str, count: i64) {
    tokio::time::timeout(WAIT, async {
        while pending(app, app_id).await != count {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the outbox gets there");
}

#[tokio::test]
async fn an_app_whose_endpoint_never_answers_does_not_delay_another_apps_webhooks() {
    let app = spawn_app_allowing_private_webhooks().await;
    let (ann, hostile) = app.signed_up_with_app("ann@example.com", "hostile").await;
    let (bob, victim) = app.signed_up_with_app("bob@example.com", "victim").await;
    let mut silent = Silent::start().await;
    add_webhook_to(&app, &ann, &hostile, &silent.url).await;
    let mut receiver = Receiver::start();
    let url = format!("{}/victim", receiver.base);
    add_webhook_to(&app, &bob, &victim, &url).await;
    // Two slots in all, one per app; an attempt that hangs would hold its slot for a minute.
    let settings = WebhookSettings {
        max_in_flight: 2,
        max_in_flight_per_app: 1,
        request_timeout: Duration::from_secs(60),
        ..fast_settings()
    };
    let sink = start_sender(&app, settings);
    let hostile_id = parse_app_id(&hostile);
    for channel in ["a", "b", "c", "d", "e"] {
        sink.emit(&hostile_id, occupied(channel));
    }
    silent.until_accepted(1).await;

    sink.emit(&parse_app_id(&victim), occupied("room"));
    let arrived = receiver.next().await;
    assert_eq!(arrived.path, "/victim");
    assert_eq!(
        arrived.json()["events"],
        json!([{ "name": "channel_occupied", "channel": "room" }])
    );
    // The hostile app holds its one slot, and its other requests wait in the outbox.
    assert_eq!(silent.accepted(), 1);
    assert_eq!(pending(&app, &hostile).await, 5);
    sink.shutdown().await;
}

#[tokio::test]
async fn a_failing_endpoint_holds_no_delivery_slot_while_it_waits_to_be_retried() {
    let app = spawn_app_allowing_private_webhooks().await;
    let (ann, failing) = app.signed_up_with_app("ann@example.com", "failing").await;
    let (bob, fine) = app.signed_up_with_app("bob@example.com", "fine").await;
    let mut receiver = Receiver::start();
    receiver.answer("/down", &[500; 100]);
    let down = format!("{}/down", receiver.base);
    let down = add_webhook_to(&app, &ann, &failing, &down).await;
    add_webhook_to(&app, &bob, &fine, &format!("{}/up", receiver.base)).await;
    // One slot; the first retry is half a minute away.
    let settings = WebhookSettings {
        max_in_flight: 1,
        retry: RetryPolicy {
            initial: Duration::from_secs(30),
            max_interval: Duration::from_secs(30),
            window: Duration::from_secs(300),
        },
        ..fast_settings()
    };
    let sink = start_sender(&app, settings);
    sink.emit(&parse_app_id(&failing), occupied("room"));
    assert_eq!(receiver.next().await.path, "/down");
    let log = log_until(&app, &ann, &failing, |rows| has(rows, &down, "retrying")).await;
    assert_eq!(log[0]["error"], "http_status_500");
    assert_eq!(log[0]["http_status"], 500);

    sink.emit(&parse_app_id(&fine), occupied("room"));
    assert_eq!(receiver.next().await.path, "/up");
    assert_eq!(
        pending(&app, &failing).await,
        1,
        "the retry waits in the outbox"
    );
    sink.shutdown().await;
}

#[tokio::test]
async fn claims_take_each_apps_oldest_request_before_anyones_second() {
    use control::repository::webhook_outbox::{NewOutboxEntry, claim_due, enqueue};
    let app = spawn_app_allowing_private_webhooks().await;
    let (ann, flooding) = app.signed_up_with_app("ann@example.com", "flooding").await;
    let (bob, quiet) = app.signed_up_with_app("bob@example.com", "quiet").await;
    let flood_hook = add_webhook_to(&app, &ann, &flooding, "http://127.0.0.1:9/").await;
    let quiet_hook = add_webhook_to(&app, &bob, &quiet, "http://127.0.0.1:9/").await;
    let entry = |webhook: &str, app_id: &str| NewOutboxEntry {
        id: uuid::Uuid::new_v4(),
        webhook_id: webhook.parse().unwrap(),
        app_id: app_id.to_owned(),
        body: "{}".into(),
        event_count: 1,
    };
    let mut conn = app.pool.acquire().await.unwrap();
    // The flooding app's 50 requests are all older than the quiet app's one.
    let flood: Vec<NewOutboxEntry> = (0..50).map(|_| entry(&flood_hook, &flooding)).collect();
    assert_eq!(enqueue(&mut conn, &flood, 1000).await.unwrap().len(), 50);
    let late = entry(&quiet_hook, &quiet);
    enqueue(&mut conn, std::slice::from_ref(&late), 1000)
        .await
        .unwrap();

    let lease = Duration::from_secs(60);
    let claimed = claim_due(&mut conn, &[], 16, 2, lease).await.unwrap();
    let apps: Vec<&str> = claimed.iter().map(|c| c.app_id.as_str()).collect();
    assert!(apps.contains(&quiet.as_str()), "{apps:?}");
    assert_eq!(claimed.len(), 2);
    // An app at its bound gets nothing more; claimed rows are leased, not due again.
    let busy = [(flooding.clone(), 16)];
    assert!(
        claim_due(&mut conn, &busy, 16, 10, lease)
            .await
            .unwrap()
            .is_empty()
    );
    let again = claim_due(&mut conn, &[(flooding.clone(), 1)], 16, 100, lease)
        .await
        .unwrap();
    assert_eq!(again.len(), 15);
    assert!(
        again
            .iter()
            .all(|c| c.app_id == flooding && c.attempts == 1)
    );
}

#[tokio::test]
async fn an_endpoints_backlog_is_bounded() {
    let app = spawn_app_allowing_private_webhooks().await;
    let (ann, app_id) = app.signed_up_with_app("ann@example.com", "chat").await;
    let mut silent = Silent::start().await;
    let hook = add_webhook_to(&app, &ann, &app_id, &silent.url).await;
    let settings = WebhookSettings {
        max_in_flight_per_app: 1,
        max_pending_per_webhook: 3,
        request_timeout: Duration::from_secs(60),
        ..fast_settings()
    };
    let sink = start_sender(&app, settings);
    let app_key = parse_app_id(&app_id);
    // One at a time, so each is written in a round of its own and the bound is exact.
    sink.emit(&app_key, occupied("first"));
    silent.until_accepted(1).await;
    for (channel, waiting) in [("a", 2), ("b", 3)] {
        sink.emit(&app_key, occupied(channel));
        pending_until(&app, &app_id, waiting).await;
    }
    sink.emit(&app_key, occupied("c"));
    log_until(&app, &ann, &app_id, |rows| has(rows, &hook, "failed")).await;
    // Dropped again, and not logged again within the minute: the log cannot be flooded.
    sink.emit(&app_key, occupied("d"));
    sink.shutdown().await;
    let log = log_until(&app, &ann, &app_id, |_| true).await;
    let dropped = rows_of(&log, &hook);
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped[0]["error"], "backlog_full");
    assert_eq!(dropped[0]["status"], "failed");
    assert_eq!(pending(&app, &app_id).await, 3);
}

#[tokio::test]
async fn the_delivery_log_keeps_the_newest_rows_of_each_app() {
    use control::repository::webhooks::{insert_delivery, trim_deliveries};
    let app = spawn_app_allowing_private_webhooks().await;
    let (ann, busy) = app.signed_up_with_app("ann@example.com", "busy").await;
    let (calm, _, _) = app.app(&ann, "calm").await;
    let busy_hook = add_webhook_to(&app, &ann, &busy, "http://127.0.0.1:9/").await;
    let calm_hook = add_webhook_to(&app, &ann, &calm, "http://127.0.0.1:9/").await;
    let mut conn = app.pool.acquire().await.unwrap();
    for attempt in 1..=5 {
        let busy_hook = busy_hook.parse().unwrap();
        insert_delivery(
            &mut conn,
            busy_hook,
            &busy,
            attempt,
            "retrying",
            None,
            Some("timeout"),
            1,
        )
        .await
        .unwrap();
    }
    let calm_hook = calm_hook.parse().unwrap();
    insert_delivery(
        &mut conn,
        calm_hook,
        &calm,
        1,
        "delivered",
        Some(200),
        None,
        1,
    )
    .await
    .unwrap();
    assert_eq!(trim_deliveries(&mut conn, 3).await.unwrap(), 2);
    let log = log_until(&app, &ann, &busy, |_| true).await;
    let attempts: Vec<i64> = log
        .iter()
        .map(|row| row["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, [5, 4, 3]);
    assert_eq!(log_until(&app, &ann, &calm, |_| true).await.len(), 1);
}

#[tokio::test]
async fn pending_requests_survive_a_restart_of_the_sender() {
    let app = spawn_app_allowing_private_webhooks().await;
    let (session, app_id) = app.signed_up_with_app("ann@example.com", "chat").await;
    let mut receiver = Receiver::start();
    receiver.answer("/later", &[503; 1000]);
    let url = format!("{}/later", receiver.base);
    let hook = add_webhook_to(&app, &session, &app_id, &url).await;
    let app_key = parse_app_id(&app_id);

    // The first process: its endpoint fails, and a leave event is still held when it stops.
    let first = start_sender(
        &app,
        WebhookSettings {
            leave_delay: Duration::from_secs(600),
            retry: RetryPolicy {
                initial: Duration::from_millis(50),
                max_interval: Duration::from_millis(100),
                window: Duration::from_secs(600),
            },
            ..fast_settings()
        },
    );
    first.emit(&app_key, occupied("room"));
    let refused = receiver.next().await;
    first.emit(&app_key, vacated("hall"));
    first.shutdown().await;
    assert_eq!(pending(&app, &app_id).await, 2, "both wait in Postgres");

    // The next process, on the same database, with a working endpoint.
    receiver.answer("/later", &[]);
    while receiver.requests.try_recv().is_ok() {}
    let second = start_sender(&app, fast_settings());
    let mut seen = Vec::new();
    while !(seen.iter().any(|r: &Received| r.body == refused.body)
        && seen.iter().any(|r| r.body.contains("\"hall\"")))
    {
        seen.push(receiver.next().await);
    }
    let log = log_until(&app, &session, &app_id, |rows| {
        rows_of(rows, &hook)
            .iter()
            .filter(|row| row["status"] == "delivered")
            .count()
            == 2
    })
    .await;
    let room: Vec<_> = rows_of(&log, &hook)
        .into_iter()
        .filter(|row| row["status"] == "retrying")
        .collect();
    assert!(
        room.iter().all(|row| row["error"] == "http_status_503"),
        "{room:?}"
    );
    assert_eq!(pending(&app, &app_id).await, 0);
    second.shutdown().await;
}

#[tokio::test]
async fn a_request_claimed_by_a_process_that_died_is_delivered_once_its_lease_ends() {
    use control::repository::webhook_outbox::{NewOutboxEntry, claim_due, enqueue};
    let app = spawn_app_allowing_private_webhooks().await;
    let (session, app_id) = app.signed_up_with_app("ann@example.com", "chat").await;
    let mut receiver = Receiver::start();
    let url = format!("{}/orphan", receiver.base);
    let hook = add_webhook_to(&app, &session, &app_id, &url).await;
    let body = r#"{"time_ms":1,"events":[{"name":"channel_occupied","channel":"orphan"}]}"#;
    let mut conn = app.pool.acquire().await.unwrap();
    let entry = NewOutboxEntry {
        id: uuid::Uuid::new_v4(),
        webhook_id: hook.parse().unwrap(),
        app_id: app_id.clone(),
        body: body.into(),
        event_count: 1,
    };
    enqueue(&mut conn, std::slice::from_ref(&entry), 1000)
        .await
        .unwrap();
    // A process claims it and dies mid-attempt: nothing completes or hands it back.
    let lease = Duration::from_secs(1);
    let claimed = claim_due(&mut conn, &[], 16, 10, lease).await.unwrap();
    assert_eq!(claimed.len(), 1);

    let sink = start_sender(&app, fast_settings());
    let delivered = receiver.next().await;
    assert_eq!(delivered.body, body);
    let log = log_until(&app, &session, &app_id, |rows| {
        has(rows, &hook, "delivered")
    })
    .await;
    assert_eq!(log[0]["attempt"], 2, "the dead process's attempt counts");
    assert_eq!(pending(&app, &app_id).await, 0);
    sink.shutdown().await;
}

#[tokio::test]
async fn one_apps_flood_of_events_does_not_crowd_another_out_of_the_queue() {
    let app = spawn_app_allowing_private_webhooks().await;
    let (_, flooding) = app.signed_up_with_app("ann@example.com", "flooding").await;
    let (bob, quiet) = app.signed_up_with_app("bob@example.com", "quiet").await;
    let mut receiver = Receiver::start();
    let url = format!("{}/quiet", receiver.base);
    add_webhook_to(&app, &bob, &quiet, &url).await;
    let settings = WebhookSettings {
        queue_capacity: 1000,
        max_queued_per_app: 500,
        ..fast_settings()
    };
    let sink = start_sender(&app, settings);
    // Emitted with no await in between: the intake cannot take any meanwhile.
    let flooding = parse_app_id(&flooding);
    for n in 0..1000 {
        sink.emit(&flooding, occupied(&format!("c{n}")));
    }
    sink.emit(&parse_app_id(&quiet), occupied("room"));
    assert_eq!(
        sink.dropped(),
        500,
        "the flood past its share, and only that"
    );
    let arrived = receiver.next().await;
    assert_eq!(
        arrived.json()["events"],
        json!([{ "name": "channel_occupied", "channel": "room" }])
    );
    sink.shutdown().await;
}
