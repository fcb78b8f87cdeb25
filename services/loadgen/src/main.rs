//! loadgen: a load client for Switchboard (Pusher protocol 7) and, as a reference, nginx+nchan.
//! Holds many WebSocket subscribers, publishes events over HTTP at a set rate, and reports
//! delivery rate, publish→deliver latency, losses, duplicates, and the server's CPU and memory
//! read from /proc. See README.md.

mod conn;
mod procfs;
mod publish;
mod stats;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::{Parser, ValueEnum};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::conn::{ConnSpec, End};
use crate::procfs::{Pid, Snapshot};
use crate::publish::{PublishReport, Publisher};
use crate::stats::Shared;

/// Hard ceiling on this process's open sockets: the machine's per-process limit is 20,000 and
/// cannot be raised. Tests of more connections need several loadgen processes.
const FD_CEILING: u64 = 19_900;
/// fds kept back for stdio, the runtime, /proc reads and the like.
const FD_RESERVE: u64 = 40;
const MAX_CONNECTIONS: usize = 19_800;
const MAX_DURATION_S: f64 = 3_600.0;
const MAX_EVENTS: f64 = 20_000_000.0;
/// Memory ceiling for the per-subscriber received-sequence bitsets.
const MAX_SEEN_BYTES: f64 = 1024.0 * 1024.0 * 1024.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Switchboard or any Pusher-protocol-7 server.
    Pusher,
    /// nginx + nchan (reference).
    Nchan,
}

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "Pusher/nchan load client: idle connection holding and HTTP-publish fan-out with latency, loss and server /proc costs",
    after_help = "One process holds at most ~19,800 connections (per-process limit of 20,000 fds). \
                  For more, run several processes (e.g. extra `--idle` holders), each with its own --source-addrs."
)]
struct Args {
    /// Server type.
    #[arg(long, value_enum, default_value_t = Target::Pusher)]
    target: Target,
    /// Base HTTP URL (loopback only) [default: http://127.0.0.1:6001 for pusher, http://127.0.0.1:7101 for nchan].
    #[arg(long)]
    url: Option<String>,
    /// Pusher app id (HTTP API path).
    #[arg(long, default_value = "bench")]
    app_id: String,
    /// Pusher app key (WebSocket path, API auth_key).
    #[arg(long, default_value = "benchkey")]
    key: String,
    /// Pusher app secret (API request signing).
    #[arg(long, default_value = "benchsecret")]
    secret: String,
    /// WebSocket subscribers to open.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Channels; subscriber i joins channel i % channels.
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// Channel name prefix: pusher `{prefix}-{n}`, nchan `{prefix}_{n}` (nchan's location takes \w+).
    #[arg(long, default_value = "bench")]
    channel_prefix: String,
    /// Events per second published over HTTP (spread round robin over the channels); 0 = none.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Event payload bytes (Pusher `data` / nchan body), including the seq:timestamp header.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Measured window in seconds: publishing time, or holding time with --idle.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Only open and hold the connections for --duration; publish nothing.
    #[arg(long)]
    idle: bool,
    /// Server process(es) to measure, summed (/proc/PID/stat utime+stime, /proc/PID/status
    /// VmRSS). For nginx give the worker pid (or master,worker).
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Loopback source addresses to bind round robin, e.g. 127.0.0.1,127.0.0.2 (more ephemeral ports).
    #[arg(long, value_delimiter = ',')]
    source_addrs: Vec<IpAddr>,
    /// Maximum WebSocket handshakes (incl. subscribe) in flight during the connect ramp.
    #[arg(long, default_value_t = 200)]
    ramp_concurrency: usize,
    /// Give up on connections not established after this many seconds of ramp.
    #[arg(long, default_value_t = 180.0)]
    ramp_timeout: f64,
    /// Per-connection handshake+subscribe timeout, seconds.
    #[arg(long, default_value_t = 15.0)]
    handshake_timeout: f64,
    /// Seconds to wait after the ramp before reading the server's RSS.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Maximum HTTP publish requests in flight.
    #[arg(long, default_value_t = 32)]
    publish_concurrency: usize,
    /// After publishing, wait at most this many seconds for outstanding deliveries.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Client runtime worker threads [default: number of CPUs].
    #[arg(long)]
    threads: Option<usize>,
}

