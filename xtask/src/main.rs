//! Project automation, so the README's commands are the same on every machine.
//! - `cargo xtask run`: the whole platform. Without `DATABASE_URL` it installs PostgreSQL if
//!   missing, starts a private cluster under `.data/`, migrates, creates a demo account and
//!   app, prints the login and keys, and serves.
//! - `cargo xtask test`: every test, Rust and Node (the dashboard's in Chromium), against a
//!   real Postgres, then the `infra/` checks against the release binary (`infra.rs`).
//! - `cargo xtask infra`: only the dashboard's build and the `infra/` checks.
//! - `cargo xtask lint`: `cargo fmt --check` and `cargo clippy -D warnings`.
//! - `cargo xtask bench`: the benchmark workloads against switchboard and nchan;
//!   `cargo xtask bench cluster`: one node on `Local` against one and three on Redis;
//!   `cargo xtask bench carriers`: the HTTP carriers' workloads only (SSE, long polling);
//!   `cargo xtask bench noisy [--quick]`: issue 15's noisy neighbour only (`bench_noisy.rs`);
//!   `cargo xtask bench --instructions`: instructions per delivery and per connect (callgrind).
//! - `cargo xtask fuzz [--seconds N] [--jobs J] [target…]`: the libFuzzer targets (`fuzz.rs`).
//! - `cargo xtask webrtc-demo`: the WebRTC demo page (two tabs, a video call and a chat).

