//! Apps CRUD and plans.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Caller, spawn_app};

#[tokio::test]
async fn apps_are_created_listed_shown_updated_and_deleted() {
    let app = spawn_app().await;
    let session = app.signed_up("ann@example.com").await;

    let created = app
        .post(&session, "/v1/apps", json!({ "name": " chat " }))
        .await;
    let created = created.ok(StatusCode::CREATED).clone();
    assert_eq!(created["name"], "chat");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["plan"], "sandbox", "new apps start on sandbox");
    assert!(
        created["created_at"].as_str().unwrap().contains('T'),
        "RFC 3339"
    );
    assert!(created["key"].as_str().is_some_and(|key| !key.is_empty()));
    assert!(
        created["secret"]
            .as_str()
            .is_some_and(|secret| secret.len() >= 32)
    );
    let app_id = created["app_id"].as_str().unwrap();
    let path = format!("/v1/apps/{app_id}");

    app.add_free_plan().await;
    let on_hobby = app
        .post(
            &session,
            "/v1/apps",
            json!({ "name": "game", "plan": "hobby" }),
        )
        .await;
    assert_eq!(on_hobby.ok(StatusCode::CREATED)["plan"], "hobby");

    let listed = app.get(&session, "/v1/apps").await;
    let listed = listed.ok(StatusCode::OK).as_array().unwrap().clone();
    let names: Vec<_> = listed.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["chat", "game"]);
    assert!(listed.iter().all(|a| a.get("secret").is_none()));

    let shown = app.get(&session, &path).await;
    assert_eq!(shown.ok(StatusCode::OK)["app_id"], app_id);
    assert!(shown.body.get("secret").is_none());

    let renamed = app
        .request(
            &session,
            Method::PATCH,
            &path,
            Some(json!({ "name": "chat 2" })),
        )
        .await;
    assert_eq!(renamed.ok(StatusCode::OK)["name"], "chat 2");
    assert_eq!(renamed.body["enabled"], true);
    let disabled = app
        .request(
            &session,
            Method::PATCH,
            &path,
            Some(json!({ "enabled": false })),
        )
        .await;
    assert_eq!(disabled.ok(StatusCode::OK)["enabled"], false);
    assert_eq!(disabled.body["name"], "chat 2");
    let bad_name = app
        .request(&session, Method::PATCH, &path, Some(json!({ "name": "" })))
        .await;
    bad_name.error(StatusCode::BAD_REQUEST);

    let deleted = app.request(&session, Method::DELETE, &path, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.get(&session, &path).await.error(StatusCode::NOT_FOUND);
    app.request(&session, Method::DELETE, &path, None)
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(app.count("apps").await, 1);
}

#[tokio::test]
async fn an_unknown_plan_is_400_and_creates_nothing() {
    let app = spawn_app().await;
    let session = app.signed_up("ann@example.com").await;
    let response = app
        .post(
            &session,
            "/v1/apps",
            json!({ "name": "chat", "plan": "platinum" }),
        )
        .await;
    let message = response.error(StatusCode::BAD_REQUEST);
    assert!(message.contains("platinum"), "{message}");
    assert_eq!(app.count("apps").await, 0);
    assert_eq!(app.count("app_keys").await, 0);
    let listed = app.get(&session, "/v1/apps").await;
    assert_eq!(listed.ok(StatusCode::OK), &json!([]));
    let bad_name = app.post(&session, "/v1/apps", json!({ "name": "" })).await;
    bad_name.error(StatusCode::BAD_REQUEST);
    assert_eq!(app.count("apps").await, 0);
}

#[tokio::test]
async fn plans_are_public_and_an_apps_plan_is_read_and_changed() {
    let app = spawn_app().await;
    let plans = app.get(&Caller::Anonymous, "/v1/plans").await;
    let plans = plans.ok(StatusCode::OK).as_array().unwrap().clone();
    let ids: Vec<_> = plans.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["sandbox", "startup", "pro", "business"]);
    assert!(plans[0]["max_connections"].as_i64().is_some());

    let session = app.signed_up("ann@example.com").await;
    let (app_id, _, _) = app.app(&session, "chat").await;
    let path = format!("/v1/apps/{app_id}/plan");
    let plan = app.get(&session, &path).await;
    assert_eq!(plan.ok(StatusCode::OK)["id"], "sandbox");
    assert_eq!(plan.body, plans[0]);

    app.add_free_plan().await;
    let changed = app
        .request(
            &session,
            Method::PUT,
            &path,
            Some(json!({ "plan": "hobby" })),
        )
        .await;
    assert_eq!(changed.ok(StatusCode::OK)["id"], "hobby");
    assert_eq!(app.get(&session, &path).await.body["id"], "hobby");
    let shown = app.get(&session, &format!("/v1/apps/{app_id}")).await;
    assert_eq!(shown.body["plan"], "hobby");

    let unknown = app
        .request(
            &session,
            Method::PUT,
            &path,
            Some(json!({ "plan": "platinum" })),
        )
        .await;
    unknown.error(StatusCode::BAD_REQUEST);
    assert_eq!(
        app.get(&session, &path).await.body["id"],
        "hobby",
        "unchanged"
    );
    let malformed = app
        .request(&session, Method::PUT, &path, Some(json!({ "plan": 3 })))
        .await;
    malformed.error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_self_serve_account_cannot_take_a_paid_plan_402() {
    let app = spawn_app().await;
    // Verified, so what stops it is billing (an unverified account is stopped before: 403).
    let session = app.signed_up_verified("ann@example.com").await;
    let (app_id, _, _) = app.app(&session, "chat").await;
    let path = format!("/v1/apps/{app_id}/plan");
    for paid in ["startup", "pro", "business"] {
        let refused = app
            .request(&session, Method::PUT, &path, Some(json!({ "plan": paid })))
            .await;
        let message = refused.error(StatusCode::PAYMENT_REQUIRED);
        assert!(
            message.contains(paid) && message.contains("admin set-plan"),
            "{message}"
        );
        assert_eq!(app.get(&session, &path).await.body["id"], "sandbox");
    }
    let created = app
        .post(
            &session,
            "/v1/apps",
            json!({ "name": "game", "plan": "business" }),
        )
        .await;
    created.error(StatusCode::PAYMENT_REQUIRED);
    assert_eq!(app.count("apps").await, 1, "no app on a paid plan was made");
    let token = app.api_token(&session).await;
    app.request(&token, Method::PUT, &path, Some(json!({ "plan": "pro" })))
        .await
        .error(StatusCode::PAYMENT_REQUIRED);
    let moves: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'app.plan_changed'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(moves, 0, "a refused move is not audited as a change");
}
