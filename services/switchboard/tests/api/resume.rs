//! Serials, resume after a lost connection, and the history API, end to end.

use std::collections::HashMap;
use std::sync::Arc;

use edge::EdgeSettings;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::helpers::{
    APP, OTHER_APP, TestApp, WsClient, channel_auth, data_of, spawn_app, spawn_app_with,
};
use crate::platform::spawn_platform;

/// A client subscribed to `channel`, resuming from `resume` if given; returns the
/// `subscription_succeeded` data (`{"epoch", "serial"}`).
async fn subscribe(
    app: &TestApp,
    channel: &str,
    resume: Option<Value>,
) -> (WsClient, String, Value) {
    let (mut client, socket_id) = app.connected(APP.1).await;
    let succeeded = subscribe_on(&mut client, &socket_id, channel, resume).await;
    (client, socket_id, succeeded)
}

async fn subscribe_on(
    client: &mut WsClient,
    socket_id: &str,
    channel: &str,
    resume: Option<Value>,
) -> Value {
    let mut data = json!({ "channel": channel });
    if channel.starts_with("private-") {
        data["auth"] = json!(channel_auth(socket_id, channel, None));
    }
    if let Some(resume) = resume {
        data["resume"] = resume;
    }
    client
        .send(json!({ "event": "pusher:subscribe", "data": data }))
        .await;
    let succeeded = client.next_json().await;
    assert_eq!(
        succeeded["event"], "pusher_internal:subscription_succeeded",
        "{succeeded}"
    );
    data_of(&succeeded)
}

async fn publish(app: &TestApp, channel: &str, data: &str) {
    let response = app.trigger(channel, "tick", data, None).await;
    assert_eq!(response.status(), 200);
}

async fn history(app: &TestApp, channel: &str, params: &[(&str, &str)]) -> reqwest::Response {
    let path = format!("/apps/{}/channels/{channel}/history", APP.0);
    app.api(APP, "GET", &path, params, None).await
}

/// The next frame, which must be a `tick` with this data; returns its serial.
async fn expect_tick(client: &mut WsClient, data: &str) -> u64 {
    let frame = client.next_json().await;
    assert_eq!(frame["event"], "tick", "{frame}");
    assert_eq!(frame["data"], data, "{frame}");
    frame["serial"].as_u64().expect("a serial")
}

#[tokio::test]
async fn a_resume_replays_exactly_the_missed_events_in_order_then_goes_live() {
    let app = spawn_app().await;
    let (mut client, _, succeeded) = subscribe(&app, "news", None).await;
    let epoch = succeeded["epoch"].as_str().expect("an epoch").to_owned();
    assert_eq!(succeeded["serial"], 0, "nothing published yet");
    for n in 1..=3 {
        publish(&app, "news", &n.to_string()).await;
        assert_eq!(expect_tick(&mut client, &n.to_string()).await, n);
    }
    drop(client); // a network drop: no close frame

    for n in 4..=7 {
        publish(&app, "news", &n.to_string()).await;
    }
    let resume = json!({"serial": 3, "epoch": epoch});
    let (mut client, _, succeeded) = subscribe(&app, "news", Some(resume)).await;
    assert_eq!(
        succeeded,
        json!({"epoch": epoch, "serial": 3}),
        "the position it resumes from"
    );
    for n in 4..=7 {
        assert_eq!(expect_tick(&mut client, &n.to_string()).await, n);
    }
    publish(&app, "news", "8").await;
    assert_eq!(
        expect_tick(&mut client, "8").await,
        8,
        "live after the replay, nothing in between"
    );
}

#[tokio::test]
async fn a_fresh_subscriber_gets_every_serial_after_its_position_once() {
    let app = spawn_app().await;
    for n in 1..=2 {
        publish(&app, "news", &n.to_string()).await;
    }
    let (mut client, _, succeeded) = subscribe(&app, "news", None).await;
    assert_eq!(succeeded["serial"], 2);
    publish(&app, "news", "3").await;
    assert_eq!(expect_tick(&mut client, "3").await, 3);
}

