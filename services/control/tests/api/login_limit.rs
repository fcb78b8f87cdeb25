//! Login attempts are limited per account email and per client IP.

use control::routes::ControlSettings;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, spawn_app, spawn_app_with};

#[tokio::test]
async fn ten_wrong_passwords_get_401s_then_429s_and_the_right_one_is_refused_too() {
    let app = spawn_app().await;
    app.signed_up("ann@example.com").await;
    let sessions = app.count("sessions").await;

    let mut statuses = Vec::new();
    for _ in 0..10 {
        let response = app.log_in("ann@example.com", "wrong password!").await;
        response.error(response.status);
        if response.status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after: u64 = response.headers["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .expect("Retry-After in seconds");
            assert!((1..=60).contains(&retry_after), "{retry_after}");
        }
        statuses.push(response.status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429, 429, 429]);

    let right = app.log_in("ann@example.com", PASSWORD).await;
    let message = right.error(StatusCode::TOO_MANY_REQUESTS);
    assert!(message.contains("too many attempts"), "{message}");
    assert!(right.set_cookie("sb_session").is_none());
    assert_eq!(
        app.count("sessions").await,
        sessions,
        "no session while limited"
    );
}

#[tokio::test]
async fn the_email_limit_ignores_case() {
    let app = spawn_app().await;
    app.signed_up("ann@example.com").await;
    for email in [
        "ann@example.com",
        "ANN@example.com",
        "Ann@Example.com",
        " ann@EXAMPLE.com",
        "aNN@example.com",
    ] {
        app.log_in(email, "wrong password!")
            .await
            .error(StatusCode::UNAUTHORIZED);
    }
    app.log_in("ann@example.COM", PASSWORD)
        .await
        .error(StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn one_ip_trying_many_accounts_is_limited() {
    let app = spawn_app().await;
    for n in 0..5 {
        app.log_in(&format!("user{n}@example.com"), "wrong password!")
            .await
            .error(StatusCode::UNAUTHORIZED);
    }
    app.log_in("user5@example.com", "wrong password!")
        .await
        .error(StatusCode::TOO_MANY_REQUESTS);
}

async fn log_in_forwarded_for(app: &TestApp, email: &str, forwarded_for: &str) -> StatusCode {
    app.http
        .post(format!("{}/v1/login", app.address))
        .header("X-Forwarded-For", forwarded_for)
        .json(&json!({ "email": email, "password": "wrong password!" }))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn forwarded_for_headers_are_ignored_unless_trusted() {
    let app = spawn_app().await;
    for n in 0..5 {
        let status =
            log_in_forwarded_for(&app, &format!("u{n}@x.com"), &format!("10.0.0.{n}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let status = log_in_forwarded_for(&app, "u5@x.com", "10.0.0.5").await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "a made-up address does not reset the count"
    );

    let behind_proxy = spawn_app_with(ControlSettings {
        trust_proxy_headers: true,
        ..ControlSettings::default()
    })
    .await;
    for n in 0..5 {
        let status = log_in_forwarded_for(&behind_proxy, &format!("u{n}@x.com"), "10.0.0.1").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let status = log_in_forwarded_for(&behind_proxy, "u5@x.com", "10.0.0.1").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let status = log_in_forwarded_for(&behind_proxy, "u5@x.com", "10.0.0.2").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "another client behind the proxy"
    );
}
