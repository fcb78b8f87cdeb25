//! `cargo xtask bench`: the WebSocket workloads (idle memory, connect rate, fan-out at a
//! moderate rate and flat out) against switchboard and, in the same run,
//! nginx + nchan as the reference; prints a table and its ratios. Needs `nginx` and
//! `libnginx-mod-nchan` (installed with apt-get when missing and running as root).

use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::run;

const DURATION_SECS: &str = "20";

/// 1,000 WebSocket subscribers of one channel, 100-byte events: every fan-out workload's
/// subscribers (here and in `bench_carriers`), its rate given beside it.
pub(crate) const FANOUT_SUBSCRIBERS: [&str; 6] = [
    "--connections",
    "1000",
    "--channels",
    "1",
    "--payload",
    "100",
];

struct Workload {
    name: &'static str,
    args: &'static [&'static str],
    /// `FANOUT_SUBSCRIBERS` goes before `args`.
    fanout: bool,
}

const WORKLOADS: [Workload; 5] = [
    Workload {
        name: "10,000 idle WebSocket connections",
        args: &[
            "--idle",
            "--connections",
            "10000",
            "--source-addrs",
            "127.0.0.1,127.0.0.2",
        ],
        fanout: false,
    },
    Workload {
        // Near one process's 20,000 open files (the server's and the load client's each).
        name: "19,000 idle WebSocket connections",
        args: &[
            "--idle",
            "--connections",
            "19000",
            "--source-addrs",
            "127.0.0.1,127.0.0.2,127.0.0.3",
        ],
        fanout: false,
    },
    Workload {
        name: "connect + subscribe: 10,000 WebSocket clients, ≤200 handshakes in flight",
        args: &[
            "--connect-rate",
            "--connections",
            "10000",
            "--ramp-concurrency",
            "200",
            "--source-addrs",
            "127.0.0.1,127.0.0.2",
        ],
        fanout: false,
    },
    Workload {
        name: "fan-out: 1,000 subscribers of 1 channel, 100-byte events, HTTP publish, 200 events/s",
        args: &["--rate", "200"],
        fanout: true,
    },
    Workload {
        // As fast as 32 publish requests in flight go: the server's delivery ceiling.
        name: "fan-out flat out: 1,000 subscribers of 1 channel, 100-byte events, ≤32 publishes in flight",
        args: &["--rate", "100000"],
        fanout: true,
    },
];

pub fn bench(root: &Path) -> Result<(), String> {
    run(
        "cargo",
        &["build", "--release", "-p", "switchboard", "-p", "loadgen"],
        root,
    )?;
    ensure_nchan()?;
    let loadgen = root.join("target/release/loadgen");
    let mut rows = Vec::new();
    for workload in &WORKLOADS {
        for target in ["nchan", "switchboard"] {
            // A fresh server per run: freed memory is not returned to the OS, which would
            // spoil the next run's baseline.
            let mut server = Server::start(target, root)?;
            let mut args: Vec<&str> = Vec::new();
            if workload.fanout {
                args.extend(FANOUT_SUBSCRIBERS);
            }
            args.extend(workload.args);
            args.extend(["--duration", DURATION_SECS, "--server-pid"]);
            let pid = server.measured_pid()?;
            args.push(&pid);
            if target == "nchan" {
                args.extend(["--target", "nchan"]);
            } else {
                args.extend([
                    "--url",
                    "http://127.0.0.1:6001",
                    "--app-id",
                    "bench",
                    "--key",
                    "benchkey",
                    "--secret",
                    "benchsecret",
                ]);
            }
            let output = Command::new(&loadgen)
                .args(&args)
                .stderr(Stdio::inherit())
                .output();
            server.stop();
            let output = output.map_err(|e| format!("loadgen: {e}"))?;
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            print!("{text}");
            let json: Value = text
                .lines()
                .last()
                .and_then(|line| serde_json::from_str(line).ok())
                .unwrap_or(Value::Null);
            rows.push((workload.name, target, json));
        }
    }
    print_table(&rows);
    print_ratios(&rows);
    // The HTTP carriers' workloads, against nchan in the same run.
    crate::bench_carriers::carriers(root)?;
    // Issue 15: one tenant's latency while another floods the same server.
    crate::bench_noisy::noisy(root, crate::bench_noisy::Length::Full)
}

