//! A private PostgreSQL cluster under `.data/postgres`, for `run` and `test` on a machine
//! where `DATABASE_URL` is not set. Installs Debian's `postgresql` if it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run;

/// The first port tried for the private cluster, away from a system Postgres on 5432; the
/// next free one is taken if another checkout's cluster holds it.
const FIRST_PORT: u16 = 54329;

/// A running private cluster; `started` is true when this call started it.
pub struct Cluster {
    pub url: String,
    pub port: u16,
    pub started: bool,
}

/// The port a running cluster listens on, from the fourth line of its `postmaster.pid`.
fn running_port(data: &Path) -> Option<u16> {
    let pid_file = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    pid_file.lines().nth(3)?.trim().parse().ok()
}

fn free_port() -> Result<u16, String> {
    (FIRST_PORT..FIRST_PORT + 100)
        .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .ok_or_else(|| format!("no free port in {FIRST_PORT}..{}", FIRST_PORT + 100))
}

/// Starts (installing and initialising first if needed) the private cluster.
pub fn ensure_running(root: &Path) -> Result<Cluster, String> {
    let bin = binaries().or_else(|_| install().and_then(|()| binaries()))?;
    let data = root.join(".data/postgres");
    let as_root = is_root();
    if !data.join("PG_VERSION").exists() {
        std::fs::create_dir_all(&data).map_err(|e| format!("creating {}: {e}", data.display()))?;
        if as_root {
            run(
                "chown",
                &["-R", "postgres:postgres", &data.to_string_lossy()],
                root,
            )?;
        }
        let initdb = bin.join("initdb");
        let args = [
            "-D",
            &data.to_string_lossy(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ]
        .map(str::to_owned);
        run_as_postgres(as_root, &initdb, &args, root)?;
    }
    let status = postgres_command(
        as_root,
        &bin.join("pg_ctl"),
        &["-D".into(), data.to_string_lossy().into(), "status".into()],
    )
    .output()
    .map_err(|e| format!("pg_ctl status: {e}"))?;
    let started = !status.status.success();
    let port = if started {
        free_port()?
    } else {
        running_port(&data).unwrap_or(FIRST_PORT)
    };
    if started {
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            data.display()
        );
        let log = data.join("server.log");
        let args = [
            "-D",
            &data.to_string_lossy(),
            "-o",
            &options,
            "-l",
            &log.to_string_lossy(),
            "-w",
            "start",
        ]
        .map(str::to_owned);
        run_as_postgres(as_root, &bin.join("pg_ctl"), &args, root)?;
    }
    Ok(Cluster {
        url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        port,
        started,
    })
}

/// Stops the private cluster (fast shutdown).
pub fn stop(root: &Path) -> Result<(), String> {
    let bin = binaries()?;
    let data = root.join(".data/postgres");
    let args = ["-D", &data.to_string_lossy(), "-m", "fast", "stop"].map(str::to_owned);
    run_as_postgres(is_root(), &bin.join("pg_ctl"), &args, root)
}

/// Creates `name` in the private cluster (listening on `port`) unless it exists.
pub fn ensure_database(root: &Path, port: u16, name: &str) -> Result<String, String> {
    let bin = binaries()?;
    let output = Command::new(bin.join("psql"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-tAc",
        ])
        .arg(format!(
            "SELECT 1 FROM pg_database WHERE datname = '{name}'"
        ))
        .current_dir(root)
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if String::from_utf8_lossy(&output.stdout).trim() != "1" {
        let created = Command::new(bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                name,
            ])
            .status()
            .map_err(|e| format!("createdb: {e}"))?;
        if !created.success() {
            return Err(format!("createdb {name} failed"));
        }
    }
    Ok(format!("postgres://postgres@127.0.0.1:{port}/{name}"))
}

fn binaries() -> Result<PathBuf, String> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "PostgreSQL is not installed".to_owned())?
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .ok_or_else(|| "PostgreSQL is not installed".to_owned())
}

fn install() -> Result<(), String> {
    if !is_root() {
        return Err(
            "PostgreSQL is missing: install Debian's `postgresql` package, or set DATABASE_URL"
                .into(),
        );
    }
    eprintln!("installing PostgreSQL (Debian package postgresql)");
    let root = Path::new("/");
    run("apt-get", &["update", "-qq"], root)?;
    run("apt-get", &["install", "-y", "-qq", "postgresql"], root)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// initdb and pg_ctl refuse to run as root: as root they run as the `postgres` user.
fn postgres_command(as_root: bool, program: &Path, args: &[String]) -> Command {
    if as_root {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(program)
            .args(args);
        command
    } else {
        let mut command = Command::new(program);
        command.args(args);
        command
    }
}

fn run_as_postgres(
    as_root: bool,
    program: &Path,
    args: &[String],
    dir: &Path,
) -> Result<(), String> {
    let status = postgres_command(as_root, program, args)
        .current_dir(dir)
        .status()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed: {status}", program.display()))
    }
}
