//! Tenant isolation: with account A's session or token, every route that names account B's
//! app, key or token answers 404, and changes nothing of B's.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::spawn_app;

#[tokio::test]
async fn every_route_naming_another_accounts_app_key_or_token_is_404() {
    let app = spawn_app().await;
    let ann = app.signed_up("ann@example.com").await;
    let ann_token = app.api_token(&ann).await;
    let (ann_app, _, _) = app.app(&ann, "ann's").await;
    let bob = app.signed_up("bob@example.com").await;
    let bob_token = app.api_token(&bob).await;
    let (bob_app, bob_key, bob_secret) = app.app(&bob, "bob's").await;
    let bob_tokens = app.get(&bob, "/v1/tokens").await;
    let bob_token_id = bob_tokens.body[0]["id"].as_str().unwrap().to_owned();

    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/v1/apps/{bob_app}"), None),
        (
            Method::PATCH,
            format!("/v1/apps/{bob_app}"),
            Some(json!({ "enabled": false })),
        ),
        (Method::DELETE, format!("/v1/apps/{bob_app}"), None),
        (Method::GET, format!("/v1/apps/{bob_app}/plan"), None),
        (
            Method::PUT,
            format!("/v1/apps/{bob_app}/plan"),
            Some(json!({ "plan": "pro" })),
        ),
        (Method::GET, format!("/v1/apps/{bob_app}/keys"), None),
        (Method::GET, format!("/v1/apps/{bob_app}/usage"), None),
        (Method::POST, format!("/v1/apps/{bob_app}/keys"), None),
        (
            Method::POST,
            format!("/v1/apps/{bob_app}/keys/{bob_key}/revoke"),
            None,
        ),
        (
            Method::GET,
            format!("/v1/apps/{bob_app}/keys/{bob_key}/secret"),
            None,
        ),
        // Ann's own app with Bob's key.
        (
            Method::POST,
            format!("/v1/apps/{ann_app}/keys/{bob_key}/revoke"),
            None,
        ),
        (
            Method::GET,
            format!("/v1/apps/{ann_app}/keys/{bob_key}/secret"),
            None,
        ),
        (Method::DELETE, format!("/v1/tokens/{bob_token_id}"), None),
    ];
    for caller in [&ann, &ann_token] {
        for (method, path, body) in &routes {
            let response = app
                .request(caller, method.clone(), path, body.clone())
                .await;
            assert_eq!(
                response.status,
                StatusCode::NOT_FOUND,
                "{method} {path}: {}",
                response.body
            );
            assert!(!response.body.to_string().contains(&bob_secret));
        }
        let listed = app.get(caller, "/v1/apps").await;
        let ids: Vec<_> = listed
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["app_id"].clone())
            .collect();
        assert_eq!(ids, [json!(ann_app)]);
    }

    // Nothing of Bob's changed.
    let shown = app.get(&bob_token, &format!("/v1/apps/{bob_app}")).await;
    assert_eq!(shown.ok(StatusCode::OK)["enabled"], true);
    assert_eq!(shown.body["plan"], "sandbox");
    let keys = app.get(&bob, &format!("/v1/apps/{bob_app}/keys")).await;
    assert_eq!(keys.body.as_array().unwrap().len(), 1);
    assert!(keys.body[0]["revoked_at"].is_null());
    let audit = app.get(&ann, "/v1/audit").await;
    assert!(!audit.body.to_string().contains(&bob_app), "{}", audit.body);
}
