//! The WebSocket carrier on actix-http's frame parser: the `GET /app/{key}` upgrade, inbound
//! frames decoded from the request payload (a `link::MessageSource`), outbound frames written
//! from the connection's outbox straight into the response body.
//!
//! Why not actix-ws: its `Session` puts a 32-slot channel and a second task hop between
//! fan-out and the socket; writing from the outbox removes both (one wake-up per delivery
//! instead of two, and no per-connection channel buffer).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_http::ws::{CloseCode, OpCode, Parser, ProtocolError};
use actix_web::body::{BodyStream, MessageBody};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::{Stream, StreamExt};

use tracing::Instrument;

use crate::EdgeState;
use crate::connection::Connection;
use crate::console::report::ClientOrigin;
use crate::link::{Inbound, InboundError, MessageSource, admit, closing_frames, origin_header};
use crate::outbox::{Outbox, Outgoing};

/// `GET /app/{key}`: upgrades to a WebSocket, then admits or refuses with Pusher's codes
/// (refusals are sent over the open socket, as pusher-js reads them from the close code).
pub async fn websocket(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<EdgeState>,
) -> actix_web::Result<HttpResponse> {
    let key = request
        .match_info()
        .get("key")
        .unwrap_or_default()
        .to_owned();
    let origin = origin_header(&request);
    let admission = admit(&state, &key, request.query_string(), origin).await;
    let socket_id = state.socket_ids.next();
    let outbox = Arc::new(Outbox::new(socket_id.clone(), state.outbox_bounds()));
    let (response, reader) = upgrade(
        &request,
        payload,
        outbox.clone(),
        state.settings.max_frame_bytes,
    )?;
    match admission {
        Ok((keyed, slot)) => {
            let span =
                tracing::info_span!("connection", app_id = %keyed.app.id, socket_id = %socket_id);
            let origin = ClientOrigin {
                transport: "websocket",
                address: ingress::client_address(&request, &state.settings.trusted_proxies),
            };
            let state = state.into_inner();
            actix_web::rt::spawn(
                Connection::run(state, keyed, Some(slot), outbox, origin, reader).instrument(span),
            );
        }
        Err(reason) => {
            tracing::info!(key = %ingress::Untrusted(&key), code = reason.disconnect().code, "connection refused");
            crate::metrics::connection_closed(reason.disconnect().code);
            outbox.close_with(closing_frames(reason));
        }
    }
    Ok(response)
}

/// Accepts the upgrade: the 101 response whose body drains `outbox`, and the reader of
/// client frames.
pub fn upgrade(
    request: &HttpRequest,
    payload: web::Payload,
    outbox: Arc<Outbox>,
    max_message_bytes: usize,
) -> actix_web::Result<(HttpResponse, Reader)> {
    let mut response = actix_http::ws::handshake(request.head())
        .map_err(|error| actix_web::error::ErrorBadRequest(error.to_string()))?;
    let body = OutboundBody {
        outbox,
        taken: VecDeque::new(),
        buffer: BytesMut::new(),
        finished: false,
    };
    let response = response.message_body(BodyStream::new(body).boxed())?.into();
    let reader = Reader {
        payload,
        buffer: BytesMut::new(),
        max_message_bytes,
        partial: None,
    };
    Ok((response, reader))
}

/// Reads the client's messages, joining fragmented ones.
pub struct Reader {
    payload: web::Payload,
    buffer: BytesMut,
    max_message_bytes: usize,
    /// A fragmented message being joined: its opcode and the bytes so far.
    partial: Option<(OpCode, BytesMut)>,
}

impl MessageSource for Reader {
    async fn next(&mut self) -> Option<Result<Inbound, InboundError>> {
        self.read().await
    }
}

