//! Login attempts are limited per account email and per client IP.

use control::routes::{ControlSettings, signups_per_hour};
use ingress::TrustedProxies;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, spawn_app, spawn_app_with, spawn_app_with_hash_limit};

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
        trusted_proxies: TrustedProxies::parse("127.0.0.0/8").unwrap(),
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

async fn sign_up_forwarded_for(app: &TestApp, email: &str, forwarded_for: &str) -> StatusCode {
    app.http
        .post(format!("{}/v1/signup", app.address))
        .header("X-Forwarded-For", forwarded_for)
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn sign_ups_are_limited_per_address_and_forged_forwarded_for_does_not_help() {
    let app = spawn_app_with(ControlSettings {
        signup_quota: signups_per_hour(3),
        ..ControlSettings::default()
    })
    .await;
    for n in 0..3 {
        let status =
            sign_up_forwarded_for(&app, &format!("s{n}@x.com"), &format!("10.0.0.{n}")).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let refused = app.sign_up("s3@x.com", PASSWORD).await;
    let message = refused.error(StatusCode::TOO_MANY_REQUESTS);
    assert!(message.contains("too many"), "{message}");
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    assert_eq!(
        sign_up_forwarded_for(&app, "s4@x.com", "10.9.9.9").await,
        StatusCode::TOO_MANY_REQUESTS,
        "an untrusted X-Forwarded-For is not an address"
    );
    assert_eq!(app.count("accounts").await, 3);

    // Behind a trusted proxy each client has its own count: the rightmost hop the proxy
    // appended, not whatever the client wrote to its left.
    let behind_proxy = spawn_app_with(ControlSettings {
        signup_quota: signups_per_hour(1),
        trusted_proxies: TrustedProxies::parse("127.0.0.1").unwrap(),
        ..ControlSettings::default()
    })
    .await;
    let signup =
        |email: &'static str, hops: &'static str| sign_up_forwarded_for(&behind_proxy, email, hops);
    assert_eq!(
        signup("p0@x.com", "198.51.100.1").await,
        StatusCode::CREATED
    );
    assert_eq!(
        signup("p1@x.com", "6.6.6.6, 198.51.100.1").await,
        StatusCode::TOO_MANY_REQUESTS,
        "a forged hop on the left changes nothing"
    );
    assert_eq!(
        signup("p2@x.com", "198.51.100.2").await,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn password_hashes_wait_for_a_slot_and_are_refused_503_when_none_frees() {
    let app = spawn_app_with_hash_limit(1, std::time::Duration::from_millis(200)).await;
    app.signed_up("ann@example.com").await;
    let slots = app.control.password_hash_slots().clone();
    let held = slots.acquire_owned().await.unwrap();
    let busy = app.log_in("ann@example.com", PASSWORD).await;
    let message = busy.error(StatusCode::SERVICE_UNAVAILABLE);
    assert!(message.contains("try again"), "{message}");
    assert_eq!(busy.headers["retry-after"], "1");
    app.sign_up("bob@example.com", PASSWORD)
        .await
        .error(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.count("accounts").await, 1, "no hash ran without a slot");
    drop(held);
    app.log_in("ann@example.com", PASSWORD)
        .await
        .ok(StatusCode::OK);
}