#[tokio::test]
async fn client_events_get_serials_and_are_replayed() {
    let app = spawn_app().await;
    let channel = "private-chat";
    let (mut sender, _, _) = subscribe(&app, channel, None).await;
    let (mut receiver, _, succeeded) = subscribe(&app, channel, None).await;
    sender
        .send(json!({"event": "client-typing", "channel": channel, "data": {"who": "a"}}))
        .await;
    let event = receiver.next_json().await;
    assert_eq!(event["event"], "client-typing");
    assert_eq!(event["serial"], 1);
    assert_eq!(event["epoch"], succeeded["epoch"]);

    let resume = json!({"serial": 0, "epoch": succeeded["epoch"]});
    let (mut late, _, _) = subscribe(&app, channel, Some(resume)).await;
    let replayed = late.next_json().await;
    assert_eq!(replayed, event, "the stored frame is the one delivered");
}

#[tokio::test]
async fn a_resume_outside_the_window_fails_explicitly_then_goes_live() {
    let app = spawn_app().await;
    let (mut client, _, succeeded) = subscribe(&app, "news", None).await;
    let epoch = succeeded["epoch"].as_str().unwrap().to_owned();
    publish(&app, "news", "1").await;
    expect_tick(&mut client, "1").await;
    drop(client);
    // The static apps keep 100 events: 150 more push event 2 out of the window.
    for n in 2..=151 {
        publish(&app, "news", &n.to_string()).await;
    }
    let resume = json!({"serial": 1, "epoch": epoch});
    let (mut client, _, succeeded) = subscribe(&app, "news", Some(resume)).await;
    assert_eq!(succeeded, json!({"epoch": epoch, "serial": 151}));
    let failed = client.next_json().await;
    assert_eq!(failed["event"], "switchboard:resume_failed");
    assert_eq!(failed["channel"], "news");
    assert_eq!(
        data_of(&failed),
        json!({"epoch": epoch, "oldest_available": 52, "reason": "outside_window"})
    );
    publish(&app, "news", "152").await;
    assert_eq!(expect_tick(&mut client, "152").await, 152);
}

#[tokio::test]
async fn a_gap_larger_than_the_outbox_fails_explicitly_instead_of_closing() {
    let app = spawn_app_with(EdgeSettings {
        outbox_capacity: 8,
        ..EdgeSettings::default()
    })
    .await;
    let (client, _, succeeded) = subscribe(&app, "news", None).await;
    let epoch = succeeded["epoch"].as_str().unwrap().to_owned();
    drop(client);
    for n in 1..=20 {
        publish(&app, "news", &n.to_string()).await;
    }
    let resume = json!({"serial": 0, "epoch": epoch});
    let (mut client, _, succeeded) = subscribe(&app, "news", Some(resume)).await;
    assert_eq!(succeeded["serial"], 20);
    let failed = client.next_json().await;
    assert_eq!(
        data_of(&failed),
        json!({"epoch": epoch, "oldest_available": 1, "reason": "too_many_to_replay"})
    );
    publish(&app, "news", "21").await;
    assert_eq!(expect_tick(&mut client, "21").await, 21, "still open, live");
}

#[tokio::test]
async fn a_resume_from_another_epoch_fails_explicitly() {
    let before_restart = spawn_app().await;
    let (mut client, _, succeeded) = subscribe(&before_restart, "news", None).await;
    publish(&before_restart, "news", "1").await;
    expect_tick(&mut client, "1").await;
    let old_epoch = succeeded["epoch"].as_str().unwrap().to_owned();

    // Another node (or this one restarted) started the channel's history anew.
    let after_restart = spawn_app().await;
    publish(&after_restart, "news", "a").await;
    let resume = json!({"serial": 1, "epoch": old_epoch});
    let (mut client, _, succeeded) = subscribe(&after_restart, "news", Some(resume)).await;
    let new_epoch = succeeded["epoch"].as_str().unwrap().to_owned();
    assert_ne!(new_epoch, old_epoch);
    assert_eq!(succeeded["serial"], 1);
    let failed = client.next_json().await;
    assert_eq!(failed["event"], "switchboard:resume_failed");
    assert_eq!(
        data_of(&failed),
        json!({"epoch": new_epoch, "oldest_available": 1, "reason": "epoch_changed"})
    );
}

