//! The WebSocket carrier, on actix-http's stateless frame parser (`ws::Parser`), in two paths:
//! - `direct` (nearly every connection): the edge's listener (`crate::listener`) peeks at a
//!   new connection's first request, and a WebSocket upgrade to `/app/{key}` that
//!   `handshake` recognises never reaches actix's HTTP/1 dispatcher: it is answered and then
//!   read and written straight on the socket, with no per-connection buffer while idle.
//! - the actix-web route below (`websocket`), for an upgrade the listener left to actix-web
//!   (a head over `handshake::MAX_HEAD_BYTES`, or an upgrade after other requests on a
//!   kept-alive connection) and for invalid handshakes (answered 400, as always): inbound
//!   frames decoded from the request payload (a `link::MessageSource`), outbound frames
//!   written from the connection's outbox straight into the response body.
//!
//! Why not actix-ws: its `Session` puts a 32-slot channel and a second task hop between
//! fan-out and the socket; writing from the outbox removes both (one wake-up per delivery
//! instead of two, and no per-connection channel buffer).

pub(crate) mod direct;
mod frames;
pub(crate) mod handshake;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_http::ws::{Parser, ProtocolError};
use actix_web::body::{BodyStream, MessageBody};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

use tracing::Instrument;

use crate::EdgeState;
use crate::connection::Connection;
use crate::console::report::ClientOrigin;
use crate::link::{Inbound, InboundError, MessageSource, admit, closing_frames, origin_header};
use crate::outbox::{Outbox, Outgoing};
use crate::websocket::frames::Fragments;

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
    let outbox = Arc::new(Outbox::for_websocket(
        socket_id.clone(),
        state.outbox_bounds(),
    ));
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
        fragments: Fragments::new(max_message_bytes),
    };
    Ok((response, reader))
}

/// Reads the client's messages, joining fragmented ones.
pub struct Reader {
    payload: web::Payload,
    buffer: BytesMut,
    max_message_bytes: usize,
    fragments: Fragments,
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
                    if let Some(message) = self.fragments.on_frame(finished, opcode, payload) {
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
        this.finished = frames::encode(&mut this.taken, &mut this.buffer);
        Poll::Ready(Some(Ok(this.buffer.split().freeze())))
    }
}
