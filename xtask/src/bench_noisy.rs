//! Issue 15's noisy-neighbour benchmark (part of `cargo xtask bench`, alone as `cargo xtask
//! bench noisy [--quick]`): one release `switchboard serve` holding two static apps on a free
//! port, `loadgen noisy` measuring tenant B's fan-out alone and during tenant A's publish
//! storm and connection burst; one table. `--quick` shortens each phase to 3 s, to check that
//! the workload runs end to end. loadgen is killed if it outlives its bounded steps.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bench::{Server, number};
use crate::run;

/// The two tenants, as `serve --app ID:KEY:SECRET` (loadgen's defaults name the same), and
/// the default per-app connect pace, which other benches turn off: A's burst meets it, and
/// loadgen's ramps retry its 4100s after a back-off, as pusher-js does.
const SERVE_FLAGS: [&str; 6] = [
    "--app",
    "bench-b:keyb:secretb",
    "--app",
    "bench-a:keya:secreta",
    "--app-connects-per-second",
    "200",
];

/// Seconds of B's traffic per phase.
pub enum Length {
    Full,
    Quick,
}

impl Length {
    pub fn parse(flag: Option<&str>) -> Result<Self, String> {
        match flag {
            None => Ok(Self::Full),
            Some("--quick") => Ok(Self::Quick),
            Some(other) => Err(format!("bench noisy: unknown flag {other} (only --quick)")),
        }
    }

    fn phase_seconds(&self) -> u64 {
        match self {
            Self::Full => 15,
            Self::Quick => 3,
        }
    }
}

/// loadgen's own bounds (`--ramp-timeout`, `--drain`, request and teardown timeouts) add up
/// to less than this beyond the two phases.
const LOADGEN_SLACK: Duration = Duration::from_secs(240);

pub fn noisy(root: &Path, length: Length) -> Result<(), String> {
    run(
        "cargo",
        &["build", "--release", "-p", "switchboard", "-p", "loadgen"],
        root,
    )?;
    let port = free_port()?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load.trim());
    let mut server = Server::start_on("switchboard", root, &[], &SERVE_FLAGS, port)?;
    let pid = server.measured_pid()?;
    let phase = length.phase_seconds().to_string();
    let url = format!("http://127.0.0.1:{port}");
    let args = [
        "noisy",
        "--url",
        &url,
        "--server-pid",
        &pid,
        "--phase-seconds",
        &phase,
    ];
    let deadline = Duration::from_secs(2 * length.phase_seconds()) + LOADGEN_SLACK;
    let output = run_bounded(&root.join("target/release/loadgen"), &args, deadline);
    server.stop();
    let text = output?;
    print!("{text}");
    let json: Value = text
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or(Value::Null);
    print_table(&json);
    Ok(())
}

/// A port nothing listens on now (another engineer's bench may hold 6001).
fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|e| e.to_string())
}

/// `program args…`'s standard output; the process is killed after `deadline`, and what it
/// printed until then is returned with the error.
fn run_bounded(program: &Path, args: &[&str], deadline: Duration) -> Result<String, String> {
    eprintln!("$ {} {}", program.display(), args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting loadgen: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("loadgen's stdout")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() < deadline => {
                std::thread::sleep(Duration::from_millis(250));
            }
            _ => break None,
        }
    };
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = reader.join().unwrap_or_default();
    match status {
        Some(status) if status.success() => Ok(text),
        Some(status) => Err(format!(
            "loadgen noisy failed ({status}); it printed:\n{text}"
        )),
        None => Err(format!(
            "loadgen noisy did not finish within {} s and was killed; it printed:\n{text}",
            deadline.as_secs()
        )),
    }
}