mod bench;
mod bench_carriers;
mod bench_cluster;
mod bench_noisy;
mod demo;
mod fuzz;
mod infra;
mod postgres;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let result = match task.as_str() {
        "run" => demo::run(&root(), &std::env::args().skip(2).collect::<Vec<_>>()),
        "test" => test(run_suites),
        "infra" => test(|root, url| {
            build_dashboard(root)?;
            infra::check(root, url)
        }),
        "webrtc-demo" => webrtc_demo(&root()),
        "lint" => lint(),
        "bench" => match std::env::args().nth(2).as_deref() {
            Some("cluster") => bench_cluster::bench_cluster(&root()),
            Some("carriers") => bench_carriers::carriers(&root()),
            Some("noisy") => bench_noisy::Length::parse(std::env::args().nth(3).as_deref())
                .and_then(|length| bench_noisy::noisy(&root(), length)),
            Some("--instructions") => bench_carriers::instructions(&root()),
            _ => bench::bench(&root()),
        },
        "fuzz" => fuzz::Options::parse(&std::env::args().skip(2).collect::<Vec<_>>())
            .and_then(|options| fuzz::fuzz(&root(), &options)),
        _ => Err(
            "usage: cargo xtask run [serve flags…] | test | infra | lint | bench [cluster | carriers | \
             noisy [--quick] | --instructions] | fuzz [--seconds N] [--jobs J] [target…] | webrtc-demo"
                .to_owned(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask {task}: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The WebRTC demo in development: the SDK's bundles and the debug binary, then
/// `sdk-js/demo/webrtc-server.mjs` (the edge on :6001, the page and its auth endpoint on :8080).
fn webrtc_demo(root: &Path) -> Result<(), String> {
    let sdk = root.join("sdk-js");
    run("npm", &["ci", "--no-audit", "--no-fund"], &sdk)?;
    run("npm", &["run", "build"], &sdk)?;
    run("cargo", &["build", "-p", "switchboard"], root)?;
    run("node", &["demo/webrtc-server.mjs"], &sdk)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn run(program: &str, args: &[&str], dir: &Path) -> Result<(), String> {
    run_with_env(program, args, dir, &[])
}

fn run_with_env(
    program: &str,
    args: &[&str],
    dir: &Path,
    env: &[(&str, &str)],
) -> Result<(), String> {
    eprintln!("$ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
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
    // The fuzz crate is its own workspace; formatting it needs no build.
    run(
        "cargo",
        &["fmt", "--manifest-path", "fuzz/Cargo.toml", "--check"],
        &root,
    )?;
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

/// The Rust suites (against a real Postgres), then every fuzz target for a bounded time, then
/// the compatibility suite (unmodified pusher-js, pusher-http-node and pusher-http-python)
/// against the freshly built binary, then the JS SDK's unit and browser tests.
fn test(suites: fn(&Path, &str) -> Result<(), String>) -> Result<(), String> {
    let root = root();
    let given =
        std::env::var("SWITCHBOARD_TEST_DATABASE_URL").or_else(|_| std::env::var("DATABASE_URL"));
    let (url, started) = match given {
        Ok(url) if !url.is_empty() => (url, false),
        _ => {
            let cluster = postgres::ensure_running(&root)?;
            (cluster.url, cluster.started)
        }
    };
    eprintln!("tests use Postgres at {url}");
    let result = suites(&root, &url);
    // A cluster this run started is stopped again, so no server outlives the tests.
    if started {
        postgres::stop(&root)?;
    }
    result
}

fn run_suites(root: &Path, database_url: &str) -> Result<(), String> {
    let env = [("SWITCHBOARD_TEST_DATABASE_URL", database_url)];
    run_with_env("cargo", &["test", "--workspace"], root, &env)?;
    fuzz::fuzz(root, &fuzz::Options::for_tests())?;
    // The binary, and the fake Stripe as a process for the dashboard's upgrade test.
    run(
        "cargo",
        &[
            "build",
            "-p",
            "switchboard",
            "-p",
            "billing",
            "--bin",
            "switchboard",
            "--bin",
            "fake-stripe",
        ],
        root,
    )?;
    let compat = root.join("tests/compat");
    run("npm", &["ci", "--no-audit", "--no-fund"], &compat)?;
    python_venv(&compat)?;
    run_with_env("npm", &["test"], &compat, &env)?;
    // The JS SDK: its build (with the bundle-size check) and unit tests, then the SDK in
    // Chromium against the binary built above (tests/browser uses sdk-js/dist).
    for suite in ["sdk-js", "tests/browser"] {
        let dir = root.join(suite);
        run("npm", &["ci", "--no-audit", "--no-fund"], &dir)?;
        run("npm", &["test"], &dir)?;
    }
    // The dashboard: its build (type check, size budget), then the journey and the upgrade
    // (against `fake-stripe`) in Chromium against the debug binaries built above; the server
    // reads dashboard/dist from disk.
    build_dashboard(root)?;
    run_with_env("npm", &["test"], &root.join("dashboard"), &env)?;
    // infra/: the release binary built as the Dockerfile builds it (the dashboard just built
    // is embedded), then the deployment files checked against it (see infra.rs).
    infra::check(root, database_url)
}

/// `npm ci && npm run build` in `dashboard/`: the type check, the Vite build into
/// `dashboard/dist` (which the control plane serves at `/`) and the JS size budget.
fn build_dashboard(root: &Path) -> Result<(), String> {
    let dir = root.join("dashboard");
    run("npm", &["ci", "--no-audit", "--no-fund"], &dir)?;
    run("npm", &["run", "build"], &dir)
}

/// The venv `tests/compat/python-library.test.mjs` runs pusher-http-python in: made once with
/// `python3 -m venv`, then the pinned requirements (pip does nothing when they are there).
fn python_venv(compat: &Path) -> Result<(), String> {
    let venv = compat.join(".venv");
    if !venv.join("bin/python").exists() {
        run("python3", &["-m", "venv", ".venv"], compat)?;
    }
    let pip = venv.join("bin/pip");
    let pip = pip.to_str().ok_or("the venv path is not UTF-8")?;
    let install = [
        "install",
        "--disable-pip-version-check",
        "--quiet",
        "--requirement",
        "python/requirements.txt",
    ];
    run(pip, &install, compat)
}
