//! `loadgen noisy`: issue 15's noisy-neighbour workload against one server holding two apps.
//! Tenant B: WebSocket subscribers of one channel, one HTTP publisher at a set rate. Phase 1
//! measures B alone; then tenant A's subscribers connect (ramped) while B keeps publishing
//! (filler events its tallies skip); phase 2 measures B again while A publishes flat out and
//! opens a burst of connections all at once. Every step is bounded in time; a server that
//! stops answering ends the run with the figures so far.

mod client;
mod publishers;
mod run;
mod tally;

use std::net::IpAddr;
use std::time::Duration;

use anyhow::ensure;
use clap::Parser;

use crate::noisy::tally::{NoisyReport, PhaseReport};
use crate::plan::{FD_CEILING, FD_RESERVE};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "loadgen noisy",
    about = "Noisy neighbour: tenant B's fan-out latency and loss alone, then during tenant A's publish storm and connection burst"
)]
pub(crate) struct NoisyArgs {
    /// The server's HTTP URL (loopback).
    #[arg(long, default_value = "http://127.0.0.1:6001")]
    url: String,
    /// The measured tenant's app id, key and secret.
    #[arg(long, default_value = "bench-b")]
    b_app_id: String,
    #[arg(long, default_value = "keyb")]
    b_key: String,
    #[arg(long, default_value = "secretb")]
    b_secret: String,
    /// The noisy tenant's app id, key and secret.
    #[arg(long, default_value = "bench-a")]
    a_app_id: String,
    #[arg(long, default_value = "keya")]
    a_key: String,
    #[arg(long, default_value = "secreta")]
    a_secret: String,
    /// B's WebSocket subscribers, all on one channel.
    #[arg(long, default_value_t = 1000)]
    b_subscribers: usize,
    /// B's events per second, one publisher.
    #[arg(long, default_value_t = 50.0)]
    b_rate: f64,
    /// Event payload bytes (B's and A's), the sequence number and send time included.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Seconds of B's traffic in each phase.
    #[arg(long, default_value_t = 15.0)]
    phase_seconds: f64,
    /// A's WebSocket subscribers on one channel, connected before phase 2.
    #[arg(long, default_value_t = 5000)]
    a_subscribers: usize,
    /// A's HTTP publishers during phase 2, each sending its next event as soon as the last
    /// was answered (after a 429's `Retry-After`).
    #[arg(long, default_value_t = 32)]
    a_publishers: usize,
    /// A's extra WebSocket connections opened all at once when phase 2 starts.
    #[arg(long, default_value_t = 2000)]
    a_burst: usize,
    /// Handshakes in flight while B's and A's subscribers connect.
    #[arg(long, default_value_t = 200)]
    ramp_concurrency: usize,
    /// Seconds each group of subscribers may take to connect.
    #[arg(long, default_value_t = 60.0)]
    ramp_timeout: f64,
    /// Seconds one connection may take from TCP connect to `subscription_succeeded`.
    #[arg(long, default_value_t = 10.0)]
    handshake_timeout: f64,
    /// Seconds one HTTP publish may take.
    #[arg(long, default_value_t = 5.0)]
    request_timeout: f64,
    /// Seconds to wait after a phase's last publish for B's outstanding deliveries.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Loopback source addresses, round robin over every connection (more ephemeral ports).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1,127.0.0.2")]
    source_addrs: Vec<IpAddr>,
    /// The server's pid: the run ends early if the process is gone.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Client runtime worker threads [default: number of CPUs].
    #[arg(long)]
    threads: Option<usize>,
    /// Nice value of the threads that run A's clients (its subscribers, publishers and
    /// burst), which in production run on other machines: on a shared machine they would
    /// otherwise take the CPU B's own clients need to read their events in time, and B's
    /// measured latency would be the load client's. 0 runs them at B's priority.
    #[arg(long, default_value_t = 19)]
    a_nice: i32,
}

/// B's publish requests in flight at most (at 50/s a request answered within 160 ms needs
/// one; more would hide a server that answers slowly).
const B_IN_FLIGHT: usize = 8;

