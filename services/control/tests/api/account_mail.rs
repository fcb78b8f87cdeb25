//! Email verification, password reset and password change, through the mails the control
//! plane sends (read from its mailer) and the `/v1/account/*` routes.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Caller, PASSWORD, TestApp, session_of, spawn_app, spawn_app_with, token_in};

const NEW_PASSWORD: &str = "a brand new passphrase";

fn quotas(mails_per_address: u32, resets_per_client: u32) -> control::routes::ControlSettings {
    control::routes::ControlSettings {
        mail_quota: control::routes::per_hour(mails_per_address),
        reset_request_quota: control::routes::per_hour(resets_per_client),
        ..control::routes::ControlSettings::default()
    }
}

async fn me(app: &TestApp, caller: &Caller) -> serde_json::Value {
    app.get(caller, "/v1/me").await.ok(StatusCode::OK).clone()
}

async fn verify(app: &TestApp, token: &str) -> crate::helpers::Response {
    let body = json!({ "token": token });
    app.post(&Caller::Anonymous, "/v1/account/verify", body)
        .await
}

async fn audit_actions(app: &TestApp, caller: &Caller) -> Vec<String> {
    let log = app.get(caller, "/v1/audit").await;
    log.ok(StatusCode::OK)
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn sign_up_mails_a_one_time_verification_link_stored_only_hashed() {
    let app = spawn_app().await;
    let session = app.signed_up("ann@example.com").await;
    // Signed in at once, not verified yet.
    assert_eq!(me(&app, &session).await["email_verified"], false);

    let mails = app.mails_to("ann@example.com", 1).await;
    assert!(
        mails[0]
            .link
            .starts_with("http://dashboard.test/verify-email?token="),
        "{}",
        mails[0].link
    );
    let token = token_in(&mails[0]);
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT token_hash FROM account_tokens")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        stored,
        [control::crypto::token_hash(&token)],
        "only the hash"
    );

    verify(&app, "not-a-token-we-sent")
        .await
        .error(StatusCode::BAD_REQUEST);
    verify(&app, &token).await.ok(StatusCode::NO_CONTENT);
    assert_eq!(me(&app, &session).await["email_verified"], true);
    let reused = verify(&app, &token).await;
    assert!(
        reused
            .error(StatusCode::BAD_REQUEST)
            .contains("already used")
    );
    assert!(
        audit_actions(&app, &session)
            .await
            .contains(&"email.verified".to_owned())
    );

    let again = app
        .post(&session, "/v1/account/verification", json!({}))
        .await;
    again.error(StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_resent_link_replaces_the_first_and_resends_are_rate_limited_per_address() {
    let app = spawn_app_with(quotas(2, 20)).await;
    let session = app.signed_up("bob@example.com").await;
    let first = token_in(&app.mails_to("bob@example.com", 1).await[0]);
    let resend = || app.post(&session, "/v1/account/verification", json!({}));
    assert_eq!(resend().await.status, StatusCode::ACCEPTED);
    let second = token_in(&app.mails_to("bob@example.com", 2).await[1]);
    assert_ne!(first, second);
    assert_eq!(resend().await.status, StatusCode::ACCEPTED);
    let limited = resend().await;
    limited.error(StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers.contains_key("retry-after"));
    // Resending without the CSRF header is refused like any state change.
    let without_csrf = app
        .post(
            &session.without_csrf(),
            "/v1/account/verification",
            json!({}),
        )
        .await;
    without_csrf.error(StatusCode::FORBIDDEN);

    verify(&app, &first).await.error(StatusCode::BAD_REQUEST);
    let third = token_in(&app.mails_to("bob@example.com", 3).await[2]);
    verify(&app, &second).await.error(StatusCode::BAD_REQUEST);
    verify(&app, &third).await.ok(StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_paid_plan_needs_a_verified_email_first_then_billing() {
    let app = spawn_app().await;
    let session = app.signed_up("paid@example.com").await;
    let (app_id, _, _) = app.app(&session, "chat").await;
    let plan_path = format!("/v1/apps/{app_id}/plan");
    let choose = || {
        app.request(
            &session,
            Method::PUT,
            &plan_path,
            Some(json!({ "plan": "startup" })),
        )
    };
    let unverified = choose().await;
    assert!(
        unverified
            .error(StatusCode::FORBIDDEN)
            .contains("verify your email")
    );
    let create = app
        .post(
            &session,
            "/v1/apps",
            json!({ "name": "paid", "plan": "pro" }),
        )
        .await;
    assert!(
        create
            .error(StatusCode::FORBIDDEN)
            .contains("verify your email")
    );
    // Free plans need nothing.
    app.add_free_plan().await;
    let free = app
        .request(
            &session,
            Method::PUT,
            &format!("/v1/apps/{app_id}/plan"),
            Some(json!({ "plan": "hobby" })),
        )
        .await;
    free.ok(StatusCode::OK);

    let token = token_in(&app.mails_to("paid@example.com", 1).await[0]);
    verify(&app, &token).await.ok(StatusCode::NO_CONTENT);
    choose().await.error(StatusCode::PAYMENT_REQUIRED);
}

#[tokio::test]
async fn a_password_reset_link_sets_a_new_password_once_and_ends_every_session() {
    let app = spawn_app().await;
    let session = app.signed_up("cat@example.com").await;
    let request = |email: &'static str| {
        app.post(
            &Caller::Anonymous,
            "/v1/account/password-reset",
            json!({ "email": email }),
        )
    };
    // The same answer whether the account exists or not; only a real one gets mail.
    assert_eq!(
        request("nobody@example.com").await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        request("CAT@example.com").await.status,
        StatusCode::ACCEPTED
    );
    let mails = app.mails_to("cat@example.com", 2).await;
    assert!(
        app.mailer
            .sent()
            .iter()
            .all(|mail| mail.to != "nobody@example.com")
    );
    assert!(
        mails[1]
            .link
            .starts_with("http://dashboard.test/reset-password?token=")
    );
    let token = token_in(&mails[1]);

    let confirm = |token: String, password: &'static str| {
        app.post(
            &Caller::Anonymous,
            "/v1/account/password-reset/confirm",
            json!({ "token": token, "password": password }),
        )
    };
    // A weak password is refused and leaves the link usable.
    confirm(token.clone(), "short")
        .await
        .error(StatusCode::BAD_REQUEST);
    confirm(token.clone(), NEW_PASSWORD)
        .await
        .ok(StatusCode::NO_CONTENT);
    confirm(token.clone(), NEW_PASSWORD)
        .await
        .error(StatusCode::BAD_REQUEST);

    app.get(&session, "/v1/me")
        .await
        .error(StatusCode::UNAUTHORIZED);
    app.log_in("cat@example.com", PASSWORD)
        .await
        .error(StatusCode::UNAUTHORIZED);
    let signed_in = app.log_in("cat@example.com", NEW_PASSWORD).await;
    signed_in.ok(StatusCode::OK);
    let session = session_of(&signed_in);
    // Following the link proved the address.
    assert_eq!(me(&app, &session).await["email_verified"], true);
    let actions = audit_actions(&app, &session).await;
    assert!(actions.contains(&"password.reset_requested".to_owned()));
    assert!(actions.contains(&"password.reset".to_owned()));
    // Malformed addresses are refused, not silently accepted.
    request("not-an-email").await.error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn reset_requests_are_limited_per_recipient_silently_and_per_client_loudly() {
    let app = spawn_app_with(quotas(2, 4)).await;
    let session = app.signed_up("dan@example.com").await;
    let request = || {
        app.post(
            &Caller::Anonymous,
            "/v1/account/password-reset",
            json!({ "email": "dan@example.com" }),
        )
    };
    for _ in 0..3 {
        // Past the recipient's quota the answer stays 202 but nothing is sent.
        assert_eq!(request().await.status, StatusCode::ACCEPTED);
    }
    let requested = audit_actions(&app, &session)
        .await
        .iter()
        .filter(|action| *action == "password.reset_requested")
        .count();
    assert_eq!(requested, 2, "the third request sent no mail");
    assert_eq!(request().await.status, StatusCode::ACCEPTED);
    let limited = request().await;
    limited.error(StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_ends_the_other_sessions() {
    let app = spawn_app().await;
    let session = app.signed_up("eve@example.com").await;
    let other = session_of(&app.log_in("eve@example.com", PASSWORD).await);
    let token = app.api_token(&session).await;
    let change = |current: &'static str, new: &'static str| {
        app.request(
            &session,
            Method::PUT,
            "/v1/account/password",
            Some(json!({ "current_password": current, "new_password": new })),
        )
    };
    let wrong = change("not the password", NEW_PASSWORD).await;
    assert!(
        wrong
            .error(StatusCode::FORBIDDEN)
            .contains("current password")
    );
    change(PASSWORD, "short")
        .await
        .error(StatusCode::BAD_REQUEST);
    // A reset link mailed before the change must stop working.
    app.post(
        &Caller::Anonymous,
        "/v1/account/password-reset",
        json!({ "email": "eve@example.com" }),
    )
    .await;
    let reset_token = token_in(&app.mails_to("eve@example.com", 2).await[1]);
    change(PASSWORD, NEW_PASSWORD)
        .await
        .ok(StatusCode::NO_CONTENT);

    me(&app, &session).await;
    app.get(&other, "/v1/me")
        .await
        .error(StatusCode::UNAUTHORIZED);
    me(&app, &token).await;
    app.log_in("eve@example.com", NEW_PASSWORD)
        .await
        .ok(StatusCode::OK);
    app.post(
        &Caller::Anonymous,
        "/v1/account/password-reset/confirm",
        json!({ "token": reset_token, "password": "yet another passphrase" }),
    )
    .await
    .error(StatusCode::BAD_REQUEST);
    assert!(
        audit_actions(&app, &session)
            .await
            .contains(&"password.changed".to_owned())
    );
}

#[tokio::test]
async fn the_log_mailer_writes_the_link_to_the_log() {
    use control::mail::{LogMailer, MailLinks, Mailer};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let mail = MailLinks::new("https://rt.example.com/").verification("ann@example.com", "abc123");
    let _guard = tracing::subscriber::set_default(subscriber);
    LogMailer.send(mail).await.unwrap();
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("link=https://rt.example.com/verify-email?token=abc123"),
        "{text}"
    );
    assert!(text.contains("INFO"), "{text}");
}
