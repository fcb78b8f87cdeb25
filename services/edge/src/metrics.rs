//! Prometheus metrics of this process, served at `GET /metrics`.
//!
//! One global `metrics` recorder, installed on first use (tests start many servers in one
//! process, and a second install would fail). Labels have a bounded set of values: close codes
//! come from the protocol's fixed set, endpoints are route templates, message sources are
//! `api` and `client`. App ids are never labels (their number is unbounded); per-app figures
//! are metering's job (`metering.rs`).

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::ContentType;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use metrics::{Counter, Gauge, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::EdgeState;

const CONNECTIONS: &str = "switchboard_connections";
const SUBSCRIPTIONS: &str = "switchboard_subscriptions";
const PUBLISHED: &str = "switchboard_messages_published_total";
const DELIVERED: &str = "switchboard_messages_delivered_total";
const OUTBOX_DROPS: &str = "switchboard_outbox_drops_total";
const CLOSED: &str = "switchboard_connections_closed_total";
const FANOUT_WAITING: &str = "switchboard_fanout_waiting_deliveries";
const FANOUT_REFUSED: &str = "switchboard_fanout_refused_total";
const FANOUT_PACE: &str = "switchboard_fanout_paced_deliveries_per_second";
const HTTP_DURATION: &str = "switchboard_http_request_duration_seconds";
const REDIS_PING_DURATION: &str = "switchboard_redis_ping_duration_seconds";
const REDIS_UP: &str = "switchboard_redis_up";
const CEILING_USAGE: &str = "switchboard_connection_ceiling_usage_ratio";
const OUTBOX_BYTES: &str = "switchboard_outbox_bytes";
const OUTBOX_PEAK_BYTES: &str = "switchboard_outbox_peak_bytes";
const SLOW_CONSUMERS: &str = "switchboard_slow_consumers_total";
const STORED_BYTES: &str = "switchboard_stored_bytes";
const STORED_EVICTIONS: &str = "switchboard_stored_evictions_total";
const STORED_CHANNELS: &str = "switchboard_stored_channels";
const DRAINING: &str = "switchboard_draining";
const DEPENDENCY_TROUBLE: &str = "switchboard_dependency_trouble";
const WORKER_LAG: &str = "switchboard_worker_lag_seconds";

/// Histogram buckets for request durations, in seconds.
const DURATION_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Histogram buckets for an app's share of its plan's connection ceiling at an admission.
const CEILING_USAGE_BUCKETS: [f64; 7] = [0.25, 0.5, 0.75, 0.8, 0.9, 0.95, 1.0];

/// Close codes registered (at zero) from the start, so alerts and dashboards on them find a
/// series before the first such close: the client's own close and every code the server sends.
const CLOSE_CODES_AT_START: [u16; 12] = [
    1000, 4001, 4003, 4004, 4005, 4006, 4007, 4009, 4100, 4200, 4201, 4202,
];

/// The installed recorder's handle (or, if some other recorder was installed first, a handle
/// on a recorder of our own that then stays empty).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), &DURATION_BUCKETS)
            .and_then(|builder| {
                builder.set_buckets_for_metric(
                    Matcher::Full(REDIS_PING_DURATION.into()),
                    &DURATION_BUCKETS,
                )
            })
            .and_then(|builder| {
                builder.set_buckets_for_metric(Matcher::Full(WORKER_LAG.into()), &DURATION_BUCKETS)
            })
            .and_then(|builder| {
                builder.set_buckets_for_metric(
                    Matcher::Full(CEILING_USAGE.into()),
                    &CEILING_USAGE_BUCKETS,
                )
            })
            .expect("the buckets are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if let Err(error) = metrics::set_global_recorder(recorder) {
            tracing::warn!(%error, "another metrics recorder is installed; /metrics stays empty");
        }
        describe();
        register_at_start();
        handle
    })
}

fn describe() {
    metrics::describe_gauge!(CONNECTIONS, "WebSocket connections open on this node");
    metrics::describe_gauge!(SUBSCRIPTIONS, "Channel subscriptions held on this node");
    metrics::describe_counter!(
        PUBLISHED,
        "Messages published: one per channel of an API trigger, one per client event"
    );
    metrics::describe_counter!(
        DELIVERED,
        "Messages delivered: one per subscriber a message was queued for"
    );
    metrics::describe_counter!(
        OUTBOX_DROPS,
        "Frames dropped because a connection's outbox was full (it is then closed with 4100)"
    );
    metrics::describe_counter!(CLOSED, "Connections closed or refused, by close code");
    metrics::describe_gauge!(
        FANOUT_WAITING,
        "Deliveries waiting in this node's fan-out queues (apps over their deliveries in flight)"
    );
    metrics::describe_counter!(
        FANOUT_REFUSED,
        "Subscribers closed with 4100 because their app's fan-out backlog was full"
    );
    metrics::describe_gauge!(
        FANOUT_PACE,
        "The rate the app with the most deliveries waiting is paced to while this node's \
         workers run late and another app is active (0: no app is paced)"
    );
    metrics::describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request durations by route template"
    );
    metrics::describe_histogram!(
        REDIS_PING_DURATION,
        Unit::Seconds,
        "Round trips of the broker's health pings to Redis (every second, with --broker)"
    );
    metrics::describe_histogram!(
        WORKER_LAG,
        Unit::Seconds,
        "How late a worker thread ran a timer task past its deadline (every 100 ms per worker): \
         how long the worker's other work held up everything queued on it"
    );
    metrics::describe_histogram!(
        CEILING_USAGE,
        "An app's connections over its plan's connection ceiling at each admission, by the \
         plan's ceiling (apps without a ceiling are not recorded)"
    );
    crate::metrics_per_app::describe();
    crate::admission::describe_metrics();
}

