//! The OpenAPI document is generated from the code and lists every route.

use reqwest::{Method, StatusCode};

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
        ("/v1/account/verification", "post"),
        ("/v1/account/verify", "post"),
        ("/v1/account/password", "put"),
        ("/v1/account/password-reset", "post"),
        ("/v1/account/password-reset/confirm", "post"),
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
        ("/v1/apps/{app_id}/keys/{key}/rotate", "post"),
        ("/v1/apps/{app_id}/keys/{key}/secret", "get"),
        ("/v1/plans", "get"),
        ("/v1/audit", "get"),
        ("/v1/apps/{app_id}/usage", "get"),
        ("/v1/apps/{app_id}/webhooks", "get"),
        ("/v1/apps/{app_id}/webhooks", "post"),
        ("/v1/apps/{app_id}/webhooks/{id}", "delete"),
        ("/v1/apps/{app_id}/webhooks/deliveries", "get"),
        ("/v1/console", "get"),
        ("/v1/console/auth", "post"),
        ("/v1/apps/{app_id}/refusals", "get"),
        ("/v1/billing", "get"),
        ("/v1/billing/checkout", "post"),
        ("/v1/billing/portal", "post"),
        ("/v1/billing/cancel", "post"),
        ("/v1/billing/change-plan", "post"),
        ("/v1/stripe/webhook", "post"),
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

