//! The infra step of `cargo xtask test`: the release binary built exactly as `infra/Dockerfile`
//! builds it (the dashboard first, then `RELEASE_BUILD`), then `infra/check` (Node's test
//! runner): the files parsed and validated against their published schemas, the alert rules
//! through `promtool`, and every PromQL query checked against what that binary exports.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{run, run_with_env};

/// The cargo arguments of the release binary: `cargo xtask run`, this step and the Dockerfile
/// (`RUN cargo build …`, held to it by `dockerfile_build_line`) build it the same way.
pub const RELEASE_BUILD: [&str; 5] = ["build", "--release", "--locked", "-p", "switchboard"];

/// Builds the release binary (dashboard already built: it is embedded) and runs the checks.
pub fn check(root: &Path, database_url: &str) -> Result<(), String> {
    dockerfile_builds_as_we_do(root)?;
    run("cargo", &RELEASE_BUILD, root)?;
    let promtool = ensure_promtool(root)?;
    // The checks start the server with the compatibility suite's launcher (tests/compat).
    let compat = root.join("tests/compat");
    if !compat.join("node_modules").exists() {
        run("npm", &["ci", "--no-audit", "--no-fund"], &compat)?;
    }
    let checks = root.join("infra/check");
    run("npm", &["ci", "--no-audit", "--no-fund"], &checks)?;
    let binary = root.join("target/release/switchboard");
    let binary = binary.to_str().ok_or("the target path is not UTF-8")?;
    let promtool = promtool.to_str().ok_or("the promtool path is not UTF-8")?;
    let env = [
        ("SWITCHBOARD_BIN", binary),
        ("SWITCHBOARD_TEST_DATABASE_URL", database_url),
        ("PROMTOOL", promtool),
    ];
    run_with_env("npm", &["test"], &checks, &env)
}

/// The cargo arguments of the Dockerfile's `RUN cargo …` line (up to a `&&` or the line's
/// continuation), which must be `RELEASE_BUILD`.
fn dockerfile_build_line(dockerfile: &str) -> Option<&str> {
    dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("RUN cargo "))
        .map(|rest| {
            let command = rest.split(" &&").next().unwrap_or(rest).trim();
            command.trim_end_matches('\\').trim_end()
        })
}

fn dockerfile_builds_as_we_do(root: &Path) -> Result<(), String> {
    let path = root.join("infra/Dockerfile");
    let dockerfile = std::fs::read_to_string(&path)
        .map_err(|error| format!("reading {}: {error}", path.display()))?;
    let expected = RELEASE_BUILD.join(" ");
    match dockerfile_build_line(&dockerfile) {
        Some(line) if line == expected => Ok(()),
        found => Err(format!(
            "infra/Dockerfile builds with `cargo {}`, the tests with `cargo {expected}`: make them one",
            found.unwrap_or("(no RUN cargo line)")
        )),
    }
}

/// `promtool`: on the PATH, or taken out of Debian's `prometheus` package into `.data/promtool`
/// (downloaded, not installed: installing would start a Prometheus server).
fn ensure_promtool(root: &Path) -> Result<PathBuf, String> {
    if Command::new("promtool").arg("--version").output().is_ok() {
        return Ok(PathBuf::from("promtool"));
    }
    let unpacked = root.join(".data/promtool");
    let promtool = unpacked.join("usr/bin/promtool");
    if promtool.exists() {
        return Ok(promtool);
    }
    eprintln!("promtool missing: unpacking it from Debian's prometheus package");
    let download = root.join(".data/promtool-deb");
    std::fs::create_dir_all(&download)
        .map_err(|error| format!("creating {download:?}: {error}"))?;
    if run("apt-get", &["download", "prometheus"], &download).is_err() {
        run("apt-get", &["update", "-qq"], Path::new("/"))?;
        run("apt-get", &["download", "prometheus"], &download)?;
    }
    let package = std::fs::read_dir(&download)
        .map_err(|error| format!("reading {download:?}: {error}"))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .ok_or("apt-get download prometheus left no .deb")?;
    let package = package.to_str().ok_or("the package path is not UTF-8")?;
    let target = unpacked.to_str().ok_or("the .data path is not UTF-8")?;
    run("dpkg-deb", &["-x", package, target], root)?;
    Ok(promtool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dockerfile_builds_the_binary_as_the_test_run_does() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        dockerfile_builds_as_we_do(root).unwrap();
    }

    #[test]
    fn another_build_line_is_refused() {
        let dockerfile = "FROM rust AS binary\nRUN cargo build --release -p switchboard \\\n";
        assert_eq!(
            dockerfile_build_line(dockerfile),
            Some("build --release -p switchboard")
        );
        assert_ne!(
            dockerfile_build_line(dockerfile),
            Some(RELEASE_BUILD.join(" ").as_str())
        );
        assert_eq!(dockerfile_build_line("FROM debian\n"), None);
    }
}
