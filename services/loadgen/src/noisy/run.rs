//! The noisy-neighbour run, step by step: B's subscribers, phase 1, A's subscribers, phase 2
//! (A's storm and burst), teardown. Each step is bounded; after each, a server that is gone or
//! no longer answers B's publishes ends the run with what was measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::conn::{BENCH_EVENT, bench_data};
use crate::noisy::client::{Admission, Subscriber, hold};
use crate::noisy::publishers::{Accepted, AppTarget, Paced, StatusCounts, storm};
use crate::noisy::tally::{
    AReport, BReport, BStats, BurstCounts, Closes, NoisyReport, Ramp, Workload,
};
use crate::noisy::{B_IN_FLIGHT, NoisyArgs};
use crate::procfs::{self, Pid};
use crate::stats::Seen;

const B_CHANNEL: &str = "noisy-b";
const A_CHANNEL: &str = "noisy-a";
const A_EVENT: &str = "storm";
/// B's events between the phases, which its subscribers' tallies skip (`Paced::fill`).
const FILLER_EVENT: &str = "filler";
/// In every frame of A's events and in no other frame A's subscribers get.
const A_MARK: &str = "\"event\":\"storm\"";
/// How long the teardown waits for connections to close before abandoning them.
const TEARDOWN: Duration = Duration::from_secs(10);

/// pusher-js's wait before it reconnects after a 4100-4199 close.
const PACE_BACKOFF: Duration = Duration::from_secs(1);

type RampSender = mpsc::UnboundedSender<Result<(), String>>;

/// What the whole run shares with its connection tasks.
struct Shared {
    args: NoisyArgs,
    server: std::net::SocketAddr,
    ws_base: String,
    stop: watch::Receiver<bool>,
    b_stats: BStats,
    b_closes: Closes,
    a_deliveries: AtomicU64,
    a_closes: Closes,
    burst: BurstCounts,
    burst_closes: Closes,
    /// Set when B's ramp is over: a B subscriber admitted later is not counted.
    b_ramp_over: AtomicBool,
    /// Ramped handshakes refused with 4100 (the app's connect pace) and tried again.
    ramp_retries: AtomicU64,
    b_events: u64,
}

impl Shared {
    fn subscriber(&self, index: usize, key: &str, channel: &str) -> Subscriber {
        let sources = &self.args.source_addrs;
        Subscriber {
            server: self.server,
            source: Some(sources[index % sources.len()]),
            ws_url: format!(
                "{}/app/{key}?protocol=7&client=loadgen&version=0.1",
                self.ws_base
            ),
            channel: channel.to_owned(),
            handshake_timeout: Duration::from_secs_f64(self.args.handshake_timeout),
            payload: self.args.payload,
        }
    }
}

