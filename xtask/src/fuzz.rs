//! `cargo xtask fuzz [--seconds N] [--jobs J] [target…]`: the libFuzzer targets in `fuzz/`.
//!
//! Builds them on the stable toolchain with the coverage flags cargo-fuzz would pass (no
//! nightly, no cargo-fuzz install), replays every input in `fuzz/regressions/<target>/` (each
//! one crashed once and must not again), then fuzzes each target for N seconds, J at a time.
//! A crash's input is copied into `fuzz/regressions/<target>/` and the run fails; commit it
//! with the fix. The growing corpus stays in `fuzz/target/corpus/<target>` between runs, beside
//! the committed seeds in `fuzz/corpus/<target>`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Every target; each is a binary in `fuzz/Cargo.toml`.
pub const TARGETS: &[&str] = &[
    "client_frame",
    "session",
    "request_signature",
    "cursor",
    "subs",
    "webhook_url",
];

/// Seconds per target by default: 6 targets two at a time make about two minutes.
const DEFAULT_SECONDS: u64 = 40;

/// cargo-fuzz's instrumentation for `--sanitizer none`, all stable `-C` options: libFuzzer's
/// edge counters, the PC table and comparison tracing, plus the checks of a debug build.
const RUSTFLAGS: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "--cfg",
    "fuzzing",
    "-Cdebug-assertions",
    "-Coverflow-checks",
];

/// libFuzzer's limits for one input: a hang or a blow-up is a failure like a panic.
const INPUT_TIMEOUT_SECS: u64 = 10;
const RSS_LIMIT_MB: u64 = 2048;

/// What to fuzz and for how long.
pub struct Options {
    pub seconds: u64,
    pub jobs: usize,
    pub targets: Vec<String>,
}

impl Options {
    /// `cargo xtask test`'s run: every target for the default time.
    pub fn for_tests() -> Self {
        Self::parse(&[]).expect("no arguments parse")
    }

    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Self {
            seconds: DEFAULT_SECONDS,
            jobs: std::thread::available_parallelism().map_or(1, |cores| cores.get()),
            targets: Vec::new(),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut number = |name: &str| -> Result<u64, String> {
                args.next()
                    .and_then(|value| value.parse().ok())
                    .ok_or_else(|| format!("{name} takes a number"))
            };
            match arg.as_str() {
                "--seconds" => options.seconds = number("--seconds")?,
                "--jobs" => options.jobs = number("--jobs")?.max(1) as usize,
                target if TARGETS.contains(&target) => options.targets.push(target.to_owned()),
                other => {
                    return Err(format!(
                        "unknown argument {other:?}; usage: cargo xtask fuzz [--seconds N] \
                         [--jobs J] [target…], targets: {}",
                        TARGETS.join(" ")
                    ));
                }
            }
        }
        if options.targets.is_empty() {
            options.targets = TARGETS.iter().map(|target| (*target).to_owned()).collect();
        }
        Ok(options)
    }
}

