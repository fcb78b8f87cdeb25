//! The audit log records who changed what, latest first, never secrets.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_audit_log_records_the_accounts_actions_latest_first() {
    let app = spawn_app().await;
    let session = app.signed_up("ann@example.com").await;
    let (app_id, key, secret) = app.app(&session, "chat").await;
    app.request(
        &session,
        Method::PATCH,
        &format!("/v1/apps/{app_id}"),
        Some(json!({ "enabled": false })),
    )
    .await
    .ok(StatusCode::OK);
    app.add_free_plan().await;
    app.request(
        &session,
        Method::PUT,
        &format!("/v1/apps/{app_id}/plan"),
        Some(json!({ "plan": "hobby" })),
    )
    .await
    .ok(StatusCode::OK);
    let created = app
        .post(&session, &format!("/v1/apps/{app_id}/keys"), json!({}))
        .await;
    let new_secret = created.ok(StatusCode::CREATED)["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post(
        &session,
        &format!("/v1/apps/{app_id}/keys/{key}/revoke"),
        json!({}),
    )
    .await;
    let new_key = created.body["key"].as_str().unwrap();
    app.get(
        &session,
        &format!("/v1/apps/{app_id}/keys/{new_key}/secret"),
    )
    .await
    .ok(StatusCode::OK);
    app.api_token(&session).await;

    let log = app.get(&session, "/v1/audit").await;
    let log = log.ok(StatusCode::OK).as_array().unwrap().clone();
    let actions: Vec<_> = log
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "api_token.created",
            "key.secret_revealed",
            "key.revoked",
            "key.created",
            "app.plan_changed",
            "app.disabled",
            "app.created",
            "session.created",
            "account.created",
        ]
    );
    assert_eq!(log[2]["subject"], app_id.as_str());
    assert_eq!(log[2]["details"]["key"], key.as_str());
    assert!(log[0]["created_at"].is_string());
    let text = serde_json::to_string(&log).unwrap();
    assert!(
        !text.contains(&secret) && !text.contains(&new_secret),
        "no secrets"
    );

    let limited = app.get(&session, "/v1/audit?limit=2").await;
    assert_eq!(limited.ok(StatusCode::OK).as_array().unwrap().len(), 2);
    let clamped = app.get(&session, "/v1/audit?limit=100000").await;
    assert_eq!(clamped.ok(StatusCode::OK).as_array().unwrap().len(), 9);
    app.get(&session, "/v1/audit?limit=many")
        .await
        .error(StatusCode::BAD_REQUEST);
}