#[tokio::test]
async fn the_history_api_returns_kept_events_and_410_for_a_gap() {
    let app = spawn_app().await;
    for n in 1..=3 {
        publish(&app, "news", &format!("e{n}")).await;
    }
    let response = history(&app, "news", &[]).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let epoch = body["epoch"].as_str().unwrap().to_owned();
    assert_eq!(
        body,
        json!({"epoch": epoch, "serial": 3, "events": [
            {"serial": 1, "event": "tick", "data": "e1"},
            {"serial": 2, "event": "tick", "data": "e2"},
            {"serial": 3, "event": "tick", "data": "e3"},
        ]})
    );
    let after_one: Value = history(&app, "news", &[("since", "1"), ("epoch", &epoch)])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after_one["events"][0]["serial"], 2);
    assert_eq!(after_one["events"].as_array().unwrap().len(), 2);
    let one: Value = history(&app, "news", &[("limit", "1")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        one["events"],
        json!([{"serial": 1, "event": "tick", "data": "e1"}])
    );
    assert_eq!(one["serial"], 3, "the latest serial, to page on to");

    let wrong_epoch = history(&app, "news", &[("since", "1"), ("epoch", "other")]).await;
    assert_eq!(wrong_epoch.status(), 410);
    let body: Value = wrong_epoch.json().await.unwrap();
    assert_eq!(body["epoch"], epoch.as_str());
    assert_eq!(body["oldest_available"], 1);

    for n in 4..=150 {
        publish(&app, "news", &format!("e{n}")).await;
    }
    let gone = history(&app, "news", &[("since", "1")]).await;
    assert_eq!(gone.status(), 410);
    let body: Value = gone.json().await.unwrap();
    assert_eq!(
        (body["serial"].clone(), body["oldest_available"].clone()),
        (json!(150), json!(51))
    );
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no longer available")
    );

    for bad in [[("since", "x")], [("limit", "0")], [("limit", "1001")]] {
        assert_eq!(history(&app, "news", &bad).await.status(), 400, "{bad:?}");
    }
}

