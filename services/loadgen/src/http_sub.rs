//! One subscriber over an HTTP carrier: Server-Sent Events or long polling, on Switchboard
//! (`/sb/app/{key}/sse`, `/sb/app/{key}/poll`, as our SDK uses them) or on nchan (its
//! EventSource and long-poll subscribers). Same contract as `conn::run`: established once
//! subscribed, then every benchmark payload recorded until told to stop.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use futures_util::FutureExt;
use tokio::net::TcpSocket;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::conn::{BENCH_EVENT, ConnSpec, End, RampResult, bench_data};
use crate::plan::{Carrier, Target};
use crate::stats::{Seen, Shared};
use crate::wire::{Counted, Counters, Http};

/// What a subscriber needs besides `ConnSpec`.
pub struct HttpSpec {
    pub carrier: Carrier,
    /// The server's `Host`.
    pub host: String,
    pub key: String,
}

/// How long a Switchboard long poll is held (the SDK's).
const LONG_POLL_WAIT_S: u64 = 25;

pub async fn run(
    spec: ConnSpec,
    http: Arc<HttpSpec>,
    shared: Arc<Shared>,
    ramp: Arc<Semaphore>,
    ramp_tx: mpsc::UnboundedSender<RampResult>,
    mut stop: watch::Receiver<bool>,
) -> End {
    let mut subscriber = Subscriber {
        seen: Seen::new(spec.seq_limit),
        spec,
        http,
        shared,
        session: String::new(),
        cursor: String::new(),
        sse_buffer: String::new(),
        sse_chunked: true,
        validators: None,
    };
    let established = {
        let Ok(_permit) = ramp.acquire().await else {
            return End::Failed;
        };
        if *stop.borrow() {
            return End::Failed;
        }
        let timeout = subscriber.spec.handshake_timeout;
        match tokio::time::timeout(timeout, subscriber.establish()).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(_) => Err(format!("subscribe timed out after {timeout:?}")),
        }
    };
    let id = subscriber.spec.id;
    let connection = match established {
        Ok(connection) => connection,
        Err(e) => {
            let _ = ramp_tx.send(RampResult { id, result: Err(e) });
            return End::Failed;
        }
    };
    let _ = ramp_tx.send(RampResult { id, result: Ok(()) });
    drop(ramp_tx);
    let stopped = stop.wait_for(|s| *s).map(|r| r.is_ok());
    tokio::select! {
        biased;
        _ = stopped => End::Stopped,
        result = subscriber.receive(connection) => match result {
            Ok(()) => End::Dropped("stream ended".into()),
            Err(e) => End::Dropped(format!("{e:#}")),
        },
    }
}

struct Subscriber {
    spec: ConnSpec,
    http: Arc<HttpSpec>,
    shared: Arc<Shared>,
    seen: Seen,
    session: String,
    cursor: String,
    sse_buffer: String,
    /// Whether the event stream's body is chunked (else read as it comes).
    sse_chunked: bool,
    /// nchan long polling: the last answer's `Last-Modified` and `Etag`, sent back.
    validators: Option<(String, String)>,
}