fn print_table(json: &Value) {
    let workload = &json["workload"];
    let count = |path: &[&str]| number(json, path).map_or("-".into(), |n| format!("{n:.0}"));
    let name = format!(
        "B: {} WebSocket subscribers of 1 channel, 1 HTTP publisher at {}/s, {}-byte events; \
         A: {} subscribers, {} publishers flat out, a burst of {} connections; {} s per phase; \
         {} CPUs",
        count(&["workload", "b_subscribers"]),
        count(&["workload", "b_rate"]),
        count(&["workload", "payload_bytes"]),
        count(&["workload", "a_subscribers"]),
        count(&["workload", "a_publishers"]),
        count(&["workload", "a_burst"]),
        count(&["workload", "phase_s"]),
        count(&["workload", "nproc"]),
    );
    let load = workload["loadavg_at_start"][0]
        .as_f64()
        .map_or("-".into(), |load| format!("{load:.2}"));
    let ratio = number(json, &["p99_ratio"]).map_or("-".into(), |r| format!("{r:.2}×"));
    let a = |path: &[&str]| {
        let mut full = vec!["a"];
        full.extend(path);
        count(&full)
    };
    let storm_cells = format!(
        "{} | {} / {} / {} / {} | {} / {} / {} / {} / {} (+{} unfinished) | {} | {}",
        number(json, &["a", "deliveries_per_s"]).map_or("-".into(), |r| format!("{r:.0}")),
        a(&["publish", "status_200"]),
        a(&["publish", "status_429"]),
        a(&["publish", "status_other"]),
        a(&["publish", "failed"]),
        a(&["burst", "admitted"]),
        a(&["burst", "refused_4100"]),
        a(&["burst", "refused_4004"]),
        a(&["burst", "refused_other"]),
        a(&["burst", "failed"]),
        a(&["burst", "unfinished"]),
        closes(&json["a"]["subscribers_closed"]),
        number(json, &["client_cpu_s_phases"]).map_or("-".into(), |s| format!("{s:.1} s")),
    );
    println!(
        "\n| workload | phase | load at start | B latency p50 / p99 / p99.9 | B lost | B p99 ÷ alone | \
         A deliveries/s | A publishes 200 / 429 / other / no answer | A burst admitted / 4100 / \
         4004 / other / failed | A subscribers closed | load client CPU (both phases) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {name} | B alone | {load} | {} | {} | – | – | – | – | – | – |",
        latency(&json["b"]["alone"]),
        lost(&json["b"]["alone"]),
    );
    println!(
        "| {name} | B with A's storm | {load} | {} | {} | {ratio} | {storm_cells} |",
        latency(&json["b"]["storm"]),
        lost(&json["b"]["storm"]),
    );
    if let Some(reason) = json["aborted"].as_str() {
        println!("\nThe run ended early: {reason}. The figures are those measured until then.");
    }
    if json.is_null() {
        println!("\nloadgen printed no report.");
    }
}

fn latency(phase: &Value) -> String {
    let ms = |key: &str| phase[key].as_f64();
    match (
        ms("latency_ms_p50"),
        ms("latency_ms_p99"),
        ms("latency_ms_p999"),
    ) {
        (Some(p50), Some(p99), Some(p999)) => format!("{p50:.1} / {p99:.1} / {p999:.1} ms"),
        _ => "-".into(),
    }
}

/// Lost of expected deliveries, and how many of B's events the API accepted.
fn lost(phase: &Value) -> String {
    match (
        phase["lost"].as_u64(),
        phase["expected"].as_u64(),
        phase["published_ok"].as_u64(),
    ) {
        (Some(lost), Some(expected), Some(events)) => {
            format!("{lost} of {expected} ({events} events accepted)")
        }
        _ => "-".into(),
    }
}

/// `{"4100": 12, "dropped": 3}` as `4100: 12, dropped: 3`, or `none`.
fn closes(map: &Value) -> String {
    match map.as_object() {
        Some(map) if !map.is_empty() => map
            .iter()
            .map(|(code, n)| format!("{code}: {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "none".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_quick_shortens_the_phases() {
        assert_eq!(Length::parse(None).map(|l| l.phase_seconds()), Ok(15));
        assert_eq!(
            Length::parse(Some("--quick")).map(|l| l.phase_seconds()),
            Ok(3)
        );
        assert!(Length::parse(Some("--fast")).is_err());
    }

    #[test]
    fn cells_show_the_report_and_a_dash_where_it_has_nothing() {
        let phase = serde_json::json!({
            "latency_ms_p50": 1.25, "latency_ms_p99": 9.0, "latency_ms_p999": 20.04,
            "lost": 3, "expected": 1000, "published_ok": 10
        });
        assert_eq!(latency(&phase), "1.2 / 9.0 / 20.0 ms");
        assert_eq!(lost(&phase), "3 of 1000 (10 events accepted)");
        assert_eq!(latency(&Value::Null), "-");
        assert_eq!(lost(&Value::Null), "-");
        let closed = serde_json::json!({"4100": 12, "dropped": 3});
        assert_eq!(closes(&closed), "4100: 12, dropped: 3");
        assert_eq!(closes(&serde_json::json!({})), "none");
    }
}
