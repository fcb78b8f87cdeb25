//! The command line and the checked run plan built from it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context, bail, ensure};
use clap::{Parser, ValueEnum};
use serde::Serialize;

/// Hard ceiling on this process's open sockets: the machine's per-process limit is 20,000 and
/// cannot be raised. Tests of more connections need several loadgen processes.
pub(crate) const FD_CEILING: u64 = 19_900;
/// fds kept back for stdio, the runtime, /proc reads and the like.
pub(crate) const FD_RESERVE: u64 = 40;
pub(crate) const MAX_CONNECTIONS: usize = 19_800;
pub(crate) const MAX_DURATION_S: f64 = 3_600.0;
pub(crate) const MAX_EVENTS: f64 = 20_000_000.0;
/// Memory ceiling for the per-subscriber received-sequence bitsets.
pub(crate) const MAX_SEEN_BYTES: f64 = 1024.0 * 1024.0 * 1024.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Target {
    /// Switchboard or any Pusher-protocol-7 server.
    Pusher,
    /// nginx + nchan (reference).
    Nchan,
}

/// How subscribers connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Carrier {
    /// WebSocket (pusher: `/app/{key}`; nchan: `/sub/{channel}`).
    Ws,
    /// Server-Sent Events (pusher: `/sb/app/{key}/sse?ids=delta`, as our SDK; nchan:
    /// EventSource on `/sub/{channel}`).
    Sse,
    /// Long polling (pusher: `/sb/app/{key}/poll?wait=25`, as our SDK; nchan: its long-poll
    /// subscriber on `/lp/{channel}`, multipart answers, published through `/pub_kept/`).
    LongPoll,
}

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "Pusher/nchan load client: idle connection holding and HTTP-publish fan-out with latency, loss and server /proc costs",
    after_help = "One process holds at most ~19,800 connections (per-process limit of 20,000 fds). \
                  For more, run several processes (e.g. extra `--idle` holders), each with its own --source-addrs."
)]
pub(crate) struct Args {
    /// Server type.
    #[arg(long, value_enum, default_value_t = Target::Pusher)]
    pub(crate) target: Target,
    /// How subscribers connect.
    #[arg(long, value_enum, default_value_t = Carrier::Ws)]
    pub(crate) carrier: Carrier,
    /// Base HTTP URL (loopback only) [default: http://127.0.0.1:6001 for pusher, http://127.0.0.1:7101 for nchan].
    #[arg(long)]
    pub(crate) url: Option<String>,
    /// Servers the subscribers connect to, round robin (subscriber i to entry i % n), e.g.
    /// the edges of a cluster; events are still published through --url [default: --url].
    #[arg(long, value_delimiter = ',')]
    pub(crate) subscribe_url: Vec<String>,
    /// A loopback Redis (`redis://127.0.0.1:PORT`) the servers share: its commands are
    /// counted over the measured window (MONITOR) and reported per publish.
    #[arg(long)]
    pub(crate) redis_url: Option<String>,
    /// Pusher app id (HTTP API path).
    #[arg(long, default_value = "bench")]
    pub(crate) app_id: String,
    /// Pusher app key (WebSocket path, API auth_key).
    #[arg(long, default_value = "benchkey")]
    pub(crate) key: String,
    /// Pusher app secret (API request signing).
    #[arg(long, default_value = "benchsecret")]
    pub(crate) secret: String,
    /// WebSocket subscribers to open.
    #[arg(long, default_value_t = 1000)]
    pub(crate) connections: usize,
    /// Channels; subscriber i joins channel i % channels.
    #[arg(long, default_value_t = 1)]
    pub(crate) channels: usize,
    /// With --idle over WebSocket: each connection also subscribes this many − 1 channels of
    /// its own (`{prefix}-{i}-{j}`), e.g. 1,000 × 100 = 100,000 channels of one subscriber.
    #[arg(long, default_value_t = 1)]
    pub(crate) channels_per_connection: usize,
    /// Channel name prefix: pusher `{prefix}-{n}`, nchan `{prefix}_{n}` (nchan's location takes \w+).
    #[arg(long, default_value = "bench")]
    pub(crate) channel_prefix: String,
    /// Events per second published over HTTP (spread round robin over the channels); 0 = none.
    #[arg(long, default_value_t = 100.0)]
    pub(crate) rate: f64,
    /// Event payload bytes (Pusher `data` / nchan body), including the seq:timestamp header.
    #[arg(long, default_value_t = 100)]
    pub(crate) payload: usize,
    /// Measured window in seconds: publishing time, or holding time with --idle.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// Only open and hold the connections for --duration; publish nothing.
    #[arg(long)]
    pub(crate) idle: bool,
    /// Measure the connect + subscribe rate only: open --connections with at most
    /// --ramp-concurrency handshakes in flight and report connections ÷ (first connect to last
    /// `subscription_succeeded`); nothing is held or published afterwards.
    #[arg(long)]
    pub(crate) connect_rate: bool,
    /// Server process(es) to measure, summed (/proc/PID/stat utime+stime, /proc/PID/status
    /// VmRSS). For nginx give the worker pid (or master,worker).
    #[arg(long, value_delimiter = ',')]
    pub(crate) server_pid: Vec<u32>,
    /// Loopback source addresses to bind round robin, e.g. 127.0.0.1,127.0.0.2 (more ephemeral ports).
    #[arg(long, value_delimiter = ',')]
    pub(crate) source_addrs: Vec<IpAddr>,
    /// Maximum WebSocket handshakes (incl. subscribe) in flight during the connect ramp.
    #[arg(long, default_value_t = 200)]
    pub(crate) ramp_concurrency: usize,
    /// Give up on connections not established after this many seconds of ramp.
    #[arg(long, default_value_t = 180.0)]
    pub(crate) ramp_timeout: f64,
    /// Per-connection handshake+subscribe timeout, seconds.
    #[arg(long, default_value_t = 15.0)]
    pub(crate) handshake_timeout: f64,
    /// Seconds to wait after the ramp before reading the server's RSS.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) settle: f64,
    /// Maximum HTTP publish requests in flight.
    #[arg(long, default_value_t = 32)]
    pub(crate) publish_concurrency: usize,
    /// After publishing, wait at most this many seconds for outstanding deliveries.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) drain: f64,
    /// Client runtime worker threads [default: number of CPUs].
    #[arg(long)]
    pub(crate) threads: Option<usize>,
}

