//! pusher-js's own HTTP fallbacks, `xhr_streaming` and `xhr_polling`, so an unmodified
//! pusher-js whose `httpHost`/`httpPort` point here connects without a WebSocket.
//!
//! Wire format (pusher-js `core/http/http_socket.ts`): a session is
//! `{httpPath}/app/{key}/{server}/{session}`; `POST …/xhr_streaming` (or `…/xhr` when
//! polling) receives, `POST …/xhr_send` with a JSON array of frames sends. Responses are
//! newline-terminated SockJS-style lines: `o` once per session, `a["frame",…]`, `h`
//! (heartbeat), `c[code,"reason"]` (close, pusher-js applies its close-code table). A stream
//! stays open and carries lines as frames come; a poll is answered with the first batch (or a
//! heartbeat) and ends. Every response carries CORS headers, since pages on other origins use
//! these transports.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use protocol::codes::CloseReason;
use tokio::time::{Instant, Sleep};

use super::creation_limit::retry_after_secs;
use super::detached::DetachedSession;
use super::xhr_sessions::{SessionId, XhrSession};
use crate::EdgeState;
use crate::link::{Inbound, InboundError, admit, closing_frames};
use crate::outbox::Outgoing;

/// Mounts the receive and send endpoints under any `httpPath` (pusher-js: `/pusher`), the
/// empty one first; `/sb` is mounted by `routes`, whose scope takes every path below
/// `/sb/app/{key}`.
pub(crate) fn configure(config: &mut web::ServiceConfig) {
    configure_under(config, "");
}

/// The same for an `httpPath` of one or more segments: after every other route, since the
/// pattern's regex reads the whole path (it cost ~14 % of the server's CPU under long polling
/// while it came first).
pub(crate) fn configure_prefixed(config: &mut web::ServiceConfig) {
    configure_under(config, "/{prefix:.+}");
}

fn configure_under(config: &mut web::ServiceConfig, prefix: &str) {
    for resource in resources(&format!("{prefix}/app/{{key}}")) {
        config.service(resource);
    }
}