/// Validated settings.
struct Plan {
    args: Args,
    server: SocketAddr,
    origin: String,
    path_prefix: String,
    channel_names: Vec<String>,
    total_events: u64,
    threads: usize,
    nproc: usize,
}

fn plan(args: Args) -> anyhow::Result<Plan> {
    let default_url = match args.target {
        Target::Pusher => "http://127.0.0.1:6001",
        Target::Nchan => "http://127.0.0.1:7101",
    };
    let url_text = args.url.clone().unwrap_or_else(|| default_url.to_owned());
    let url = reqwest::Url::parse(&url_text).with_context(|| format!("bad --url {url_text}"))?;
    ensure!(
        url.scheme() == "http",
        "--url must be http:// (loopback, no TLS)"
    );
    let ip: IpAddr = match url.host_str() {
        Some("localhost") => Ipv4Addr::LOCALHOST.into(),
        Some(h) => match h.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) => ip,
            Err(_) => bail!("--url host must be a loopback IP address, got {h}"),
        },
        None => bail!("--url has no host"),
    };
    ensure!(
        ip.is_loopback(),
        "--url host {ip} is not a loopback address"
    );
    let port = url.port_or_known_default().unwrap_or(80);
    let server = SocketAddr::new(ip, port);
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let origin = format!("http://{host}:{port}");
    let path_prefix = url.path().trim_end_matches('/').to_owned();
    for src in &args.source_addrs {
        ensure!(
            src.is_loopback(),
            "--source-addrs {src} is not a loopback address"
        );
        ensure!(
            src.is_ipv4() == ip.is_ipv4(),
            "--source-addrs {src} is not the same address family as the server"
        );
    }

    ensure!(args.connections >= 1, "--connections must be at least 1");
    ensure!(
        args.connections <= MAX_CONNECTIONS,
        "--connections {} exceeds {MAX_CONNECTIONS} per process (fd limit 20,000): run several processes",
        args.connections
    );
    ensure!(
        (1..=args.connections).contains(&args.channels),
        "--channels must be between 1 and --connections"
    );
    ensure!(
        args.duration > 0.0 && args.duration <= MAX_DURATION_S,
        "--duration must be in (0, {MAX_DURATION_S}]"
    );
    ensure!(
        args.rate >= 0.0 && args.rate.is_finite(),
        "--rate must be ≥ 0"
    );
    let max_payload = match args.target {
        Target::Pusher => 10 * 1024,
        Target::Nchan => 1024 * 1024,
    };
    ensure!(
        args.payload <= max_payload,
        "--payload at most {max_payload} bytes"
    );
    ensure!(
        (1..=5000).contains(&args.ramp_concurrency),
        "--ramp-concurrency must be in 1..=5000"
    );
    ensure!(
        (1..=256).contains(&args.publish_concurrency),
        "--publish-concurrency must be in 1..=256"
    );
    for (name, v) in [
        ("--ramp-timeout", args.ramp_timeout),
        ("--handshake-timeout", args.handshake_timeout),
        ("--settle", args.settle),
        ("--drain", args.drain),
    ] {
        ensure!(
            (0.0..=600.0).contains(&v),
            "{name} must be in [0, 600] seconds"
        );
    }
    ensure!(
        args.handshake_timeout > 0.0,
        "--handshake-timeout must be > 0"
    );
    ensure!(
        args.channel_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "--channel-prefix must be [A-Za-z0-9_]"
    );

    let publishing = !args.idle && args.rate > 0.0;
    let events = if publishing {
        (args.rate * args.duration).round()
    } else {
        0.0
    };
    ensure!(
        events <= MAX_EVENTS,
        "rate × duration exceeds {MAX_EVENTS} events"
    );
    let total_events = events as u64;
    let per_channel = total_events.div_ceil(args.channels as u64);
    ensure!(
        (args.connections as f64) * (per_channel as f64) / 8.0 <= MAX_SEEN_BYTES,
        "connections × events per channel too large to track (reduce rate or duration)"
    );

    let soft = procfs::nofile_soft_limit().unwrap_or(20_000);
    let http_fds = if publishing {
        args.publish_concurrency as u64 + 8
    } else {
        0
    };
    let need = args.connections as u64 + http_fds + FD_RESERVE;
    ensure!(
        need <= soft.min(FD_CEILING),
        "{} connections + {http_fds} HTTP + {FD_RESERVE} spare fds exceeds the fd budget {} \
         (per-process limit 20,000): run several loadgen processes",
        args.connections,
        soft.min(FD_CEILING)
    );

    let channel_names = (0..args.channels)
        .map(|n| match args.target {
            Target::Pusher => format!("{}-{n}", args.channel_prefix),
            Target::Nchan => format!("{}_{n}", args.channel_prefix),
        })
        .collect();
    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.threads.unwrap_or(nproc).clamp(1, 64);
    Ok(Plan {
        server,
        origin,
        path_prefix,
        channel_names,
        total_events,
        threads,
        nproc,
        args,
    })
}

