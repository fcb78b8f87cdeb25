//! What a run measured: the JSON report and its human-readable print-out.

use serde::Serialize;

use crate::plan::{Carrier, Target};
use crate::publish::PublishReport;
use crate::redis_monitor::RedisReport;

#[derive(Serialize)]
pub(crate) struct Workload {
    pub(crate) target: Target,
    pub(crate) carrier: Carrier,
    pub(crate) url: String,
    pub(crate) mode: &'static str,
    pub(crate) connections: usize,
    pub(crate) channels: usize,
    pub(crate) channels_per_connection: usize,
    pub(crate) subscribers_per_channel: f64,
    pub(crate) payload_bytes: usize,
    pub(crate) publish_rate: f64,
    pub(crate) publish_method: String,
    pub(crate) duration_s: f64,
    pub(crate) source_addrs: usize,
    pub(crate) client_threads: usize,
    pub(crate) nproc: usize,
    pub(crate) loadavg_at_start: Option<[f64; 3]>,
}

#[derive(Serialize)]
pub(crate) struct Connect {
    pub(crate) established: usize,
    pub(crate) failed: usize,
    pub(crate) ramp_s: f64,
    pub(crate) connects_per_s: f64,
    /// Established connections that ended before the run stopped them.
    pub(crate) dropped: usize,
    pub(crate) first_errors: Vec<String>,
    pub(crate) max_open_fds: Option<usize>,
}

#[derive(Serialize)]
pub(crate) struct Delivery {
    pub(crate) expected: u64,
    pub(crate) deliveries: u64,
    pub(crate) unique: u64,
    pub(crate) lost: u64,
    pub(crate) duplicated: u64,
    pub(crate) malformed: u64,
    pub(crate) window_s: f64,
    pub(crate) deliveries_per_s: f64,
    pub(crate) latency_ms_p50: f64,
    pub(crate) latency_ms_p90: f64,
    pub(crate) latency_ms_p99: f64,
    pub(crate) latency_ms_p999: f64,
    pub(crate) latency_ms_max: f64,
}

#[derive(Serialize)]
pub(crate) struct Server {
    pub(crate) pids: Vec<u32>,
    pub(crate) rss_kib_baseline: Option<u64>,
    pub(crate) rss_kib_after_connect: Option<u64>,
    pub(crate) rss_bytes_per_connection: Option<f64>,
    pub(crate) rss_kib_end: Option<u64>,
    /// Server utime+stime during the measured window (publish + drain, or the idle hold).
    pub(crate) cpu_s_window: Option<f64>,
    pub(crate) cpu_us_per_delivery: Option<f64>,
    /// Idle hold only: server CPU per connection per second.
    pub(crate) cpu_us_per_connection_s: Option<f64>,
    pub(crate) cpu_s_connect_ramp: Option<f64>,
}

#[derive(Serialize)]
pub(crate) struct Report {
    pub(crate) workload: Workload,
    /// Commands on the servers' shared Redis in the window (`--redis-url`).
    pub(crate) redis: Option<RedisReport>,
    pub(crate) connect: Connect,
    pub(crate) publish: Option<PublishReport>,
    pub(crate) delivery: Option<Delivery>,
    pub(crate) client_cpu_s_total: Option<f64>,
    pub(crate) client_cpu_s_window: Option<f64>,
    pub(crate) server: Option<Server>,
}

pub(crate) fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| v.to_string())
}

pub(crate) fn opt_f(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.prec$}"))
}

pub(crate) fn print_report(r: &Report) {
    let w = &r.workload;
    println!(
        "== loadgen: {:?} over {:?} {} ==",
        w.target, w.carrier, w.url
    );
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
    if let Some(redis) = &r.redis {
        println!(
            "redis: {} commands from clients for {} publishes → {:.2} round trips/publish \
             (pings apart: {:.1}/s), {:.2} script commands/publish, by command {:?}",
            redis.commands,
            redis.publishes_ok,
            redis.round_trips_per_publish,
            redis.pings_per_s,
            redis.script_commands_per_publish,
            redis.by_command_per_publish
        );
    }
    match serde_json::to_string(r) {
        Ok(json) => println!("{json}"),
        Err(e) => eprintln!("cannot encode JSON report: {e}"),
    }
}