pub fn main(argv: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let args = NoisyArgs::parse_from(argv);
    check(&args)?;
    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.threads.unwrap_or(nproc).clamp(1, 64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let a_nice = args.a_nice;
    let a_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("loadgen-a")
        .on_thread_start(move || {
            // Linux keeps a nice value per thread: only A's threads are lowered.
            let thread = Some(rustix::thread::gettid());
            if let Err(error) = rustix::process::setpriority_process(thread, a_nice) {
                eprintln!("could not set A's threads' nice value to {a_nice}: {error}");
            }
        })
        .enable_all()
        .build()?;
    let report = runtime.block_on(run::run(&args, a_runtime.handle(), threads, nproc))?;
    a_runtime.shutdown_timeout(Duration::from_secs(2));
    runtime.shutdown_timeout(Duration::from_secs(2));
    print(&report);
    Ok(())
}

fn check(args: &NoisyArgs) -> anyhow::Result<()> {
    ensure!(
        args.b_subscribers >= 1,
        "--b-subscribers must be at least 1"
    );
    ensure!(
        args.b_rate > 0.0 && args.b_rate <= 10_000.0,
        "--b-rate must be in (0, 10000]"
    );
    ensure!(
        args.phase_seconds > 0.0 && args.phase_seconds <= 600.0,
        "--phase-seconds must be in (0, 600]"
    );
    ensure!(
        (1..=10 * 1024).contains(&args.payload),
        "--payload must be 1 to 10 KiB"
    );
    ensure!(
        (1..=256).contains(&args.a_publishers),
        "--a-publishers must be in 1..=256"
    );
    ensure!(
        (1..=5000).contains(&args.ramp_concurrency),
        "--ramp-concurrency must be in 1..=5000"
    );
    ensure!(
        (0..=19).contains(&args.a_nice),
        "--a-nice must be in 0..=19 (raising a priority needs privileges)"
    );
    for (name, seconds) in [
        ("--ramp-timeout", args.ramp_timeout),
        ("--handshake-timeout", args.handshake_timeout),
        ("--request-timeout", args.request_timeout),
        ("--drain", args.drain),
    ] {
        ensure!(
            seconds > 0.0 && seconds <= 600.0,
            "{name} must be in (0, 600] seconds"
        );
    }
    ensure!(
        !args.source_addrs.is_empty() && args.source_addrs.iter().all(IpAddr::is_loopback),
        "--source-addrs must be loopback addresses"
    );
    let sockets = (args.b_subscribers + args.a_subscribers + args.a_burst) as u64
        + (args.a_publishers + B_IN_FLIGHT) as u64
        + FD_RESERVE;
    let limit = crate::procfs::nofile_soft_limit()
        .unwrap_or(FD_CEILING)
        .min(FD_CEILING);
    ensure!(
        sockets <= limit,
        "{sockets} sockets needed, the open-file limit allows {limit}: raise `ulimit -n` or \
         connect fewer subscribers"
    );
    Ok(())
}

fn latency(phase: Option<&PhaseReport>) -> String {
    let Some(phase) = phase else {
        return "not measured".to_owned();
    };
    match (
        phase.latency_ms_p50,
        phase.latency_ms_p99,
        phase.latency_ms_p999,
    ) {
        (Some(p50), Some(p99), Some(p999)) => format!(
            "p50={p50:.1}ms p99={p99:.1}ms p99.9={p999:.1}ms lost={} of {} ({} events accepted; publish answered p50={:.1}ms p99={:.1}ms max={:.1}ms)",
            phase.lost,
            phase.expected,
            phase.published_ok,
            phase.publish_answer_ms_p50.unwrap_or(f64::NAN),
            phase.publish_answer_ms_p99.unwrap_or(f64::NAN),
            phase.publish_answer_ms_max.unwrap_or(f64::NAN),
        ),
        _ => format!("nothing delivered, lost={}", phase.lost),
    }
}

fn print(report: &NoisyReport) {
    let w = &report.workload;
    println!(
        "== loadgen noisy: {} — B {} subscribers at {}/s, A {} subscribers, {} publishers, burst {}, {} B payloads, {} s phases ==",
        w.url,
        w.b_subscribers,
        w.b_rate,
        w.a_subscribers,
        w.a_publishers,
        w.a_burst,
        w.payload_bytes,
        w.phase_s
    );
    println!(
        "machine: nproc={} loadavg_at_start={:?}",
        w.nproc, w.loadavg_at_start
    );
    println!("B alone:      {}", latency(report.b.alone.as_ref()));
    println!("B with storm: {}", latency(report.b.storm.as_ref()));
    for (name, phase) in [("alone", &report.b.alone), ("storm", &report.b.storm)] {
        if let Some(phase) = phase {
            let seconds: Vec<String> = phase
                .worst_ms_by_second
                .iter()
                .map(|ms| format!("{ms:.0}"))
                .collect();
            println!("B {name} worst ms by second: {}", seconds.join(" "));
        }
    }
    if let Some(ratio) = report.p99_ratio {
        println!("p99 storm ÷ alone: {ratio:.2} (target ≤ 2, lost 0)");
    }
    let a = &report.a;
    println!(
        "A: {:.0} deliveries/s; publishes {:?}; burst {:?}; subscribers closed {:?}",
        a.deliveries_per_s, a.publish, a.burst, a.subscribers_closed
    );
    if let Some(reason) = &report.aborted {
        println!("RUN ENDED EARLY: {reason}");
    }
    match serde_json::to_string(report) {
        Ok(json) => println!("{json}"),
        Err(error) => eprintln!("cannot encode the JSON report: {error}"),
    }
}
