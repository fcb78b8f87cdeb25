//! Noisy neighbours (issue 15): on a node with small per-app admission limits, one app's storm
//! of connections and publishes never makes another app's connection or publish fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use edge::EdgeSettings;
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use testkit::RedisServer;

use crate::helpers::{
    APP, OTHER_APP, TestApp, WsClient, data_of, spawn_app_on_broker_with_settings, spawn_app_with,
};

const CONNECTS_PER_SECOND: u32 = 5;
const API_IN_FLIGHT: usize = 2;
const STORM_CONNECTIONS: usize = 40;
const STORM_PUBLISHES: usize = 200;
const B_SOCKETS: usize = 20;
const B_EVENTS: usize = 20;
/// B's sockets past its burst are opened one at a time, this long after the previous one was
/// admitted: 4 a second, under its own bucket's 5 however loaded the machine is (the gap
/// starts at the server's answer, so queueing cannot bunch two admissions together). This
/// shapes B's load; nothing waits on it to see an effect.
const B_PACE: Duration = Duration::from_millis(250);
const REFUSALS: &str = "switchboard_tenant_admission_refusals_total{kind=\"connect_rate\"}";

fn settings() -> EdgeSettings {
    EdgeSettings {
        app_connects_per_second: CONNECTS_PER_SECOND,
        api_in_flight_per_app: API_IN_FLIGHT,
        ..EdgeSettings::default()
    }
}

#[tokio::test]
async fn a_storm_from_one_app_never_makes_another_apps_connection_or_publish_fail() {
    let app = Arc::new(spawn_app_with(settings()).await);
    storm_spares_the_other_app(app).await;
}

/// The same on a Redis broker, where a publish awaits its round trip, so A's concurrent
/// publishes really are in flight together and its 2 slots are full while B publishes.
#[tokio::test]
async fn on_redis_a_storm_from_one_app_never_makes_another_apps_connection_or_publish_fail() {
    let redis = RedisServer::start();
    let app = Arc::new(spawn_app_on_broker_with_settings(&redis.url(), settings()).await);
    let publishes_refused = storm_spares_the_other_app(app).await;
    // Waves of 200 concurrent publishes, each waiting on Redis, for the seconds B takes:
    // A is over its 2 in flight.
    assert!(
        publishes_refused > 0,
        "A's publishes met its in-flight limit"
    );
}