/// Series that alerts and dashboards read are there from the start, at zero, rather than
/// appearing with the first event.
fn register_at_start() {
    metrics::gauge!(CONNECTIONS).increment(0.0);
    metrics::gauge!(SUBSCRIPTIONS).increment(0.0);
    for source in ["api", "client"] {
        metrics::counter!(PUBLISHED, "source" => source).increment(0);
    }
    metrics::counter!(DELIVERED).increment(0);
    metrics::counter!(OUTBOX_DROPS).increment(0);
    metrics::gauge!(FANOUT_WAITING).increment(0.0);
    metrics::counter!(FANOUT_REFUSED).increment(0);
    metrics::gauge!(FANOUT_PACE).set(0.0);
    for code in CLOSE_CODES_AT_START {
        metrics::counter!(CLOSED, "code" => code.to_string()).increment(0);
    }
    crate::admission::register_metrics_at_start();
}

/// Handles registered once, so the hot path does not look the metric up by name.
pub struct Metrics {
    pub connections: Gauge,
    pub subscriptions: Gauge,
    pub published_by_api: Counter,
    pub published_by_clients: Counter,
    pub delivered: Counter,
    pub outbox_drops: Counter,
    pub fanout_waiting: Gauge,
    pub fanout_refused: Counter,
    pub fanout_pace: Gauge,
}

/// The process's metric handles; installs the recorder first if need be.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        prometheus();
        Metrics {
            connections: metrics::gauge!(CONNECTIONS),
            subscriptions: metrics::gauge!(SUBSCRIPTIONS),
            published_by_api: metrics::counter!(PUBLISHED, "source" => "api"),
            published_by_clients: metrics::counter!(PUBLISHED, "source" => "client"),
            delivered: metrics::counter!(DELIVERED),
            outbox_drops: metrics::counter!(OUTBOX_DROPS),
            fanout_waiting: metrics::gauge!(FANOUT_WAITING),
            fanout_refused: metrics::counter!(FANOUT_REFUSED),
            fanout_pace: metrics::gauge!(FANOUT_PACE),
        }
    })
}

/// A connection ended (or was refused) with this close code.
pub fn connection_closed(code: u16) {
    prometheus();
    metrics::counter!(CLOSED, "code" => code.to_string()).increment(1);
}

/// The broker's health ping to Redis took `round_trip`.
pub fn redis_pinged(round_trip: std::time::Duration) {
    prometheus();
    metrics::histogram!(REDIS_PING_DURATION).record(round_trip.as_secs_f64());
}

/// An app was admitted with `in_use` of its plan's `ceiling` connections (cluster-wide, this
/// connection included). The ceiling stands for the plan: the edge's view of an app has its
/// limits, not its plan's name, and plans have few distinct ceilings.
pub fn connection_ceiling_usage(in_use: u64, ceiling: u64) {
    if ceiling == 0 {
        return;
    }
    prometheus();
    let ratio = in_use as f64 / ceiling as f64;
    metrics::histogram!(CEILING_USAGE, "plan_ceiling" => ceiling.to_string()).record(ratio);
}

/// A worker ran its lag probe `lag` past the probe's deadline (`worker_lag`).
pub fn worker_lagged(lag: std::time::Duration) {
    prometheus();
    metrics::histogram!(WORKER_LAG).record(lag.as_secs_f64());
}

/// Keeps histograms from growing between scrapes; run every few seconds.
pub fn run_upkeep() {
    prometheus().run_upkeep();
}

/// `GET /metrics`: the Prometheus text exposition: the process's recorder, then this node's
/// memory figures (outboxes, history, cache channels) and whether it is draining, read from
/// the edge's state.
pub async fn render(state: web::Data<EdgeState>) -> HttpResponse {
    let mut body = prometheus().render();
    body.push_str(&node_figures(&state));
    HttpResponse::Ok()
        .content_type(exposition_type())
        .body(body)
}

