//! A WebSocket taken before actix's HTTP/1 dispatcher (see `crate::listener`): the upgrade
//! answered here, then one task per connection that runs `connection::Connection` beside
//! the writer of its outbox, both straight on the socket.
//!
//! Memory per idle connection is the point (ARCHITECTURE.md, "the direct WebSocket path"):
//! reads happen on readiness into this thread's buffer (`READ_BUFFER`), and a connection
//! keeps only the bytes of a frame that did not arrive whole (`SocketReader::unparsed`);
//! frames are encoded into this thread's `WRITE_BUFFER`, and a connection keeps only what
//! the socket did not take at once (`unsent`). Both are empty, without capacity, while idle.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::Shutdown;
use std::sync::Arc;
use std::time::Duration;

use actix_http::ws::{Parser, ProtocolError};
use bytes::{Buf, BytesMut};
use futures_util::future::{Either, select};
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::EdgeState;
use crate::connection::Connection;
use crate::console::report::ClientOrigin;
use crate::link::{Inbound, InboundError, MessageSource, admit, closing_frames};
use crate::outbox::{Outbox, Outgoing};
use crate::websocket::frames::{self, Fragments};
use crate::websocket::handshake::Upgrade;

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// A thread's write buffer larger than this after a burst is given back.
const KEEP_WRITE_BUFFER: usize = 256 * 1024;
/// A thread's queue of taken frames longer than this after a burst is given back.
const KEEP_TAKEN: usize = 1024;
/// How long a closing connection has to take its last frames.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long the client then has to close its end (actix-http's client disconnect timeout,
/// which the actix path applies).
const LINGER: Duration = Duration::from_secs(1);

thread_local! {
    /// Where every connection of this thread reads into.
    static READ_BUFFER: RefCell<BytesMut> = RefCell::new(BytesMut::new());
    /// Where every connection of this thread encodes its frames.
    static WRITE_BUFFER: RefCell<BytesMut> = RefCell::new(BytesMut::new());
    /// Where every connection of this thread takes its outbox's frames before encoding them.
    static TAKEN: RefCell<VecDeque<Outgoing>> = const { RefCell::new(VecDeque::new()) };
}

/// Answers the upgrade `upgrade` (whose head is still in the socket), admits or refuses
/// with Pusher's codes (refusals go over the open socket, as pusher-js reads them from the
/// close code), and serves the connection until it closes.
pub(crate) async fn serve(stream: TcpStream, upgrade: Box<Upgrade>, state: Arc<EdgeState>) {
    if consume(&stream, upgrade.head_bytes).await.is_err() {
        return;
    }
    let origin = upgrade.origin.as_deref();
    // Boxed: admission's future is large and over before the connection's long wait.
    let admission = Box::pin(admit(&state, &upgrade.key, &upgrade.query, origin)).await;
    let socket_id = state.socket_ids.next();
    let outbox = Arc::new(Outbox::for_websocket(socket_id, state.outbox_bounds()));
    if write_all(&stream, &upgrade.switching_protocols())
        .await
        .is_err()
    {
        return;
    }
    match admission {
        Ok((keyed, slot)) => {
            let span = tracing::info_span!("connection", app_id = %keyed.app.id, socket_id = %outbox.socket_id());
            let peer = stream.peer_addr().ok().map(|peer| peer.ip());
            let origin = ClientOrigin {
                transport: "websocket",
                address: upgrade.client_address(peer, &state.settings.trusted_proxies),
            };
            drop(upgrade);
            let reader = SocketReader::new(&stream, state.settings.max_frame_bytes);
            let connection = Connection::run(
                state.clone(),
                keyed,
                Some(slot),
                outbox.clone(),
                origin,
                reader,
            );
            // Boxed: the protocol loop's future is large and this one lives as long as the
            // connection; its idle size is checked in `tests::an_idle_connection_is_small`.
            beside_writer(&stream, &outbox, Box::pin(connection.instrument(span))).await;
        }
        Err(reason) => {
            let code = reason.disconnect().code;
            tracing::info!(key = %ingress::Untrusted(&upgrade.key), code, "connection refused");
            crate::metrics::connection_closed(code);
            outbox.close_with(closing_frames(reason));
            beside_writer(&stream, &outbox, std::future::ready(())).await;
        }
    }
}

