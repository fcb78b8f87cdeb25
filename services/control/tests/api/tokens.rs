//! API tokens, and CSRF: cookie sessions need `X-CSRF-Token` to change anything, Bearer
//! tokens do not.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn tokens_are_created_listed_without_values_and_revoked() {
    let app = spawn_app().await;
    let session = app.signed_up("ann@example.com").await;

    let created = app
        .post(&session, "/v1/tokens", json!({ "name": " deploy " }))
        .await;
    let body = created.ok(StatusCode::CREATED).clone();
    assert_eq!(body["name"], "deploy");
    let token = body["token"].as_str().unwrap();
    assert!(token.starts_with("sbt_") && token.len() == 68, "{token}");

    let listed = app.get(&session, "/v1/tokens").await;
    let listed = listed.ok(StatusCode::OK).as_array().unwrap().clone();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], body["id"]);
    assert_eq!(listed[0]["name"], "deploy");
    assert!(listed[0]["revoked_at"].is_null());
    assert!(listed[0].get("token").is_none());
    assert!(
        !listed[0].to_string().contains(&token[4..]),
        "the value is never listed"
    );

    let bearer = crate::helpers::Caller::Bearer(token.to_owned());
    app.get(&bearer, "/v1/me").await.ok(StatusCode::OK);

    let path = format!("/v1/tokens/{}", body["id"].as_str().unwrap());
    let revoked = app.request(&session, Method::DELETE, &path, None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    app.get(&bearer, "/v1/me")
        .await
        .error(StatusCode::UNAUTHORIZED);
    let again = app.request(&session, Method::DELETE, &path, None).await;
    again.error(StatusCode::NOT_FOUND);
    let listed = app.get(&session, "/v1/tokens").await;
    assert!(listed.body[0]["revoked_at"].is_string());

    let not_a_uuid = app
        .request(&session, Method::DELETE, "/v1/tokens/nope", None)
        .await;
    not_a_uuid.error(StatusCode::NOT_FOUND);
    let empty_name = app
        .post(&session, "/v1/tokens", json!({ "name": "  " }))
        .await;
    empty_name.error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_session_needs_the_csrf_token_to_change_anything_but_bearer_does_not() {
    let app = spawn_app().await;
    let session = app.signed_up("ann@example.com").await;
    let body = json!({ "name": "chat" });

    let missing = app
        .post(&session.without_csrf(), "/v1/apps", body.clone())
        .await;
    let message = missing.error(StatusCode::FORBIDDEN);
    assert!(message.contains("CSRF"), "{message}");
    let wrong = session.with_csrf(Some(&"0".repeat(32)));
    app.post(&wrong, "/v1/apps", body.clone())
        .await
        .error(StatusCode::FORBIDDEN);
    let logout = app
        .post(&session.without_csrf(), "/v1/logout", json!({}))
        .await;
    logout.error(StatusCode::FORBIDDEN);
    app.post(
        &session.without_csrf(),
        "/v1/tokens",
        json!({ "name": "t" }),
    )
    .await
    .error(StatusCode::FORBIDDEN);
    assert_eq!(app.count("apps").await, 0);
    assert_eq!(app.count("api_tokens").await, 0);

    // Reading needs no CSRF token.
    app.get(&session.without_csrf(), "/v1/apps")
        .await
        .ok(StatusCode::OK);

    app.post(&session, "/v1/apps", body.clone())
        .await
        .ok(StatusCode::CREATED);
    let bearer = app.api_token(&session).await;
    let (app_id, _, _) = app.app(&bearer, "via token").await;
    let path = format!("/v1/apps/{app_id}");
    let patched = app
        .request(
            &bearer,
            Method::PATCH,
            &path,
            Some(json!({ "enabled": false })),
        )
        .await;
    assert_eq!(patched.ok(StatusCode::OK)["enabled"], false);
}