#[derive(Serialize)]
struct Workload {
    target: Target,
    url: String,
    mode: &'static str,
    connections: usize,
    channels: usize,
    subscribers_per_channel: f64,
    payload_bytes: usize,
    publish_rate: f64,
    publish_method: String,
    duration_s: f64,
    source_addrs: usize,
    client_threads: usize,
    nproc: usize,
    loadavg_at_start: Option<[f64; 3]>,
}

#[derive(Serialize)]
struct Connect {
    established: usize,
    failed: usize,
    ramp_s: f64,
    connects_per_s: f64,
    /// Established connections that ended before the run stopped them.
    dropped: usize,
    first_errors: Vec<String>,
    max_open_fds: Option<usize>,
}

#[derive(Serialize)]
struct Delivery {
    expected: u64,
    deliveries: u64,
    unique: u64,
    lost: u64,
    duplicated: u64,
    malformed: u64,
    window_s: f64,
    deliveries_per_s: f64,
    latency_ms_p50: f64,
    latency_ms_p90: f64,
    latency_ms_p99: f64,
    latency_ms_p999: f64,
    latency_ms_max: f64,
}

#[derive(Serialize)]
struct Server {
    pids: Vec<u32>,
    rss_kib_baseline: Option<u64>,
    rss_kib_after_connect: Option<u64>,
    rss_bytes_per_connection: Option<f64>,
    rss_kib_end: Option<u64>,
    /// Server utime+stime during the measured window (publish + drain, or the idle hold).
    cpu_s_window: Option<f64>,
    cpu_us_per_delivery: Option<f64>,
    /// Idle hold only: server CPU per connection per second.
    cpu_us_per_connection_s: Option<f64>,
    cpu_s_connect_ramp: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    workload: Workload,
    connect: Connect,
    publish: Option<PublishReport>,
    delivery: Option<Delivery>,
    client_cpu_s_total: Option<f64>,
    client_cpu_s_window: Option<f64>,
    server: Option<Server>,
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("loadgen: error: {e:#}");
        std::process::exit(2);
    }
}

fn real_main() -> anyhow::Result<()> {
    let plan = plan(Args::parse())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.threads)
        .enable_all()
        .build()?;
    let report = runtime.block_on(run(&plan))?;
    runtime.shutdown_timeout(Duration::from_secs(2));
    print_report(&report);
    Ok(())
}

fn delta(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(b? - a?)
}

