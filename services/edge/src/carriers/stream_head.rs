//! Recognises a connection's first request as a streaming downstream of our SDK's HTTP
//! carriers (`GET /sb/app/{key}/sse` or `/stream`), from the bytes the listener peeked at.
//! Pure: bytes in, a verdict out. Such a request is served by `direct_stream`, outside
//! actix's HTTP/1 dispatcher, whose buffers would otherwise stay allocated under every
//! open stream; anything else (another method or path, HTTP/1.0, a request body) is left
//! to actix-web and gets the answer it always got.

use crate::websocket::handshake::{first_header, forwarded_for, requoted, visible_ascii};

/// Headers beyond this many are left to actix-web.
const MAX_HEADERS: usize = 64;

/// Which streaming carrier the request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamCarrier {
    /// Server-Sent Events (`/sse`).
    Sse,
    /// HTTP streaming, NDJSON (`/stream`).
    Ndjson,
}

/// A streaming request: what opening its session and answering it need, owned, so the peek
/// buffer is free again.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct StreamHead {
    /// Bytes of the request head, consumed from the socket once the request is taken.
    pub head_bytes: usize,
    pub carrier: StreamCarrier,
    /// The path's `{key}`.
    pub key: String,
    /// The query string, without `?`.
    pub query: String,
    /// The `Origin` header as sent, echoed in CORS (`None`: absent, `*` is answered).
    pub origin_sent: Option<Vec<u8>>,
    /// The `Origin` header as `link::origin_header` reads it: empty when not visible ASCII.
    pub origin: Option<String>,
    /// `Last-Event-ID` (EventSource's reconnect), when visible ASCII.
    pub last_event_id: Option<String>,
    /// The `X-Forwarded-For` values, in order (believed only from trusted proxies).
    pub forwarded_for: Vec<String>,
}

/// The request at the start of `bytes`, if it is a whole streaming request head of ours.
/// The listener asks only once the WebSocket recogniser said the head is whole and not an
/// upgrade.
pub(crate) fn recognise(bytes: &[u8]) -> Option<Box<StreamHead>> {
    if !bytes.starts_with(b"GET /") {
        return None;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(head_bytes)) = request.parse(bytes) else {
        return None;
    };
    if request.version != Some(1) {
        return None;
    }
    let (path, query) = request.path?.split_once('?').unwrap_or((request.path?, ""));
    let path = requoted(path);
    let (key, carrier) = route(&path)?;
    let headers = request.headers;
    let first = |name: &str| first_header(headers, name);
    // A body, or a protocol switch, is actix-web's to answer.
    let others = ["content-length", "transfer-encoding", "upgrade", "expect"];
    if others.iter().any(|name| first(name).is_some()) {
        return None;
    }
    let origin = first("origin");
    Some(Box::new(StreamHead {
        head_bytes,
        carrier,
        key: key.to_owned(),
        query: query.to_owned(),
        origin_sent: origin.map(|header| header.value.to_vec()),
        origin: origin.map(|header| visible_ascii(header.value).unwrap_or_default()),
        last_event_id: first("last-event-id").and_then(|header| visible_ascii(header.value)),
        forwarded_for: forwarded_for(headers),
    }))
}

/// The key and carrier of `/sb/app/{key}/sse` or `/sb/app/{key}/stream` (`key` one
/// segment, not empty, as actix-web's scope matched it).
fn route(path: &str) -> Option<(&str, StreamCarrier)> {
    let rest = path.strip_prefix("/sb/app/")?;
    let (key, carrier) = rest.split_once('/')?;
    let carrier = match carrier {
        "sse" => StreamCarrier::Sse,
        "stream" => StreamCarrier::Ndjson,
        _ => return None,
    };
    (!key.is_empty()).then_some((key, carrier))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(target: &str, extra: &str) -> String {
        format!("GET {target} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{extra}\r\n")
    }

    fn head(text: &str) -> StreamHead {
        *recognise(text.as_bytes()).unwrap_or_else(|| panic!("not taken: {text}"))
    }

    #[test]
    fn an_sse_request_is_taken_with_its_key_query_and_headers() {
        let text = request(
            "/sb/app/key-1/sse?subs=a&ids=delta",
            "Origin: https://a.example\r\nLast-Event-ID: c1\r\nX-Forwarded-For: 203.0.113.7\r\n",
        );
        let taken = head(&text);
        assert_eq!(taken.head_bytes, text.len());
        assert_eq!(taken.carrier, StreamCarrier::Sse);
        assert_eq!(taken.key, "key-1");
        assert_eq!(taken.query, "subs=a&ids=delta");
        assert_eq!(taken.origin.as_deref(), Some("https://a.example"));
        assert_eq!(
            taken.origin_sent.as_deref(),
            Some(&b"https://a.example"[..])
        );
        assert_eq!(taken.last_event_id.as_deref(), Some("c1"));
        assert_eq!(taken.forwarded_for, vec!["203.0.113.7".to_owned()]);
        assert_eq!(
            head(&request("/sb/app/k/stream", "")).carrier,
            StreamCarrier::Ndjson
        );
    }

    #[test]
    fn the_key_is_percent_decoded_as_actix_router_decodes_it() {
        assert_eq!(head(&request("/sb/app/a%2Db/sse", "")).key, "a-b");
        assert_eq!(head(&request("/sb/app/k%2Fx/sse", "")).key, "k%2Fx");
    }

    #[test]
    fn what_actix_answers_otherwise_is_left_to_it() {
        let cases = [
            request("/sb/app/k/sse", "").replace("GET", "POST"),
            request("/sb/app/k/sse", "").replace("HTTP/1.1", "HTTP/1.0"),
            request("/sb/app/k/sse", "Content-Length: 0\r\n"),
            request("/sb/app/k/sse", "Transfer-Encoding: chunked\r\n"),
            request("/sb/app/k/sse", "Upgrade: h2c\r\n"),
            request("/sb/app/k/poll", ""),
            request("/sb/app/k/sse/", ""),
            request("/sb/app//sse", ""),
            request("/sb/app/k/x/sse", ""),
            request("/x/sb/app/k/sse", ""),
            request("/app/k", ""),
            "GET /sb/app/k/sse HTTP/1.1\r\nHost: x\r\n".to_owned(),
            "garbage\r\n\r\n".to_owned(),
        ];
        for case in cases {
            assert_eq!(recognise(case.as_bytes()), None, "{case}");
        }
    }

    #[test]
    fn a_header_that_is_not_visible_ascii_reads_as_actix_reads_it() {
        let taken = head(&request(
            "/sb/app/k/sse",
            "Origin: caf\u{e9}\r\nLast-Event-ID: \u{e9}\r\n",
        ));
        assert_eq!(taken.origin.as_deref(), Some(""));
        assert_eq!(taken.origin_sent.as_deref(), Some("caf\u{e9}".as_bytes()));
        assert_eq!(taken.last_event_id, None);
    }
}