/// Builds, replays the regressions, then fuzzes each target (see the module docs).
pub fn fuzz(root: &Path, options: &Options) -> Result<(), String> {
    let fuzz = Fuzz::new(root)?;
    fuzz.build()?;
    for target in &options.targets {
        fuzz.replay_regressions(target)?;
    }
    let queue = Mutex::new(options.targets.iter());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.min(options.targets.len()) {
            scope.spawn(|| {
                loop {
                    let Some(target) = queue.lock().expect("queue").next() else {
                        return;
                    };
                    if let Err(failure) = fuzz.run(target, options.seconds) {
                        failures.lock().expect("failures").push(failure);
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().expect("failures");
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

struct Fuzz {
    dir: PathBuf,
    target_dir: PathBuf,
    binaries: PathBuf,
    host: String,
}

impl Fuzz {
    fn new(root: &Path) -> Result<Self, String> {
        let dir = root.join("fuzz");
        let target_dir = dir.join("target");
        let host = host_triple()?;
        let binaries = target_dir.join(&host).join("release");
        Ok(Self {
            dir,
            target_dir,
            binaries,
            host,
        })
    }

    /// One release build of every target. `--target` keeps build scripts and proc macros
    /// uninstrumented (they run on the host, without libFuzzer's runtime).
    fn build(&self) -> Result<(), String> {
        let manifest = self.dir.join("Cargo.toml");
        let manifest = manifest.to_str().ok_or("the fuzz path is not UTF-8")?;
        let target_dir = self
            .target_dir
            .to_str()
            .ok_or("the fuzz path is not UTF-8")?;
        let args = [
            "build",
            "--release",
            "--manifest-path",
            manifest,
            "--target",
            &self.host,
            "--target-dir",
            target_dir,
            "--bins",
        ];
        crate::run_with_env(
            "cargo",
            &args,
            &self.dir,
            &[
                ("CARGO_ENCODED_RUSTFLAGS", &RUSTFLAGS.join("\u{1f}")),
                ("RUSTFLAGS", ""),
            ],
        )
    }

    /// Runs every stored crash once; libFuzzer given files (not folders) runs just those.
    fn replay_regressions(&self, target: &str) -> Result<(), String> {
        let inputs = files_in(&self.dir.join("regressions").join(target));
        if inputs.is_empty() {
            return Ok(());
        }
        eprintln!(
            "fuzz {target}: replaying {} regression inputs",
            inputs.len()
        );
        let status = Command::new(self.binaries.join(target))
            .args(&inputs)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .map_err(|error| format!("could not start fuzz target {target}: {error}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "fuzz {target}: a regression input fails again: {status}"
            ))
        }
    }

    /// Fuzzes `target` for `seconds`; on a crash, keeps its input as a regression.
    fn run(&self, target: &str, seconds: u64) -> Result<(), String> {
        let corpus = self.target_dir.join("corpus").join(target);
        let artifacts = self.target_dir.join("artifacts").join(target);
        let logs = self.target_dir.join("logs");
        for dir in [&corpus, &artifacts, &logs] {
            std::fs::create_dir_all(dir)
                .map_err(|error| format!("could not create {}: {error}", dir.display()))?;
        }
        for old in files_in(&artifacts) {
            std::fs::remove_file(&old)
                .map_err(|error| format!("could not remove {}: {error}", old.display()))?;
        }
        let log_path = logs.join(format!("{target}.log"));
        let log = std::fs::File::create(&log_path)
            .map_err(|error| format!("could not create {}: {error}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|error| format!("could not open the log twice: {error}"))?;
        eprintln!("fuzz {target}: {seconds} s (log: {})", log_path.display());
        let mut artifact_prefix = artifacts.clone().into_os_string();
        artifact_prefix.push("/");
        let status = Command::new(self.binaries.join(target))
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
            .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
            .arg("-print_final_stats=1")
            .arg({
                let mut flag = std::ffi::OsString::from("-artifact_prefix=");
                flag.push(&artifact_prefix);
                flag
            })
            .arg(&corpus)
            .arg(self.dir.join("corpus").join(target))
            .stdout(log)
            .stderr(log_err)
            .status()
            .map_err(|error| format!("could not start fuzz target {target}: {error}"))?;
        let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if status.success() {
            eprintln!("fuzz {target}: ok, {}", summary(&log_text));
            return Ok(());
        }
        let kept = self.keep_crashes(target, &artifacts)?;
        let tail: Vec<&str> = log_text.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        eprintln!(
            "fuzz {target}: FAILED ({status}); log tail:\n{}",
            tail.join("\n")
        );
        Err(format!(
            "fuzz {target} found a crash; its input is now a regression input: {}",
            kept.join(", ")
        ))
    }

    /// Copies each crashing input into `fuzz/regressions/<target>/`, kept forever.
    fn keep_crashes(&self, target: &str, artifacts: &Path) -> Result<Vec<String>, String> {
        let regressions = self.dir.join("regressions").join(target);
        std::fs::create_dir_all(&regressions)
            .map_err(|error| format!("could not create {}: {error}", regressions.display()))?;
        let mut kept = Vec::new();
        for artifact in files_in(artifacts) {
            let name = artifact.file_name().unwrap_or_default().to_string_lossy();
            // libFuzzer also writes `slow-unit-*` for slow inputs that did not fail.
            if name.starts_with("slow-unit-") {
                continue;
            }
            let kept_path = regressions.join(&*name);
            std::fs::copy(&artifact, &kept_path)
                .map_err(|error| format!("could not copy {}: {error}", artifact.display()))?;
            kept.push(kept_path.display().to_string());
        }
        if kept.is_empty() {
            kept.push("(none written: see the log)".to_owned());
        }
        Ok(kept)
    }
}

/// libFuzzer's closing figures: inputs run, coverage reached and corpus size.
fn summary(log: &str) -> String {
    let executed = log
        .lines()
        .find_map(|line| line.strip_prefix("stat::number_of_executed_units:"))
        .map_or("?", str::trim);
    // The last status line, e.g. `#1234 DONE cov: 812 ft: 2301 corp: 140/9Kb ...`.
    let last = |field: &str| {
        log.lines()
            .rev()
            .find_map(|line| line.split_once(field))
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or("?")
            .to_owned()
    };
    format!(
        "{executed} inputs, {} edges covered, corpus {}",
        last(" cov: "),
        last(" corp: ")
    )
}

/// The regular files directly in `dir` (none if it does not exist), sorted.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn host_triple() -> Result<String, String> {
    let output = Command::new("rustc")
        .arg("-vV")
        .output()
        .map_err(|error| format!("could not run rustc -vV: {error}"))?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .ok_or_else(|| "rustc -vV names no host".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn options_default_to_every_target_and_name_the_known_ones_on_a_typo() {
        let all = Options::parse(&[]).unwrap();
        assert_eq!(all.seconds, DEFAULT_SECONDS);
        assert_eq!(all.targets, TARGETS);
        let some = Options::parse(&args("--seconds 600 --jobs 1 session cursor")).unwrap();
        assert_eq!((some.seconds, some.jobs), (600, 1));
        assert_eq!(some.targets, ["session", "cursor"]);
        let typo = Options::parse(&args("sesion")).err().unwrap();
        assert!(typo.contains("client_frame session"), "{typo}");
        assert!(Options::parse(&args("--seconds")).is_err());
    }

    #[test]
    fn every_target_has_a_binary_and_seeds() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
        for target in TARGETS {
            assert!(
                manifest.contains(&format!("name = \"{target}\"")),
                "{target}"
            );
            assert!(
                !files_in(&fuzz.join("corpus").join(target)).is_empty(),
                "{target}"
            );
        }
    }

    #[test]
    fn the_summary_reads_libfuzzers_closing_lines() {
        let log = "#2 INITED cov: 10 ft: 11 corp: 3/40b exec/s: 0 rss: 30Mb\n\
                   #900 DONE cov: 812 ft: 2301 corp: 140/9Kb lim: 4096 exec/s: 30 rss: 40Mb\n\
                   stat::number_of_executed_units: 900\n";
        assert_eq!(
            summary(log),
            "900 inputs, 812 edges covered, corpus 140/9Kb"
        );
        assert_eq!(summary(""), "? inputs, ? edges covered, corpus ?");
    }
}