impl Subscriber {
    async fn connect(&self) -> anyhow::Result<Http> {
        let address: SocketAddr = self.spec.server;
        let socket = if address.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }?;
        if let Some(source) = self.spec.source {
            socket.bind(SocketAddr::new(source, 0))?;
        }
        let stream = socket
            .connect(address)
            .await
            .with_context(|| format!("connecting to {address}"))?;
        stream.set_nodelay(true).ok();
        Ok(Http::new(Counted::from_stream(
            stream,
            Arc::new(Counters::default()),
        )))
    }

    fn get(&self, path: &str, accept: &str, extra_headers: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: {accept}\r\n{extra_headers}\r\n",
            self.http.host
        )
    }

    fn sb_path(&self, carrier: &str, extra: &str) -> String {
        let subs = format!(r#"[{{"channel":"{}"}}]"#, self.spec.channel);
        let mut path = format!("/sb/app/{}/{carrier}?subs={}", self.http.key, encode(&subs));
        if !self.session.is_empty() {
            path += &format!("&session={}", encode(&self.session));
        }
        if !self.cursor.is_empty() {
            path += &format!("&cursor={}", encode(&self.cursor));
        }
        path + extra
    }

    /// Opens the subscription; returns the connection to keep reading.
    async fn establish(&mut self) -> anyhow::Result<Http> {
        let mut http = self.connect().await?;
        match (self.spec.target, self.http.carrier) {
            (Target::Pusher, Carrier::Sse) => {
                let path = self.sb_path("sse", "&ids=delta");
                http.send(&self.get(&path, "text/event-stream", ""), b"")
                    .await?;
                let (status, _, chunked) = http.head().await?;
                ensure!(status == 200, "sse answered {status}");
                // Close-delimited since the edge serves streams itself (`direct_stream`).
                self.sse_chunked = chunked;
                while !self.sse_events(&mut http, true).await? {}
            }
            (Target::Pusher, Carrier::LongPoll) => {
                // As the SDK: the first poll answers at once; then held polls until subscribed.
                let mut wait = 0;
                while !self.poll(&mut http, wait).await? {
                    wait = LONG_POLL_WAIT_S;
                }
            }
            (Target::Nchan, Carrier::Sse) => {
                let path = format!("/sub/{}", self.spec.channel);
                http.send(&self.get(&path, "text/event-stream", ""), b"")
                    .await?;
                let (status, _, chunked) = http.head().await?;
                ensure!(status == 200, "nchan eventsource answered {status}");
                self.sse_chunked = chunked;
            }
            (Target::Nchan, Carrier::LongPoll) => {
                // nchan holds the request until a message: subscribed once it is sent.
                self.nchan_request(&mut http).await?;
            }
            (_, Carrier::Ws) => bail!("WebSocket subscribers are conn::run's"),
        }
        Ok(http)
    }

    async fn receive(&mut self, mut http: Http) -> anyhow::Result<()> {
        loop {
            match (self.spec.target, self.http.carrier) {
                (Target::Pusher, Carrier::LongPoll) => {
                    self.poll(&mut http, LONG_POLL_WAIT_S).await?;
                }
                (Target::Nchan, Carrier::LongPoll) => {
                    let (status, body) = http.response().await?;
                    ensure!(status == 200, "nchan long poll answered {status}");
                    self.nchan_answer(&http, &body)?;
                    self.nchan_request(&mut http).await?;
                }
                (_, Carrier::Sse) => {
                    self.sse_events(&mut http, false).await?;
                }
                (_, Carrier::Ws) => bail!("WebSocket subscribers are conn::run's"),
            }
        }
    }

    /// Reads one chunk of an event stream and records its events; `true` once our
    /// subscription is confirmed (when `until_subscribed`).
    async fn sse_events(
        &mut self,
        http: &mut Http,
        until_subscribed: bool,
    ) -> anyhow::Result<bool> {
        let mut chunk = Vec::new();
        if !self.sse_chunked {
            chunk = http.next_bytes().await?;
        } else if !http.next_chunk(&mut chunk).await? {
            bail!("event stream ended");
        }
        self.sse_buffer.push_str(std::str::from_utf8(&chunk)?);
        let mut subscribed = false;
        while let Some(end) = self.sse_buffer.find("\n\n") {
            let block: String = self.sse_buffer.drain(..end + 2).collect();
            for line in block.lines() {
                let Some(data) = line.strip_prefix("data: ") else {
                    continue;
                };
                match self.spec.target {
                    Target::Nchan => self.shared.record(self.spec.id, &mut self.seen, data),
                    Target::Pusher => subscribed |= self.pusher_frame(data, until_subscribed)?,
                }
            }
        }
        Ok(subscribed)
    }

    /// Records a Pusher frame's payload; `true` for our `subscription_succeeded`.
    fn pusher_frame(&mut self, text: &str, until_subscribed: bool) -> anyhow::Result<bool> {
        let (event, data) = bench_data(text);
        match event.as_deref() {
            Some(BENCH_EVENT) => {
                if let Some(data) = data {
                    self.shared.record(self.spec.id, &mut self.seen, &data);
                }
                Ok(false)
            }
            Some("pusher_internal:subscription_succeeded") => Ok(true),
            Some("pusher:error" | "switchboard:closed") if until_subscribed => {
                bail!("refused: {text}")
            }
            _ => Ok(false),
        }
    }

    /// One Switchboard poll; `true` if it carried our `subscription_succeeded`.
    async fn poll(&mut self, http: &mut Http, wait: u64) -> anyhow::Result<bool> {
        let path = self.sb_path("poll", &format!("&wait={wait}"));
        http.send(&self.get(&path, "*/*", ""), b"").await?;
        let (status, body) = http.response().await?;
        ensure!(status == 200, "poll answered {status}");
        let answer: serde_json::Value = serde_json::from_slice(&body).context("poll answer")?;
        if let Some(session) = answer["session"].as_str() {
            session.clone_into(&mut self.session);
        }
        if let Some(cursor) = answer["cursor"].as_str().filter(|c| !c.is_empty()) {
            cursor.clone_into(&mut self.cursor);
        }
        let mut subscribed = false;
        for frame in answer["frames"].as_array().into_iter().flatten() {
            subscribed |= self.pusher_frame(&frame.to_string(), wait == 0)?;
        }
        Ok(subscribed)
    }

    async fn nchan_request(&self, http: &mut Http) -> anyhow::Result<()> {
        let validators = match &self.validators {
            Some((modified, etag)) => {
                format!("If-Modified-Since: {modified}\r\nIf-None-Match: {etag}\r\n")
            }
            None => String::new(),
        };
        let path = format!("/lp/{}", self.spec.channel);
        http.send(&self.get(&path, "*/*", &validators), b"").await
    }

    /// An nchan long-poll answer: one message, or several as `multipart/mixed`.
    fn nchan_answer(&mut self, http: &Http, body: &[u8]) -> anyhow::Result<()> {
        let body = std::str::from_utf8(body)?;
        match http.header("content-type").and_then(boundary) {
            Some(boundary) => {
                for part in body.split(&format!("--{boundary}")) {
                    if let Some((_, payload)) = part.split_once("\r\n\r\n") {
                        let payload = payload.strip_suffix("\r\n").unwrap_or(payload);
                        self.shared.record(self.spec.id, &mut self.seen, payload);
                    }
                }
            }
            None => self.shared.record(self.spec.id, &mut self.seen, body),
        }
        let header = |name| http.header(name).unwrap_or_default().to_owned();
        self.validators = Some((header("last-modified"), header("etag")));
        Ok(())
    }
}

/// The boundary of a `multipart/mixed; boundary=…` content type.
fn boundary(content_type: &str) -> Option<String> {
    let (_, rest) = content_type.split_once("boundary=")?;
    Some(rest.split(';').next()?.trim_matches('"').to_owned())
}

/// As `encodeURIComponent`.
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