/// Request bodies this test walks, with how to send one: (schema, method, path, base body,
/// status of an accepted request). `{app_id}` is an app of the caller's.
const WALKED: [(&str, &str, &str, &str, u16); 5] = [
    (
        "Credentials",
        "POST",
        "/v1/signup",
        r#"{"password":"correct horse battery staple"}"#,
        201,
    ),
    ("NewApp", "POST", "/v1/apps", r#"{"name":"x"}"#, 201),
    ("AppChanges", "PATCH", "/v1/apps/{app_id}", "{}", 200),
    ("NewToken", "POST", "/v1/tokens", r#"{"name":"x"}"#, 201),
    (
        "PasswordResetRequest",
        "POST",
        "/v1/account/password-reset",
        "{}",
        202,
    ),
];

/// Request bodies whose constraints another part of the code owns and checks. The two new
/// passwords are `Password::parse`'s, walked in `Credentials.password`; sending them here
/// would need a fresh reset token or the current password for every value.
const NOT_WALKED: [&str; 3] = ["NewWebhook", "PasswordReset", "PasswordChange"];

/// Values the patterns must take and refuse, as the server does.
fn pattern_examples(property: &str) -> (Vec<&'static str>, Vec<&'static str>) {
    match property {
        "email" => (
            vec!["ann@example.com", "a@b.co", "a.b+c@x.y.z"],
            vec![
                "a@b",
                "ab.com",
                "a b@x.com",
                "@x.com",
                "a@.com",
                "a@x.com.",
                "a@b@x.com",
            ],
        ),
        "name" => (
            vec!["chat", "a b", "ünïcode ✓"],
            vec!["   ", "a\u{7}b", "tab\tin", "\u{85}"],
        ),
        other => panic!("no pattern examples for {other:?}: add them here"),
    }
}

/// A value of `length` characters for `property` that breaks no other constraint of it.
fn value_of_length(property: &str, length: usize, unique: &mut usize) -> String {
    *unique += 1;
    match property {
        "email" => {
            // The counter keeps addresses apart; the filler makes up the length whatever its
            // number of digits.
            let tag = unique.to_string();
            let shortest = tag.len() + "@x.com".len();
            let local = format!("{tag}{}", "a".repeat(length.saturating_sub(shortest)));
            let email = format!("{local}@x.com");
            assert_eq!(
                email.chars().count(),
                length.max(shortest),
                "emails are at least {shortest} characters here"
            );
            email
        }
        _ => "x".repeat(length),
    }
}

/// Every constraint the document declares on a request body is the server's: a value at each
/// declared bound is accepted and one past it refused (400), and each pattern takes exactly
/// what the server takes among the examples. Constraints nobody checks fail the test.
#[tokio::test]
async fn every_declared_constraint_is_the_one_the_server_enforces() {
    let app = crate::helpers::spawn_app_with(control::routes::ControlSettings {
        signup_quota: control::routes::signups_per_hour(10_000),
        reset_request_quota: control::routes::per_hour(10_000),
        ..control::routes::ControlSettings::default()
    })
    .await;
    let session = app.signed_up("walker@example.com").await;
    let (app_id, _, _) = app.app(&session, "walked").await;
    let document = app.get(&Caller::Anonymous, "/v1/openapi.json").await.body;
    let schemas = document["components"]["schemas"].as_object().unwrap();
    let mut unique = 0;
    let mut checked = Vec::new();

    for (name, schema) in schemas {
        let properties = schema["properties"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let constrained: Vec<_> = properties
            .iter()
            .filter(|(_, p)| {
                [
                    "minLength",
                    "maxLength",
                    "pattern",
                    "minimum",
                    "maximum",
                    "enum",
                ]
                .iter()
                .any(|k| p.get(*k).is_some())
            })
            .collect();
        if constrained.is_empty() || NOT_WALKED.contains(&name.as_str()) {
            continue;
        }
        let Some((_, method, path, base, accepted)) = WALKED.iter().find(|w| w.0 == name) else {
            // Response bodies carry no constraints of ours; a request body must be walked.
            panic!("{name} declares constraints but this test does not send it: add it to WALKED");
        };
        let path = path.replace("{app_id}", &app_id);
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let send = |property: String, value: String| {
            let mut body: serde_json::Value = serde_json::from_str(base).unwrap();
            body[&property] = serde_json::Value::String(value);
            if name == "Credentials" && property != "email" {
                body["email"] =
                    format!("{}-{property}@x.com", uuid::Uuid::new_v4().simple()).into();
            }
            let (method, path) = (method.clone(), path.clone());
            let (app, caller) = (
                &app,
                if name == "Credentials" {
                    Caller::Anonymous
                } else {
                    session.clone()
                },
            );
            async move {
                app.request(&caller, method, &path, Some(body))
                    .await
                    .status
                    .as_u16()
            }
        };
        for (property, declared) in constrained {
            let limits = [
                (
                    "maxLength",
                    declared.get("maxLength").and_then(|v| v.as_u64()),
                ),
                (
                    "minLength",
                    declared.get("minLength").and_then(|v| v.as_u64()),
                ),
            ];
            for key in ["minimum", "maximum", "enum"] {
                assert!(
                    declared.get(key).is_none(),
                    "{name}.{property}: {key} is not checked yet"
                );
            }
            let pattern = declared["pattern"]
                .as_str()
                .map(|p| regex::Regex::new(p).unwrap_or_else(|e| panic!("{name}.{property}: {e}")));
            for (kind, bound) in limits {
                let Some(bound) = bound.map(|b| usize::try_from(b).unwrap()) else {
                    continue;
                };
                let (inside, outside) = match kind {
                    "maxLength" => (bound, Some(bound + 1)),
                    _ => (bound, bound.checked_sub(1)),
                };
                let value = value_of_length(property, inside, &mut unique);
                if let Some(pattern) = &pattern {
                    assert!(pattern.is_match(&value), "{name}.{property}: {value:?}");
                }
                assert_eq!(
                    send(property.clone(), value).await,
                    *accepted,
                    "{name}.{property} at {kind} {bound}"
                );
                if let Some(outside) = outside {
                    let value = value_of_length(property, outside, &mut unique);
                    assert_eq!(
                        send(property.clone(), value).await,
                        400,
                        "{name}.{property} past {kind} {bound}"
                    );
                }
                checked.push(format!("{name}.{property}.{kind}"));
            }
            if let Some(pattern) = &pattern {
                let (takes, refuses) = pattern_examples(property);
                for example in takes {
                    let value = if property == "email" {
                        format!("{}{example}", uuid::Uuid::new_v4().simple())
                    } else {
                        example.to_owned()
                    };
                    assert!(
                        pattern.is_match(&value),
                        "{name}.{property} pattern refuses {value:?}"
                    );
                    assert_eq!(
                        send(property.clone(), value.clone()).await,
                        *accepted,
                        "{name}.{property}: {value:?}"
                    );
                }
                for example in refuses {
                    assert!(
                        !pattern.is_match(example),
                        "{name}.{property} pattern takes {example:?}"
                    );
                    assert_eq!(
                        send(property.clone(), example.to_owned()).await,
                        400,
                        "{name}.{property}: {example:?}"
                    );
                }
                checked.push(format!("{name}.{property}.pattern"));
            }
        }
    }
    checked.sort();
    assert_eq!(
        checked,
        [
            "AppChanges.name.maxLength",
            "AppChanges.name.minLength",
            "AppChanges.name.pattern",
            "Credentials.email.maxLength",
            "Credentials.email.pattern",
            "Credentials.password.maxLength",
            "Credentials.password.minLength",
            "NewApp.name.maxLength",
            "NewApp.name.minLength",
            "NewApp.name.pattern",
            "NewToken.name.maxLength",
            "NewToken.name.minLength",
            "NewToken.name.pattern",
            "PasswordResetRequest.email.maxLength",
            "PasswordResetRequest.email.pattern",
        ],
        "the constraints the server enforces are all declared"
    );
}

/// Every path's other methods answer 405 with `Allow` naming exactly the documented methods.
#[tokio::test]
async fn a_405_names_the_documented_methods_in_allow() {
    let app = spawn_app().await;
    let document = app.get(&Caller::Anonymous, "/v1/openapi.json").await.body;
    for (path, operations) in document["paths"].as_object().unwrap() {
        let mut documented: Vec<String> = operations
            .as_object()
            .unwrap()
            .keys()
            .map(|method| method.to_uppercase())
            .collect();
        documented.sort();
        let concrete = path
            .replace("{app_id}", "100001")
            .replace("{token_id}", "00000000-0000-0000-0000-000000000000")
            .replace("{key}", "k")
            .replace("{id}", "00000000-0000-0000-0000-000000000000");
        let unused = ["PUT", "PATCH", "DELETE", "POST", "GET"]
            .into_iter()
            .find(|method| !documented.iter().any(|d| d == method))
            .expect("some method is not served");
        let response = app
            .http
            .request(
                Method::from_bytes(unused.as_bytes()).unwrap(),
                format!("{}{concrete}", app.address),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{unused} {path}"
        );
        let allow = response.headers()["allow"].to_str().unwrap().to_owned();
        let mut allowed: Vec<String> = allow.split(',').map(|m| m.trim().to_owned()).collect();
        allowed.sort();
        assert_eq!(allowed, documented, "Allow of {path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("not allowed"));
    }
}

/// The usage range's bounds are declared `date-time` (RFC 3339), which is what the server
/// parses: one is taken, anything else is a 400.
#[tokio::test]
async fn usage_bounds_are_declared_date_time_as_the_server_parses_them() {
    let app = spawn_app().await;
    let session = app.signed_up("ann@example.com").await;
    let (app_id, _, _) = app.app(&session, "chat").await;
    let document = app.get(&Caller::Anonymous, "/v1/openapi.json").await.body;
    let parameters = document["paths"]["/v1/apps/{app_id}/usage"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .clone();
    for name in ["from", "to"] {
        let parameter = parameters.iter().find(|p| p["name"] == name).unwrap();
        assert_eq!(parameter["schema"]["format"], "date-time", "{name}");
    }
    let path = format!("/v1/apps/{app_id}/usage");
    app.get(
        &session,
        &format!("{path}?from=2026-11-26T00:00:00Z&to=2026-11-26T01:00:00%2B00:00"),
    )
    .await
    .ok(StatusCode::OK);
    app.get(&session, &format!("{path}?from=yesterday"))
        .await
        .error(StatusCode::BAD_REQUEST);
}