/// The storm of the tests above; A's publishes refused with 429.
async fn storm_spares_the_other_app(app: Arc<TestApp>) -> usize {
    // A opens 40 connections at once against a bucket of 5: some are refused, with 4100 only.
    let first_wave = join_all((0..STORM_CONNECTIONS).map(|_| open(&app, APP.1))).await;
    let mut a_refusals: Vec<u16> = first_wave.iter().filter_map(Outcome::refused).collect();
    assert!(!a_refusals.is_empty(), "40 at once against a bucket of 5");
    drop(first_wave);

    // A keeps storming, connections and publishes, until B is done: A's bucket and in-flight
    // slots stay exhausted all through B's turn, so B passes only if its limits are its own.
    let b_done = Arc::new(AtomicBool::new(false));
    let storm = tokio::spawn(storm(app.clone(), b_done.clone()));

    // B: its burst at once, then paced under its own rate; every one is admitted.
    let mut b_clients: Vec<WsClient> =
        join_all((0..CONNECTS_PER_SECOND).map(|_| open(&app, OTHER_APP.1)))
            .await
            .into_iter()
            .map(Outcome::admitted)
            .collect();
    while b_clients.len() < B_SOCKETS {
        tokio::time::sleep(B_PACE).await;
        b_clients.push(open(&app, OTHER_APP.1).await.admitted());
    }
    for client in &mut b_clients {
        let succeeded = client.subscribe("b-news", "", None).await;
        assert_eq!(succeeded["event"], "pusher_internal:subscription_succeeded");
    }
    for n in 0..B_EVENTS {
        let status = publish(&app, OTHER_APP, "b-news", n).await;
        assert_eq!(status, StatusCode::OK, "B's publish {n}");
    }
    for client in &mut b_clients {
        for n in 0..B_EVENTS {
            let event = client.expect_event("tick").await;
            assert_eq!(
                data_of(&event)["n"],
                n,
                "every B subscriber gets all, in order"
            );
        }
    }
    b_done.store(true, Ordering::Relaxed);

    let (storm_refusals, statuses) = storm.await.expect("the storm runs to the end");
    a_refusals.extend(storm_refusals);
    assert!(
        a_refusals.iter().all(|code| *code == 4100),
        "A's connections are refused only with 4100: {a_refusals:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|status| [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS].contains(status)),
        "A's publishes are refused only with 429"
    );
    let too_many = statuses
        .iter()
        .filter(|status| **status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    println!(
        "A: {} connections refused (4100), {too_many} of {} publishes refused (429)",
        a_refusals.len(),
        statuses.len()
    );
    // The process's one recorder counts every test's refusals: at least ours.
    assert!(app.metric(REFUSALS).await >= a_refusals.len() as u64);
    too_many
}

/// How an attempt to connect ended.
enum Outcome {
    Admitted(Box<WsClient>),
    Refused(u16),
}

impl Outcome {
    fn refused(&self) -> Option<u16> {
        match self {
            Self::Admitted(_) => None,
            Self::Refused(code) => Some(*code),
        }
    }

    fn admitted(self) -> WsClient {
        match self {
            Self::Admitted(client) => *client,
            Self::Refused(code) => panic!("refused with {code}"),
        }
    }
}

/// Connects to the app with `key` and reads the server's answer: established, or the
/// refusal's `pusher:error` and close code.
async fn open(app: &TestApp, key: &str) -> Outcome {
    let mut client = app.connect(key).await;
    match client.next_json_or_close().await {
        Ok(frame) if frame["event"] == "pusher:connection_established" => {
            Outcome::Admitted(Box::new(client))
        }
        Ok(frame) => {
            assert_eq!(frame["event"], "pusher:error", "{frame}");
            let code = data_of_error_code(&frame);
            let closed = client
                .next_json_or_close()
                .await
                .expect_err("the refusal closes");
            assert_eq!(closed.code, code, "the close carries the error's code");
            Outcome::Refused(closed.code)
        }
        Err(closed) => Outcome::Refused(closed.code),
    }
}

fn data_of_error_code(frame: &serde_json::Value) -> u16 {
    let data = &frame["data"];
    let data = match data.as_str() {
        Some(text) => serde_json::from_str(text).expect("data is JSON"),
        None => data.clone(),
    };
    u16::try_from(data["code"].as_u64().expect("an error code")).unwrap()
}

/// A's storm until `done`: waves of 10 connections (closed once admitted) and of 200
/// concurrent publishes; the refusal codes and every publish's status.
async fn storm(app: Arc<TestApp>, done: Arc<AtomicBool>) -> (Vec<u16>, Vec<StatusCode>) {
    let connecting = {
        let (app, done) = (app.clone(), done.clone());
        async move {
            let mut refusals = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let wave = join_all((0..10).map(|_| open(&app, APP.1))).await;
                refusals.extend(wave.iter().filter_map(Outcome::refused));
            }
            refusals
        }
    };
    let publishing = async {
        let mut statuses = Vec::new();
        // At least one wave, whenever B finishes.
        loop {
            let wave = (0..STORM_PUBLISHES).map(|n| publish(&app, APP, "a-news", n));
            statuses.extend(join_all(wave).await);
            if done.load(Ordering::Relaxed) {
                return statuses;
            }
        }
    };
    tokio::join!(connecting, publishing)
}

/// Publishes `{"n": n}` as `tick` on `channel` of `app`; the status.
async fn publish(app: &TestApp, tenant: (&str, &str, &str), channel: &str, n: usize) -> StatusCode {
    let body = json!({ "name": "tick", "channel": channel, "data": json!({ "n": n }).to_string() });
    let path = format!("/apps/{}/events", tenant.0);
    let response = app.api(tenant, "POST", &path, &[], Some(&body)).await;
    if response.status() == StatusCode::TOO_MANY_REQUESTS {
        assert_eq!(response.headers()["retry-after"], "1");
    }
    response.status()
}
