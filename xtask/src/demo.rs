//! `cargo xtask run`: the platform from nothing, with a demo account and app.

use std::path::Path;
use std::process::Command;

use crate::{postgres, run_with_env};

const DEMO_EMAIL: &str = "demo@switchboard.local";

pub fn run(root: &Path, serve_flags: &[String]) -> Result<(), String> {
    let data = root.join(".data");
    std::fs::create_dir_all(&data).map_err(|e| format!("creating .data: {e}"))?;
    let database_url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let cluster = postgres::ensure_running(root)?;
            postgres::ensure_database(root, cluster.port, "switchboard")?
        }
    };
    // The dashboard first: the release binary embeds dashboard/dist (control::dashboard).
    crate::build_dashboard(root)?;
    // The same build as the Dockerfile's and the infra checks' (`infra::RELEASE_BUILD`).
    run_with_env("cargo", &crate::infra::RELEASE_BUILD, root, &[])?;
    let binary = root.join("target/release/switchboard");
    let secrets_key = match std::env::var("SWITCHBOARD_SECRETS_KEY") {
        Ok(key) if !key.is_empty() => key,
        _ => read_or_create(&data.join("secrets_key"), || {
            output(&binary, &["admin", "generate-secrets-key"], &[], None)
        })?,
    };
    let env = [
        ("DATABASE_URL", database_url.as_str()),
        ("SWITCHBOARD_SECRETS_KEY", secrets_key.as_str()),
    ];

    // The demo account is created in whatever database this run uses, so the login printed is
    // true even when the database is new and .data/demo.txt is left from an older one; an
    // existing account (the sign-up refused) keeps the file it was printed with.
    let demo_file = data.join("demo.txt");
    let password = read_or_create(&data.join("demo_password"), || {
        let random = output(&binary, &["admin", "generate-secrets-key"], &[], None)?;
        Ok(random.replace(['+', '/', '='], "")[..20].to_owned())
    })?;
    let account = output(
        &binary,
        &[
            "admin",
            "create-account",
            "--email",
            DEMO_EMAIL,
            "--password-stdin",
        ],
        &env,
        Some(&password),
    );
    match account {
        Ok(_) => {
            let app = output(
                &binary,
                &[
                    "admin",
                    "create-app",
                    "--email",
                    DEMO_EMAIL,
                    "--name",
                    "Demo",
                ],
                &env,
                None,
            )?;
            let text = format!("dashboard login: {DEMO_EMAIL} / {password}\ndemo app: {app}\n");
            std::fs::write(&demo_file, text)
                .map_err(|e| format!("writing {}: {e}", demo_file.display()))?;
        }
        Err(refused) if !demo_file.exists() => {
            return Err(format!(
                "{DEMO_EMAIL} exists in this database but {} is gone, so its password is \
                 unknown; reset it from the dashboard's log-in page (the mail is in the log). \
                 ({refused})",
                demo_file.display()
            ));
        }
        Err(_) => {}
    }
    let demo = std::fs::read_to_string(&demo_file)
        .map_err(|e| format!("reading {}: {e}", demo_file.display()))?;
    println!("\n{demo}(kept in {})\n", demo_file.display());
    let port = serve_flags
        .windows(2)
        .find(|pair| pair[0] == "--port")
        .map_or("6001", |pair| pair[1].as_str());
    println!("dashboard: http://127.0.0.1:{port}/\n");

    let mut args = vec!["serve".to_owned()];
    args.extend(serve_flags.iter().cloned());
    // Mailed links (verification, reset) then open the dashboard printed above, on the host
    // whose cookies hold the session.
    let public_url_given = std::env::var_os("SWITCHBOARD_PUBLIC_URL").is_some()
        || serve_flags
            .iter()
            .any(|flag| flag.starts_with("--public-url"));
    if !public_url_given {
        args.extend([
            "--public-url".to_owned(),
            format!("http://127.0.0.1:{port}"),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_with_env(&binary.to_string_lossy(), &args, root, &env)
}

fn read_or_create(
    path: &Path,
    create: impl FnOnce() -> Result<String, String>,
) -> Result<String, String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        return Ok(existing.trim().to_owned());
    }
    let value = create()?;
    std::fs::write(path, &value).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(value)
}

/// Runs the binary and returns its trimmed standard output.
fn output(
    binary: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> Result<String, String> {
    use std::io::Write;
    let mut child = Command::new(binary)
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", binary.display()))?;
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        writeln!(pipe, "{text}").map_err(|e| format!("writing stdin: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    if !out.status.success() {
        return Err(format!(
            "switchboard {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
