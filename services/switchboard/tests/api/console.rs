//! The debug console and live view, carried over Switchboard itself: the system app's
//! per-app channels, authorised for the app's owner only, fed by the edge, bounded, and
//! costing the customer's app nothing.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{WsClient, channel_auth_with, data_of};
use crate::metering::{rows, totals};
use control::crypto::SecretsKey;

use crate::platform::{TestPlatform, spawn_platform, start_platform_on};
use crate::webhook_receiver::Receiver;

/// Generous: only a real bug takes this long on a loaded 2-core machine.
const BOUND: Duration = Duration::from_secs(20);

/// An account with one app and an API token: (app id, key, secret, token).
async fn owner(platform: &TestPlatform, email: &str) -> (String, String, String, String) {
    let (account, created) = platform.account_with_app(email, None).await;
    let (_, token) = platform
        .control
        .create_api_token(account, "console")
        .await
        .unwrap();
    (created.app.id, created.key, created.secret, token)
}

fn url(platform: &TestPlatform, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", platform.app.port)
}

/// `POST /v1/console/auth` as pusher-js sends it (form-encoded); the status and body.
async fn console_auth(
    platform: &TestPlatform,
    token: Option<&str>,
    socket_id: &str,
    channel: &str,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(url(platform, "/v1/console/auth"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("socket_id={socket_id}&channel_name={channel}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The system app's key, as the dashboard learns it.
async fn system_key(platform: &TestPlatform, token: &str) -> String {
    let info: Value = reqwest::Client::new()
        .get(url(platform, "/v1/console"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["ws_port"], platform.app.port);
    assert_eq!(info["auth_endpoint"], "/v1/console/auth");
    info["key"].as_str().unwrap().to_owned()
}

/// A dashboard connection subscribed to `channel` of the system app with the owner's token.
async fn watcher(platform: &TestPlatform, token: &str, channel: &str) -> WsClient {
    let key = system_key(platform, token).await;
    let (mut client, socket_id) = platform.connected(&key).await;
    let (status, body) = console_auth(platform, Some(token), &socket_id, channel).await;
    assert_eq!(status, 200, "{body}");
    let reply = client
        .subscribe(channel, body["auth"].as_str().unwrap(), None)
        .await;
    assert_eq!(reply["event"], "pusher_internal:subscription_succeeded");
    client
}

/// The console events of the next batch (and its dropped count).
async fn next_batch(console: &mut WsClient) -> (Vec<Value>, u64) {
    let frame = console.expect_event("console").await;
    let data = data_of(&frame);
    let events = data["events"].as_array().unwrap().clone();
    (events, data["dropped"].as_u64().unwrap())
}

/// Reads console batches until `done` says the events seen so far are enough.
async fn events_until(console: &mut WsClient, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let started = Instant::now();
    let mut seen = Vec::new();
    while !done(&seen) {
        assert!(started.elapsed() < BOUND, "console events so far: {seen:?}");
        seen.extend(next_batch(console).await.0);
    }
    seen
}

/// A console figure of this edge from `/metrics` (`recorded`, `published`, `dropped`).
async fn console_figure(platform: &TestPlatform, outcome: &str) -> u64 {
    let text = reqwest::get(url(platform, "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("switchboard_console_events_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
}

#[tokio::test]
async fn only_the_apps_owner_may_watch_its_console() {
    let platform = spawn_platform().await;
    let (app_id, _, _, token) = owner(&platform, "owner@example.com").await;
    let (other_app, _, _, other_token) = owner(&platform, "other@example.com").await;
    let key = system_key(&platform, &token).await;
    let (_client, socket_id) = platform.connected(&key).await;
    let console = format!("private-console-{app_id}");
    let live = format!("private-live-{app_id}");

    for channel in [&console, &live] {
        let (status, body) = console_auth(&platform, Some(&token), &socket_id, channel).await;
        assert_eq!(status, 200);
        assert!(
            body["auth"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{key}:"))
        );
        let (status, _) = console_auth(&platform, Some(&other_token), &socket_id, channel).await;
        assert_eq!(status, 403, "another account's app");
    }
    let (status, _) = console_auth(
        &platform,
        Some(&token),
        &socket_id,
        &format!("private-console-{other_app}"),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = console_auth(&platform, Some(&token), &socket_id, "private-other").await;
    assert_eq!(status, 403, "not a console channel");
    let (status, _) = console_auth(&platform, None, &socket_id, &console).await;
    assert_eq!(status, 401);
    let (status, _) = console_auth(&platform, Some(&token), "bad", &console).await;
    assert_eq!(status, 400);

    // A subscription signed for another channel is refused by the edge itself.
    let (mut intruder, intruder_id) = platform.connected(&key).await;
    let (_, signed) = console_auth(&platform, Some(&token), &intruder_id, &console).await;
    let other_console = format!("private-console-{other_app}");
    intruder
        .subscribe(&other_console, signed["auth"].as_str().unwrap(), None)
        .await;
    let refused = intruder.expect_event("pusher:subscription_error").await;
    assert_eq!(refused["channel"], other_console.as_str());

    // Its key is public, but it carries no other channels.
    let reply = intruder.subscribe("news", "", None).await;
    assert_eq!(reply["event"], "pusher:subscription_error");
    assert_eq!(reply["channel"], "news");

    // The system app is nobody's: no account lists it.
    let apps: Value = reqwest::Client::new()
        .get(url(&platform, "/v1/apps"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = apps
        .as_array()
        .unwrap()
        .iter()
        .map(|app| app["app_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [app_id.as_str()]);
}

#[tokio::test]
async fn every_kind_of_event_reaches_the_console_and_refusals_are_logged() {
    let platform = spawn_platform().await;
    let (account, created) = platform.account_with_app("dev@example.com", None).await;
    let (_, token) = platform
        .control
        .create_api_token(account, "console")
        .await
        .unwrap();
    let (app_id, key, secret) = (&created.app.id, &created.key, &created.secret);
    let receiver = Receiver::start();
    let hooks = format!("{}/hooks", receiver.base);
    platform
        .control
        .create_webhook(account, app_id, &hooks, &[], false)
        .await
        .unwrap();
    let mut console = watcher(&platform, &token, &format!("private-console-{app_id}")).await;

    let (mut client, socket_id) = platform.connected(key).await;
    client.subscribe("news", "", None).await;
    let private = "private-room";
    let auth = channel_auth_with(key, secret, &socket_id, private, None);
    client.subscribe(private, &auth, None).await;
    client
        .send(json!({"event": "client-typing", "channel": private, "data": {}}))
        .await;
    client.subscribe("private-forged", "k:bad", None).await;
    client.expect_event("pusher:subscription_error").await;
    assert_eq!(
        platform.publish(app_id, key, secret, "news", "hello").await,
        200
    );
    assert_eq!(
        platform
            .publish(app_id, key, "wrong", "news", "hello")
            .await,
        401
    );
    client.close().await;

    let wanted = [
        "connection_opened",
        "subscribed",
        "client_event",
        "api_publish",
        "webhook_sent",
        "refusal",
        "unsubscribed",
        "connection_closed",
    ];
    let seen = events_until(&mut console, |seen| {
        let types: HashSet<&str> = seen.iter().filter_map(|e| e["type"].as_str()).collect();
        wanted.iter().all(|wanted| types.contains(wanted))
    })
    .await;
    let find = |kind: &str| seen.iter().find(|e| e["type"] == kind).unwrap().clone();
    assert_eq!(find("connection_opened")["socket_id"], socket_id.as_str());
    assert_eq!(find("connection_opened")["transport"], "websocket");
    assert_eq!(find("connection_opened")["client_network"], "127.0.0.0/24");
    assert_eq!(find("client_event")["event"], "client-typing");
    assert_eq!(find("api_publish")["channel"], "news");
    assert_eq!(find("api_publish")["event"], "hello");
    assert_eq!(find("webhook_sent")["status"], "delivered");
    assert_eq!(find("connection_closed")["code"], 1000);

    // The refusal log has the forged subscription and the bad signature, with their reasons.
    let log: Value = reqwest::Client::new()
        .get(url(&platform, &format!("/v1/apps/{app_id}/refusals")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log["scope"], "node");
    let refusals = log["refusals"].as_array().unwrap();
    let forged: Vec<_> = refusals
        .iter()
        .filter(|r| r["channel"] == "private-forged")
        .collect();
    assert_eq!(
        forged.len(),
        1,
        "one refusal, not its pusher:error twin: {refusals:?}"
    );
    assert_eq!(forged[0]["source"], "subscription");
    assert_eq!(forged[0]["status"], 401);
    assert_eq!(forged[0]["socket_id"], socket_id.as_str());
    assert!(
        refusals
            .iter()
            .any(|r| r["source"] == "api" && r["status"] == 401),
        "{refusals:?}"
    );
    // Another account sees none of it.
    let (_, _, _, other_token) = owner(&platform, "other@example.com").await;
    let other = reqwest::Client::new()
        .get(url(&platform, &format!("/v1/apps/{app_id}/refusals")))
        .bearer_auth(&other_token)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

#[tokio::test]
async fn an_unwatched_app_costs_nothing_and_the_feed_is_not_the_customers_usage() {
    let platform = spawn_platform().await;
    let (app_id, key, secret, token) = owner(&platform, "quiet@example.com").await;

    // Nobody watches: the activity builds no console event at all.
    let (mut client, _) = platform.connected(&key).await;
    client.subscribe("news", "", None).await;
    assert_eq!(
        platform
            .publish(&app_id, &key, &secret, "news", "one")
            .await,
        200
    );
    client.expect_event("one").await;
    assert_eq!(console_figure(&platform, "recorded").await, 0);
    assert_eq!(console_figure(&platform, "published").await, 0);

    // Watched (console and live view): the same activity again is fed to the console.
    let mut console = watcher(&platform, &token, &format!("private-console-{app_id}")).await;
    let mut live = watcher(&platform, &token, &format!("private-live-{app_id}")).await;
    assert_eq!(
        platform
            .publish(&app_id, &key, &secret, "news", "two")
            .await,
        200
    );
    client.expect_event("two").await;
    events_until(&mut console, |seen| {
        seen.iter()
            .any(|e| e["type"] == "api_publish" && e["event"] == "two")
    })
    .await;
    // The live view counts the customer's own traffic only: one connection, 4 messages.
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < BOUND, "live figures never caught up");
        let figures = data_of(&live.expect_event("live").await);
        assert_eq!(figures["connections"], 1, "{figures}");
        if figures["messages_today"] == 4 {
            break;
        }
    }
    client.close().await;
    platform.app.stopper.stop().await;

    // Two publishes, each delivered once; one connection: the watching added nothing.
    let customer = totals(&rows(&platform.pool, "usage_minutes", &app_id).await);
    assert_eq!(customer[1..4], [1, 2, 2], "opened, published, delivered");
    let system = rows(
        &platform.pool,
        "usage_minutes",
        control::console::SYSTEM_APP_ID,
    )
    .await;
    assert!(
        system.is_empty(),
        "the system app is not metered: {system:?}"
    );
}

#[tokio::test]
async fn a_flood_cannot_make_the_feed_unbounded() {
    let platform = spawn_platform().await;
    let (app_id, key, secret, token) = owner(&platform, "hostile@example.com").await;
    let mut console = watcher(&platform, &token, &format!("private-console-{app_id}")).await;
    let (mut client, socket_id) = platform.connected(&key).await;
    let private = "private-flood";
    let auth = channel_auth_with(&key, &secret, &socket_id, private, None);
    client.subscribe(private, &auth, None).await;

    // Far more client events than the plan's rate: each is a client event or a refusal.
    const FLOOD: usize = 2_000;
    for n in 0..FLOOD {
        client
            .send(json!({"event": "client-flood", "channel": private, "data": {"n": n}}))
            .await;
    }
    // The hostile client is answered as usual: it is never slowed down by the console.
    client
        .send(json!({"event": "pusher:ping", "data": {}}))
        .await;
    client.expect_event("pusher:pong").await;

    // Every event is either delivered in a batch or counted as dropped, and no batch is
    // larger than the bound.
    let started = Instant::now();
    let (mut delivered, mut dropped) = (0u64, 0u64);
    loop {
        assert!(started.elapsed() < BOUND, "{delivered} + {dropped} events");
        let (events, dropped_now) = next_batch(&mut console).await;
        assert!(events.len() <= edge::console::MAX_EVENTS_PER_BATCH);
        delivered += events.len() as u64;
        dropped += dropped_now;
        let recorded = console_figure(&platform, "recorded").await;
        let counted_dropped = console_figure(&platform, "dropped").await;
        if delivered == recorded && dropped == counted_dropped && delivered + dropped > FLOOD as u64
        {
            break;
        }
    }
    assert!(dropped > 0, "the flood went past the bound");
    assert!(delivered < FLOOD as u64);

    // The refusal log keeps only the newest refusals.
    let log: Value = reqwest::Client::new()
        .get(url(&platform, &format!("/v1/apps/{app_id}/refusals")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refusals = log["refusals"].as_array().unwrap();
    assert_eq!(refusals.len(), edge::console::MAX_REFUSALS_PER_APP);
    assert!(refusals.iter().all(|r| r["code"] == 4301), "rate limited");
}

#[tokio::test]
async fn the_console_and_live_view_work_across_edges() {
    let redis = testkit::RedisServer::start();
    let (database_url, _database) = crate::platform::fresh_database().await;
    let secrets = SecretsKey::from_base64(&SecretsKey::generate_base64()).unwrap();
    let watched_on = start_platform_on(&database_url, secrets.clone(), Some(&redis.url())).await;
    let used_on = start_platform_on(&database_url, secrets, Some(&redis.url())).await;
    let (app_id, key, secret, token) = owner(&watched_on, "far@example.com").await;
    let mut console = watcher(&watched_on, &token, &format!("private-console-{app_id}")).await;
    let mut live = watcher(&watched_on, &token, &format!("private-live-{app_id}")).await;

    // The other edge learns within its next refresh that the app is watched: publish there
    // until it records one of the app's events, which then reaches the watcher on this edge.
    let (_client, _) = used_on.connected(&key).await;
    let started = Instant::now();
    let mut probes = 0;
    while console_figure(&used_on, "recorded").await == 0 {
        assert!(
            started.elapsed() < BOUND,
            "the other edge never saw the watcher"
        );
        probes += 1;
        let event = format!("probe-{probes}");
        // Past the plan's publish rate a probe is refused (429): a refusal is an event too.
        used_on
            .publish(&app_id, &key, &secret, "news", &event)
            .await;
    }
    let crossed = events_until(&mut console, |seen| !seen.is_empty()).await;
    // The connection above is recorded too when the other edge learned of the watcher first.
    let kinds = ["api_publish", "refusal", "connection_opened"];
    assert!(
        crossed
            .iter()
            .all(|e| kinds.contains(&e["type"].as_str().unwrap())),
        "{crossed:?}"
    );
    assert_eq!(
        console_figure(&watched_on, "recorded").await,
        0,
        "recorded there, not here"
    );

    // The live view counts the connection held by the other edge (the cluster's counters).
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < BOUND,
            "the live view never saw the connection"
        );
        let figures = data_of(&live.expect_event("live").await);
        if figures["connections"] == 1 {
            break;
        }
    }
}

#[tokio::test]
async fn a_dashboard_session_authorises_with_its_csrf_token_only() {
    let platform = spawn_platform().await;
    let (app_id, _, _, token) = owner(&platform, "browser@example.com").await;
    let login = reqwest::Client::new()
        .post(url(&platform, "/v1/login"))
        .json(&json!({"email": "browser@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with("sb_session="))
        .map(|value| value.split(';').next().unwrap().to_owned())
        .unwrap();
    let csrf = login.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = system_key(&platform, &token).await;
    let (_client, socket_id) = platform.connected(&key).await;
    let authorise = |csrf: Option<&str>| {
        let mut request = reqwest::Client::new()
            .post(url(&platform, "/v1/console/auth"))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "socket_id={socket_id}&channel_name=private-live-{app_id}"
            ));
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request.send()
    };
    assert_eq!(
        authorise(None).await.unwrap().status(),
        403,
        "no CSRF token"
    );
    assert_eq!(authorise(Some("wrong")).await.unwrap().status(), 403);
    assert_eq!(authorise(Some(&csrf)).await.unwrap().status(), 200);
}