/// Runs `connection` and the writer of its outbox together. The connection closes its
/// outbox when it ends; the writer then sends the last frames and waits for the client to
/// close (`finish`). A writer that fails first shuts the socket, so the reader ends too.
async fn beside_writer(
    stream: &TcpStream,
    outbox: &Outbox,
    connection: impl Future<Output = ()> + Unpin,
) {
    let writer = std::pin::pin!(write_outbox(stream, outbox));
    match select(connection, writer).await {
        // Boxed: the closing steps' timers would otherwise be in every idle connection.
        Either::Left(((), writer)) => Box::pin(finish(stream, writer)).await,
        Either::Right((_, connection)) => {
            let _ = socket2::SockRef::from(stream).shutdown(Shutdown::Both);
            connection.await;
        }
    }
}

/// The connection has ended: the writer sends what is left (its close frame last) within
/// `CLOSE_GRACE`, then the client's end is awaited (`linger`).
async fn finish(stream: &TcpStream, writer: impl Future<Output = io::Result<()>>) {
    if let Ok(Ok(())) = tokio::time::timeout(CLOSE_GRACE, writer).await {
        linger(stream).await;
    }
}

/// Writes the outbox to the socket until its close frame is written.
async fn write_outbox(stream: &TcpStream, outbox: &Outbox) -> io::Result<()> {
    loop {
        // Taken into this thread's `TAKEN` and encoded in the same poll (no await between),
        // so a connection keeps no second queue of its own.
        std::future::poll_fn(|context| {
            TAKEN.with_borrow_mut(|taken| outbox.poll_take(context, taken))
        })
        .await;
        let (finished, unsent) = TAKEN.with_borrow_mut(|taken| {
            WRITE_BUFFER.with_borrow_mut(|buffer| {
                buffer.clear();
                let finished = frames::encode(taken, buffer);
                // `encode` leaves it empty; cleared anyway, as the next connection to use
                // this thread's queue must never see another's frames.
                taken.clear();
                // Kept while small, so a busy thread does not allocate per frame; given back
                // after a burst.
                if taken.capacity() > KEEP_TAKEN {
                    *taken = VecDeque::new();
                }
                let written = write_now(stream, buffer);
                let unsent = written.map(|written| BytesMut::from(&buffer[written..]));
                if buffer.capacity() > KEEP_WRITE_BUFFER {
                    *buffer = BytesMut::new();
                }
                (finished, unsent)
            })
        });
        let unsent = unsent?;
        if !unsent.is_empty() {
            write_all(stream, &unsent).await?;
        }
        if finished {
            return Ok(());
        }
    }
}

/// Writes what the socket takes without waiting; returns how many bytes that was.
fn write_now(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match stream.try_write(&bytes[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(count) => written += count,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
            Err(error) => return Err(error),
        }
    }
    Ok(written)
}

pub(crate) async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        let written = write_now(stream, bytes)?;
        bytes.advance(written);
    }
    Ok(())
}