/// `GET /metrics` of a process without an edge (`switchboard control`): the recorder alone
/// (the control plane's figures), with no node figures.
pub async fn render_process() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(exposition_type())
        .body(prometheus().render())
}

fn exposition_type() -> ContentType {
    ContentType(
        "text/plain; version=0.0.4; charset=utf-8"
            .parse()
            .expect("a valid media type"),
    )
}

/// Name, type, help and the values by `store` label (`""`: no label) of one node figure.
type NodeFigure<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, u64)]);

/// The figures of what this node holds in memory for clients and tenants. They are rendered
/// from the edge's own counters rather than kept in the global recorder, so each edge of a
/// process (tests start many) reports its own.
fn node_figures(state: &EdgeState) -> String {
    let outboxes = &state.outbox_stats;
    let history = state.cluster.broker.history_usage();
    let cache = state.cluster.cache.usage();
    let draining = u64::from(state.readiness.is_draining());
    let figures: [NodeFigure; 7] = [
        (
            OUTBOX_BYTES,
            "gauge",
            "Bytes queued in this node's connection outboxes",
            &[("", outboxes.queued_bytes())],
        ),
        (
            OUTBOX_PEAK_BYTES,
            "gauge",
            "The most bytes one outbox of this node has held",
            &[("", outboxes.peak_bytes())],
        ),
        (
            SLOW_CONSUMERS,
            "counter",
            "Connections closed because their outbox was full (4100)",
            &[("", outboxes.overflows())],
        ),
        (
            STORED_BYTES,
            "gauge",
            "Bytes of channel history and cached events kept, charged to the byte budgets",
            &[("history", history.bytes), ("cache", cache.bytes)],
        ),
        (
            STORED_EVICTIONS,
            "counter",
            "Events evicted by a byte or channel budget (history: events; cache: events)",
            &[("history", history.evictions), ("cache", cache.evictions)],
        ),
        (
            STORED_CHANNELS,
            "gauge",
            "Channels with kept history or a cached event",
            &[("history", history.channels), ("cache", cache.channels)],
        ),
        (
            DRAINING,
            "gauge",
            "1 once this node is draining (SIGTERM): /readyz answers 503, new clients are refused",
            &[("", draining)],
        ),
    ];
    let mut text = String::new();
    for (name, kind, help, values) in figures {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (store, value) in values {
            match *store {
                "" => text.push_str(&format!("{name} {value}\n")),
                store => text.push_str(&format!("{name}{{store=\"{store}\"}} {value}\n")),
            }
        }
    }
    text.push_str(&format!(
        "# HELP {DEPENDENCY_TROUBLE} 1 while a dependency (e.g. the broker) is in trouble\n\
         # TYPE {DEPENDENCY_TROUBLE} gauge\n"
    ));
    let dependencies = state.health.dependencies();
    for (dependency, trouble) in &dependencies {
        let value = u8::from(trouble.is_some());
        text.push_str(&format!(
            "{DEPENDENCY_TROUBLE}{{dependency=\"{dependency}\"}} {value}\n"
        ));
    }
    // With a broker, its health watch registers the `broker` dependency at start.
    if let Some((_, trouble)) = dependencies.iter().find(|(name, _)| *name == "broker") {
        let up = u8::from(trouble.is_none());
        text.push_str(&format!(
            "# HELP {REDIS_UP} 1 while the broker's Redis answers the health pings (with --broker)\n\
             # TYPE {REDIS_UP} gauge\n{REDIS_UP} {up}\n"
        ));
    }
    if let Some(console) = &state.console {
        let stats = &console.stats;
        text.push_str(&format!(
            "# HELP {CONSOLE_EVENTS} Debug console events of watched apps, by what became of them\n\
             # TYPE {CONSOLE_EVENTS} counter\n"
        ));
        for (outcome, count) in [
            ("recorded", &stats.recorded),
            ("published", &stats.published),
            ("dropped", &stats.dropped),
        ] {
            let count = count.load(std::sync::atomic::Ordering::Relaxed);
            text.push_str(&format!(
                "{CONSOLE_EVENTS}{{outcome=\"{outcome}\"}} {count}\n"
            ));
        }
    }
    text
}

/// Console events (see `console`): `recorded`, `published`, `dropped`.
pub const CONSOLE_EVENTS: &str = "switchboard_console_events_total";

/// Middleware timing every routed HTTP request by its route template (`/apps/{app_id}/events`);
/// WebSocket upgrades, `/metrics` and unrouted paths are left out. Mount with
/// `actix_web::middleware::from_fn(edge::metrics::time_requests)`.
pub async fn time_requests(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let response = next.call(request).await?;
    if let Some(endpoint) = response.request().match_pattern()
        && !endpoint.ends_with("/app/{key}")
        && endpoint != "/metrics"
    {
        prometheus();
        metrics::histogram!(HTTP_DURATION, "endpoint" => endpoint)
            .record(started.elapsed().as_secs_f64());
    }
    Ok(response)
}