/// B's clients run on the current runtime, A's on `a_runtime` (its threads deprioritised).
pub(crate) async fn run(
    args: &NoisyArgs,
    a_runtime: &tokio::runtime::Handle,
    client_threads: usize,
    nproc: usize,
) -> anyhow::Result<NoisyReport> {
    let loadavg_at_start = procfs::loadavg();
    let cpu_start = procfs::cpu_seconds(Pid::Own);
    let (server, origin, path_prefix) = crate::plan::loopback_http(&args.url, "--url")?;
    let events_per_phase = (args.b_rate * args.phase_seconds).ceil() as u64;
    let (stop_tx, stop) = watch::channel(false);
    let shared = Arc::new(Shared {
        args: args.clone(),
        server,
        ws_base: format!("{}{path_prefix}", origin.replacen("http", "ws", 1)),
        stop,
        b_stats: BStats::new(events_per_phase, args.b_rate),
        b_closes: Closes::default(),
        a_deliveries: AtomicU64::new(0),
        a_closes: Closes::default(),
        burst: BurstCounts::default(),
        burst_closes: Closes::default(),
        b_ramp_over: AtomicBool::new(false),
        ramp_retries: AtomicU64::new(0),
        b_events: 2 * events_per_phase,
    });
    let target = |app_id: &str, key: &str, secret: &str, channel: &str, event| AppTarget {
        origin: origin.clone(),
        path_prefix: path_prefix.clone(),
        app_id: app_id.to_owned(),
        key: key.to_owned(),
        secret: secret.to_owned(),
        channel: channel.to_owned(),
        event,
        payload: args.payload,
    };
    let http = |pool: usize| {
        reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(pool)
            .timeout(Duration::from_secs_f64(args.request_timeout))
            .build()
    };
    let accepted = Arc::new(Accepted::new(shared.b_events));
    let b_counts = Arc::new(StatusCounts::default());
    let b_publisher = Paced {
        target: Arc::new(target(
            &args.b_app_id,
            &args.b_key,
            &args.b_secret,
            B_CHANNEL,
            BENCH_EVENT,
        )),
        client: http(B_IN_FLIGHT)?,
        rate: args.b_rate,
        in_flight: B_IN_FLIGHT,
        accepted: accepted.clone(),
        counts: b_counts.clone(),
    };
    let b_filler = Arc::new(target(
        &args.b_app_id,
        &args.b_key,
        &args.b_secret,
        B_CHANNEL,
        FILLER_EVENT,
    ));
    let a_target = Arc::new(target(
        &args.a_app_id,
        &args.a_key,
        &args.a_secret,
        A_CHANNEL,
        A_EVENT,
    ));
    let a_client = http(args.a_publishers)?;
    let a_counts = Arc::new(StatusCounts::default());
    let window = Duration::from_secs_f64(args.phase_seconds);
    let alive = || abort_reason(args.server_pid, &accepted);

    // ---- B's subscribers ----
    eprintln!("connecting B's {} subscribers…", args.b_subscribers);
    let mut b_tasks = JoinSet::new();
    let b_ramp = ramp(&shared, args.b_subscribers, 0, |index, tx, permits| {
        b_tasks.spawn(b_subscriber(shared.clone(), index, tx, permits));
    })
    .await;
    shared.b_ramp_over.store(true, Ordering::Relaxed);
    let mut aborted = (b_ramp.established == 0)
        .then(|| format!("no B subscriber connected: {:?}", b_ramp.first_errors))
        .or_else(alive);

    // ---- phase 1: B alone ----
    let mut windows = [0.0; 2];
    let cpu_phases_start = procfs::cpu_seconds(Pid::Own);
    if aborted.is_none() {
        eprintln!("phase 1: B alone for {} s…", args.phase_seconds);
        let started = Instant::now();
        b_publisher.phase(0..events_per_phase, window).await;
        drain(&shared, &accepted, 0, b_ramp.established, args).await;
        windows[0] = started.elapsed().as_secs_f64();
        aborted = alive();
    }

    // ---- A's subscribers ----
    let mut a_tasks = JoinSet::new();
    let mut a_ramp = Ramp::default();
    if aborted.is_none() {
        eprintln!("connecting A's {} subscribers…", args.a_subscribers);
        let offset = args.b_subscribers;
        let (ramped_tx, ramped) = watch::channel(false);
        let filling = b_publisher.fill(b_filler, ramped);
        let ramping = async {
            let ramp = ramp(&shared, args.a_subscribers, offset, |index, tx, permits| {
                let subscriber = a_subscriber(shared.clone(), index, Some((tx, permits)));
                a_tasks.spawn_on(subscriber, a_runtime);
            })
            .await;
            let _ = ramped_tx.send(true);
            ramp
        };
        a_ramp = tokio::join!(filling, ramping).1;
        aborted = alive();
    }

    // ---- phase 2: B with A's storm and burst ----
    let mut a_deliveries = 0;
    let mut a_window = 0.0;
    if aborted.is_none() {
        eprintln!(
            "phase 2: B for {} s with A's {} publishers and a burst of {} connections…",
            args.phase_seconds, args.a_publishers, args.a_burst
        );
        let (storm_stop_tx, storm_stop) = watch::channel(false);
        let mut storm_tasks = storm(
            a_target.clone(),
            a_client.clone(),
            args.a_publishers,
            storm_stop,
            a_counts.clone(),
            a_runtime,
        );
        let burst_offset = args.b_subscribers + args.a_subscribers;
        for index in burst_offset..burst_offset + args.a_burst {
            a_tasks.spawn_on(a_subscriber(shared.clone(), index, None), a_runtime);
        }
        let started = Instant::now();
        let delivered_before = shared.a_deliveries.load(Ordering::Relaxed);
        b_publisher
            .phase(events_per_phase..2 * events_per_phase, window)
            .await;
        a_deliveries = shared.a_deliveries.load(Ordering::Relaxed) - delivered_before;
        a_window = started.elapsed().as_secs_f64();
        let _ = storm_stop_tx.send(true);
        drain(&shared, &accepted, 1, b_ramp.established, args).await;
        windows[1] = started.elapsed().as_secs_f64();
        // Every storm request has the client's timeout; a task past it is abandoned.
        let storm_deadline = Duration::from_secs_f64(args.request_timeout + 1.0);
        if tokio::time::timeout(storm_deadline, async {
            while storm_tasks.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            storm_tasks.abort_all();
        }
        aborted = alive();
    }
    let cpu_phases_end = procfs::cpu_seconds(Pid::Own);

    // ---- teardown ----
    let _ = stop_tx.send(true);
    let subscribers = join_b(&mut b_tasks).await;
    join_all(&mut a_tasks).await;

    let accepted_now = accepted.answer_times();
    let phase = |phase: usize, ran: bool| {
        ran.then(|| {
            shared
                .b_stats
                .phase_report(phase, &accepted_now, &subscribers, windows[phase])
        })
    };
    let alone = phase(0, windows[0] > 0.0);
    let with_storm = phase(1, windows[1] > 0.0);
    let p99 = |report: &Option<crate::noisy::tally::PhaseReport>| {
        report.as_ref().and_then(|r| r.latency_ms_p99)
    };
    let p99_ratio = match (p99(&with_storm), p99(&alone)) {
        (Some(storm), Some(alone)) if alone > 0.0 => Some(storm / alone),
        _ => None,
    };
    if let Some(reason) = &aborted {
        eprintln!("the run ended early: {reason}");
    }
    Ok(NoisyReport {
        workload: Workload {
            url: args.url.clone(),
            b_subscribers: args.b_subscribers,
            b_rate: args.b_rate,
            a_subscribers: args.a_subscribers,
            a_publishers: args.a_publishers,
            a_burst: args.a_burst,
            payload_bytes: args.payload,
            phase_s: args.phase_seconds,
            source_addrs: args.source_addrs.len(),
            client_threads,
            a_nice: args.a_nice,
            nproc,
            loadavg_at_start,
        },
        b: BReport {
            ramp: b_ramp,
            alone,
            storm: with_storm,
            publish: b_counts.report(),
            closed: shared.b_closes.snapshot(),
            malformed: shared.b_stats.malformed(),
        },
        p99_ratio,
        a: AReport {
            ramp: a_ramp,
            deliveries: a_deliveries,
            deliveries_per_s: if a_window > 0.0 {
                a_deliveries as f64 / a_window
            } else {
                0.0
            },
            publish: a_counts.report(),
            burst: shared.burst.report(args.a_burst as u64),
            subscribers_closed: shared.a_closes.snapshot(),
            burst_closed: shared.burst_closes.snapshot(),
        },
        client_cpu_s_total: delta(cpu_start, procfs::cpu_seconds(Pid::Own)),
        client_cpu_s_phases: delta(cpu_phases_start, cpu_phases_end),
        aborted,
    })
}

fn delta(from: Option<f64>, to: Option<f64>) -> Option<f64> {
    Some(to? - from?)
}

/// Why the run must end now, if it must: the server process is gone, or B's publishes have
/// gone unanswered too many times in a row.
fn abort_reason(server_pid: Option<u32>, accepted: &Accepted) -> Option<String> {
    if let Some(pid) = server_pid
        && procfs::cpu_seconds(Pid::Other(pid)).is_none()
    {
        return Some(format!("the server process {pid} is gone"));
    }
    accepted.unanswered().then(|| {
        format!(
            "the server stopped answering: {} of B's publishes in a row failed",
            crate::noisy::publishers::UNANSWERED_LIMIT
        )
    })
}

/// Spawns `count` subscribers (global indices from `offset`) with `spawn`, at most
/// `--ramp-concurrency` handshakes in flight, and waits until all are in or `--ramp-timeout`.
async fn ramp(
    shared: &Arc<Shared>,
    count: usize,
    offset: usize,
    mut spawn: impl FnMut(usize, RampSender, Arc<Semaphore>),
) -> Ramp {
    let started = Instant::now();
    let retries_before = shared.ramp_retries.load(Ordering::Relaxed);
    let permits = Arc::new(Semaphore::new(shared.args.ramp_concurrency));
    let (tx, mut rx) = mpsc::unbounded_channel();
    for index in offset..offset + count {
        spawn(index, tx.clone(), permits.clone());
    }
    drop(tx);
    let mut ramp = Ramp::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(shared.args.ramp_timeout);
    let mut last_progress = Instant::now();
    while ramp.established + ramp.failed < count as u64 {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Ok(()))) => ramp.established += 1,
            Ok(Some(Err(error))) => {
                ramp.failed += 1;
                if ramp.first_errors.len() < 5 && !ramp.first_errors.contains(&error) {
                    ramp.first_errors.push(error);
                }
            }
            Ok(None) => break,
            Err(_) => {
                eprintln!("ramp timeout after {} s", shared.args.ramp_timeout);
                break;
            }
        }
        if last_progress.elapsed() >= Duration::from_secs(2) {
            last_progress = Instant::now();
            eprintln!("  {} connected, {} failed", ramp.established, ramp.failed);
        }
    }
    // Anything not connected by now is abandoned: those still waiting for a permit give up.
    permits.close();
    ramp.failed = count as u64 - ramp.established;
    ramp.ramp_s = started.elapsed().as_secs_f64();
    ramp.retried_after_4100 = shared.ramp_retries.load(Ordering::Relaxed) - retries_before;
    eprintln!(
        "  {} connected, {} not, in {:.1} s ({} handshakes retried after 4100)",
        ramp.established, ramp.failed, ramp.ramp_s, ramp.retried_after_4100
    );
    ramp
}

