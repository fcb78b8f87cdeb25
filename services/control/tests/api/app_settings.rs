//! App settings through `PATCH /v1/apps/{id}` (client events, subscription counting, allowed
//! origins, all or nothing) and key rotation in one step, each audited.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn settings_change_together_normalised_and_audited_or_not_at_all() {
    let app = spawn_app().await;
    let session = app.signed_up("ann@example.com").await;
    let (app_id, _, _) = app.app(&session, "chat").await;
    let path = format!("/v1/apps/{app_id}");
    let shown = app.get(&session, &path).await;
    let shown = shown.ok(StatusCode::OK);
    assert_eq!(shown["client_events"], true, "on by default");
    assert_eq!(shown["allowed_origins"], json!([]), "any origin by default");

    let patch = |body: serde_json::Value| app.request(&session, Method::PATCH, &path, Some(body));
    let changed = patch(json!({
        "name": "renamed",
        "client_events": false,
        "subscription_counting": true,
        "allowed_origins": ["HTTPS://App.Example.com:443/", "http://localhost:8080", "https://*.example.org"],
    }))
    .await;
    let changed = changed.ok(StatusCode::OK);
    assert_eq!(changed["name"], "renamed");
    assert_eq!(changed["client_events"], false);
    assert_eq!(changed["subscription_counting"], true);
    assert_eq!(
        changed["allowed_origins"],
        json!([
            "https://app.example.com",
            "http://localhost:8080",
            "https://*.example.org"
        ])
    );

    // One bad origin refuses the whole change: the name stays too.
    let refused =
        patch(json!({ "name": "other", "allowed_origins": ["https://ok.example", "ftp://x"] }))
            .await;
    assert!(refused.error(StatusCode::BAD_REQUEST).contains("ftp://x"));
    let too_many: Vec<String> = (0..101).map(|n| format!("https://a{n}.example")).collect();
    patch(json!({ "allowed_origins": too_many }))
        .await
        .error(StatusCode::BAD_REQUEST);
    let kept = app.get(&session, &path).await;
    assert_eq!(kept.body["name"], "renamed");
    assert_eq!(kept.body["allowed_origins"].as_array().unwrap().len(), 3);

    // An empty list allows any origin again; fields left out stay.
    let cleared = patch(json!({ "allowed_origins": [] })).await;
    assert_eq!(cleared.ok(StatusCode::OK)["allowed_origins"], json!([]));
    assert_eq!(cleared.body["client_events"], false);
    patch(json!({ "enabled": false })).await.ok(StatusCode::OK);

    let log = app.get(&session, "/v1/audit").await;
    let log = log.ok(StatusCode::OK).as_array().unwrap().clone();
    let actions: Vec<_> = log.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions[..5],
        [
            "app.disabled",
            "app.settings_changed",
            "app.settings_changed",
            "app.renamed",
            "app.created"
        ]
    );
    assert_eq!(log[2]["details"]["client_events"], false);
    assert_eq!(
        log[2]["details"]["allowed_origins"][0],
        "https://app.example.com"
    );
    assert_eq!(
        log[3]["details"],
        json!({ "name": "renamed", "previous": "chat" })
    );

    // Another tenant's app is not found, and nothing changes.
    let intruder = app.signed_up("mallory@example.com").await;
    app.request(
        &intruder,
        Method::PATCH,
        &path,
        Some(json!({ "client_events": true })),
    )
    .await
    .error(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn rotating_a_key_revokes_it_and_returns_its_successor_once() {
    let app = spawn_app().await;
    let session = app.signed_up("rot@example.com").await;
    let (app_id, key, secret) = app.app(&session, "chat").await;
    let rotate = |key: &str| format!("/v1/apps/{app_id}/keys/{key}/rotate");

    let response = app.post(&session, &rotate(&key), json!({})).await;
    assert_eq!(response.headers["cache-control"], "no-store");
    let rotated = response.ok(StatusCode::CREATED).clone();
    app.post(&session, &rotate(&key), json!({}))
        .await
        .error(StatusCode::NOT_FOUND);
    let new_key = rotated["key"].as_str().unwrap();
    assert_ne!(new_key, key);
    assert_ne!(rotated["secret"].as_str().unwrap(), secret);

    let listed = app.get(&session, &format!("/v1/apps/{app_id}/keys")).await;
    let listed = listed.ok(StatusCode::OK).as_array().unwrap().clone();
    let old = listed.iter().find(|k| k["key"] == key.as_str()).unwrap();
    assert!(old["revoked_at"].is_string(), "the old key is revoked");
    let new = listed.iter().find(|k| k["key"] == new_key).unwrap();
    assert!(new["revoked_at"].is_null());

    let intruder = app.signed_up("mallory@example.com").await;
    app.post(&intruder, &rotate(new_key), json!({}))
        .await
        .error(StatusCode::NOT_FOUND);
    app.post(&session, &rotate("no-such-key"), json!({}))
        .await
        .error(StatusCode::NOT_FOUND);

    let log = app.get(&session, "/v1/audit?limit=1").await;
    let entry = &log.ok(StatusCode::OK)[0];
    assert_eq!(entry["action"], "key.rotated");
    assert_eq!(entry["details"]["key"], key.as_str());
    assert_eq!(entry["details"]["new_key"], new_key);
}