/// Switchboard's figures as multiples of nchan's in the same run, per workload (the issue's
/// targets: RSS and CPU per delivery below, connects/s above, p99 at most 1×).
fn print_ratios(rows: &[(&str, &str, Value)]) {
    println!(
        "\n| workload | RSS per connection ÷ nchan | connects/s ÷ nchan | CPU per delivery ÷ nchan | p99 ÷ nchan |"
    );
    println!("|---|---|---|---|---|");
    for pair in rows.chunks(2) {
        let [(name, _, nchan), (_, _, ours)] = pair else {
            continue;
        };
        let ratio = |path: &[&str]| match (number(ours, path), number(nchan, path)) {
            (Some(ours), Some(theirs)) if theirs > 0.0 => format!("{:.2}×", ours / theirs),
            _ => "-".into(),
        };
        println!(
            "| {name} | {} | {} | {} | {} |",
            ratio(&["server", "rss_bytes_per_connection"]),
            ratio(&["connect", "connects_per_s"]),
            ratio(&["server", "cpu_us_per_delivery"]),
            ratio(&["delivery", "latency_ms_p99"]),
        );
    }
}

fn print_table(rows: &[(&str, &str, Value)]) {
    println!(
        "\n| workload | server | load at start | RSS per connection | connects/s | server CPU per delivery | deliveries/s | p50 / p99 / p99.9 latency | lost | load client CPU in window |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, target, json) in rows {
        let rss = number(json, &["server", "rss_bytes_per_connection"])
            .map_or("-".into(), |b| format!("{:.1} KiB", b / 1024.0));
        let connects = number(json, &["connect", "connects_per_s"])
            .map_or("-".into(), |rate| format!("{rate:.0}"));
        let load = json["workload"]["loadavg_at_start"][0]
            .as_f64()
            .map_or("-".into(), |load| format!("{load:.2}"));
        let DeliveryCells {
            cpu,
            rate,
            latency,
            lost,
        } = DeliveryCells::of(json);
        let client = number(json, &["client_cpu_s_window"])
            .map_or("-".into(), |seconds| format!("{seconds:.1} s"));
        println!(
            "| {name} | {target} | {load} | {rss} | {connects} | {cpu} | {rate} | {latency} | {lost} | {client} |"
        );
    }
}

/// A figure of loadgen's JSON report at `path`, if it is a number.
pub(crate) fn number(json: &Value, path: &[&str]) -> Option<f64> {
    path.iter().fold(json, |value, key| &value[*key]).as_f64()
}

/// The delivery columns every benchmark table shows, formatted ("-" where absent).
pub(crate) struct DeliveryCells {
    pub cpu: String,
    pub rate: String,
    pub latency: String,
    pub lost: String,
}

impl DeliveryCells {
    pub(crate) fn of(json: &Value) -> Self {
        let number = |path: &[&str]| number(json, path);
        let latency = match (
            number(&["delivery", "latency_ms_p50"]),
            number(&["delivery", "latency_ms_p99"]),
            number(&["delivery", "latency_ms_p999"]),
        ) {
            (Some(p50), Some(p99), Some(p999)) => format!("{p50:.1} / {p99:.1} / {p999:.1} ms"),
            _ => "-".into(),
        };
        Self {
            cpu: number(&["server", "cpu_us_per_delivery"])
                .map_or("-".into(), |us| format!("{us:.1} µs")),
            rate: number(&["delivery", "deliveries_per_s"])
                .map_or("-".into(), |r| format!("{r:.0}")),
            latency,
            lost: number(&["delivery", "lost"]).map_or("-".into(), |n| format!("{n:.0}")),
        }
    }
}