/// The three endpoints of a session below `app`, the path of `/app/{key}`.
pub(crate) fn resources(app: &str) -> [actix_web::Resource; 3] {
    let base = format!("{app}/{{server}}/{{session}}");
    [
        web::resource(format!("{base}/xhr_streaming"))
            .route(web::post().to(streaming))
            .route(web::method(Method::OPTIONS).to(preflight)),
        web::resource(format!("{base}/xhr"))
            .route(web::post().to(polling))
            .route(web::method(Method::OPTIONS).to(preflight)),
        web::resource(format!("{base}/xhr_send"))
            .route(web::post().to(send))
            .route(web::method(Method::OPTIONS).to(preflight)),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Streaming,
    Polling,
}

async fn streaming(request: HttpRequest, state: web::Data<EdgeState>) -> HttpResponse {
    receive(request, state.into_inner(), Kind::Streaming).await
}

async fn polling(request: HttpRequest, state: web::Data<EdgeState>) -> HttpResponse {
    receive(request, state.into_inner(), Kind::Polling).await
}

fn session_id(request: &HttpRequest) -> Option<(SessionId, String)> {
    let info = request.match_info();
    let key = info.get("key")?;
    let id = SessionId::new(key, info.get("server")?, info.get("session")?)?;
    Some((id, key.to_owned()))
}

/// A receive request: opens the session if it is new (admitting it like a WebSocket), then
/// streams or answers one batch of its frames.
async fn receive(request: HttpRequest, state: Arc<EdgeState>, kind: Kind) -> HttpResponse {
    let Some((id, key)) = session_id(&request) else {
        return cors(HttpResponse::NotFound(), &request).finish();
    };
    let session = match state.xhr_sessions.get(&id) {
        // The client came back: probation is over.
        Some(session) => {
            if !session.put_in_use().await {
                return refused_in_session(&request, &session, CloseReason::OverConnectionQuota);
            }
            session
        }
        None => {
            let peer = ingress::client_address(&request, &state.settings.trusted_proxies);
            if let Err(wait) = state.carrier_limiter.check_address(peer) {
                return too_many_sessions(&request, wait);
            }
            // Admission checks the ceiling; the slot is taken once the session is in use.
            let origin = crate::link::origin_header(&request);
            let keyed = match admit(&state, &key, request.query_string(), origin).await {
                Ok((keyed, _slot)) => keyed,
                Err(reason) => return refused(&request, &key, reason),
            };
            if let Err(wait) = state.carrier_limiter.check_app(&keyed.app.id) {
                return too_many_sessions(&request, wait);
            }
            state.xhr_sessions.open(&state, id, keyed, peer)
        }
    };
    let body = ReceiveBody::new(session, kind, state.settings.xhr_heartbeat_interval);
    lines(&request).streaming(body)
}

/// The refusal a WebSocket gets (`pusher:error`, then the close code), after `o` so that
/// pusher-js reads it.
fn refused(request: &HttpRequest, key: &str, reason: CloseReason) -> HttpResponse {
    let code = reason.disconnect().code;
    tracing::info!(key = %ingress::Untrusted(key), code, "xhr connection refused");
    crate::metrics::connection_closed(code);
    let mut body = BytesMut::from(&b"o\n"[..]);
    encode(&mut VecDeque::from(closing_frames(reason)), &mut body);
    lines(request).body(body.freeze())
}

/// A refusal on a session that has started (over the quota when its probation ended): the
/// `o` only if no response has sent it yet.
fn refused_in_session(
    request: &HttpRequest,
    session: &XhrSession,
    reason: CloseReason,
) -> HttpResponse {
    crate::metrics::connection_closed(reason.disconnect().code);
    let mut body = BytesMut::new();
    if session.claim_open() {
        body.put_slice(b"o\n");
    }
    encode(&mut VecDeque::from(closing_frames(reason)), &mut body);
    lines(request).body(body.freeze())
}

/// 429: sessions are created too fast from this address or for this app.
fn too_many_sessions(request: &HttpRequest, wait: Duration) -> HttpResponse {
    cors(HttpResponse::TooManyRequests(), request)
        .insert_header((header::RETRY_AFTER, retry_after_secs(wait).to_string()))
        .finish()
}

/// `xhr_send`: the body is a JSON array of frames, each handed to the connection in order;
/// `[]` is pusher-js's heartbeat. 204 once queued, 404 for a session that is not open.
async fn send(
    request: HttpRequest,
    state: web::Data<EdgeState>,
    mut payload: web::Payload,
) -> HttpResponse {
    let session = session_id(&request).and_then(|(id, _)| state.xhr_sessions.get(&id));
    let Some(session) = session else {
        return cors(HttpResponse::NotFound(), &request).finish();
    };
    let max_frame = state.settings.max_frame_bytes;
    // Each frame arrives JSON-escaped inside the array: allow for the escaping.
    let limit = max_frame.saturating_mul(2).saturating_add(1024);
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return cors(HttpResponse::BadRequest(), &request).finish();
        };
        if body.len() + chunk.len() > limit {
            session.deliver(vec![Err(InboundError::TooBig)]).await;
            return cors(HttpResponse::PayloadTooLarge(), &request).finish();
        }
        body.extend_from_slice(&chunk);
    }
    let Ok(frames) = serde_json::from_slice::<Vec<String>>(&body) else {
        return cors(HttpResponse::BadRequest(), &request).body("Broken JSON encoding.");
    };
    let messages = if frames.is_empty() {
        // The heartbeat: the client is alive.
        vec![Ok(Inbound::Activity)]
    } else {
        let message = |frame: String| match frame.len() > max_frame {
            true => Err(InboundError::TooBig),
            false => Ok(Inbound::Text(frame.into())),
        };
        frames.into_iter().map(message).collect()
    };
    if session.deliver(messages).await {
        cors(HttpResponse::NoContent(), &request).finish()
    } else {
        cors(HttpResponse::NotFound(), &request).finish()
    }
}

/// CORS preflight: a page on another origin sends `Content-Type: application/json` POSTs.
async fn preflight(request: HttpRequest) -> HttpResponse {
    let allowed_headers = request
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or(HeaderValue::from_static("Content-Type"));
    cors(HttpResponse::NoContent(), &request)
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "POST, OPTIONS"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, allowed_headers))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"))
        .finish()
}

/// Allows the request's origin (or any, without one). No credentials: nothing here reads
/// cookies.
fn cors(mut builder: HttpResponseBuilder, request: &HttpRequest) -> HttpResponseBuilder {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let origin = origin.unwrap_or(HeaderValue::from_static("*"));
    builder
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
        .insert_header((header::VARY, "Origin"));
    builder
}

/// A 200 carrying SockJS-style lines, never cached or buffered on the way.
fn lines(request: &HttpRequest) -> HttpResponseBuilder {
    let mut builder = cors(HttpResponse::Ok(), request);
    builder
        .insert_header((
            header::CONTENT_TYPE,
            "application/javascript; charset=UTF-8",
        ))
        .insert_header((
            header::CACHE_CONTROL,
            "no-store, no-cache, no-transform, must-revalidate, max-age=0",
        ))
        .insert_header(("X-Accel-Buffering", "no"));
    builder
}

