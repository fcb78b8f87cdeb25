//! `switchboard serve` as an operator starts it: what it refuses at start, what it logs, and
//! how its flags reach the control plane.

use std::process::{Command, Stdio};

use control::crypto::SecretsKey;
use serde_json::{Value, json};

use crate::operators::switchboard;
use crate::platform::fresh_database;

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
