//! Metering end to end (a known script of connections and messages, then the rows in Postgres
//! after the shutdown flush), the `/v1/apps/{id}/usage` series, and Prometheus `/metrics`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use control::usage::PgUsageSink;
use protocol::names::AppId;
use protocol::sign::{channel_auth_string, hmac_hex};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};
use tenancy::{UsageMinute, UsageSink};

use crate::helpers::{APP, spawn_app};
use crate::platform::spawn_platform;

fn unix_minute() -> i64 {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(seconds / 60).unwrap()
}

/// A stored usage row: period start (unix seconds), then peak, opened, published, delivered,
/// bytes out.
pub(crate) type Row = (i64, [i64; 5]);

pub(crate) async fn rows(pool: &PgPool, table: &str, app_id: &str) -> Vec<Row> {
    // The table name is one of three literals, never input.
    let (column, sql) = match table {
        "usage_minutes" => ("minute", "usage_minutes"),
        "usage_hours" => ("hour", "usage_hours"),
        "usage_days" => ("day", "usage_days"),
        _ => unreachable!(),
    };
    let query = format!(
        "SELECT EXTRACT(EPOCH FROM {column})::bigint, peak_connections, connections_opened, \
         messages_published, messages_delivered, bytes_out FROM {sql} WHERE app_id = $1 \
         ORDER BY {column}"
    );
    // A connection of its own: the shared pool's may belong to the stopped server's runtimes.
    let mut conn = PgConnection::connect_with(&pool.connect_options())
        .await
        .unwrap();
    let found: Vec<(i64, i64, i64, i64, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(query))
        .bind(app_id)
        .fetch_all(&mut conn)
        .await
        .unwrap();
    found
        .into_iter()
        .map(|(time, peak, opened, published, delivered, bytes)| {
            (time, [peak, opened, published, delivered, bytes])
        })
        .collect()
}

/// Counts added up over rows, the peak as the highest.
pub(crate) fn totals(rows: &[Row]) -> [i64; 5] {
    rows.iter().fold([0; 5], |mut sum, (_, counts)| {
        sum[0] = sum[0].max(counts[0]);
        for at in 1..5 {
            sum[at] += counts[at];
        }
        sum
    })
}

#[tokio::test]
async fn a_known_script_produces_exactly_the_expected_usage_rows_after_the_shutdown_flush() {
    let platform = spawn_platform().await;
    let (_, created) = platform.account_with_app("meter@example.com", None).await;
    let (app_id, key, secret) = (&created.app.id, &created.key, &created.secret);
    let channel = "private-metered";
    let auth = |socket_id: &str| {
        let signed = channel_auth_string(socket_id, channel, None);
        format!("{key}:{}", hmac_hex(secret, &signed))
    };
    let started = unix_minute();

    // Three connections; two subscribe.
    let (mut a, a_id) = platform.connected(key).await;
    let (mut b, b_id) = platform.connected(key).await;
    let (c, _) = platform.connected(key).await;
    for (client, socket_id) in [(&mut a, &a_id), (&mut b, &b_id)] {
        let reply = client.subscribe(channel, &auth(socket_id), None).await;
        assert_eq!(reply["event"], "pusher_internal:subscription_succeeded");
    }

    // Five API publishes, each reaching both subscribers.
    let mut bytes_out = 0;
    for n in 0..5 {
        let event = format!("event-{n}");
        assert_eq!(
            platform.publish(app_id, key, secret, channel, &event).await,
            200
        );
        for client in [&mut a, &mut b] {
            let frame = client.expect_event(&event).await;
            bytes_out += frame.to_string().len();
        }
    }
    // One client event, reaching the one other subscriber.
    a.send(json!({"event": "client-typing", "channel": channel, "data": {"who": "a"}}))
        .await;
    let frame = b.expect_event("client-typing").await;
    bytes_out += frame.to_string().len();
    // One connection leaves; the other two are closed by the shutdown.
    c.close().await;
    platform.app.stopper.stop().await;
    let finished = unix_minute();

    let expected = [3, 3, 6, 11, i64::try_from(bytes_out).unwrap()];
    let minutes = rows(&platform.pool, "usage_minutes", app_id).await;
    let hours = rows(&platform.pool, "usage_hours", app_id).await;
    let days = rows(&platform.pool, "usage_days", app_id).await;
    if started == finished {
        // The usual case: the whole script in one minute, so one row in each table.
        let minute = started * 60;
        assert_eq!(minutes, [(minute, expected)]);
        assert_eq!(hours, [(minute - minute % 3600, expected)]);
        assert_eq!(days, [(minute - minute % 86_400, expected)]);
    } else {
        // Across a minute boundary the counts split over rows but add up the same.
        for table in [&minutes, &hours, &days] {
            assert_eq!(totals(table), expected, "{table:?}");
        }
    }
}

/// An account, an app of it, and an API token for `/v1`.
async fn account_with_token(
    platform: &crate::platform::TestPlatform,
    email: &str,
) -> (String, String) {
    let (account, created) = platform.account_with_app(email, None).await;
    let (_, token) = platform
        .control
        .create_api_token(account, "usage")
        .await
        .unwrap();
    (created.app.id, token)
}