/// Appends queued items as lines: the texts as one `a[…]`, a close as `c[code,"reason"]`
/// (nothing after it). Returns whether the close was written.
fn encode(items: &mut VecDeque<Outgoing>, out: &mut BytesMut) -> bool {
    let mut in_array = false;
    let mut closed = false;
    while let Some(item) = items.pop_front() {
        match item {
            Outgoing::Text(text) => {
                out.put_slice(if in_array { b"," } else { b"a[" });
                in_array = true;
                json_string(out, &text);
            }
            // WebSocket control frames have no HTTP equivalent.
            Outgoing::Pong(_) => {}
            Outgoing::Close { code, reason } => {
                if in_array {
                    out.put_slice(b"]\n");
                    in_array = false;
                }
                out.put_slice(format!("c[{code},").as_bytes());
                json_string(out, &reason);
                out.put_slice(b"]\n");
                closed = true;
                items.clear();
            }
        }
    }
    if in_array {
        out.put_slice(b"]\n");
    }
    closed
}

fn json_string(out: &mut BytesMut, text: &str) {
    serde_json::to_writer(out.writer(), text).expect("a string always serialises");
}

/// pusher-js opens a fresh stream on the session once a response has given it more than this
/// many characters (UTF-16 code units: `responseText.length`), all of them read
/// (`MAX_BUFFER_LENGTH` in `core/http/http_request.ts`).
const CLIENT_STREAM_LIMIT: usize = 256 * 1024;

/// One receive request's response body: the session's frames as lines. A stream stays open
/// (with `h` when idle); a poll ends after its first batch. A newer receive request on the
/// same session supersedes it, and it ends.
///
/// A stream stops taking frames once it has written more than `CLIENT_STREAM_LIMIT`: pusher-js
/// is about to drop it for a fresh one, and frames written meanwhile would be lost with it.
/// They wait in the outbox for the next stream (if none comes within a heartbeat interval,
/// the stream ends and pusher-js reconnects).
struct ReceiveBody {
    session: Arc<XhrSession>,
    kind: Kind,
    generation: u64,
    /// Whether this response has written anything (before that, it may owe the `o`).
    started: bool,
    /// The waker handed to the outbox, which forwards to the current receive request.
    relay: Waker,
    /// The outbox's second buffer, swapped in and out.
    taken: VecDeque<Outgoing>,
    heartbeat: Pin<Box<Sleep>>,
    interval: Duration,
    /// What this response has written, in the client's units (see `CLIENT_STREAM_LIMIT`).
    written: usize,
    finished: bool,
}

impl ReceiveBody {
    fn new(session: Arc<XhrSession>, kind: Kind, interval: Duration) -> Self {
        let generation = session.begin_receive();
        Self {
            relay: session.relay_waker(),
            session,
            kind,
            generation,
            started: false,
            taken: VecDeque::new(),
            heartbeat: Box::pin(tokio::time::sleep(interval)),
            interval,
            written: 0,
            finished: false,
        }
    }
}

impl Stream for ReceiveBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let session = &this.session;
        if this.finished || !session.is_current(this.generation) || session.close_was_sent() {
            this.finished = true;
            return Poll::Ready(None);
        }
        let mut out = BytesMut::new();
        if !std::mem::replace(&mut this.started, true) && this.session.claim_open() {
            out.put_slice(b"o\n");
        }
        this.session.register(this.generation, context.waker());
        if this.kind == Kind::Streaming && this.written > CLIENT_STREAM_LIMIT {
            // Waiting for pusher-js to supersede this stream.
            if this.heartbeat.as_mut().poll(context).is_pending() {
                return Poll::Pending;
            }
            this.finished = true;
            return Poll::Ready(None);
        }
        let mut relayed = Context::from_waker(&this.relay);
        let outbox = &this.session.core.outbox;
        if outbox.poll_take(&mut relayed, &mut this.taken).is_ready()
            && encode(with_refusal(&this.session, &mut this.taken), &mut out)
        {
            this.finished = true;
            this.session.delivered_close();
        }
        if out.is_empty() {
            if this.heartbeat.as_mut().poll(context).is_pending() {
                return Poll::Pending;
            }
            out.put_slice(b"h\n");
        }
        this.heartbeat
            .as_mut()
            .reset(Instant::now() + this.interval);
        if this.kind == Kind::Polling {
            this.finished = true;
        }
        this.written += utf16_len(&out);
        Poll::Ready(Some(Ok(out.freeze())))
    }
}

/// The items to write; a close of a session refused after it started (over the quota) is
/// that refusal, so pusher-js hears 4004 rather than a plain close.
fn with_refusal<'a>(
    session: &XhrSession,
    taken: &'a mut VecDeque<Outgoing>,
) -> &'a mut VecDeque<Outgoing> {
    let closes = taken
        .iter()
        .any(|item| matches!(item, Outgoing::Close { .. }));
    if closes && let Some(reason) = session.refusal() {
        taken.retain(|item| !matches!(item, Outgoing::Close { .. }));
        taken.extend(closing_frames(reason));
    }
    taken
}

