//! loadgen: a load client for Switchboard (Pusher protocol 7) and, as a reference, nginx+nchan.
//! Holds many WebSocket subscribers, publishes events over HTTP at a set rate, and reports
//! delivery rate, publish→deliver latency, losses, duplicates, and the server's CPU and memory
//! read from /proc. See README.md.

mod conn;
mod http_sub;
mod noisy;
mod plan;
mod procfs;
mod publish;
mod redis_monitor;
mod report;
mod stats;
mod traffic;
mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use clap::Parser;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::conn::{ConnSpec, End};
use crate::http_sub::HttpSpec;
use crate::plan::{Args, Carrier, Plan, Target, plan};
use crate::procfs::{Pid, Snapshot};
use crate::publish::Publisher;
use crate::report::{Connect, Delivery, Report, Server, Workload, print_report};
use crate::stats::Shared;

fn main() {
    if let Err(e) = real_main() {
        eprintln!("loadgen: error: {e:#}");
        std::process::exit(2);
    }
}

fn real_main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("traffic") {
        return traffic::main(std::env::args().skip(1));
    }
    if std::env::args().nth(1).as_deref() == Some("noisy") {
        return noisy::main(std::env::args().skip(1));
    }
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
    let http_spec = Arc::new(HttpSpec {
        carrier: args.carrier,
        host: plan.origin.trim_start_matches("http://").to_owned(),
        key: args.key.clone(),
    });
    let ramp_start = Instant::now();
    eprintln!(
        "connecting {} subscribers to {} over {channels} channel(s)…",
        args.connections, plan.origin
    );
    for id in 0..args.connections {
        let channel = plan.channel_names[id % channels].clone();
        let (server, ws_base) = &plan.subscribe_to[id % plan.subscribe_to.len()];
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
            server: *server,
            source: (!args.source_addrs.is_empty())
                .then(|| args.source_addrs[id % args.source_addrs.len()]),
            ws_url,
            more_channels: (1..args.channels_per_connection)
                .map(|j| format!("{}-{id}-{j}", args.channel_prefix))
                .collect(),
            channel,
            handshake_timeout: Duration::from_secs_f64(args.handshake_timeout),
            seq_limit,
            payload: args.payload,
        };
        if args.carrier == Carrier::Ws {
            tasks.spawn(conn::run(
                spec,
                shared.clone(),
                ramp_sem.clone(),
                ramp_tx.clone(),
                stop_rx.clone(),
            ));
        } else {
            tasks.spawn(http_sub::run(
                spec,
                http_spec.clone(),
                shared.clone(),
                ramp_sem.clone(),
                ramp_tx.clone(),
                stop_rx.clone(),
            ));
        }
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

    if !args.connect_rate {
        tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    }
    max_fds = max_fds.max(procfs::open_fds());
    let server_connected = read_server();

    // ---- measured window ----
    let monitor = match plan.redis {
        Some(address) => Some(redis_monitor::Monitor::start(address).await?),
        None => None,
    };
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
            nchan_kept: args.carrier == Carrier::LongPoll,
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
    } else if established > 0 && !args.connect_rate {
        eprintln!("holding {established} connections for {}s…", args.duration);
        tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    }
    let window_s = window_start.elapsed().as_secs_f64();
    let server_w1 = read_server();
    let redis_counts = match monitor {
        Some(monitor) => Some(monitor.stop().await),
        None => None,
    };
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
    let redis = redis_counts.map(|counts| {
        let ok = publish_report.as_ref().map_or(0, |report| report.ok);
        counts.report(ok, window_s)
    });
    Ok(Report {
        redis,
        workload: Workload {
            target: args.target,
            carrier: args.carrier,
            url: format!("{}{}", plan.origin, plan.path_prefix),
            mode: match (publishing, args.idle) {
                _ if args.connect_rate => "connect-rate",
                (true, _) => "fanout",
                (false, true) => "idle",
                (false, false) => "subscribe-only",
            },
            connections: args.connections,
            channels,
            channels_per_connection: args.channels_per_connection,
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