/// Validated settings.
pub(crate) struct Plan {
    pub(crate) args: Args,
    /// Where subscribers connect, round robin: (address, `ws://host:port/prefix`).
    pub(crate) subscribe_to: Vec<(SocketAddr, String)>,
    /// The shared Redis to count commands on, if any.
    pub(crate) redis: Option<SocketAddr>,
    pub(crate) origin: String,
    pub(crate) path_prefix: String,
    pub(crate) channel_names: Vec<String>,
    pub(crate) total_events: u64,
    pub(crate) threads: usize,
    pub(crate) nproc: usize,
}

pub(crate) fn plan(mut args: Args) -> anyhow::Result<Plan> {
    if args.connect_rate {
        args.idle = true;
    }
    let default_url = match args.target {
        Target::Pusher => "http://127.0.0.1:6001",
        Target::Nchan => "http://127.0.0.1:7101",
    };
    let url_text = args.url.clone().unwrap_or_else(|| default_url.to_owned());
    let (server, origin, path_prefix) = loopback_http(&url_text, "--url")?;
    let ip = server.ip();
    let mut subscribe_to = Vec::new();
    for text in &args.subscribe_url {
        let (address, origin, prefix) = loopback_http(text, "--subscribe-url")?;
        subscribe_to.push((
            address,
            format!("{}{prefix}", origin.replacen("http", "ws", 1)),
        ));
    }
    if subscribe_to.is_empty() {
        subscribe_to.push((
            server,
            format!("{}{path_prefix}", origin.replacen("http", "ws", 1)),
        ));
    }
    let redis = match &args.redis_url {
        Some(text) => {
            let url =
                reqwest::Url::parse(text).with_context(|| format!("bad --redis-url {text}"))?;
            ensure!(url.scheme() == "redis", "--redis-url must be redis://");
            let host: IpAddr = url
                .host_str()
                .unwrap_or("")
                .parse()
                .with_context(|| format!("--redis-url host must be a loopback IP: {text}"))?;
            ensure!(
                host.is_loopback(),
                "--redis-url {host} is not a loopback address"
            );
            Some(SocketAddr::new(host, url.port().unwrap_or(6379)))
        }
        None => None,
    };
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
        (1..=100).contains(&args.channels_per_connection),
        "--channels-per-connection must be in 1..=100 (a plan's channels per connection)"
    );
    ensure!(
        args.channels_per_connection == 1
            || (args.idle && args.carrier == Carrier::Ws && args.target == Target::Pusher),
        "--channels-per-connection needs --idle, a WebSocket and the pusher target"
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

    let soft = crate::procfs::nofile_soft_limit().unwrap_or(20_000);
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
        subscribe_to,
        redis,
        origin,
        path_prefix,
        channel_names,
        total_events,
        threads,
        nproc,
        args,
    })
}

/// A loopback `http://` URL as (address, `http://host:port` origin, path prefix).
pub(crate) fn loopback_http(
    text: &str,
    flag: &str,
) -> anyhow::Result<(SocketAddr, String, String)> {
    let url = reqwest::Url::parse(text).with_context(|| format!("bad {flag} {text}"))?;
    ensure!(
        url.scheme() == "http",
        "{flag} must be http:// (loopback, no TLS)"
    );
    let ip: IpAddr = match url.host_str() {
        Some("localhost") => Ipv4Addr::LOCALHOST.into(),
        Some(h) => match h.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) => ip,
            Err(_) => bail!("{flag} host must be a loopback IP address, got {h}"),
        },
        None => bail!("{flag} has no host"),
    };
    ensure!(
        ip.is_loopback(),
        "{flag} host {ip} is not a loopback address"
    );
    let port = url.port_or_known_default().unwrap_or(80);
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let prefix = url.path().trim_end_matches('/').to_owned();
    Ok((
        SocketAddr::new(ip, port),
        format!("http://{host}:{port}"),
        prefix,
    ))
}
