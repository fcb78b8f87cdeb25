//! `cargo xtask test`: every test of the project, Rust and Node, in one command.
//! `cargo xtask lint`: `cargo fmt --check` and `cargo clippy -D warnings`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let result = match task.as_str() {
        "test" => test(),
        "lint" => lint(),
        _ => Err("usage: cargo xtask test | lint".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask {task}: {message}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn run(program: &str, args: &[&str], dir: &Path) -> Result<(), String> {
    eprintln!("$ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .status()
        .map_err(|error| format!("could not start {program}: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} {} failed: {status}", args.join(" ")))
    }
}

fn lint() -> Result<(), String> {
    let root = root();
    run("cargo", &["fmt", "--all", "--check"], &root)?;
    run(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &root,
    )
}

/// The Rust suites, then the Node compatibility suite (unmodified pusher-js and pusher) against
/// the freshly built binary.
fn test() -> Result<(), String> {
    let root = root();
    run("cargo", &["test", "--workspace"], &root)?;
    run("cargo", &["build", "-p", "switchboard"], &root)?;
    let compat = root.join("tests/compat");
    run("npm", &["ci", "--no-audit", "--no-fund"], &compat)?;
    run("npm", &["test"], &compat)
}
