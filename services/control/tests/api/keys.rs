//! Keys: create (rotation), list without secrets, reveal, revoke; the last live key stays.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn keys_are_created_listed_revealed_and_revoked() {
    let app = spawn_app().await;
    let session = app.signed_up("ann@example.com").await;
    let (app_id, first_key, first_secret) = app.app(&session, "chat").await;
    let keys_path = format!("/v1/apps/{app_id}/keys");

    let reveal = |key: &str| format!("/v1/apps/{app_id}/keys/{key}/secret");
    let revealed = app.get(&session, &reveal(&first_key)).await;
    assert_eq!(revealed.ok(StatusCode::OK)["secret"], first_secret.as_str());

    let created = app.post(&session, &keys_path, json!({})).await;
    let created = created.ok(StatusCode::CREATED).clone();
    let second_key = created["key"].as_str().unwrap().to_owned();
    let second_secret = created["secret"].as_str().unwrap().to_owned();
    assert_ne!(second_key, first_key);
    assert_ne!(second_secret, first_secret);
    let revealed = app.get(&session, &reveal(&second_key)).await;
    assert_eq!(
        revealed.ok(StatusCode::OK)["secret"],
        second_secret.as_str()
    );

    let listed = app.get(&session, &keys_path).await;
    let listed = listed.ok(StatusCode::OK).clone();
    let keys: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].clone())
        .collect();
    assert_eq!(keys, [json!(first_key), json!(second_key)]);
    let text = listed.to_string();
    assert!(!text.contains(&first_secret) && !text.contains(&second_secret));
    assert!(listed[0]["revoked_at"].is_null() && listed[0]["created_at"].is_string());

    let revoke = |key: &str| format!("/v1/apps/{app_id}/keys/{key}/revoke");
    let revoked = app.post(&session, &revoke(&first_key), json!({})).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let listed = app.get(&session, &keys_path).await;
    assert!(listed.body[0]["revoked_at"].is_string());
    assert!(listed.body[1]["revoked_at"].is_null());
    app.get(&session, &reveal(&first_key))
        .await
        .error(StatusCode::NOT_FOUND);
    app.post(&session, &revoke(&first_key), json!({}))
        .await
        .error(StatusCode::NOT_FOUND);

    let last = app.post(&session, &revoke(&second_key), json!({})).await;
    let message = last.error(StatusCode::CONFLICT);
    assert!(message.contains("at least one live key"), "{message}");
    let revealed = app.get(&session, &reveal(&second_key)).await;
    assert_eq!(
        revealed.ok(StatusCode::OK)["secret"],
        second_secret.as_str()
    );

    app.get(&session, &reveal("no-such-key"))
        .await
        .error(StatusCode::NOT_FOUND);
    app.post(&session, &revoke("no-such-key"), json!({}))
        .await
        .error(StatusCode::NOT_FOUND);
}
