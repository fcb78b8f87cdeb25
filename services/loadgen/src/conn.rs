//! One subscriber connection: TCP connect (optionally from a chosen loopback source address),
//! WebSocket handshake, Pusher subscribe (or an nchan `/sub/{channel}` socket), then read until
//! told to stop, answering pings and recording every benchmark payload.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::plan::Target;
use crate::stats::{Seen, Shared};

type Ws = WebSocketStream<TcpStream>;

/// Event name the publisher uses on the Pusher target.
pub const BENCH_EVENT: &str = "bench";

pub struct ConnSpec {
    pub id: usize,
    pub target: Target,
    pub server: SocketAddr,
    pub source: Option<IpAddr>,
    pub ws_url: String,
    pub channel: String,
    /// Channels subscribed after `channel` (`--channels-per-connection`), WebSocket only.
    pub more_channels: Vec<String>,
    pub handshake_timeout: Duration,
    /// Sequence numbers at or above this are out of range for this channel; `None` when this
    /// process publishes nothing (no duplicate tracking).
    pub seq_limit: Option<u64>,
    /// Expected payload size, to size the read buffer.
    pub payload: usize,
}

/// What happened to a connection during the ramp.
pub struct RampResult {
    pub id: usize,
    pub result: Result<(), String>,
}

/// How a connection that had been established ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// Told to stop by the run.
    Stopped,
    /// The server or the network ended it first.
    Dropped(String),
    /// Never got established.
    Failed,
}

pub(crate) fn ws_config(payload: usize) -> WebSocketConfig {
    // tungstenite allocates (and zeroes, on every read) a read buffer of this size per socket;
    // the default 128 KiB costs memory and CPU. Size it to the frames we expect. Write eagerly.
    let read_buffer = (payload + 512).next_power_of_two().clamp(1024, 64 * 1024);
    WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

pub async fn run(
    spec: ConnSpec,
    shared: Arc<Shared>,
    ramp: Arc<Semaphore>,
    ramp_tx: mpsc::UnboundedSender<RampResult>,
    mut stop: watch::Receiver<bool>,
) -> End {
    let established = {
        let Ok(_permit) = ramp.acquire().await else {
            return End::Failed;
        };
        if *stop.borrow() {
            return End::Failed;
        }
        match tokio::time::timeout(spec.handshake_timeout, establish(&spec)).await {
            Ok(Ok(ws)) => Ok(ws),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(_) => Err(format!(
                "handshake timed out after {:?}",
                spec.handshake_timeout
            )),
        }
    };
    let mut ws = match established {
        Ok(ws) => {
            let _ = ramp_tx.send(RampResult {
                id: spec.id,
                result: Ok(()),
            });
            ws
        }
        Err(e) => {
            let _ = ramp_tx.send(RampResult {
                id: spec.id,
                result: Err(e),
            });
            return End::Failed;
        }
    };
    drop(ramp_tx);

    let mut seen = Seen::new(spec.seq_limit);
    // One stop future for the whole loop (re-creating it per message costs measurable CPU).
    let stopped = stop.wait_for(|s| *s).map(|r| r.is_ok());
    let mut stopped = std::pin::pin!(stopped);
    let end = loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break End::Stopped,
            msg = ws.next() => match msg {
                None => break End::Dropped("stream ended".into()),
                Some(Err(e)) => break End::Dropped(e.to_string()),
                Some(Ok(Message::Close(frame))) => {
                    break End::Dropped(match frame {
                        Some(f) => format!("closed by server: {} {}", u16::from(f.code), f.reason),
                        None => "closed by server".into(),
                    })
                }
                Some(Ok(Message::Text(text))) => {
                    if let Err(e) = on_text(&spec, &shared, &mut seen, &mut ws, text.as_str()).await {
                        break End::Dropped(format!("{e:#}"));
                    }
                }
                Some(Ok(Message::Binary(bytes))) => {
                    if spec.target == Target::Nchan {
                        shared.record(spec.id, &mut seen, &String::from_utf8_lossy(&bytes));
                    }
                }
                // Ping → pong is answered by tungstenite itself.
                Some(Ok(_)) => {}
            }
        }
    };
    if end == End::Stopped {
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    }
    end
}

