//! Sign up, log in, log out, me; bad input gets a 4xx with a JSON error and writes nothing.

use control::routes::ControlSettings;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Caller, PASSWORD, session_of, spawn_app, spawn_app_with};

#[tokio::test]
async fn signup_creates_the_account_and_signs_it_in() {
    let app = spawn_app().await;
    let response = app.sign_up(" ann@example.com ", PASSWORD).await;
    let body = response.ok(StatusCode::CREATED);
    assert_eq!(body["email"], "ann@example.com");
    assert!(body["id"].as_str().is_some_and(|id| id.len() == 36));
    assert!(body.get("password").is_none());

    let session = response.set_cookie("sb_session").expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(!session.contains("Secure"), "not configured: {session}");
    let csrf = response.set_cookie("sb_csrf").expect("a CSRF cookie");
    assert!(!csrf.contains("HttpOnly"), "scripts read it: {csrf}");
    assert_eq!(
        response.cookie_value("sb_csrf").as_deref(),
        body["csrf_token"].as_str()
    );

    let me = app.get(&session_of(&response), "/v1/me").await;
    assert_eq!(me.ok(StatusCode::OK)["email"], "ann@example.com");
    assert_eq!(me.body["id"], body["id"]);
}

#[tokio::test]
async fn login_returns_a_csrf_token_and_a_session_cookie() {
    let app = spawn_app().await;
    app.signed_up("ann@example.com").await;

    let response = app.log_in("ANN@example.com", PASSWORD).await;
    let csrf_token = response.ok(StatusCode::OK)["csrf_token"].as_str().unwrap();
    assert_eq!(csrf_token.len(), 32);
    assert_eq!(
        response.cookie_value("sb_csrf").as_deref(),
        Some(csrf_token)
    );
    let cookie = response.set_cookie("sb_session").unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));

    let me = app.get(&session_of(&response), "/v1/me").await;
    assert_eq!(me.ok(StatusCode::OK)["email"], "ann@example.com");
}

#[tokio::test]
async fn a_wrong_password_or_unknown_email_is_401() {
    let app = spawn_app().await;
    app.signed_up("ann@example.com").await;
    let sessions = app.count("sessions").await;

    let wrong = app.log_in("ann@example.com", "not the password").await;
    let message = wrong.error(StatusCode::UNAUTHORIZED).to_owned();
    assert!(wrong.set_cookie("sb_session").is_none());
    let unknown = app.log_in("bob@example.com", PASSWORD).await;
    assert_eq!(
        unknown.error(StatusCode::UNAUTHORIZED),
        message,
        "no hint which"
    );
    assert_eq!(app.count("sessions").await, sessions);
}

