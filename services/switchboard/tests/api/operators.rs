//! The operator's contract: `switchboard admin …` output, and edge and control run apart.

use std::sync::Arc;

use control::catalog::PgCatalog;
use control::crypto::SecretsKey;
use control::routes::ControlState;
use control::service::Control;
use edge::EdgeSettings;
use serde_json::{Value, json};
use switchboard::startup::{Application, Parts};

use crate::binary::{create_account_and_app, switchboard};
use crate::helpers::TestApp;
use crate::platform::fresh_database;

#[tokio::test]
async fn admin_commands_make_an_account_and_an_app_the_edge_serves() {
    let (url, _database) = fresh_database().await;
    let key = SecretsKey::generate_base64();
    let password = "a long enough password";
    let (ok, out, err) = switchboard(
        &[
            "admin",
            "create-account",
            "--email",
            "ops@example.com",
            "--password-stdin",
        ],
        &url,
        &key,
        Some(password),
    );
    assert!(ok, "{err}");
    assert!(
        !out.contains(password) && !err.contains(password),
        "the password is never printed"
    );

    let (ok, out, err) = switchboard(
        &[
            "admin",
            "create-app",
            "--email",
            "ops@example.com",
            "--name",
            "Ops",
            "--plan",
            "pro",
        ],
        &url,
        &key,
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "one JSON line: {out}");
    let created: Value = serde_json::from_str(out.trim()).unwrap();
    let fields: Vec<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields, ["app_id", "key", "secret"]);

    let (ok, _, err) = switchboard(
        &[
            "admin",
            "create-app",
            "--email",
            "nobody@example.com",
            "--name",
            "X",
        ],
        &url,
        &key,
        None,
    );
    assert!(!ok && err.contains("nobody@example.com"), "{err}");
    let (ok, _, err) = switchboard(
        &[
            "admin",
            "create-app",
            "--email",
            "ops@example.com",
            "--name",
            "X",
            "--plan",
            "gold",
        ],
        &url,
        &key,
        None,
    );
    assert!(!ok && err.contains("gold"), "{err}");

    // The app works on an edge reading the same database.
    let pool = switchboard::database::connect(&url).await.unwrap();
    let secrets = SecretsKey::from_base64(&key).unwrap();
    let catalog = PgCatalog::new(pool, secrets);
    let parts = Parts {
        edge: Some((
            catalog as Arc<dyn tenancy::AppCatalog>,
            EdgeSettings::default(),
        )),
        control: None,
        usage: None,
        webhooks: None,
    };
    let application = Application::build_with("127.0.0.1", 0, parts).unwrap();
    let app = TestApp {
        port: application.port(),
        http: reqwest::Client::new(),
        stopper: application.stopper(),
    };
    tokio::spawn(application.run_until_stopped());
    let (app_id, app_key, secret) = (
        created["app_id"].as_str().unwrap(),
        created["key"].as_str().unwrap(),
        created["secret"].as_str().unwrap(),
    );
    let (mut client, _) = app.connected(app_key).await;
    client.subscribe("ops", "", None).await;
    let body = json!({"name":"hello","channel":"ops","data":"x"});
    let response = app
        .api(
            (app_id, app_key, secret),
            "POST",
            &format!("/apps/{app_id}/events"),
            &[],
            Some(&body),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(client.next_json().await["event"], "hello");
}

