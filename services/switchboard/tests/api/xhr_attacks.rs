//! pusher-js's xhr transports against a hostile or unlucky client: racing first polls, a
//! flood of new sessions, sessions that are never used.

use std::time::Duration;

use edge::EdgeSettings;
use reqwest::StatusCode;

use crate::helpers::{
    APP, TestApp, assert_too_many_requests, http_from_another_address, spawn_app_with,
};
use crate::platform::spawn_platform;

fn receive_url(app: &TestApp, key: &str, session: &str) -> String {
    format!(
        "http://127.0.0.1:{}/pusher/app/{key}/{session}/xhr?protocol=7&client=js&version=8.6.0",
        app.port
    )
}

/// One `xhr` receive request: status and body.
async fn receive(http: &reqwest::Client, url: &str) -> (StatusCode, String) {
    let response = http.post(url).send().await.expect("an answer");
    let status = response.status();
    (status, response.text().await.expect("a whole body"))
}

fn opens(body: &str) -> usize {
    body.lines().filter(|line| *line == "o").count()
}

#[tokio::test]
async fn concurrent_first_polls_of_a_session_send_exactly_one_open() {
    // A current poll with nothing to say answers `h` soon.
    let app = spawn_app_with(EdgeSettings {
        xhr_heartbeat_interval: Duration::from_millis(200),
        ..EdgeSettings::default()
    })
    .await;
    for n in 0..10 {
        let url = receive_url(&app, APP.1, &format!("{n}/race{n:04}"));
        let polls = (0..4).map(|_| receive(&app.http, &url));
        let answers = futures_util::future::join_all(polls).await;
        assert!(answers.iter().all(|(status, _)| *status == StatusCode::OK));
        let open_count: usize = answers.iter().map(|(_, body)| opens(body)).sum();
        assert_eq!(open_count, 1, "session {n}: {answers:?}");
    }
}

#[tokio::test]
async fn a_flood_of_new_xhr_sessions_from_one_address_gets_429() {
    let app = spawn_app_with(EdgeSettings {
        carrier_sessions_per_address_per_minute: 5,
        ..EdgeSettings::default()
    })
    .await;
    for n in 0..5 {
        let (status, body) =
            receive(&app.http, &receive_url(&app, APP.1, &format!("1/f{n}"))).await;
        assert_eq!((status, opens(&body)), (StatusCode::OK, 1), "{body}");
    }
    let response = app
        .http
        .post(receive_url(&app, APP.1, "1/f5"))
        .send()
        .await
        .unwrap();
    assert_too_many_requests(&response);
    // Another address is not limited by this one's flood.
    let (status, body) = receive(
        &http_from_another_address(),
        &receive_url(&app, APP.1, "1/other"),
    )
    .await;
    assert_eq!((status, opens(&body)), (StatusCode::OK, 1), "{body}");
}

#[tokio::test]
async fn an_xhr_session_counts_against_the_quota_only_once_used() {
    let platform = spawn_platform().await;
    platform.add_plan_with_connections("two", 2).await;
    let (_, created) = platform
        .account_with_app("xhr@example.com", Some("two"))
        .await;
    let app = &platform.app;
    // Five first polls on a plan of two connections: none is refused, none holds a slot.
    let urls: Vec<String> = (0..5)
        .map(|n| receive_url(app, &created.key, &format!("2/used{n}")))
        .collect();
    for url in &urls {
        let (status, body) = receive(&app.http, url).await;
        assert_eq!((status, opens(&body)), (StatusCode::OK, 1), "{body}");
    }
    // Coming back puts a session in use: two fit, the third is told 4004. (A ping first, so
    // that an admitted poll has a frame to answer with: the pong.)
    for url in &urls[..2] {
        let ping = r#"["{\"event\":\"pusher:ping\",\"data\":{}}"]"#;
        let send_url = url.replace("/xhr?", "/xhr_send?");
        let sent = app.http.post(send_url).body(ping).send().await.unwrap();
        assert_eq!(sent.status(), StatusCode::NO_CONTENT);
        let (_, body) = receive(&app.http, url).await;
        assert!(body.contains("pusher:pong"), "{body}");
    }
    let (_, body) = receive(&app.http, &urls[2]).await;
    assert!(body.contains("4004"), "{body}");
    assert!(body.contains("c[4004,"), "{body}");
}
