//! The HTTP carriers' benchmark (part of `cargo xtask bench`, alone as `cargo xtask bench
//! carriers`): Server-Sent Events and long polling against nginx + nchan's EventSource and
//! long-poll subscribers, in one run, fresh servers per workload; and `cargo xtask bench
//! --instructions`: the server's instructions per connect and per delivery under callgrind,
//! a figure that does not drift with the machine's load.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::bench::{DeliveryCells, FANOUT_SUBSCRIBERS, Server, ensure_nchan, number};
use crate::run;

/// Our carriers' session-creation limits are a defence against floods from one address; the
/// load client is one address opening thousands of sessions.
const NO_CREATION_LIMITS: [&str; 4] = [
    "--carrier-sessions-per-address-per-minute",
    "0",
    "--carrier-sessions-per-app-per-minute",
    "0",
];

struct Workload {
    name: &'static str,
    args: &'static [&'static str],
}

/// The fan-out workloads' rate and window (their subscribers: `FANOUT_SUBSCRIBERS`).
const FANOUT_RATE: [&str; 4] = ["--rate", "200", "--duration", "20"];

const WORKLOADS: [Workload; 3] = [
    Workload {
        name: "SSE fan-out: 1,000 subscribers of 1 channel, 100-byte events at 200/s, 20 s",
        args: &["--carrier", "sse"],
    },
    Workload {
        name: "long-poll fan-out: 1,000 subscribers of 1 channel, 100-byte events at 200/s, 20 s",
        args: &["--carrier", "long-poll"],
    },
    Workload {
        name: "5,000 idle SSE streams held 10 s (connect + subscribe rate from their ramp)",
        args: &[
            "--carrier",
            "sse",
            "--idle",
            "--connections",
            "5000",
            "--duration",
            "10",
            "--source-addrs",
            "127.0.0.1,127.0.0.2",
        ],
    },
];

pub fn carriers(root: &Path) -> Result<(), String> {
    build(root)?;
    ensure_nchan()?;
    let mut rows = Vec::new();
    for workload in &WORKLOADS {
        let mut args: Vec<&str> = workload.args.to_vec();
        if !args.contains(&"--idle") {
            args.extend(FANOUT_SUBSCRIBERS);
            args.extend(FANOUT_RATE);
        }
        for target in ["nchan", "switchboard"] {
            let json = measure(root, target, &args, &[])?;
            rows.push((workload.name, target, json));
        }
    }
    print_table(&rows);
    many_channels(root)
}

/// Subscriptions per connection in the many-channels workload (a plan's channels per
/// connection), and connections.
const CHANNELS_PER_CONNECTION: &str = "100";
const MANY_CHANNELS_CONNECTIONS: &str = "1000";

/// 100,000 channels of one WebSocket subscriber each on one node: server RSS per
/// subscription (the connections' own cost included) and subscriptions per second.
fn many_channels(root: &Path) -> Result<(), String> {
    let args = [
        "--idle",
        "--connections",
        MANY_CHANNELS_CONNECTIONS,
        "--channels-per-connection",
        CHANNELS_PER_CONNECTION,
        "--duration",
        "5",
        "--ramp-concurrency",
        "50",
    ];
    let json = measure(root, "switchboard", &args, &[])?;
    let per_connection: f64 = CHANNELS_PER_CONNECTION.parse().expect("a number");
    let subscriptions = number(&json, &["connect", "established"]).unwrap_or(0.0) * per_connection;
    let rss = number(&json, &["server", "rss_bytes_per_connection"])
        .map_or("-".into(), |b| format!("{:.0} B", b / per_connection));
    let rate = number(&json, &["connect", "connects_per_s"])
        .map_or("-".into(), |r| format!("{:.0}", r * per_connection));
    println!("\n| workload | subscriptions | server RSS per subscription | subscriptions/s |");
    println!("|---|---|---|---|");
    println!(
        "| {} WebSockets × {CHANNELS_PER_CONNECTION} channels of one subscriber each | {subscriptions:.0} | {rss} | {rate} |",
        MANY_CHANNELS_CONNECTIONS
    );
    Ok(())
}

fn build(root: &Path) -> Result<(), String> {
    run(
        "cargo",
        &["build", "--release", "-p", "switchboard", "-p", "loadgen"],
        root,
    )
}

/// One loadgen run against a fresh server; its JSON report.
fn measure(root: &Path, target: &str, args: &[&str], wrapper: &[&str]) -> Result<Value, String> {
    println!("load average at start: {}", load_average());
    let mut server = Server::start_with(target, root, wrapper, &NO_CREATION_LIMITS)?;
    let pid = server.measured_pid()?;
    count_from_now(wrapper, &pid)?;
    let mut args = args.to_vec();
    args.extend(["--server-pid", &pid]);
    if target == "nchan" {
        args.extend(["--target", "nchan"]);
    } else {
        args.extend(["--url", "http://127.0.0.1:6001"]);
    }
    let output = Command::new(root.join("target/release/loadgen"))
        .args(&args)
        .stderr(Stdio::inherit())
        .output();
    server.stop();
    let text =
        String::from_utf8_lossy(&output.map_err(|e| format!("loadgen: {e}"))?.stdout).into_owned();
    print!("{text}");
    Ok(text
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or(Value::Null))
}