#[tokio::test]
async fn edge_and_control_run_apart_on_one_database() {
    let (url, _database) = fresh_database().await;
    let pool = switchboard::database::connect(&url).await.unwrap();
    switchboard::database::migrate(&pool).await.unwrap();
    let secrets = SecretsKey::from_base64(&SecretsKey::generate_base64()).unwrap();

    let control = Control::new(pool.clone(), secrets.clone());
    let control_only = Parts {
        edge: None,
        control: Some(ControlState::new(control)),
        usage: None,
        webhooks: None,
    };
    let control_app = Application::build_with("127.0.0.1", 0, control_only).unwrap();
    let control_port = control_app.port();
    tokio::spawn(control_app.run_until_stopped());

    let catalog = PgCatalog::new(pool, secrets);
    tokio::spawn(catalog.clone().listen());
    let edge_only = Parts {
        edge: Some((
            catalog as Arc<dyn tenancy::AppCatalog>,
            EdgeSettings::default(),
        )),
        control: None,
        usage: None,
        webhooks: None,
    };
    let edge_app = Application::build_with("127.0.0.1", 0, edge_only).unwrap();
    let edge = TestApp {
        port: edge_app.port(),
        http: reqwest::Client::new(),
        stopper: edge_app.stopper(),
    };
    tokio::spawn(edge_app.run_until_stopped());

    // The control process serves /v1 only; the edge process serves the Pusher endpoints only.
    let http = reqwest::Client::new();
    let v1 = |path: &str| format!("http://127.0.0.1:{control_port}/v1{path}");
    let signup = http
        .post(v1("/signup"))
        .json(&json!({"email":"apart@example.com","password":"correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), 201);
    let cookie = signup
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| {
            value
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("; ");
    let csrf = signup.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let created: Value = http
        .post(v1("/apps"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"name":"apart"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap();
    let (mut client, _) = edge.connected(key).await;
    assert_eq!(
        client.subscribe("x", "", None).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    let not_on_edge = reqwest::get(format!("http://127.0.0.1:{}/v1/plans", edge.port))
        .await
        .unwrap();
    assert_eq!(not_on_edge.status(), 404);
    let not_on_control = reqwest::get(format!("http://127.0.0.1:{control_port}/apps/1/channels"))
        .await
        .unwrap();
    assert_eq!(not_on_control.status(), 404);

    // A control plane alone has a /metrics of its own: the process's recorder (its webhook
    // and billing figures), without an edge's node figures.
    control::metrics::register();
    let metrics = reqwest::get(format!("http://127.0.0.1:{control_port}/metrics"))
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("switchboard_webhook_attempts_total{outcome=\"failed\"}"),
        "{text}"
    );
    assert!(text.contains("# TYPE switchboard_billing_outbox_oldest_age_seconds gauge"));
    assert!(
        !text.contains("switchboard_outbox_bytes"),
        "no node figures: {text}"
    );
}

#[tokio::test]
async fn admin_set_plan_moves_an_app_to_a_paid_plan_and_audits_it() {
    let (url, _database) = fresh_database().await;
    let key = SecretsKey::generate_base64();
    let created = create_account_and_app(&url, &key, "paying@example.com", "Paying");
    let app_id = created["app_id"].as_str().unwrap();

    let (ok, out, err) = switchboard(
        &["admin", "set-plan", "--app", app_id, "--plan", "business"],
        &url,
        &key,
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "one JSON line: {out}");
    let printed: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(printed, json!({ "app_id": app_id, "plan": "business" }));

    let pool = switchboard::database::connect(&url).await.unwrap();
    let plan: String = sqlx::query_scalar("SELECT plan_id FROM apps WHERE id = $1")
        .bind(app_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(plan, "business");
    let (details, owner_matches): (Value, bool) = sqlx::query_as(
        "SELECT l.details, l.account_id = a.account_id FROM audit_log l JOIN apps a ON a.id = l.subject \
         WHERE l.action = 'app.plan_changed'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(details, json!({ "plan": "business", "by": "operator" }));
    assert!(owner_matches, "the owner sees the change in its audit log");

    let (ok, out, err) = switchboard(
        &["admin", "set-plan", "--app", "999999", "--plan", "pro"],
        &url,
        &key,
        None,
    );
    assert!(!ok && out.is_empty() && err.contains("999999"), "{err}");
    let (ok, _, err) = switchboard(
        &["admin", "set-plan", "--app", app_id, "--plan", "gold"],
        &url,
        &key,
        None,
    );
    assert!(!ok && err.contains("gold"), "{err}");
}
