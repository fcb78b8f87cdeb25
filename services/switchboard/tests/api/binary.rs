//! The `switchboard` binary run as an operator runs it: a command to completion, a server that
//! should refuse to start, and a server left running on a free port.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// `serve` on a free loopback port (the port it took is printed on its first line).
pub const SERVE_ON_ANY_PORT: [&str; 5] = ["serve", "--host", "127.0.0.1", "--port", "0"];

/// The binary with the database and secrets key the control plane reads from the environment.
pub fn switchboard_command(database_url: &str, secrets_key: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .env("DATABASE_URL", database_url)
        .env("SWITCHBOARD_SECRETS_KEY", secrets_key);
    command
}

/// Runs the binary to completion, `stdin` written to it as one line: success, stdout, stderr.
pub fn switchboard(
    args: &[&str],
    database_url: &str,
    secrets_key: &str,
    stdin: Option<&str>,
) -> (bool, String, String) {
    let mut child = switchboard_command(database_url, secrets_key)
        .args(args)
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

/// Runs the binary and waits for it to exit by itself: its stderr, after a failure. A server
/// that keeps running instead is killed and reported as `None` (only a failure to refuse
/// reaches the timeout).
pub fn switchboard_exit(args: &[&str], database_url: &str, secrets_key: &str) -> Option<String> {
    let mut child = switchboard_command(database_url, secrets_key)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut stderr = child.stderr.take().unwrap();
    let (done, exited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = done.send(text);
    });
    match exited.recv_timeout(Duration::from_secs(30)) {
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

/// `admin create-account` (the password on stdin), then `admin create-app` for it: the app's
/// `{app_id, key, secret}` as printed.
pub fn create_account_and_app(
    database_url: &str,
    secrets_key: &str,
    email: &str,
    app_name: &str,
) -> Value {
    let create_account = [
        "admin",
        "create-account",
        "--email",
        email,
        "--password-stdin",
    ];
    let password = Some("a long enough password");
    let (ok, _, err) = switchboard(&create_account, database_url, secrets_key, password);
    assert!(ok, "{err}");
    let create_app = ["admin", "create-app", "--email", email, "--name", app_name];
    let (ok, out, err) = switchboard(&create_app, database_url, secrets_key, None);
    assert!(ok, "{err}");
    serde_json::from_str(out.trim()).unwrap()
}

/// A server the binary runs, killed when dropped.
pub struct Serving {
    pub child: Child,
    /// The port it printed on its first line of stdout.
    pub port: u16,
    /// Kept open: a server writing to a closed stdout would fail.
    _stdout: BufReader<ChildStdout>,
}

impl Serving {
    /// Starts `command` (a `serve` on port 0, its stderr as the caller wants it) and reads
    /// the port it listens on.
    pub fn start(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let port = first
            .trim()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .expect("the port");
        Self {
            child,
            port,
            _stdout: stdout,
        }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.stop();
    }
}
