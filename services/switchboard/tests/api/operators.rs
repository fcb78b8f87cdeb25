//! The operator's contract: `switchboard admin …` output, and edge and control run apart.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use control::catalog::PgCatalog;
use control::crypto::SecretsKey;
use control::routes::ControlState;
use control::service::Control;
use edge::EdgeSettings;
use serde_json::{Value, json};
use switchboard::startup::{Application, Parts};

use crate::helpers::TestApp;
use crate::platform::fresh_database;

fn switchboard(
    args: &[&str],
    database_url: &str,
    secrets_key: &str,
    stdin: Option<&str>,
) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("SWITCHBOARD_SECRETS_KEY", secrets_key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    if let Some(text) = stdin {
        writeln!(child.stdin.take().unwrap(), "{text}").unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (
        output.status.success(),
        text(output.stdout),
        text(output.stderr),
    )
}

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
}

#[tokio::test]
async fn admin_set_plan_moves_an_app_to_a_paid_plan_and_audits_it() {
    let (url, _database) = fresh_database().await;
    let key = SecretsKey::generate_base64();
    let (ok, _, err) = switchboard(
        &[
            "admin",
            "create-account",
            "--email",
            "paying@example.com",
            "--password-stdin",
        ],
        &url,
        &key,
        Some("a long enough password"),
    );
    assert!(ok, "{err}");
    let (ok, out, err) = switchboard(
        &[
            "admin",
            "create-app",
            "--email",
            "paying@example.com",
            "--name",
            "Paying",
        ],
        &url,
        &key,
        None,
    );
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(out.trim()).unwrap();
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

/// Runs the binary and waits for it to exit by itself; a server that keeps running instead is
/// killed and reported as `None` (only a failure to refuse reaches the timeout).
fn switchboard_exit(args: &[&str], database_url: &str, secrets_key: &str) -> Option<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("SWITCHBOARD_SECRETS_KEY", secrets_key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut stderr = child.stderr.take().unwrap();
    let (done, exited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        let _ = done.send(text);
    });
    match exited.recv_timeout(std::time::Duration::from_secs(30)) {
        Ok(text) => {
            let status = child.wait().unwrap();
            assert!(!status.success(), "exited successfully: {text}");
            Some(text)
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }
}

#[tokio::test]
async fn a_static_app_with_a_database_apps_id_or_key_is_refused_at_start() {
    let (url, _database) = fresh_database().await;
    let key = SecretsKey::generate_base64();
    let (ok, _, err) = switchboard(
        &[
            "admin",
            "create-account",
            "--email",
            "tenant@example.com",
            "--password-stdin",
        ],
        &url,
        &key,
        Some("a long enough password"),
    );
    assert!(ok, "{err}");
    let (ok, out, err) = switchboard(
        &[
            "admin",
            "create-app",
            "--email",
            "tenant@example.com",
            "--name",
            "Tenant",
        ],
        &url,
        &key,
        None,
    );
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(out.trim()).unwrap();
    let (app_id, app_key) = (
        created["app_id"].as_str().unwrap(),
        created["key"].as_str().unwrap(),
    );
    let serve = |spec: String| {
        let args = [
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--app",
            &spec,
        ];
        switchboard_exit(&args, &url, &key)
    };

    let same_id = serve(format!("{app_id}:statickey:s")).expect("refused, not served");
    assert!(
        same_id.contains("refusing to start") && same_id.contains(app_id),
        "{same_id}"
    );
    let same_key = serve(format!("static1:{app_key}:s")).expect("refused, not served");
    assert!(
        same_key.contains("refusing to start") && same_key.contains(app_key),
        "{same_key}"
    );
    let future_id = serve("987654:statickey:s".to_owned()).expect("refused, not served");
    assert!(future_id.contains("987654"), "{future_id}");
}

#[tokio::test]
async fn a_key_with_a_newline_is_logged_on_one_line() {
    use std::io::BufRead;

    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--app",
            "a1:k1:s1",
        ])
        .env_remove("DATABASE_URL")
        .env_remove("SWITCHBOARD_LOG_FORMAT")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let port: u16 = first
        .trim()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .expect("the port");
    let (lines, logged) = std::sync::mpsc::channel();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });

    let forged = "bad%0A2026-12-01T00:00:00.000000Z%20ERROR%20forged:%20admin%20password%20reset";
    let url = format!("ws://127.0.0.1:{port}/app/{forged}?protocol=7");
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    // Read to the close (4001): the refusal has been logged by then.
    while let Some(Ok(message)) = futures_util::StreamExt::next(&mut socket).await {
        if message.is_close() {
            break;
        }
    }
    let refusal = loop {
        let line = logged
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the refusal is logged");
        if line.contains("connection refused") {
            break line;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let rest: Vec<String> = logged.try_iter().collect();
    assert!(
        refusal.contains("4001") && refusal.contains("bad\\n2026"),
        "the whole event, newline escaped, on one line: {refusal}"
    );
    assert!(
        rest.iter().all(|line| !line.contains("forged")),
        "no forged line: {rest:?}"
    );
}

/// `serve` wires the operator's settings into the control plane: an https public URL makes
/// the session cookies `Secure`, and sign-ups are counted per client address as a trusted
/// proxy names it.
#[tokio::test]
async fn serve_flags_make_cookies_secure_and_trust_only_the_named_proxies() {
    use std::io::BufRead;

    let (url, _database) = fresh_database().await;
    let key = SecretsKey::generate_base64();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--host", "127.0.0.1", "--port", "0"])
        .args(["--public-url", "https://rt.example.com"])
        .args([
            "--trusted-proxies",
            "127.0.0.1/32",
            "--signups-per-hour",
            "1",
        ])
        .env("DATABASE_URL", &url)
        .env("SWITCHBOARD_SECRETS_KEY", &key)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let port: u16 = first
        .trim()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .expect("the port");
    let http = reqwest::Client::new();
    let sign_up = |email: &'static str, forwarded_for: &'static str| {
        http.post(format!("http://127.0.0.1:{port}/v1/signup"))
            .header("x-forwarded-for", forwarded_for)
            .json(&json!({ "email": email, "password": "correct horse battery" }))
            .send()
    };
    let first = sign_up("one@example.com", "198.51.100.1").await.unwrap();
    let second = sign_up("two@example.com", "198.51.100.2").await.unwrap();
    let third = sign_up("three@example.com", "198.51.100.1").await.unwrap();
    let _ = child.kill();
    let _ = child.wait();

    assert_eq!(first.status(), 201);
    for cookie in first.headers().get_all("set-cookie") {
        let cookie = cookie.to_str().unwrap();
        assert!(cookie.contains("Secure"), "{cookie}");
    }
    assert_eq!(second.status(), 201, "another client behind the proxy");
    assert_eq!(third.status(), 429, "the same client again");
}