/// The length JavaScript gives this UTF-8 text: one unit per character, two for those
/// outside the Basic Multilingual Plane (4-byte sequences).
fn utf16_len(utf8: &[u8]) -> usize {
    utf8.iter()
        .map(|&byte| usize::from(byte & 0xC0 != 0x80) + usize::from(byte >= 0xF0))
        .sum()
}

impl Drop for ReceiveBody {
    fn drop(&mut self) {
        self.session.end_receive(self.generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(frame: &str) -> Outgoing {
        Outgoing::Text(frame.into())
    }

    fn encoded(items: impl IntoIterator<Item = Outgoing>) -> (String, bool) {
        let mut out = BytesMut::new();
        let closed = encode(&mut items.into_iter().collect(), &mut out);
        (String::from_utf8(out.to_vec()).unwrap(), closed)
    }

    #[test]
    fn frames_become_one_array_line_of_json_strings() {
        let (line, closed) = encoded([text(r#"{"event":"a","data":"x\ny"}"#), text("{}")]);
        assert_eq!(
            line,
            "a[\"{\\\"event\\\":\\\"a\\\",\\\"data\\\":\\\"x\\\\ny\\\"}\",\"{}\"]\n"
        );
        assert!(!closed);
        let parsed: Vec<String> = serde_json::from_str(&line[1..]).unwrap();
        assert_eq!(parsed, [r#"{"event":"a","data":"x\ny"}"#, "{}"]);
    }

    #[test]
    fn a_close_ends_the_lines_and_drops_what_follows() {
        let close = Outgoing::Close {
            code: 4009,
            reason: "Connection is \"unauthorized\"".into(),
        };
        let (lines, closed) = encoded([text("{}"), close, text("late")]);
        assert_eq!(
            lines,
            "a[\"{}\"]\nc[4009,\"Connection is \\\"unauthorized\\\"\"]\n"
        );
        assert!(closed);
    }

    #[test]
    fn lengths_are_counted_as_javascript_counts_them() {
        for text in ["", "abc", "é", "日本", "😀", "a😀é\n"] {
            assert_eq!(
                utf16_len(text.as_bytes()),
                text.encode_utf16().count(),
                "{text}"
            );
        }
    }

    #[test]
    fn pongs_write_nothing() {
        assert_eq!(
            encoded([Outgoing::Pong(Bytes::new())]),
            (String::new(), false)
        );
    }

    fn poll_body(body: &mut ReceiveBody) -> Poll<Option<String>> {
        let mut context = Context::from_waker(Waker::noop());
        Pin::new(body)
            .poll_next(&mut context)
            .map(|item| item.map(|chunk| String::from_utf8(chunk.unwrap().to_vec()).unwrap()))
    }

    /// The hang once seen with `xhr_polling`: a receive request superseded before its body
    /// was first polled took the session's `o` with it; pusher-js re-polls after any 200 and
    /// then never got one.
    #[tokio::test]
    async fn the_open_goes_to_the_first_response_that_writes() {
        let session = XhrSession::for_test();
        let interval = Duration::from_secs(25);
        let mut superseded = ReceiveBody::new(session.clone(), Kind::Polling, interval);
        let mut current = ReceiveBody::new(session.clone(), Kind::Polling, interval);
        assert_eq!(poll_body(&mut superseded), Poll::Ready(None));
        assert_eq!(poll_body(&mut current), Poll::Ready(Some("o\n".into())));
        // Exactly once per session: the next poll waits for frames.
        let mut next = ReceiveBody::new(session.clone(), Kind::Polling, interval);
        assert_eq!(poll_body(&mut next), Poll::Pending);
        drop(current);
        // A request dropped before it wrote takes nothing either.
        let fresh = XhrSession::for_test();
        drop(ReceiveBody::new(fresh.clone(), Kind::Streaming, interval));
        let mut stream = ReceiveBody::new(fresh, Kind::Streaming, interval);
        assert_eq!(poll_body(&mut stream), Poll::Ready(Some("o\n".into())));
    }

    #[test]
    fn session_ids_take_only_what_pusher_js_sends() {
        assert!(SessionId::new("key", "123", "abcd0123").is_some());
        assert!(SessionId::new("key", "", "abcd0123").is_none());
        assert!(SessionId::new("key", "1.2", "abcd0123").is_none());
        assert!(SessionId::new("key", "1", &"x".repeat(65)).is_none());
    }
}
