//! A streaming downstream (SSE, HTTP streaming) taken before actix's HTTP/1 dispatcher (see
//! `crate::listener` and `stream_head`), as `websocket::direct` takes WebSockets: the
//! session is opened as `routes` opens it, the answer is written straight on the socket,
//! and an open stream keeps no read or write buffer while idle (the dispatcher's stayed
//! allocated under every stream: ARCHITECTURE.md, "the direct streaming path").
//!
//! The answer is `routes`' own (status, CORS, content type, the same body from
//! `StreamingBody`), delimited by the connection's close instead of chunked: a stream is
//! the connection's last answer (`connection: close`).

use std::future::poll_fn;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::Stream;
use futures_util::future::{Either, select};
use serde_json::json;
use tokio::net::TcpStream;

use super::creation_limit::retry_after_secs;
use super::open::{self, Opened};
use super::routes::{CORS_HEADERS, STREAMING_HEADERS, downstream_from, feed, param};
use super::sse::Sse;
use super::stream::{Feed, Format, Ndjson, StreamingBody};
use super::stream_head::{StreamCarrier, StreamHead};
use crate::EdgeState;
use crate::websocket::direct::{Read, consume, linger, read_chunk, write_all};

/// Serves the streaming request `head` (whose bytes are still in the socket) until its
/// stream ends or the client goes away.
pub(crate) async fn serve(stream: TcpStream, head: Box<StreamHead>, state: Arc<EdgeState>) {
    if consume(&stream, head.head_bytes).await.is_err() {
        return;
    }
    let params: Vec<(String, String)> = serde_urlencoded::from_str(&head.query).unwrap_or_default();
    let peer = stream.peer_addr().ok().map(|peer| peer.ip());
    let trusted = &state.settings.trusted_proxies;
    let client =
        peer.map(|peer| trusted.resolve(peer, head.forwarded_for.iter().map(String::as_str)));
    let downstream = downstream_from(
        &params,
        head.last_event_id.as_deref(),
        client,
        head.origin.clone(),
    );
    let downstream = match downstream {
        Ok(downstream) => downstream,
        Err(message) => {
            let answer = answer(&head, "400 Bad Request", &[], &json!({ "error": message }));
            return last_answer(&stream, &answer).await;
        }
    };
    // Boxed: opening's future is large and over before the stream's long wait.
    let opened = Box::pin(open::open(&state, &head.key, downstream)).await;
    if let Opened::Limited(wait) = opened {
        let retry = retry_after_secs(wait).to_string();
        let body = json!({ "error": "too many new sessions: retry later" });
        let answer = answer(
            &head,
            "429 Too Many Requests",
            &[("retry-after", &retry)],
            &body,
        );
        return last_answer(&stream, &answer).await;
    }
    // A client that keeps the last full cursor and appends deltas itself (our SDK).
    let short_ids = param(&params, "ids") == Some("delta");
    let every = state.settings.sb_heartbeat_interval;
    let feed = feed(opened);
    drop(params);
    match head.carrier {
        StreamCarrier::Sse => stream_with(&stream, head, Sse, feed, every, short_ids).await,
        StreamCarrier::Ndjson => stream_with(&stream, head, Ndjson, feed, every, short_ids).await,
    }
}

/// The streaming answer in `format`. Refusals are 200 too: EventSource hides any other
/// answer's body from the page.
async fn stream_with<F: Format>(
    stream: &TcpStream,
    head: Box<StreamHead>,
    format: F,
    feed: Feed,
    every: Duration,
    short_ids: bool,
) {
    let head_bytes = streaming_head(&head, format.content_type());
    // Nothing of the request is kept while the stream is open.
    drop(head);
    let body = StreamingBody::new(format, feed, every, short_ids);
    respond(stream, head_bytes, body).await;
}

/// Writes the answer's head with the body's first bytes, then the body as it comes, until
/// it ends (then the connection closes) or the client goes away (then the body is dropped,
/// which detaches the session, as when actix dropped it).
async fn respond<F: Format>(stream: &TcpStream, head: Vec<u8>, body: StreamingBody<F>) {
    // Boxed: the body's timer and session are large, and an idle stream is mostly this.
    let mut body = Box::pin(body);
    let pump = async {
        let mut head = Some(head);
        loop {
            let next = poll_fn(|context| body.as_mut().poll_next(context)).await;
            let chunk = match next {
                Some(Ok(chunk)) => chunk,
                Some(Err(_)) | None => Bytes::new(),
            };
            let written = match head.take() {
                Some(mut head) => {
                    head.extend_from_slice(&chunk);
                    write_all(stream, &head).await
                }
                None => write_all(stream, &chunk).await,
            };
            if written.is_err() {
                return false;
            }
            if chunk.is_empty() {
                return true;
            }
        }
    };
    let pump = std::pin::pin!(pump);
    let gone = std::pin::pin!(client_gone(stream));
    if let Either::Left((true, _)) = select(pump, gone).await {
        Box::pin(linger(stream)).await;
    }
}