/// Waits until every expected delivery of `phase` arrived, `--drain` passed, or the server
/// went away.
async fn drain(
    shared: &Shared,
    accepted: &Accepted,
    phase: usize,
    subscribers: u64,
    args: &NoisyArgs,
) {
    let snapshot = accepted.snapshot();
    let published = (0..snapshot.len() as u64)
        .filter(|&seq| snapshot[seq as usize] && shared.b_stats.phase_of(seq) == phase)
        .count() as u64;
    let expected = published * subscribers;
    let deadline = Instant::now() + Duration::from_secs_f64(args.drain);
    while shared.b_stats.unique(phase) < expected && Instant::now() < deadline {
        if abort_reason(args.server_pid, accepted).is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A ramped subscriber's handshake, holding one of the ramp's permits. Refused with 4100 (its
/// app's connect pace), it lets the permit go, backs off as pusher-js does (1 s, spread a
/// little by index so the retries do not come back as one wave) and tries again, until the
/// ramp closes its permits (`None`).
async fn admit_ramped(
    shared: &Shared,
    subscriber: &Subscriber,
    index: usize,
    permits: &Semaphore,
) -> Option<Admission> {
    loop {
        let admission = {
            let _permit = permits.acquire().await.ok()?;
            subscriber.admit().await
        };
        if !matches!(admission, Admission::Refused(4100)) {
            return Some(admission);
        }
        shared.ramp_retries.fetch_add(1, Ordering::Relaxed);
        let spread = Duration::from_millis(50 * (index % 10) as u64);
        tokio::time::sleep(PACE_BACKOFF + spread).await;
    }
}

/// One of B's subscribers; its record of sequence numbers if it was connected in the ramp.
async fn b_subscriber(
    shared: Arc<Shared>,
    index: usize,
    tx: RampSender,
    permits: Arc<Semaphore>,
) -> Option<Seen> {
    let subscriber = shared.subscriber(index, &shared.args.b_key, B_CHANNEL);
    let admission = admit_ramped(&shared, &subscriber, index, &permits).await?;
    let ws = match admission {
        Admission::Admitted(ws) if !shared.b_ramp_over.load(Ordering::Relaxed) => ws,
        Admission::Admitted(_) => return None,
        Admission::Refused(code) => {
            let _ = tx.send(Err(format!("refused with {code}")));
            return None;
        }
        Admission::Failed(error) => {
            let _ = tx.send(Err(error));
            return None;
        }
    };
    let _ = tx.send(Ok(()));
    drop(tx);
    let mut seen = Seen::new(Some(shared.b_events));
    let held = hold(*ws, shared.stop.clone(), |text| {
        if let (Some(event), Some(data)) = bench_data(text)
            && event == BENCH_EVENT
        {
            shared.b_stats.record(&mut seen, &data);
        }
    })
    .await;
    shared.b_closes.record(&held);
    Some(seen)
}

/// One of A's subscribers: ramped (`ramp` given) or one of the burst (all at once).
async fn a_subscriber(
    shared: Arc<Shared>,
    index: usize,
    ramp: Option<(RampSender, Arc<Semaphore>)>,
) {
    let subscriber = shared.subscriber(index, &shared.args.a_key, A_CHANNEL);
    let burst = ramp.is_none();
    let admission = match &ramp {
        Some((_, permits)) => match admit_ramped(&shared, &subscriber, index, permits).await {
            Some(admission) => admission,
            None => return,
        },
        None => subscriber.admit().await,
    };
    let outcome = match admission {
        Admission::Admitted(ws) => Ok(ws),
        Admission::Refused(code) => {
            if burst {
                shared.burst.refused(code);
            }
            Err(format!("refused with {code}"))
        }
        Admission::Failed(error) => {
            if burst {
                shared.burst.failed(error.clone());
            }
            Err(error)
        }
    };
    if let Some((tx, _)) = ramp {
        let _ = tx.send(outcome.as_ref().map(|_| ()).map_err(String::clone));
    }
    let Ok(ws) = outcome else {
        return;
    };
    if burst {
        shared.burst.admitted.fetch_add(1, Ordering::Relaxed);
    }
    let held = hold(*ws, shared.stop.clone(), |text| {
        if text.contains(A_MARK) {
            shared.a_deliveries.fetch_add(1, Ordering::Relaxed);
        }
    })
    .await;
    if burst {
        shared.burst_closes.record(&held);
    } else {
        shared.a_closes.record(&held);
    }
}

/// B's subscribers' records, once each has stopped (or after `TEARDOWN`, without the rest).
async fn join_b(tasks: &mut JoinSet<Option<Seen>>) -> Vec<Seen> {
    let mut subscribers = Vec::new();
    let deadline = tokio::time::Instant::now() + TEARDOWN;
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
        if let Ok(Some(seen)) = joined {
            subscribers.push(seen);
        }
    }
    tasks.abort_all();
    subscribers
}

async fn join_all(tasks: &mut JoinSet<()>) {
    let deadline = tokio::time::Instant::now() + TEARDOWN;
    while let Ok(Some(_)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {}
    tasks.abort_all();
}