async fn run(plan: &Plan) -> anyhow::Result<Report> {
    let args = &plan.args;
    let loadavg = procfs::loadavg();
    if let Some([one, ..]) = loadavg
        && one > 0.7
    {
        eprintln!(
            "warning: load average {one:.2} before starting: something else is using the CPUs"
        );
    }
    let client_cpu_start = procfs::cpu_seconds(Pid::Own);
    let read_server = || procfs::snapshot_sum(&args.server_pid);
    for &pid in &args.server_pid {
        ensure!(
            procfs::cpu_seconds(Pid::Other(pid)).is_some(),
            "cannot read /proc/{pid}/stat"
        );
    }
    let server_baseline: Snapshot = read_server();

    // ---- connect ramp ----
    let shared = Arc::new(Shared::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ramp_tx, mut ramp_rx) = mpsc::unbounded_channel();
    let ramp_sem = Arc::new(Semaphore::new(args.ramp_concurrency));
    let channels = plan.channel_names.len();
    let seq_limit = (plan.total_events > 0).then(|| plan.total_events.div_ceil(channels as u64));
    let mut tasks = JoinSet::new();
    let ws_base = match &plan.server.ip() {
        IpAddr::V4(ip) => format!("ws://{ip}:{}{}", plan.server.port(), plan.path_prefix),
        IpAddr::V6(ip) => format!("ws://[{ip}]:{}{}", plan.server.port(), plan.path_prefix),
    };
    let ramp_start = Instant::now();
    eprintln!(
        "connecting {} subscribers to {} over {channels} channel(s)…",
        args.connections, plan.origin
    );
    for id in 0..args.connections {
        let channel = plan.channel_names[id % channels].clone();
        let ws_url = match args.target {
            Target::Pusher => format!(
                "{ws_base}/app/{}?protocol=7&client=loadgen&version=0.1",
                args.key
            ),
            Target::Nchan => format!("{ws_base}/sub/{channel}"),
        };
        let spec = ConnSpec {
            id,
            target: args.target,
            server: plan.server,
            source: (!args.source_addrs.is_empty())
                .then(|| args.source_addrs[id % args.source_addrs.len()]),
            ws_url,
            channel,
            handshake_timeout: Duration::from_secs_f64(args.handshake_timeout),
            seq_limit,
            payload: args.payload,
        };
        tasks.spawn(conn::run(
            spec,
            shared.clone(),
            ramp_sem.clone(),
            ramp_tx.clone(),
            stop_rx.clone(),
        ));
    }
    drop(ramp_tx);

    let mut subscribers = vec![0u64; channels];
    let (mut established, mut failed) = (0usize, 0usize);
    let mut first_errors: Vec<String> = Vec::new();
    let mut max_fds = procfs::open_fds();
    let ramp_deadline = tokio::time::Instant::now() + Duration::from_secs_f64(args.ramp_timeout);
    let mut last_progress = Instant::now();
    while established + failed < args.connections {
        match tokio::time::timeout_at(ramp_deadline, ramp_rx.recv()).await {
            Ok(Some(r)) => match r.result {
                Ok(()) => {
                    established += 1;
                    subscribers[r.id % channels] += 1;
                }
                Err(e) => {
                    failed += 1;
                    if first_errors.len() < 5 && !first_errors.contains(&e) {
                        first_errors.push(e);
                    }
                }
            },
            Ok(None) => break,
            Err(_) => {
                eprintln!(
                    "ramp timeout: {} connections not established",
                    args.connections - established - failed
                );
                break;
            }
        }
        if last_progress.elapsed() >= Duration::from_secs(2) {
            last_progress = Instant::now();
            max_fds = max_fds.max(procfs::open_fds());
            eprintln!("  {established} established, {failed} failed");
        }
    }
    // Anything still handshaking after the deadline is abandoned.
    ramp_sem.close();
    let ramp_s = ramp_start.elapsed().as_secs_f64();
    failed = args.connections - established;
    eprintln!("ramp done in {ramp_s:.1}s: {established} established, {failed} failed");
    for e in &first_errors {
        eprintln!("  error: {e}");
    }

    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    max_fds = max_fds.max(procfs::open_fds());
    let server_connected = read_server();

    // ---- measured window ----
    let client_cpu_w0 = procfs::cpu_seconds(Pid::Own);
    let server_w0 = read_server();
    let window_start = Instant::now();
    let publishing = !args.idle && args.rate > 0.0 && established > 0;
    let mut publish_report = None;
    let mut expected = 0u64;
    if publishing {
        let client = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(args.publish_concurrency)
            .timeout(Duration::from_secs(10))
            .build()?;
        let publisher = Arc::new(Publisher {
            client,
            target: args.target,
            origin: plan.origin.clone(),
            path_prefix: plan.path_prefix.clone(),
            app_id: args.app_id.clone(),
            key: args.key.clone(),
            secret: args.secret.clone(),
            channels: plan.channel_names.clone(),
            payload: args.payload,
        });
        eprintln!(
            "publishing {} events at {}/s for {}s…",
            plan.total_events, args.rate, args.duration
        );
        let report = publisher
            .run(
                args.rate,
                plan.total_events,
                args.publish_concurrency,
                Duration::from_secs_f64(args.duration),
            )
            .await;
        expected = report
            .per_channel_ok
            .iter()
            .zip(&subscribers)
            .map(|(ok, subs)| ok * subs)
            .sum();
        // Drain: stop as soon as every expected delivery arrived, or at the deadline.
        let drain_deadline = Instant::now() + Duration::from_secs_f64(args.drain);
        while shared.unique() < expected && Instant::now() < drain_deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(e) = &report.first_error {
            eprintln!("publish errors: {} failed, first: {e}", report.failed);
        }
        publish_report = Some(report);
    } else if established > 0 {
        eprintln!("holding {established} connections for {}s…", args.duration);
        tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    }
    let window_s = window_start.elapsed().as_secs_f64();
    let server_w1 = read_server();
    let client_cpu_w1 = procfs::cpu_seconds(Pid::Own);
    max_fds = max_fds.max(procfs::open_fds());

    // ---- stop ----
    let _ = stop_tx.send(true);
    let mut dropped = 0usize;
    let mut drop_reasons: Vec<String> = Vec::new();
    let join_deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(join_deadline, tasks.join_next()).await {
            Ok(Some(Ok(End::Dropped(reason)))) => {
                dropped += 1;
                if drop_reasons.len() < 5 && !drop_reasons.contains(&reason) {
                    drop_reasons.push(reason);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                tasks.abort_all();
                break;
            }
        }
    }
    for r in &drop_reasons {
        eprintln!("  dropped: {r}");
    }
    first_errors.extend(drop_reasons.into_iter().map(|r| format!("dropped: {r}")));

    let totals = shared.totals();
    let delivery = (publishing || totals.deliveries > 0).then(|| {
        let q = |p: f64| totals.hist.value_at_quantile(p) as f64 / 1e6;
        Delivery {
            expected,
            deliveries: totals.deliveries,
            unique: totals.unique,
            lost: expected.saturating_sub(totals.unique),
            duplicated: totals.duplicates,
            malformed: totals.malformed,
            window_s,
            deliveries_per_s: totals.deliveries as f64 / window_s,
            latency_ms_p50: q(0.5),
            latency_ms_p90: q(0.9),
            latency_ms_p99: q(0.99),
            latency_ms_p999: q(0.999),
            latency_ms_max: totals.hist.max() as f64 / 1e6,
        }
    });

    let server = (!args.server_pid.is_empty()).then(|| {
        let cpu_window = delta(server_w0.cpu_s, server_w1.cpu_s);
        let rss_per_conn = match (server_baseline.rss_kib, server_connected.rss_kib) {
            (Some(a), Some(b)) if established > 0 => {
                Some((b as f64 - a as f64) * 1024.0 / established as f64)
            }
            _ => None,
        };
        Server {
            pids: args.server_pid.clone(),
            rss_kib_baseline: server_baseline.rss_kib,
            rss_kib_after_connect: server_connected.rss_kib,
            rss_bytes_per_connection: rss_per_conn,
            rss_kib_end: server_w1.rss_kib,
            cpu_s_window: cpu_window,
            cpu_us_per_delivery: match (cpu_window, totals.deliveries) {
                (Some(c), d) if publishing && d > 0 => Some(c * 1e6 / d as f64),
                _ => None,
            },
            cpu_us_per_connection_s: match cpu_window {
                Some(c) if !publishing && established > 0 => {
                    Some(c * 1e6 / established as f64 / window_s)
                }
                _ => None,
            },
            cpu_s_connect_ramp: delta(server_baseline.cpu_s, server_connected.cpu_s),
        }
    });

    let subs_per_channel = established as f64 / channels as f64;
    let publish_method = match (publishing, args.target) {
        (false, _) => "none".to_owned(),
        (true, Target::Pusher) => format!(
            "HTTP POST /apps/{}/events (signed), ≤{} in flight, keep-alive",
            args.app_id, args.publish_concurrency
        ),
        (true, Target::Nchan) => format!(
            "HTTP POST /pub/{{channel}}, ≤{} in flight, keep-alive",
            args.publish_concurrency
        ),
    };
    Ok(Report {
        workload: Workload {
            target: args.target,
            url: format!("{}{}", plan.origin, plan.path_prefix),
            mode: match (publishing, args.idle) {
                (true, _) => "fanout",
                (false, true) => "idle",
                (false, false) => "subscribe-only",
            },
            connections: args.connections,
            channels,
            subscribers_per_channel: subs_per_channel,
            payload_bytes: args.payload,
            publish_rate: if publishing { args.rate } else { 0.0 },
            publish_method,
            duration_s: args.duration,
            source_addrs: args.source_addrs.len().max(1),
            client_threads: plan.threads,
            nproc: plan.nproc,
            loadavg_at_start: loadavg,
        },
        connect: Connect {
            established,
            failed,
            ramp_s,
            connects_per_s: established as f64 / ramp_s.max(1e-9),
            dropped,
            first_errors,
            max_open_fds: max_fds,
        },
        publish: publish_report,
        delivery,
        client_cpu_s_total: delta(client_cpu_start, procfs::cpu_seconds(Pid::Own)),
        client_cpu_s_window: delta(client_cpu_w0, client_cpu_w1),
        server,
    })
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| v.to_string())
}