impl Reader {
    /// The next message, or `None` when the client is gone.
    pub async fn read(&mut self) -> Option<Result<Inbound, InboundError>> {
        loop {
            match Parser::parse(&mut self.buffer, true, self.max_message_bytes) {
                Ok(Some((finished, opcode, payload))) => {
                    if let Some(message) = self.on_frame(finished, opcode, payload) {
                        return Some(message);
                    }
                }
                Ok(None) => match self.payload.next().await? {
                    Ok(chunk) => self.buffer.extend_from_slice(&chunk),
                    Err(_) => return None,
                },
                Err(ProtocolError::Overflow) => return Some(Err(InboundError::TooBig)),
                Err(error) => return Some(Err(InboundError::Protocol(error.to_string()))),
            }
        }
    }

    /// Turns one frame into a message, or `None` while a fragmented message is incomplete.
    fn on_frame(
        &mut self,
        finished: bool,
        opcode: OpCode,
        payload: Option<BytesMut>,
    ) -> Option<Result<Inbound, InboundError>> {
        let payload = payload.unwrap_or_default();
        match opcode {
            OpCode::Ping => Some(Ok(Inbound::Ping(payload.freeze()))),
            OpCode::Pong => Some(Ok(Inbound::Activity)),
            OpCode::Close => Some(Ok(Inbound::Close)),
            OpCode::Text | OpCode::Binary if finished => Some(complete(opcode, payload)),
            OpCode::Text | OpCode::Binary => {
                self.partial = Some((opcode, payload));
                None
            }
            OpCode::Continue => {
                let Some((first, mut joined)) = self.partial.take() else {
                    return Some(Err(InboundError::Protocol(
                        "continuation without a first frame".into(),
                    )));
                };
                if joined.len() + payload.len() > self.max_message_bytes {
                    return Some(Err(InboundError::TooBig));
                }
                joined.extend_from_slice(&payload);
                if finished {
                    Some(complete(first, joined))
                } else {
                    self.partial = Some((first, joined));
                    None
                }
            }
            OpCode::Bad => Some(Err(InboundError::Protocol("bad opcode".into()))),
        }
    }
}

fn complete(opcode: OpCode, payload: BytesMut) -> Result<Inbound, InboundError> {
    match opcode {
        OpCode::Text => ByteString::try_from(payload.freeze())
            .map(Inbound::Text)
            .map_err(|_| InboundError::Protocol("text message is not UTF-8".into())),
        _ => Ok(Inbound::Binary(payload.freeze())),
    }
}

/// The response body: everything the outbox holds, framed, in as few writes as possible.
struct OutboundBody {
    outbox: Arc<Outbox>,
    /// The outbox's second buffer, swapped in and out so neither side allocates per frame.
    taken: VecDeque<Outgoing>,
    /// Frames are encoded here; once actix has copied a chunk out, `reserve` reuses the memory.
    buffer: BytesMut,
    finished: bool,
}

impl Stream for OutboundBody {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        if this.outbox.poll_take(context, &mut this.taken).is_pending() {
            return Poll::Pending;
        }
        let size: usize = this.taken.iter().map(frame_size).sum();
        this.buffer.reserve(size);
        let buffer = &mut this.buffer;
        while let Some(item) = this.taken.pop_front() {
            match item {
                Outgoing::Text(text) => {
                    Parser::write_message(buffer, text.as_bytes(), OpCode::Text, true, false)
                }
                Outgoing::Pong(bytes) => {
                    Parser::write_message(buffer, &bytes, OpCode::Pong, true, false)
                }
                Outgoing::Close { code, reason } => {
                    let reason = actix_http::ws::CloseReason {
                        code: CloseCode::from(code),
                        description: Some(reason),
                    };
                    Parser::write_close(buffer, Some(reason), false);
                    this.finished = true;
                    this.taken.clear();
                }
            }
        }
        Poll::Ready(Some(Ok(this.buffer.split().freeze())))
    }
}

/// Bytes a frame takes on the wire, header included (an upper bound).
fn frame_size(item: &Outgoing) -> usize {
    let payload = match item {
        Outgoing::Text(text) => text.len(),
        Outgoing::Pong(bytes) => bytes.len(),
        Outgoing::Close { reason, .. } => reason.len() + 2,
    };
    payload + 10
}