pub(crate) fn ensure_nchan() -> Result<(), String> {
    if Path::new("/usr/lib/nginx/modules/ngx_nchan_module.so").exists() {
        return Ok(());
    }
    let root = Path::new("/");
    run("apt-get", &["update", "-qq"], root)?;
    run(
        "apt-get",
        &["install", "-y", "-qq", "nginx", "libnginx-mod-nchan"],
        root,
    )
}

pub(crate) struct Server {
    child: Child,
    nchan: bool,
}

impl Server {
    pub(crate) fn start(target: &str, root: &Path) -> Result<Self, String> {
        Self::start_with(target, root, &[], &[])
    }

    /// `switchboard serve` with `extra` flags, run under `wrapper` (e.g. valgrind) if given.
    pub(crate) fn start_with(
        target: &str,
        root: &Path,
        wrapper: &[&str],
        extra: &[&str],
    ) -> Result<Self, String> {
        Self::start_on(target, root, wrapper, extra, 6001)
    }

    /// As `start_with`, switchboard listening on `port` (nchan's port is its config's).
    pub(crate) fn start_on(
        target: &str,
        root: &Path,
        wrapper: &[&str],
        extra: &[&str],
        port: u16,
    ) -> Result<Self, String> {
        let port_flag = port.to_string();
        let child = if target == "nchan" {
            std::fs::create_dir_all("/tmp/nchan/tmp").map_err(|e| e.to_string())?;
            let config = root.join("services/loadgen/nchan.conf");
            Command::new("nginx")
                .args(["-c", &config.to_string_lossy(), "-p", "/tmp/nchan"])
                .spawn()
        } else {
            let binary = root.join("target/release/switchboard");
            let mut command = match wrapper.split_first() {
                Some((program, args)) => {
                    let mut command = Command::new(program);
                    command.args(args).arg(&binary);
                    command
                }
                None => Command::new(&binary),
            };
            command.args([
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                &port_flag,
                "--app",
                "bench:benchkey:benchsecret",
            ]);
            // One app's thousands of clients connect at once: the per-app connect pace (a
            // defence between tenants) would measure the limit, not the server, unless the
            // caller sets the pace itself (the noisy-neighbour bench measures it).
            if !extra.contains(&"--app-connects-per-second") {
                command.args(["--app-connects-per-second", "0"]);
            }
            command
                .args(extra)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
        }
        .map_err(|e| format!("starting {target}: {e}"))?;
        let mut server = Self {
            child,
            nchan: target == "nchan",
        };
        // Another process on the port would answer in its place: refuse to measure it.
        std::thread::sleep(std::time::Duration::from_millis(200));
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!(
                "{target} exited at start ({status}); is its port already taken?"
            ));
        }
        let port = if server.nchan { 7101 } else { port };
        // Under valgrind a start takes seconds.
        let tries = if wrapper.is_empty() { 200 } else { 4_000 };
        for _ in 0..tries {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        Err(format!("{target} did not start listening on {port}"))
    }

    /// The process doing the work: nginx's worker, or switchboard itself.
    pub(crate) fn measured_pid(&self) -> Result<String, String> {
        if !self.nchan {
            return Ok(self.child.id().to_string());
        }
        let output = Command::new("ps")
            .args(["-o", "pid=", "--ppid", &self.child.id().to_string()])
            .output();
        let pids = String::from_utf8_lossy(&output.map_err(|e| e.to_string())?.stdout).into_owned();
        pids.split_whitespace()
            .next()
            .map(str::to_owned)
            .ok_or_else(|| "no nginx worker".into())
    }

    pub(crate) fn stop(&mut self) {
        if self.nchan {
            let _ = Command::new("kill")
                .args(["-QUIT", &self.child.id().to_string()])
                .status();
        } else {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
        }
        let _ = self.child.wait();
    }
}