#[tokio::test]
async fn logout_ends_the_session() {
    let app = spawn_app().await;
    let session = app.signed_up("ann@example.com").await;

    let response = app.post(&session, "/v1/logout", json!({})).await;
    assert_eq!(response.status, StatusCode::NO_CONTENT);
    let cleared = response
        .set_cookie("sb_session")
        .expect("clears the cookie");
    assert!(
        cleared.starts_with("sb_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );

    app.get(&session, "/v1/me")
        .await
        .error(StatusCode::UNAUTHORIZED);
    assert_eq!(app.count("sessions").await, 0);
}

#[tokio::test]
async fn without_credentials_everything_but_the_public_routes_is_401() {
    let app = spawn_app().await;
    for path in [
        "/v1/me",
        "/v1/apps",
        "/v1/tokens",
        "/v1/audit",
        "/v1/apps/100001/keys",
    ] {
        app.get(&Caller::Anonymous, path)
            .await
            .error(StatusCode::UNAUTHORIZED);
    }
    let made_up = Caller::Session {
        cookie: "00".repeat(32),
        csrf: None,
    };
    app.get(&made_up, "/v1/me")
        .await
        .error(StatusCode::UNAUTHORIZED);
    let made_up = Caller::Bearer(format!("sbt_{}", "00".repeat(32)));
    app.get(&made_up, "/v1/me")
        .await
        .error(StatusCode::UNAUTHORIZED);
    app.get(&Caller::Anonymous, "/v1/plans")
        .await
        .ok(StatusCode::OK);
}

#[tokio::test]
async fn a_duplicate_email_is_409_whatever_its_case() {
    let app = spawn_app().await;
    app.signed_up("ann@example.com").await;
    for email in ["ann@example.com", "Ann@Example.COM"] {
        let message = app
            .sign_up(email, PASSWORD)
            .await
            .error(StatusCode::CONFLICT)
            .to_owned();
        assert!(message.contains("already exists"), "{message}");
    }
    assert_eq!(app.count("accounts").await, 1);
}

#[tokio::test]
async fn weak_passwords_and_bad_emails_are_400_and_create_nothing() {
    let app = spawn_app().await;
    let cases = [
        ("ann@example.com", "short", "at least 10"),
        ("ann@example.com", "password123", "too common"),
        ("ann@example.com", "QWERTYUIOP", "too common"),
        ("not-an-email", PASSWORD, "email"),
    ];
    for (email, password, expected) in cases {
        let response = app.sign_up(email, password).await;
        let message = response.error(StatusCode::BAD_REQUEST);
        assert!(message.contains(expected), "{password:?}: {message}");
        assert!(response.set_cookie("sb_session").is_none());
    }
    assert_eq!(app.count("accounts").await, 0);
    assert_eq!(app.count("sessions").await, 0);
}

#[tokio::test]
async fn malformed_json_is_400_with_a_json_error() {
    let app = spawn_app().await;
    let cases = [
        ("application/json", "{\"email\": ", "malformed JSON"),
        (
            "application/json",
            "{\"email\": \"ann@example.com\"}",
            "missing field `password`",
        ),
        ("application/json", "[1, 2]", "malformed JSON"),
        ("text/plain", "{}", "Content-Type"),
    ];
    for (content_type, body, expected) in cases {
        for path in ["/v1/signup", "/v1/login"] {
            let response = app.raw(path, content_type, body).await;
            let message = response.error(StatusCode::BAD_REQUEST);
            assert!(message.contains(expected), "{path} {body:?}: {message}");
        }
    }
    assert_eq!(app.count("accounts").await, 0);
}

#[tokio::test]
async fn unknown_paths_and_methods_get_json_errors_too() {
    let app = spawn_app().await;
    app.get(&Caller::Anonymous, "/v1/nothing-here")
        .await
        .error(StatusCode::NOT_FOUND);
    let response = app
        .request(
            &Caller::Anonymous,
            reqwest::Method::DELETE,
            "/v1/plans",
            None,
        )
        .await;
    response.error(StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn cookies_are_secure_when_configured() {
    let app = spawn_app_with(ControlSettings {
        secure_cookies: true,
        ..ControlSettings::default()
    })
    .await;
    let response = app.sign_up("ann@example.com", PASSWORD).await;
    for cookie in ["sb_session", "sb_csrf"] {
        let header = response.set_cookie(cookie).unwrap();
        assert!(header.contains("Secure"), "{header}");
    }
}

#[tokio::test]
async fn an_unexpected_failure_is_500_without_its_detail_and_writes_nothing() {
    let app = spawn_app().await;
    let session = app.signed_up("ann@example.com").await;
    sqlx::query("ALTER TABLE audit_log RENAME TO audit_log_gone")
        .execute(&app.pool)
        .await
        .unwrap();
    let response = app
        .post(&session, "/v1/apps", json!({ "name": "chat" }))
        .await;
    assert_eq!(
        response.error(StatusCode::INTERNAL_SERVER_ERROR),
        "internal error"
    );
    assert_eq!(
        app.count("apps").await,
        0,
        "the app's transaction was rolled back"
    );
    assert_eq!(app.count("app_keys").await, 0);
}