async fn on_text(
    spec: &ConnSpec,
    shared: &Shared,
    seen: &mut Seen,
    ws: &mut Ws,
    text: &str,
) -> anyhow::Result<()> {
    match spec.target {
        Target::Nchan => shared.record(spec.id, seen, text),
        Target::Pusher => {
            let Ok(frame) = serde_json::from_str::<Frame<'_>>(text) else {
                return Ok(());
            };
            match &*frame.event {
                BENCH_EVENT => {
                    if let Data::Str(data) = &frame.data {
                        shared.record(spec.id, seen, data);
                    }
                }
                "pusher:ping" => {
                    ws.send(Message::text(r#"{"event":"pusher:pong","data":{}}"#))
                        .await
                        .context("sending pusher:pong")?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

async fn establish(spec: &ConnSpec) -> anyhow::Result<Ws> {
    let socket = if spec.server.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .context("creating socket")?;
    if let Some(src) = spec.source {
        socket
            .bind(SocketAddr::new(src, 0))
            .with_context(|| format!("binding source address {src}"))?;
    }
    let stream = socket
        .connect(spec.server)
        .await
        .with_context(|| format!("connecting to {}", spec.server))?;
    stream.set_nodelay(true).ok();
    let (mut ws, _response) = tokio_tungstenite::client_async_with_config(
        spec.ws_url.as_str(),
        stream,
        Some(ws_config(spec.payload)),
    )
    .await
    .context("websocket handshake")?;
    if spec.target == Target::Pusher {
        expect_event(&mut ws, "pusher:connection_established", None).await?;
        let subscribe = serde_json::json!({
            "event": "pusher:subscribe",
            "data": {"auth": "", "channel": spec.channel},
        });
        ws.send(Message::text(subscribe.to_string()))
            .await
            .context("sending pusher:subscribe")?;
        expect_event(
            &mut ws,
            "pusher_internal:subscription_succeeded",
            Some(&spec.channel),
        )
        .await?;
        // All sent at once, then every answer awaited: the server's rate, not a round trip's.
        for channel in &spec.more_channels {
            let subscribe = serde_json::json!({
                "event": "pusher:subscribe",
                "data": {"auth": "", "channel": channel},
            });
            ws.send(Message::text(subscribe.to_string()))
                .await
                .context("sending pusher:subscribe")?;
        }
        for channel in &spec.more_channels {
            expect_event(
                &mut ws,
                "pusher_internal:subscription_succeeded",
                Some(channel),
            )
            .await?;
        }
    }
    Ok(ws)
}

/// Reads frames until `event` (on `channel`, if given) arrives; errors on a Pusher error, a
/// close, or after 16 unrelated frames.
async fn expect_event(ws: &mut Ws, event: &str, channel: Option<&str>) -> anyhow::Result<()> {
    for _ in 0..16 {
        let msg = ws
            .next()
            .await
            .ok_or_else(|| anyhow!("connection ended while waiting for {event}"))?
            .with_context(|| format!("waiting for {event}"))?;
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(f) => bail!("closed while waiting for {event}: {f:?}"),
            _ => continue,
        };
        let frame: Frame<'_> =
            serde_json::from_str(text.as_str()).with_context(|| format!("bad frame {text}"))?;
        if frame.event == event && (channel.is_none() || frame.channel.as_deref() == channel) {
            return Ok(());
        }
        if frame.event == "pusher:error" || frame.event == "pusher:subscription_error" {
            bail!(
                "{} while waiting for {event}: {}",
                frame.event,
                text.as_str()
            );
        }
        if frame.event == "pusher:ping" {
            ws.send(Message::text(r#"{"event":"pusher:pong","data":{}}"#))
                .await?;
        }
    }
    bail!("{event} not received within 16 frames")
}

/// A Pusher frame's event and, when a string, its data (for the HTTP carriers' subscribers).
pub fn bench_data(text: &str) -> (Option<String>, Option<String>) {
    match serde_json::from_str::<Frame<'_>>(text) {
        Ok(frame) => {
            let data = match frame.data {
                Data::Str(data) => Some(data.into_owned()),
                _ => None,
            };
            (Some(frame.event.into_owned()), data)
        }
        Err(_) => (None, None),
    }
}

/// The parts of a Pusher frame the client looks at, borrowed from the text where possible.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Data<'a>,
}

/// `data` is a string for channel events, but may be an object (e.g. some `pusher:error`s).
#[derive(Default)]
enum Data<'a> {
    #[default]
    Absent,
    Str(Cow<'a, str>),
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Data<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Data<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Data<'a>, E> {
                Ok(Data::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Data<'a>, E> {
                Ok(Data::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Data<'a>, E> {
                Ok(Data::Str(Cow::Owned(v)))
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Data<'a>, M::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Data::Other)
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut s: S) -> Result<Data<'a>, S::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Data::Other)
            }
            fn visit_unit<E>(self) -> Result<Data<'a>, E> {
                Ok(Data::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Data<'a>, E> {
                Ok(Data::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Data<'a>, E> {
                Ok(Data::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Data<'a>, E> {
                Ok(Data::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Data<'a>, E> {
                Ok(Data::Other)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_parsing_borrows_string_data_and_tolerates_objects() {
        let f: Frame<'_> =
            serde_json::from_str(r#"{"event":"bench","channel":"bench-0","data":"1:2:xx"}"#)
                .unwrap();
        assert_eq!(f.event, "bench");
        assert!(matches!(f.data, Data::Str(Cow::Borrowed("1:2:xx"))));
        let f: Frame<'_> =
            serde_json::from_str(r#"{"event":"pusher:error","data":{"code":4001,"message":"no"}}"#)
                .unwrap();
        assert!(matches!(f.data, Data::Other));
        let f: Frame<'_> = serde_json::from_str(r#"{"event":"pusher:ping"}"#).unwrap();
        assert!(matches!(f.data, Data::Absent));
    }
}
