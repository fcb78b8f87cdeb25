//! `cargo xtask bench cluster`: issue 9's benchmark. Fan-out of 100-byte events to 1,000 (and
//! 100) subscribers on one node on `Local`, one node on Redis and three nodes on Redis
//! (subscribers spread over the three, publishing through the first), back to back in one run,
//! each on fresh processes and, for Redis, a fresh throwaway `redis-server`. Reports the
//! edges' CPU per delivery (their /proc, summed), publish→delivery latency and the Redis
//! round trips per publish (loadgen's MONITOR count).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bench::{DeliveryCells, number};
use crate::run;

const DURATION_SECS: &str = "20";
const RATE: &str = "20";

/// One configuration of the run.
struct Setup {
    nodes: usize,
    redis: bool,
    subscribers: usize,
}

const SETUPS: [Setup; 6] = [
    Setup {
        nodes: 1,
        redis: false,
        subscribers: 1000,
    },
    Setup {
        nodes: 1,
        redis: true,
        subscribers: 1000,
    },
    Setup {
        nodes: 3,
        redis: true,
        subscribers: 1000,
    },
    Setup {
        nodes: 1,
        redis: false,
        subscribers: 100,
    },
    Setup {
        nodes: 1,
        redis: true,
        subscribers: 100,
    },
    Setup {
        nodes: 3,
        redis: true,
        subscribers: 100,
    },
];

pub fn bench_cluster(root: &Path) -> Result<(), String> {
    run(
        "cargo",
        &["build", "--release", "-p", "switchboard", "-p", "loadgen"],
        root,
    )?;
    let loadgen = root.join("target/release/loadgen");
    let mut rows = Vec::new();
    for setup in &SETUPS {
        let redis = if setup.redis {
            Some(Redis::start()?)
        } else {
            None
        };
        let broker = redis.as_ref().map(Redis::url);
        let mut edges = Vec::new();
        for _ in 0..setup.nodes {
            edges.push(Edge::start(root, broker.as_deref())?);
        }
        let pids: Vec<String> = edges
            .iter()
            .map(|edge| edge.child.id().to_string())
            .collect();
        let urls: Vec<String> = edges
            .iter()
            .map(|edge| format!("http://127.0.0.1:{}", edge.port))
            .collect();
        let subscribers = setup.subscribers.to_string();
        let pids = pids.join(",");
        let subscribe_urls = urls.join(",");
        let mut args = vec![
            "--connections",
            &subscribers,
            "--channels",
            "1",
            "--payload",
            "100",
            "--rate",
            RATE,
            "--duration",
            DURATION_SECS,
            "--server-pid",
            &pids,
            "--url",
            &urls[0],
            "--subscribe-url",
            &subscribe_urls,
            "--app-id",
            "bench",
            "--key",
            "benchkey",
            "--secret",
            "benchsecret",
        ];
        let redis_url = redis
            .as_ref()
            .map(|redis| format!("redis://127.0.0.1:{}", redis.port));
        if let Some(url) = &redis_url {
            args.extend(["--redis-url", url]);
        }
        let output = Command::new(&loadgen)
            .args(&args)
            .stderr(Stdio::inherit())
            .output();
        for edge in &mut edges {
            edge.stop();
        }
        drop(redis);
        let output = output.map_err(|e| format!("loadgen: {e}"))?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        print!("{text}");
        let json: Value = text
            .lines()
            .last()
            .and_then(|line| serde_json::from_str(line).ok())
            .unwrap_or(Value::Null);
        rows.push((setup, json));
    }
    print_table(&rows);
    Ok(())
}

fn print_table(rows: &[(&Setup, Value)]) {
    println!(
        "\n| nodes | broker | subscribers | edges' CPU per delivery | deliveries/s | p50 / p99 / p99.9 latency | lost | Redis round trips per publish | pings/s | load at start |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (setup, json) in rows {
        let number = |path: &[&str]| number(json, path);
        let DeliveryCells {
            cpu,
            rate,
            latency,
            lost,
        } = DeliveryCells::of(json);
        let trips =
            number(&["redis", "round_trips_per_publish"]).map_or("-".into(), |n| format!("{n:.2}"));
        let pings = number(&["redis", "pings_per_s"]).map_or("-".into(), |n| format!("{n:.1}"));
        let load = json["workload"]["loadavg_at_start"][0]
            .as_f64()
            .map_or("-".into(), |l| format!("{l:.1}"));
        let broker = if setup.redis { "Redis" } else { "Local" };
        println!(
            "| {} | {broker} | {} | {cpu} | {rate} | {latency} | {lost} | {trips} | {pings} | {load} |",
            setup.nodes, setup.subscribers
        );
    }
    for (setup, json) in rows {
        if setup.redis {
            println!(
                "{} node(s), {} subscribers: commands per publish {}",
                setup.nodes, setup.subscribers, json["redis"]["by_command_per_publish"]
            );
        }
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// Waits until something accepts connections on `port`, or fails after `bound`.
fn wait_for_port(port: u16, what: &str, bound: Duration) -> Result<(), String> {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(format!("{what} did not listen on {port}"))
}

/// A throwaway `redis-server` with nothing on disk, killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Result<Self, String> {
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting redis-server: {e}"))?;
        let redis = Self { child, port };
        wait_for_port(port, "redis-server", Duration::from_secs(20))?;
        Ok(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `switchboard serve` on a free port.
struct Edge {
    child: Child,
    port: u16,
}

impl Edge {
    fn start(root: &Path, broker: Option<&str>) -> Result<Self, String> {
        let port = free_port()?;
        let mut command = Command::new(root.join("target/release/switchboard"));
        command.args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()]);
        command.args(["--app", "bench:benchkey:benchsecret", "--drain-delay", "0"]);
        // The bench's one app connects thousands of clients at once (see bench.rs).
        command.args(["--app-connects-per-second", "0"]);
        if let Some(url) = broker {
            command.args(["--broker", url]);
        }
        let child = command
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting switchboard: {e}"))?;
        let mut edge = Self { child, port };
        if let Err(error) = wait_for_port(port, "switchboard", Duration::from_secs(20)) {
            edge.stop();
            return Err(error);
        }
        Ok(edge)
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