#[tokio::test]
async fn another_tenants_history_is_invisible() {
    let app = spawn_app().await;
    publish(&app, "news", "secret").await;
    let path = format!("/apps/{}/channels/news/history", OTHER_APP.0);
    let other: Value = app
        .api(OTHER_APP, "GET", &path, &[], None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(other["events"], json!([]), "same channel name, other app");
    assert_eq!(other["serial"], 0);
    let foreign_key = app
        .api(
            OTHER_APP,
            "GET",
            &format!("/apps/{}/channels/news/history", APP.0),
            &[],
            None,
        )
        .await;
    assert_eq!(foreign_key.status(), 401);
}

/// Events published while the client is cut and resumes.
const LOSS_TEST_EVENTS: u64 = 2_000;
/// The publisher stays at most this far ahead of what the client has, so every gap fits the
/// static apps' 100-event window (flow control, not timing).
const PUBLISHER_LEAD: u64 = 50;

/// How the client is cut when it has received a given number of events.
enum Cut {
    /// The server closes it (terminate_connections: 4009), dropping what it had queued.
    Server,
    /// The client's network goes: the socket is dropped without a close frame.
    Client,
}

#[tokio::test]
async fn two_thousand_events_survive_cuts_in_order_each_once() {
    let app = Arc::new(spawn_app().await);
    let cuts: HashMap<u64, Cut> = [
        (150, Cut::Server),
        (420, Cut::Client),
        (777, Cut::Server),
        (1001, Cut::Client),
        (1333, Cut::Server),
        (1600, Cut::Client),
        (1999, Cut::Server),
    ]
    .into_iter()
    .collect();
    let (received_tx, received_rx) = watch::channel(0u64);
    let mut publisher = None;
    let mut received: Vec<u64> = Vec::new();
    let mut position: Option<(String, u64)> = None;
    let (mut duplicates, mut connections, mut closed_by_server) = (0, 0, 0);
    'connections: while (received.len() as u64) < LOSS_TEST_EVENTS {
        connections += 1;
        let (mut client, socket_id) = app.connected(APP.1).await;
        sign_in(&mut client, &socket_id).await;
        let resume = position
            .as_ref()
            .map(|(epoch, serial)| json!({"serial": serial, "epoch": epoch}));
        let succeeded = subscribe_on(&mut client, &socket_id, "loss", resume).await;
        let epoch = succeeded["epoch"].as_str().unwrap().to_owned();
        if let Some((expected, _)) = &position {
            assert_eq!(&epoch, expected, "one node, one epoch");
        }
        // Publishing starts once the client first stands in the channel.
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

        let last_seen = position.as_ref().map_or(0, |(_, serial)| *serial);
        assert_eq!(succeeded["serial"], last_seen, "resumed where it left off");
        position = Some((epoch.clone(), last_seen));
        // After a server cut, frames already on the way still arrive before the close.
        let mut awaiting_close = false;
        loop {
            let Some(frame) = client.next_json_or_closed().await else {
                assert!(awaiting_close, "only the cuts close the connection");
                closed_by_server += 1;
                continue 'connections;
            };
            assert_ne!(frame["event"], "switchboard:resume_failed", "{frame}");
            if frame["event"] != "tick" {
                continue;
            }
            let serial = frame["serial"].as_u64().expect("a serial");
            let last = position.as_ref().map_or(0, |(_, serial)| *serial);
            if serial <= last {
                duplicates += 1;
                continue;
            }
            assert_eq!(serial, last + 1, "no serial skipped");
            received.push(frame["data"].as_str().unwrap().parse().unwrap());
            position = Some((epoch.clone(), serial));
            let count = received.len() as u64;
            received_tx.send_replace(count);
            match cuts.get(&count) {
                Some(Cut::Client) => {
                    drop(client);
                    continue 'connections;
                }
                Some(Cut::Server) => {
                    let path = format!("/apps/{}/users/reader/terminate_connections", APP.0);
                    let response = app.api(APP, "POST", &path, &[], Some(&json!({}))).await;
                    assert_eq!(response.status(), 200);
                    awaiting_close = true;
                }
                None => {}
            }
            if count == LOSS_TEST_EVENTS && !awaiting_close {
                break 'connections;
            }
        }
    }
    let publisher = publisher.expect("the publisher started");
    publisher.await.expect("the publisher finished");
    assert_eq!(received, (1..=LOSS_TEST_EVENTS).collect::<Vec<_>>());
    let server_cuts = cuts
        .values()
        .filter(|cut| matches!(cut, Cut::Server))
        .count();
    assert_eq!(
        closed_by_server, server_cuts,
        "every server cut took effect"
    );
    let client_cuts = cuts.len() - server_cuts;
    assert!(
        connections > client_cuts,
        "every client cut reconnected ({connections} connections)"
    );
    assert_eq!(
        duplicates, 0,
        "the edge sends each serial once per subscription"
    );
}

/// Signs the connection in as user `reader`, so terminate_connections can reach it.
async fn sign_in(client: &mut WsClient, socket_id: &str) {
    let user_data = r#"{"id":"reader"}"#;
    let signature = protocol::sign::hmac_hex(
        APP.2,
        &protocol::sign::user_auth_string(socket_id, user_data),
    );
    let auth = format!("{}:{signature}", APP.1);
    client
        .send(json!({"event":"pusher:signin","data":{"auth":auth,"user_data":user_data}}))
        .await;
    assert_eq!(client.next_json().await["event"], "pusher:signin_success");
}

#[tokio::test]
async fn the_window_comes_from_the_apps_plan() {
    let platform = spawn_platform().await;
    sqlx::query(
        "INSERT INTO plans VALUES ('short-history', 'Short history', 0, 100, 100000, 10240, 10, \
         100, 100, 100, 3, 60, 1, TRUE, 0, 0, 11)",
    )
    .execute(&platform.pool)
    .await
    .unwrap();
    let (_, created) = platform
        .account_with_app("history@example.com", Some("short-history"))
        .await;
    let (app_id, key, secret) = (created.app.id.as_str(), &created.key, &created.secret);
    for _ in 0..5 {
        assert_eq!(
            platform.publish(app_id, key, secret, "news", "e").await,
            200
        );
    }
    let path = format!("/apps/{app_id}/channels/news/history");
    let kept: Value = platform
        .app
        .api((app_id, key, secret), "GET", &path, &[], None)
        .await
        .json()
        .await
        .unwrap();
    let serials: Vec<u64> = kept["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["serial"].as_u64().unwrap())
        .collect();
    assert_eq!(serials, [3, 4, 5], "the plan keeps 3 events");
}