/// The unix minute `offset` minutes after 2026-01-01T10:00:00Z (1767261600).
fn minute_of(offset: i64) -> i64 {
    1_767_261_600 / 60 + offset
}

#[tokio::test]
async fn the_usage_endpoint_returns_series_by_resolution_and_only_for_the_callers_apps() {
    let platform = spawn_platform().await;
    let (app_id, token) = account_with_token(&platform, "owner@example.com").await;
    let (other_app, _) = account_with_token(&platform, "other@example.com").await;
    let app = AppId::parse(&app_id).unwrap();
    let row = |minute: i64, peak: u64, published: u64, delivered: u64| UsageMinute {
        peak_connections: peak,
        connections_opened: 1,
        messages_published: published,
        messages_delivered: delivered,
        bytes_out: delivered * 10,
        ..UsageMinute::new(app.clone(), minute)
    };
    let sink = PgUsageSink::new(&platform.pool);
    // 10:00 and 10:01, then 11:30, on 2026-01-01 (UTC); the second flush adds to 10:01.
    sink.record(&[row(minute_of(0), 2, 1, 2), row(minute_of(1), 4, 2, 8)])
        .await
        .unwrap();
    sink.record(&[row(minute_of(1), 3, 1, 1), row(minute_of(90), 1, 5, 0)])
        .await
        .unwrap();

    let http = reqwest::Client::new();
    let get = async |app: &str, query: &str| {
        let url = format!(
            "http://127.0.0.1:{}/v1/apps/{app}/usage?{query}",
            platform.app.port
        );
        http.get(url).bearer_auth(&token).send().await.unwrap()
    };
    let day = "from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z";

    let response = get(&app_id, &format!("{day}&resolution=hour")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["resolution"], "hour");
    assert_eq!(
        body["points"],
        json!([
            {"time": "2026-01-01T10:00:00Z", "peak_connections": 4, "connections_opened": 3,
             "messages_published": 4, "messages_delivered": 11, "messages": 15, "bytes_out": 110},
            {"time": "2026-01-01T11:00:00Z", "peak_connections": 1, "connections_opened": 1,
             "messages_published": 5, "messages_delivered": 0, "messages": 5, "bytes_out": 0},
        ])
    );

    let minutes: Value = get(
        &app_id,
        "from=2026-01-01T10:01:00Z&to=2026-01-01T12:00:00Z&resolution=minute",
    )
    .await
    .json()
    .await
    .unwrap();
    let times: Vec<&str> = minutes["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|point| point["time"].as_str().unwrap())
        .collect();
    assert_eq!(times, ["2026-01-01T10:01:00Z", "2026-01-01T11:30:00Z"]);
    assert_eq!(minutes["points"][0]["peak_connections"], 4);
    assert_eq!(minutes["points"][0]["messages_published"], 3);

    let days: Value = get(&app_id, &format!("{day}&resolution=day"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(days["points"].as_array().unwrap().len(), 1);
    assert_eq!(days["points"][0]["time"], "2026-01-01T00:00:00Z");
    assert_eq!(days["points"][0]["messages"], 20);

    // Another account's app is not found; bad parameters are 400s; no caller is 401.
    assert_eq!(get(&other_app, day).await.status(), 404);
    assert_eq!(get("999999", day).await.status(), 404);
    for bad in [
        "resolution=week",
        "from=yesterday",
        "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
        "from=2025-01-01T00:00:00Z&to=2026-01-01T00:00:00Z&resolution=minute",
    ] {
        let response = get(&app_id, bad).await;
        assert_eq!(response.status(), 400, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].is_string(), "{bad}: {body}");
    }
    let anonymous = http
        .get(format!(
            "http://127.0.0.1:{}/v1/apps/{app_id}/usage",
            platform.app.port
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn metrics_expose_connections_messages_closes_and_api_latency() {
    let app = spawn_app().await;
    let (mut subscriber, _) = app.connected(APP.1).await;
    subscriber.subscribe("metered", "", None).await;
    assert_eq!(
        app.trigger("metered", "ping", "x", None).await.status(),
        200
    );
    subscriber.expect_event("ping").await;
    let (leaving, _) = app.connected(APP.1).await;
    leaving.close().await;

    let response = reqwest::get(format!("http://127.0.0.1:{}/metrics", app.port))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for expected in [
        "switchboard_connections ",
        "switchboard_subscriptions ",
        "switchboard_messages_published_total{source=\"api\"}",
        "switchboard_messages_delivered_total ",
        "switchboard_outbox_drops_total ",
        "switchboard_connections_closed_total{code=\"1000\"}",
        "switchboard_http_request_duration_seconds_bucket{endpoint=\"/apps/{app_id}/events\",le=",
        "# TYPE switchboard_http_request_duration_seconds histogram",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // No app id is ever a label.
    assert!(!text.contains(APP.0), "{text}");
}

#[tokio::test]
async fn every_worker_keeps_reporting_how_late_it_runs_what_is_due() {
    let app = spawn_app().await;
    let (mut first, mut now) = (None, None);
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            now = app
                .metric_if_any("switchboard_worker_lag_seconds_count")
                .await;
            match (first, now) {
                (None, Some(count)) => first = Some(count),
                (Some(before), Some(count)) if count > before => return,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the probe's samples went from {first:?} to {now:?} only"));
}