fn opt_f(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.prec$}"))
}

fn print_report(r: &Report) {
    let w = &r.workload;
    println!("== loadgen: {:?} {} ==", w.target, w.url);
    println!(
        "workload: mode={} connections={} channels={} subscribers/channel={:.1} payload={}B rate={}/s publish={} duration={}s",
        w.mode,
        w.connections,
        w.channels,
        w.subscribers_per_channel,
        w.payload_bytes,
        w.publish_rate,
        w.publish_method,
        w.duration_s
    );
    println!(
        "machine: nproc={} loadavg_at_start={} client_threads={} source_addrs={}",
        w.nproc,
        w.loadavg_at_start.map_or("n/a".into(), |l| format!(
            "{:.2} {:.2} {:.2}",
            l[0], l[1], l[2]
        )),
        w.client_threads,
        w.source_addrs
    );
    let c = &r.connect;
    println!(
        "connect: established={} failed={} ramp={:.2}s ({:.0}/s) dropped_during_run={} max_open_fds={}",
        c.established,
        c.failed,
        c.ramp_s,
        c.connects_per_s,
        c.dropped,
        opt(c.max_open_fds)
    );
    for e in &c.first_errors {
        println!("  error: {e}");
    }
    if let Some(p) = &r.publish {
        println!(
            "publish: planned={} sent={} skipped(behind)={} ok={} failed={} in {:.2}s ({:.1}/s) max_lag={:.1}ms",
            p.planned,
            p.attempted,
            p.skipped,
            p.ok,
            p.failed,
            p.elapsed_s,
            p.achieved_rate,
            p.max_lag_ms
        );
    }
    if let Some(d) = &r.delivery {
        println!(
            "delivery: {} deliveries in {:.2}s = {:.0}/s; expected={} unique={} lost={} duplicated={} malformed={}",
            d.deliveries,
            d.window_s,
            d.deliveries_per_s,
            d.expected,
            d.unique,
            d.lost,
            d.duplicated,
            d.malformed
        );
        if d.deliveries == 0 {
            println!("latency publish→deliver: n/a (nothing delivered)");
        } else {
            println!(
                "latency publish→deliver: p50={:.3}ms p90={:.3}ms p99={:.3}ms p99.9={:.3}ms max={:.3}ms",
                d.latency_ms_p50,
                d.latency_ms_p90,
                d.latency_ms_p99,
                d.latency_ms_p999,
                d.latency_ms_max
            );
        }
    }
    println!(
        "client cpu: {}s total, {}s in window",
        opt_f(r.client_cpu_s_total, 2),
        opt_f(r.client_cpu_s_window, 2)
    );
    if let Some(s) = &r.server {
        println!(
            "server pid {:?}: rss baseline={}KiB after_connect={}KiB end={}KiB → {} bytes/connection",
            s.pids,
            opt(s.rss_kib_baseline),
            opt(s.rss_kib_after_connect),
            opt(s.rss_kib_end),
            opt_f(s.rss_bytes_per_connection, 0)
        );
        println!(
            "server cpu: ramp={}s window={}s → {} µs/delivery, {} µs/connection/s (idle)",
            opt_f(s.cpu_s_connect_ramp, 2),
            opt_f(s.cpu_s_window, 2),
            opt_f(s.cpu_us_per_delivery, 2),
            opt_f(s.cpu_us_per_connection_s, 3)
        );
    }
    match serde_json::to_string(r) {
        Ok(json) => println!("{json}"),
        Err(e) => eprintln!("cannot encode JSON report: {e}"),
    }
}
