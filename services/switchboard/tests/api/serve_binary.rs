//! `switchboard serve` as an operator starts it: what it refuses at start, what it logs, and
//! how its flags reach the control plane.

use std::process::{Command, Stdio};

use control::crypto::SecretsKey;
use serde_json::json;

use crate::binary::{
    SERVE_ON_ANY_PORT, Serving, create_account_and_app, switchboard_command, switchboard_exit,
};
use crate::platform::fresh_database;

#[tokio::test]
async fn a_static_app_with_a_database_apps_id_or_key_is_refused_at_start() {
    let (url, _database) = fresh_database().await;
    let key = SecretsKey::generate_base64();
    let created = create_account_and_app(&url, &key, "tenant@example.com", "Tenant");
    let (app_id, app_key) = (
        created["app_id"].as_str().unwrap(),
        created["key"].as_str().unwrap(),
    );
    let serve = |spec: String| {
        let args = [&SERVE_ON_ANY_PORT[..], &["--app", &spec]].concat();
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

    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .args(SERVE_ON_ANY_PORT)
        .args(["--app", "a1:k1:s1"])
        .env_remove("DATABASE_URL")
        .env_remove("SWITCHBOARD_LOG_FORMAT")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped());
    let mut server = Serving::start(command);
    let port = server.port;
    let (lines, logged) = std::sync::mpsc::channel();
    let stderr = std::io::BufReader::new(server.child.stderr.take().unwrap());
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
    server.stop();
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
    let (url, _database) = fresh_database().await;
    let key = SecretsKey::generate_base64();
    let mut command = switchboard_command(&url, &key);
    command
        .args(SERVE_ON_ANY_PORT)
        .args(["--public-url", "https://rt.example.com"])
        .args([
            "--trusted-proxies",
            "127.0.0.1/32",
            "--signups-per-hour",
            "1",
        ])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null());
    let mut server = Serving::start(command);
    let port = server.port;
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
    server.stop();

    assert_eq!(first.status(), 201);
    for cookie in first.headers().get_all("set-cookie") {
        let cookie = cookie.to_str().unwrap();
        assert!(cookie.contains("Secure"), "{cookie}");
    }
    assert_eq!(second.status(), 201, "another client behind the proxy");
    assert_eq!(third.status(), 429, "the same client again");
}
