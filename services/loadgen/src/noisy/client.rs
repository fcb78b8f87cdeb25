//! One WebSocket subscriber of the noisy-neighbour workload: admitted (connected, subscribed),
//! refused (a close code or a `pusher:error` code during the handshake) or failed; once
//! admitted, held until told to stop, every text frame handed to the caller.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::conn::ws_config;

pub(crate) type Ws = WebSocketStream<TcpStream>;

/// Frames read while waiting for one handshake step before the server counts as not
/// answering it (pings and unrelated frames in between).
const HANDSHAKE_FRAMES: usize = 16;

pub(crate) struct Subscriber {
    pub(crate) server: SocketAddr,
    pub(crate) source: Option<IpAddr>,
    /// `ws://host:port/app/{key}?protocol=7…`.
    pub(crate) ws_url: String,
    pub(crate) channel: String,
    pub(crate) handshake_timeout: Duration,
    pub(crate) payload: usize,
}

/// How a connection attempt ended.
pub(crate) enum Admission {
    Admitted(Box<Ws>),
    /// The server said no: the close code, or the `pusher:error` code (a subscription error's
    /// HTTP-like `status`), 0 when it gave none.
    Refused(u16),
    /// No answer, a broken handshake, a TCP error or the timeout.
    Failed(String),
}

/// How an admitted connection ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Held {
    /// Told to stop by the run.
    Stopped,
    /// Closed by the server with this code (`None`: a close frame without one).
    Closed(Option<u16>),
    /// The stream broke or ended without a close frame.
    Dropped,
}

impl Subscriber {
    pub(crate) async fn admit(&self) -> Admission {
        match tokio::time::timeout(self.handshake_timeout, self.handshake()).await {
            Ok(Ok(admission)) => admission,
            Ok(Err(error)) => Admission::Failed(format!("{error:#}")),
            Err(_) => Admission::Failed(format!(
                "no subscription within {:?}",
                self.handshake_timeout
            )),
        }
    }

    async fn handshake(&self) -> anyhow::Result<Admission> {
        let socket = if self.server.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .context("creating socket")?;
        if let Some(source) = self.source {
            socket
                .bind(SocketAddr::new(source, 0))
                .with_context(|| format!("binding source address {source}"))?;
        }
        let stream = socket
            .connect(self.server)
            .await
            .with_context(|| format!("connecting to {}", self.server))?;
        stream.set_nodelay(true).ok();
        let (mut ws, _) = tokio_tungstenite::client_async_with_config(
            self.ws_url.as_str(),
            stream,
            Some(ws_config(self.payload)),
        )
        .await
        .context("websocket handshake")?;
        if let Some(refused) = await_event(&mut ws, "pusher:connection_established").await? {
            return Ok(refused);
        }
        let subscribe = serde_json::json!({
            "event": "pusher:subscribe",
            "data": {"auth": "", "channel": self.channel},
        });
        ws.send(Message::text(subscribe.to_string()))
            .await
            .context("sending pusher:subscribe")?;
        match await_event(&mut ws, "pusher_internal:subscription_succeeded").await? {
            Some(refused) => Ok(refused),
            None => Ok(Admission::Admitted(Box::new(ws))),
        }
    }
}

/// Reads until `event`: `None` when it came, `Some(Refused)` when the server refused instead.
async fn await_event(ws: &mut Ws, event: &str) -> anyhow::Result<Option<Admission>> {
    for _ in 0..HANDSHAKE_FRAMES {
        let message = ws
            .next()
            .await
            .with_context(|| format!("connection ended while waiting for {event}"))?
            .with_context(|| format!("waiting for {event}"))?;
        let text = match message {
            Message::Text(text) => text,
            Message::Close(frame) => {
                return Ok(Some(Admission::Refused(
                    frame.map_or(0, |frame| u16::from(frame.code)),
                )));
            }
            _ => continue,
        };
        let frame: Value = serde_json::from_str(text.as_str()).context("a frame not JSON")?;
        match frame["event"].as_str().unwrap_or_default() {
            name if name == event => return Ok(None),
            "pusher:error" | "pusher:subscription_error" => {
                return Ok(Some(Admission::Refused(error_code(&frame))));
            }
            "pusher:ping" => pong(ws).await?,
            _ => {}
        }
    }
    anyhow::bail!("{event} not received within {HANDSHAKE_FRAMES} frames")
}

/// The code of a `pusher:error` (`data.code`) or a subscription error (`data.status`); `data`
/// may be an object or a JSON string of one.
fn error_code(frame: &Value) -> u16 {
    let data = match &frame["data"] {
        Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        other => other.clone(),
    };
    data["code"]
        .as_u64()
        .or_else(|| data["status"].as_u64())
        .and_then(|code| u16::try_from(code).ok())
        .unwrap_or(0)
}

async fn pong(ws: &mut Ws) -> anyhow::Result<()> {
    ws.send(Message::text(r#"{"event":"pusher:pong","data":{}}"#))
        .await
        .context("sending pusher:pong")
}

/// Reads an admitted connection until `stop`, handing every text frame but pings to
/// `on_text`, answering pings.
pub(crate) async fn hold(
    mut ws: Ws,
    mut stop: watch::Receiver<bool>,
    mut on_text: impl FnMut(&str),
) -> Held {
    // One stop future for the whole loop: re-creating it per message costs measurable CPU.
    let stopped = stop.wait_for(|stop| *stop).map(|_| ());
    let mut stopped = std::pin::pin!(stopped);
    let held = loop {
        tokio::select! {
            biased;
            () = &mut stopped => break Held::Stopped,
            message = ws.next() => match message {
                None | Some(Err(_)) => break Held::Dropped,
                Some(Ok(Message::Close(frame))) => {
                    break Held::Closed(frame.map(|frame| u16::from(frame.code)));
                }
                Some(Ok(Message::Text(text))) => {
                    if text.as_str().contains("\"pusher:ping\"") {
                        if pong(&mut ws).await.is_err() {
                            break Held::Dropped;
                        }
                    } else {
                        on_text(text.as_str());
                    }
                }
                Some(Ok(_)) => {}
            }
        }
    };
    if held == Held::Stopped {
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_codes_come_from_errors_in_either_shape() {
        let object = serde_json::json!({"event":"pusher:error","data":{"code":4100,"message":"x"}});
        assert_eq!(error_code(&object), 4100);
        let string = serde_json::json!({"event":"pusher:error","data":"{\"code\":4004}"});
        assert_eq!(error_code(&string), 4004);
        let subscription = serde_json::json!({
            "event":"pusher:subscription_error",
            "data":{"type":"LimitReached","status":429}
        });
        assert_eq!(error_code(&subscription), 429);
        assert_eq!(error_code(&serde_json::json!({"event":"pusher:error"})), 0);
    }
}