/// Under callgrind started with `--instr-atstart=no`, turns counting on for `pid` now.
fn count_from_now(wrapper: &[&str], pid: &str) -> Result<(), String> {
    if !wrapper.contains(&"--instr-atstart=no") {
        return Ok(());
    }
    let status = Command::new("callgrind_control")
        .args(["--instr=on", pid])
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("callgrind_control: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("callgrind_control --instr=on {pid}: {status}"))
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn print_table(rows: &[(&str, &str, Value)]) {
    println!(
        "\n| workload | server | RSS per connection | server CPU per delivery (× nchan) | deliveries/s | p50 / p99 / p99.9 latency | lost | connect + subscribe /s | load client CPU |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut nchan_cpu = None;
    for (name, target, json) in rows {
        let rss = number(json, &["server", "rss_bytes_per_connection"])
            .map_or("-".into(), |b| format!("{:.1} KiB", b / 1024.0));
        let DeliveryCells {
            mut cpu,
            rate,
            latency,
            lost,
        } = DeliveryCells::of(json);
        let us = number(json, &["server", "cpu_us_per_delivery"]);
        if *target == "nchan" {
            nchan_cpu = us;
        } else if let (Some(us), Some(reference)) = (us, nchan_cpu) {
            cpu = format!("{cpu} ({:.2}×)", us / reference);
        }
        let connects =
            number(json, &["connect", "connects_per_s"]).map_or("-".into(), |r| format!("{r:.0}"));
        let client =
            number(json, &["client_cpu_s_window"]).map_or("-".into(), |s| format!("{s:.1} s"));
        println!(
            "| {name} | {target} | {rss} | {cpu} | {rate} | {latency} | {lost} | {connects} | {client} |"
        );
    }
}

/// Subscribers and events of the instruction-count workload: small, so it runs under
/// callgrind in about a minute per run.
const INSTRUCTION_CLIENTS: &str = "200";
const INSTRUCTION_RATE: &str = "10";
const INSTRUCTION_SECONDS: &str = "5";

/// `cargo xtask bench --instructions`: for WebSocket and SSE, the server under callgrind three
/// times: started and stopped (the baseline); with `INSTRUCTION_CLIENTS` subscribers held
/// idle; with the same subscribers receiving `INSTRUCTION_RATE` events/s. Instructions per
/// connect = (idle − baseline) / clients; per delivery = (deliveries − idle) / deliveries.
pub fn instructions(root: &Path) -> Result<(), String> {
    build(root)?;
    let baseline = callgrind(root, None)?.0;
    let mut rows = Vec::new();
    for carrier in ["ws", "sse"] {
        let common = [
            "--carrier",
            carrier,
            "--connections",
            INSTRUCTION_CLIENTS,
            "--duration",
            INSTRUCTION_SECONDS,
            "--settle",
            "1",
            "--handshake-timeout",
            "120",
        ];
        let mut idle = common.to_vec();
        idle.push("--idle");
        let mut fanout = common.to_vec();
        fanout.extend(["--rate", INSTRUCTION_RATE]);
        let (held, _) = callgrind(root, Some(&idle))?;
        let (delivered, json) = callgrind(root, Some(&fanout))?;
        let deliveries = number(&json, &["delivery", "deliveries"]).unwrap_or(0.0);
        let clients: f64 = INSTRUCTION_CLIENTS.parse().expect("a number");
        rows.push((
            carrier,
            (held.saturating_sub(baseline)) as f64 / clients,
            (delivered.saturating_sub(held)) as f64 / deliveries.max(1.0),
            deliveries,
        ));
    }
    println!(
        "\n| carrier | instructions per connect + subscribe | instructions per delivery | deliveries counted |"
    );
    println!("|---|---|---|---|");
    for (carrier, connect, delivery, deliveries) in rows {
        println!("| {carrier} | {connect:.0} | {delivery:.0} | {deliveries:.0} |");
    }
    Ok(())
}

/// The server's total instructions (callgrind) over a run of loadgen with `args` (none: start
/// and stop only), and loadgen's report.
fn callgrind(root: &Path, args: Option<&[&str]>) -> Result<(u64, Value), String> {
    let out = std::env::temp_dir().join(format!("switchboard-callgrind-{}", std::process::id()));
    let out_flag = format!("--callgrind-out-file={}", out.display());
    // Counting starts once the server answers (`count_from_now`): start-up includes quanta's
    // clock calibration, a timed loop of 11–16 million instructions that varies from run to
    // run by more than 200 connections cost.
    let wrapper = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        out_flag.as_str(),
    ];
    let json = match args {
        Some(args) => measure(root, "switchboard", args, &wrapper)?,
        None => {
            let mut server =
                Server::start_with("switchboard", root, &wrapper, &NO_CREATION_LIMITS)?;
            count_from_now(&wrapper, &server.measured_pid()?)?;
            server.stop();
            Value::Null
        }
    };
    let text = std::fs::read_to_string(&out).map_err(|e| format!("callgrind output: {e}"))?;
    let _ = std::fs::remove_file(&out);
    let total = text
        .lines()
        .find_map(|line| {
            line.strip_prefix("summary: ")
                .or_else(|| line.strip_prefix("totals: "))
        })
        .and_then(|value| value.trim().split(' ').next()?.parse().ok())
        .ok_or("no instruction total in callgrind's output")?;
    Ok((total, json))
}
