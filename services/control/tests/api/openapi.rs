//! The OpenAPI document is generated from the code and lists every route.

use reqwest::StatusCode;

use crate::helpers::{Caller, spawn_app};

#[tokio::test]
async fn the_openapi_document_lists_every_path_and_both_auth_schemes() {
    let app = spawn_app().await;
    let response = app.get(&Caller::Anonymous, "/v1/openapi.json").await;
    let document = response.ok(StatusCode::OK);
    assert!(document["openapi"].as_str().unwrap().starts_with('3'));
    let expected = [
        ("/v1/signup", "post"),
        ("/v1/login", "post"),
        ("/v1/logout", "post"),
        ("/v1/me", "get"),
        ("/v1/tokens", "get"),
        ("/v1/tokens", "post"),
        ("/v1/tokens/{token_id}", "delete"),
        ("/v1/apps", "get"),
        ("/v1/apps", "post"),
        ("/v1/apps/{app_id}", "get"),
        ("/v1/apps/{app_id}", "patch"),
        ("/v1/apps/{app_id}", "delete"),
        ("/v1/apps/{app_id}/plan", "get"),
        ("/v1/apps/{app_id}/plan", "put"),
        ("/v1/apps/{app_id}/keys", "get"),
        ("/v1/apps/{app_id}/keys", "post"),
        ("/v1/apps/{app_id}/keys/{key}/revoke", "post"),
        ("/v1/apps/{app_id}/keys/{key}/secret", "get"),
        ("/v1/plans", "get"),
        ("/v1/audit", "get"),
        ("/v1/apps/{app_id}/usage", "get"),
        ("/v1/apps/{app_id}/webhooks", "get"),
        ("/v1/apps/{app_id}/webhooks", "post"),
        ("/v1/apps/{app_id}/webhooks/{id}", "delete"),
        ("/v1/apps/{app_id}/webhooks/deliveries", "get"),
    ];
    let paths = document["paths"].as_object().unwrap();
    for (path, method) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path}"
        );
    }
    let operations: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(operations, expected.len(), "no undocumented extras");
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["session"]["in"], "cookie");
    assert!(document["components"]["schemas"]["ErrorBody"].is_object());
}