/// Resolves once the client has closed its end (or the socket failed). A client sends
/// nothing after a streaming request's head; anything it does send is dropped.
async fn client_gone(stream: &TcpStream) {
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        if let Read::Ended = read_chunk(stream) {
            return;
        }
    }
}

/// A non-streaming answer, then the connection's end.
async fn last_answer(stream: &TcpStream, answer: &[u8]) {
    if write_all(stream, answer).await.is_ok() {
        linger(stream).await;
    }
}

/// The status line and the headers every answer of ours carries (CORS, the date, the close).
fn head_with(head: &StreamHead, status: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(512);
    bytes.extend_from_slice(b"HTTP/1.1 ");
    bytes.extend_from_slice(status.as_bytes());
    bytes.extend_from_slice(b"\r\naccess-control-allow-origin: ");
    // httparse let through only bytes a header value may hold: echoing them is safe.
    bytes.extend_from_slice(head.origin_sent.as_deref().unwrap_or(b"*"));
    bytes.extend_from_slice(b"\r\n");
    for (name, value) in CORS_HEADERS {
        header(&mut bytes, name, value);
    }
    header(&mut bytes, "connection", "close");
    header(
        &mut bytes,
        "date",
        &httpdate::fmt_http_date(SystemTime::now()),
    );
    bytes
}

fn header(bytes: &mut Vec<u8>, name: &str, value: &str) {
    let _ = write!(bytes, "{name}: {value}\r\n");
}

/// The head of a streaming answer: its body runs until the connection closes.
fn streaming_head(head: &StreamHead, content_type: &str) -> Vec<u8> {
    let mut bytes = head_with(head, "200 OK");
    header(&mut bytes, "content-type", content_type);
    for (name, value) in STREAMING_HEADERS {
        header(&mut bytes, name, value);
    }
    bytes.extend_from_slice(b"\r\n");
    bytes
}

/// A JSON answer with `status` and extra headers.
fn answer(
    head: &StreamHead,
    status: &str,
    extra: &[(&str, &str)],
    body: &serde_json::Value,
) -> Vec<u8> {
    let body = body.to_string();
    let mut bytes = head_with(head, status);
    for (name, value) in extra {
        header(&mut bytes, name, value);
    }
    header(&mut bytes, "content-type", "application/json");
    header(&mut bytes, "content-length", &body.len().to_string());
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::carriers::stream_head::recognise;

    fn parsed(text: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(length) = response.parse(text).unwrap() else {
            panic!("partial head");
        };
        let headers = response
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8(h.value.to_vec()).unwrap(),
                )
            })
            .collect();
        (response.code.unwrap(), headers, text[length..].to_vec())
    }

    fn value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    #[test]
    fn a_streaming_head_carries_the_routes_headers_and_closes_the_connection() {
        let request = "GET /sb/app/k/sse HTTP/1.1\r\nOrigin: https://a.example\r\n\r\n";
        let head = recognise(request.as_bytes()).unwrap();
        let (status, headers, body) = parsed(&streaming_head(&head, "text/event-stream"));
        assert_eq!(status, 200);
        assert!(body.is_empty());
        assert_eq!(
            value(&headers, "access-control-allow-origin"),
            Some("https://a.example")
        );
        for (name, expected) in CORS_HEADERS.into_iter().chain(STREAMING_HEADERS) {
            assert_eq!(value(&headers, name), Some(expected), "{name}");
        }
        assert_eq!(value(&headers, "content-type"), Some("text/event-stream"));
        assert_eq!(value(&headers, "connection"), Some("close"));
        assert!(value(&headers, "date").is_some());
        assert_eq!(value(&headers, "transfer-encoding"), None);
    }

    #[test]
    fn a_refusal_is_json_with_its_length_and_any_origin_without_one() {
        let head = recognise(b"GET /sb/app/k/sse HTTP/1.1\r\n\r\n").unwrap();
        let body = json!({ "error": "no" });
        let bytes = answer(
            &head,
            "429 Too Many Requests",
            &[("retry-after", "3")],
            &body,
        );
        let (status, headers, rest) = parsed(&bytes);
        assert_eq!(status, 429);
        assert_eq!(value(&headers, "access-control-allow-origin"), Some("*"));
        assert_eq!(value(&headers, "retry-after"), Some("3"));
        assert_eq!(value(&headers, "content-type"), Some("application/json"));
        let length: usize = value(&headers, "content-length").unwrap().parse().unwrap();
        assert_eq!(length, rest.len());
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&rest).unwrap(),
            body
        );
    }
}
