//! `loadgen traffic`: bytes on the wire per delivered event, per carrier. N clients of one
//! carrier subscribe to one public channel; the HTTP API publishes an event at a set rate;
//! every byte each client's TCP socket reads or writes is counted (see `wire.rs`), over a
//! window that starts once every client is subscribed. Loopback, bounded in time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use protocol::sign::{body_md5_hex, hmac_hex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::wire::{Counted, Counters, Http, Scanner};

const CHANNEL: &str = "traffic";
const EVENT: &str = "bench";
/// In every event's data; survives every carrier's encoding (letters only).
const MARK: &str = "TRFXMARK";
const SUBSCRIBED: &str = "subscription_succeeded";
/// In every channel event frame, full or delta, once (unescaped: not in any `data`).
const STAMP: &str = "\"serial\":";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Carrier {
    Ws,
    Sse,
    LongPoll,
    Poll,
    Stream,
    Iframe,
    XhrStreaming,
    XhrPolling,
}

#[derive(Parser, Debug)]
#[command(
    name = "loadgen traffic",
    about = "Bytes on the wire per delivered event, per carrier"
)]
pub struct TrafficArgs {
    #[arg(long, value_enum)]
    carrier: Carrier,
    #[arg(long, default_value = "127.0.0.1:6001")]
    server: SocketAddr,
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Events published per second (to the one channel).
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Measurement window, seconds.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Bytes of event data.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Delay between polls for `poll` (the SDK's `pollingInterval`, 2000 ms by default).
    #[arg(long, default_value_t = 2000)]
    poll_interval_ms: u64,
    #[arg(long, default_value = "bench")]
    app_id: String,
    #[arg(long, default_value = "benchkey")]
    key: String,
    #[arg(long, default_value = "benchsecret")]
    secret: String,
    /// pusher-js's `httpPath`.
    #[arg(long, default_value = "/pusher")]
    http_path: String,
    /// Clients connecting at once.
    #[arg(long, default_value_t = 100)]
    ramp_concurrency: usize,
    /// Publish a ticker instead of `--payload` bytes: a ~2 KiB JSON document of 50 prices,
    /// 3 of them changing per event. Events are then counted by their `"serial":` stamp.
    #[arg(long)]
    ticker: bool,
    /// Subscribe with delta updates (`"delta":"fossil"`, our SDK's option); with `--ticker`.
    #[arg(long, requires = "ticker")]
    delta: bool,
    /// SSE and HTTP streaming: a whole cursor after every frame, as before short ids (the
    /// SDK asks for `ids=delta`: a full cursor now and then, a delta after the others).
    #[arg(long)]
    full_ids: bool,
}

/// Prices in the ticker document.
const TICKER_PRICES: u64 = 50;
/// Prices that change per event.
const TICKER_CHANGES: u64 = 3;

/// The ticker document of event `seq`: 50 prices, each moved by every event that changed it.
fn ticker_document(seq: u64) -> String {
    let prices: Vec<String> = (0..TICKER_PRICES)
        .map(|i| {
            // Event `n` changes prices n*7, n*7+1, n*7+2 (mod 50): count the moves up to `seq`.
            let moves = (0..=seq)
                .filter(|n| (0..TICKER_CHANGES).any(|k| (n * 7 + k) % TICKER_PRICES == i))
                .count() as u64;
            let cents = 10_000 + i * 137 + moves * 25;
            format!(
                r#"{{"symbol":"SYM{i:02}","price":{}.{:02},"change":0.{:02}}}"#,
                cents / 100,
                cents % 100,
                (moves * 25) % 100
            )
        })
        .collect();
    format!(r#"{{"prices":[{}]}}"#, prices.join(","))
}

struct Client {
    args: Arc<TrafficArgs>,
    id: usize,
    counters: Arc<Counters>,
    ready: Arc<std::sync::atomic::AtomicUsize>,
    permit: Option<OwnedSemaphorePermit>,
    marks: Scanner,
    subscribed: Scanner,
    deltas: Scanner,
}

impl Client {
    /// Scans received bytes: counts events, notes the subscription.
    fn seen(&mut self, data: &[u8]) {
        let events = self.marks.feed(data);
        self.counters.events.fetch_add(events, Ordering::Relaxed);
        let deltas = self.deltas.feed(data);
        self.counters.deltas.fetch_add(deltas, Ordering::Relaxed);
        if self.subscribed.feed(data) > 0 && self.permit.take().is_some() {
            self.ready.fetch_add(1, Ordering::Relaxed);
        }
    }
    async fn connect(&self) -> anyhow::Result<Http> {
        Ok(Http::new(
            Counted::connect(self.args.server, self.counters.clone()).await?,
        ))
    }
    fn get(&self, path_and_query: &str, accept: &str) -> String {
        format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {}\r\nAccept: {accept}\r\n\r\n",
            self.args.server
        )
    }
    fn post(&self, path: &str, length: usize, content_type: &str) -> String {
        format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n",
            self.args.server
        )
    }
    fn sb_url(&self, path: &str, session: &str, cursor: &str, extra: &str) -> String {
        // `[{"channel":"traffic"}]` (with `"delta":"fossil"`), URL-encoded as
        // encodeURIComponent does.
        let delta = if self.args.delta {
            "%2C%22delta%22%3A%22fossil%22"
        } else {
            ""
        };
        let mut url = format!(
            "/sb/app/{}/{path}?subs=%5B%7B%22channel%22%3A%22{CHANNEL}%22{delta}%7D%5D",
            self.args.key
        );
        if !session.is_empty() {
            url += &format!("&session={}", encode(session));
        }
        if !cursor.is_empty() {
            url += &format!("&cursor={}", encode(cursor));
        }
        url + extra
    }
    fn ids(&self) -> &'static str {
        if self.args.full_ids { "" } else { "&ids=delta" }
    }
    fn xhr_base(&self) -> String {
        format!(
            "{}/app/{}/123/s{:07}",
            self.args.http_path, self.args.key, self.id
        )
    }

    async fn run(mut self) -> anyhow::Result<()> {
        match self.args.carrier {
            Carrier::Ws => self.websocket().await,
            Carrier::Sse => self.stream("sse", self.ids(), "text/event-stream").await,
            Carrier::Stream => self.stream("stream", self.ids(), "*/*").await,
            Carrier::Iframe => {
                let extra = "&callback=cb&origin=http%3A%2F%2Flocalhost%3A8080";
                self.stream("iframe", extra, "text/html").await
            }
            Carrier::LongPoll => self.poll(25).await,
            Carrier::Poll => self.poll(0).await,
            Carrier::XhrStreaming => self.xhr(true).await,
            Carrier::XhrPolling => self.xhr(false).await,
        }
    }

    async fn websocket(&mut self) -> anyhow::Result<()> {
        let stream = Counted::connect(self.args.server, self.counters.clone()).await?;
        let url = format!(
            "ws://{}/app/{}?protocol=7&client=js&version=8.4.0&flash=false",
            self.args.server, self.args.key
        );
        let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await?;
        let delta = if self.args.delta {
            r#","delta":"fossil""#
        } else {
            ""
        };
        let subscribe =
            format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"{CHANNEL}"{delta}}}}}"#);
        ws.send(Message::text(subscribe)).await?;
        while let Some(message) = ws.next().await {
            if let Message::Text(text) = message? {
                self.seen(text.as_bytes());
            }
        }
        Ok(())
    }

    /// SSE, NDJSON streaming, forever frame: one request, then the stream.
    async fn stream(&mut self, path: &str, extra: &str, accept: &str) -> anyhow::Result<()> {
        let mut http = self.connect().await?;
        http.send(&self.get(&self.sb_url(path, "", "", extra), accept), b"")
            .await?;
        loop {
            let data = http.next_bytes().await?;
            self.seen(&data);
        }
    }

    /// Long polling (`wait` > 0) or polling (`wait=0` every `poll_interval_ms`), as the SDK
    /// does: the first request has `wait=0`; each carries `session` and `cursor`.
    async fn poll(&mut self, wait: u64) -> anyhow::Result<()> {
        let mut http = self.connect().await?;
        let (mut session, mut cursor) = (String::new(), String::new());
        let mut first = true;
        loop {
            let w = if first { 0 } else { wait };
            first = false;
            let url = self.sb_url("poll", &session, &cursor, &format!("&wait={w}"));
            http.send(&self.get(&url, "*/*"), b"").await?;
            let (status, body) = http.response().await?;
            anyhow::ensure!(status == 200, "poll answered {status}");
            self.seen(&body);
            let answer: serde_json::Value = serde_json::from_slice(&body)?;
            if let Some(s) = answer["session"].as_str() {
                session = s.to_owned();
            }
            if let Some(c) = answer["cursor"].as_str().filter(|c| !c.is_empty()) {
                cursor = c.to_owned();
            }
            if wait == 0 {
                tokio::time::sleep(Duration::from_millis(self.args.poll_interval_ms)).await;
            }
        }
    }

    /// pusher-js's `xhr_streaming` / `xhr_polling`: receive requests on one keep-alive
    /// connection, the subscription by `xhr_send` on another once the session is open.
    async fn xhr(&mut self, streaming: bool) -> anyhow::Result<()> {
        let mut http = self.connect().await?;
        let mut sender: Option<Http> = None;
        let path = format!(
            "{}/{}",
            self.xhr_base(),
            if streaming { "xhr_streaming" } else { "xhr" }
        );
        let mut established = Scanner::new("connection_established");
        let request = self.post(&path, 0, "text/plain");
        http.send(&request, b"").await?;
        if streaming {
            http.head().await?;
        }
        loop {
            let data = if streaming {
                http.next_bytes().await?
            } else {
                let (status, body) = http.response().await?;
                anyhow::ensure!(status == 200, "xhr answered {status}");
                http.send(&request, b"").await?;
                body
            };
            self.seen(&data);
            if established.feed(&data) > 0 && sender.is_none() {
                let body = format!(
                    r#"["{{\"event\":\"pusher:subscribe\",\"data\":{{\"channel\":\"{CHANNEL}\"}}}}"]"#
                );
                let mut send = self.connect().await?;
                let send_path = format!("{}/xhr_send", self.xhr_base());
                send.send(
                    &self.post(&send_path, body.len(), "text/plain"),
                    body.as_bytes(),
                )
                .await?;
                send.response().await?;
                sender = Some(send);
            }
        }
    }
}

fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&byte) {
            out.push(byte as char);
        } else {
            out += &format!("%{byte:02X}");
        }
    }
    out
}

async fn publish(args: &TrafficArgs, client: &reqwest::Client, seq: u64) -> anyhow::Result<()> {
    let data = if args.ticker {
        ticker_document(seq)
    } else {
        let mut data = format!("{MARK}{seq}:");
        while data.len() < args.payload {
            data.push('x');
        }
        data
    };
    let body =
        serde_json::to_vec(&serde_json::json!({"name": EVENT, "channel": CHANNEL, "data": data}))?;
    let path = format!("/apps/{}/events", args.app_id);
    let ts = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let query = format!(
        "auth_key={}&auth_timestamp={ts}&auth_version=1.0&body_md5={}",
        args.key,
        body_md5_hex(&body)
    );
    let signature = hmac_hex(&args.secret, &format!("POST\n{path}\n{query}"));
    let url = format!(
        "http://{}{path}?{query}&auth_signature={signature}",
        args.server
    );
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "publish answered {}",
        response.status()
    );
    Ok(())
}

pub fn main(argv: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let args = Arc::new(TrafficArgs::parse_from(argv));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(args));
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn run(args: Arc<TrafficArgs>) -> anyhow::Result<()> {
    let counters = Arc::new(Counters::default());
    let ready = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ramp = Arc::new(Semaphore::new(args.ramp_concurrency));
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    for id in 0..args.clients {
        let permit = ramp.clone().acquire_owned().await?;
        let client = Client {
            args: args.clone(),
            id,
            counters: counters.clone(),
            ready: ready.clone(),
            permit: Some(permit),
            // A ticker's data has no mark, and a delta not even the data: count stamps.
            marks: Scanner::new(if args.ticker { STAMP } else { MARK }),
            subscribed: Scanner::new(SUBSCRIBED),
            deltas: Scanner::new(protocol::delta::DELTA_EVENT),
        };
        let failures = failures.clone();
        tokio::spawn(async move {
            if let Err(e) = client.run().await
                && failures.fetch_add(1, Ordering::Relaxed) == 0
            {
                eprintln!("client {id}: {e:#}");
            }
        });
    }
    while ready.load(Ordering::Relaxed) < args.clients && start.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let subscribed = ready.load(Ordering::Relaxed);
    eprintln!(
        "{subscribed}/{} {:?} clients subscribed in {:.1} s; measuring {} s…",
        args.clients,
        args.carrier,
        start.elapsed().as_secs_f64(),
        args.duration
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    let snapshot = || {
        [
            &counters.down,
            &counters.up,
            &counters.events,
            &counters.requests,
            &counters.deltas,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    };
    let publisher = reqwest::Client::new();
    let before = snapshot();
    let t0 = Instant::now();
    let planned = (args.duration * args.rate).floor() as u64;
    let mut published = 0u64;
    for seq in 0..planned {
        let at = t0 + Duration::from_secs_f64((seq as f64 + 0.5) / args.rate);
        tokio::time::sleep_until(at.into()).await;
        match publish(&args, &publisher, seq).await {
            Ok(()) => published += 1,
            Err(e) => eprintln!("publish {seq}: {e:#}"),
        }
    }
    tokio::time::sleep_until((t0 + Duration::from_secs_f64(args.duration)).into()).await;
    let after = snapshot();
    let [down, up, events, requests, deltas] = [0, 1, 2, 3, 4].map(|i| after[i] - before[i]);
    let per = |bytes: u64| bytes as f64 / events.max(1) as f64;
    println!("carrier            {:?}", args.carrier);
    let payload = if args.ticker {
        format!("ticker ({} B document)", ticker_document(0).len())
    } else {
        format!("{} B", args.payload)
    };
    println!(
        "workload           {} clients ({subscribed} subscribed), {payload} events at {}/s, {} s window{}",
        args.clients,
        args.rate,
        args.duration,
        if args.delta {
            ", delta subscribers"
        } else {
            ""
        }
    );
    println!("published          {published}");
    println!(
        "deliveries         {events} (expected {}, {:.2}%)",
        published * subscribed as u64,
        100.0 * events as f64 / (published * subscribed as u64).max(1) as f64
    );
    println!("deltas received    {deltas}");
    println!("client failures    {}", failures.load(Ordering::Relaxed));
    println!("http requests      {requests}");
    println!("bytes down / up    {down} / {up}");
    println!(
        "per delivered event  down {:.0} B, up {:.0} B, total {:.0} B",
        per(down),
        per(up),
        per(down + up)
    );
    println!(
        "| {:?} | {:.0} | {:.0} | {:.0} | {events} / {} |",
        args.carrier,
        per(down),
        per(up),
        per(down + up),
        published * subscribed as u64
    );
    Ok(())
}