/// Reads and drops the request head the listener peeked at.
pub(crate) async fn consume(stream: &TcpStream, mut head_bytes: usize) -> io::Result<()> {
    while head_bytes > 0 {
        stream.readable().await?;
        let read = READ_BUFFER.with_borrow_mut(|buffer| {
            buffer.clear();
            buffer.reserve(head_bytes);
            let mut limited = bytes::BufMut::limit(&mut *buffer, head_bytes);
            stream.try_read_buf(&mut limited)
        });
        match read {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(count) => head_bytes -= count,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// After the close frame: our end closed, the client's read until it closes (so the close
/// frame is not lost to a reset), for at most `LINGER`.
pub(crate) async fn linger(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).shutdown(Shutdown::Write);
    let drain = async {
        loop {
            if stream.readable().await.is_err() {
                return;
            }
            match read_chunk(stream) {
                Read::Bytes => {}
                Read::NotYet => {}
                Read::Ended => return,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

pub(crate) enum Read {
    Bytes,
    NotYet,
    Ended,
}

/// Reads what the socket has into this thread's buffer, dropping it (while lingering).
pub(crate) fn read_chunk(stream: &TcpStream) -> Read {
    READ_BUFFER.with_borrow_mut(|buffer| {
        buffer.clear();
        buffer.reserve(READ_CHUNK);
        match stream.try_read_buf(buffer) {
            Ok(0) => Read::Ended,
            Ok(_) => Read::Bytes,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Read::NotYet,
            Err(_) => Read::Ended,
        }
    })
}

/// Client messages read on readiness, straight from the socket.
pub(crate) struct SocketReader<'a> {
    stream: &'a TcpStream,
    /// Bytes read but not yet parsed: a frame that did not arrive whole, or frames after the
    /// one returned. Empty, without capacity, nearly always.
    unparsed: BytesMut,
    max_message_bytes: usize,
    fragments: Fragments,
    ended: bool,
}

impl MessageSource for SocketReader<'_> {
    /// Cancel-safe: the only await is readiness; reading and parsing happen after it,
    /// without awaiting.
    async fn next(&mut self) -> Option<Result<Inbound, InboundError>> {
        loop {
            if let Some(message) = self.parse_unparsed() {
                return Some(message);
            }
            if self.ended {
                return None;
            }
            if self.stream.readable().await.is_err() {
                return None;
            }
            if let Some(message) = self.read_and_parse() {
                return Some(message);
            }
        }
    }
}

impl<'a> SocketReader<'a> {
    pub(crate) fn new(stream: &'a TcpStream, max_message_bytes: usize) -> Self {
        Self {
            stream,
            unparsed: BytesMut::new(),
            max_message_bytes,
            fragments: Fragments::new(max_message_bytes),
            ended: false,
        }
    }

    /// The next message from bytes already read, if they hold one.
    fn parse_unparsed(&mut self) -> Option<Result<Inbound, InboundError>> {
        if self.unparsed.is_empty() {
            return None;
        }
        let mut unparsed = std::mem::take(&mut self.unparsed);
        let message = self.parse(&mut unparsed);
        self.keep_unparsed(&unparsed);
        message
    }

    /// Reads what the socket has into this thread's buffer and parses a message from it; the
    /// rest is copied into the connection's own `unparsed`.
    fn read_and_parse(&mut self) -> Option<Result<Inbound, InboundError>> {
        READ_BUFFER.with_borrow_mut(|buffer| {
            buffer.clear();
            buffer.reserve(READ_CHUNK);
            match self.stream.try_read_buf(buffer) {
                Ok(0) => self.ended = true,
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return None,
                Err(_) => self.ended = true,
            }
            if !self.unparsed.is_empty() {
                self.unparsed.extend_from_slice(buffer);
                return self.parse_unparsed();
            }
            let message = self.parse(buffer);
            let rest = std::mem::take(buffer);
            self.keep_unparsed(&rest);
            *buffer = rest;
            message
        })
    }

    fn keep_unparsed(&mut self, rest: &BytesMut) {
        self.unparsed = if rest.is_empty() {
            BytesMut::new()
        } else {
            BytesMut::from(&rest[..])
        };
    }

    /// Parses frames from `bytes` until one completes a message, or they run out.
    fn parse(&mut self, bytes: &mut BytesMut) -> Option<Result<Inbound, InboundError>> {
        loop {
            match Parser::parse(bytes, true, self.max_message_bytes) {
                Ok(Some((finished, opcode, payload))) => {
                    // Copied out, so nothing keeps a thread's read buffer shared.
                    let payload = payload.map(|payload| BytesMut::from(&payload[..]));
                    if let Some(message) = self.fragments.on_frame(finished, opcode, payload) {
                        return Some(message);
                    }
                }
                Ok(None) => return None,
                Err(ProtocolError::Overflow) => return Some(Err(InboundError::TooBig)),
                Err(error) => return Some(Err(InboundError::Protocol(error.to_string()))),
            }
        }
    }
}

#[cfg(test)]
#[path = "direct_tests.rs"]
mod tests;
