//! Recognises a connection's first request as a WebSocket upgrade to `/app/{key}` (or
//! `/{prefix}/app/{key}`, the two routes actix-web had), from the bytes peeked at before any
//! HTTP machinery sees them. Pure: bytes in, a verdict out.
//!
//! Only a request that actix-http's own `ws::verify_handshake` would accept is taken, so
//! everything else (a bad handshake, another path, another method) goes to actix-web
//! unchanged and gets the answer it always got.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Request heads longer than this are left to actix-web (which has its own limits).
pub(crate) const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Headers beyond this many are left to actix-web too.
const MAX_HEADERS: usize = 64;

/// What the peeked bytes are.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Peeked {
    /// A WebSocket upgrade this edge answers itself.
    Upgrade(Box<Upgrade>),
    /// Anything else: actix-web's.
    NotOurs,
    /// Could be an upgrade, but the head is incomplete.
    NeedMore,
}

/// A WebSocket upgrade request: what admission and the 101 response need, owned, so the
/// peek buffer is free again.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Upgrade {
    /// Bytes of the request head, consumed from the socket once the upgrade is taken.
    pub head_bytes: usize,
    /// The path's `{key}`.
    pub key: String,
    /// The query string, without `?` (`protocol`, `client`, `version`).
    pub query: String,
    /// The `Origin` header: `None` when absent, empty when it is not visible ASCII (as
    /// `link::origin_header` reads it).
    pub origin: Option<String>,
    /// The `X-Forwarded-For` values, in order (believed only from trusted proxies).
    pub forwarded_for: Vec<String>,
    /// `Sec-WebSocket-Accept` for the 101 response.
    pub accept: [u8; 28],
}

impl Upgrade {
    /// The client's address, as `ingress::client_address` finds it for actix requests.
    pub(crate) fn client_address(
        &self,
        peer: Option<IpAddr>,
        trusted: &ingress::TrustedProxies,
    ) -> Option<IpAddr> {
        let peer = peer?;
        Some(trusted.resolve(peer, self.forwarded_for.iter().map(String::as_str)))
    }

    /// The 101 response.
    pub(crate) fn switching_protocols(&self) -> Vec<u8> {
        let mut response = Vec::with_capacity(128);
        response.extend_from_slice(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: ",
        );
        response.extend_from_slice(&self.accept);
        response.extend_from_slice(b"\r\n\r\n");
        response
    }
}

/// Judges the bytes at the start of a connection.
pub(crate) fn recognise(bytes: &[u8]) -> Peeked {
    const GET: &[u8] = b"GET /";
    if bytes.len() < GET.len() {
        return if GET.starts_with(bytes) {
            Peeked::NeedMore
        } else {
            Peeked::NotOurs
        };
    }
    if !bytes.starts_with(GET) {
        return Peeked::NotOurs;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_bytes = match request.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if bytes.len() < MAX_HEAD_BYTES => return Peeked::NeedMore,
        Ok(httparse::Status::Partial) | Err(_) => return Peeked::NotOurs,
    };
    if request.version != Some(1) {
        return Peeked::NotOurs;
    }
    let Some(target) = request.path else {
        return Peeked::NotOurs;
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = requoted(path);
    let Some(key) = app_key(&path) else {
        return Peeked::NotOurs;
    };
    match verified(request.headers) {
        Some(verified) => Peeked::Upgrade(Box::new(Upgrade {
            head_bytes,
            key: key.to_owned(),
            query: query.to_owned(),
            origin: verified.origin,
            forwarded_for: verified.forwarded_for,
            accept: actix_http::ws::hash_key(verified.websocket_key),
        })),
        None => Peeked::NotOurs,
    }
}

/// The key of `/app/{key}` or `/{prefix}/app/{key}` (`prefix` not empty, `key` one
/// segment, as actix-web's routes matched them).
fn app_key(path: &str) -> Option<&str> {
    let (before, key) = path.rsplit_once('/')?;
    let prefixed = before.len() > "//app".len() && before.starts_with('/');
    let routed = before == "/app" || (prefixed && before.ends_with("/app"));
    (routed && !key.is_empty()).then_some(key)
}

/// The path as actix-router matches it: percent-escapes decoded except those of `%`, `/`
/// and `+`, then read as UTF-8 (lossily).
pub(crate) fn requoted(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = bytes
            .get(index + 1..index + 3)
            .filter(|_| bytes[index] == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .filter(|byte| !matches!(byte, b'%' | b'/' | b'+'));
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

struct Verified<'a> {
    websocket_key: &'a [u8],
    origin: Option<String>,
    forwarded_for: Vec<String>,
}

/// The headers of a valid handshake, by actix-http's `ws::verify_handshake` rules: an
/// `Upgrade` naming websocket, a `Connection` with `upgrade` (and no `close`), version 13
/// and a 16-byte base64 key. No request body either.
fn verified<'a>(headers: &[httparse::Header<'a>]) -> Option<Verified<'a>> {
    let first = |name: &str| first_header(headers, name);
    let upgrade = std::str::from_utf8(first("upgrade")?.value).ok()?;
    if !upgrade.to_ascii_lowercase().contains("websocket") {
        return None;
    }
    if !connection_upgrade(headers) {
        return None;
    }
    if first("sec-websocket-version")?.value != b"13" {
        return None;
    }
    let websocket_key = first("sec-websocket-key")?.value;
    let mut decoded = [0u8; 16];
    if websocket_key.len() != 24 || BASE64.decode_slice(websocket_key, &mut decoded) != Ok(16) {
        return None;
    }
    if first("content-length").is_some() || first("transfer-encoding").is_some() {
        return None;
    }
    let origin = first("origin").map(|header| visible_ascii(header.value).unwrap_or_default());
    Some(Verified {
        websocket_key,
        origin,
        forwarded_for: forwarded_for(headers),
    })
}

/// The first header named `name` (any case).
pub(crate) fn first_header<'h, 'a>(
    headers: &'h [httparse::Header<'a>],
    name: &str,
) -> Option<&'h httparse::Header<'a>> {
    headers
        .iter()
        .find(|header| header.name.eq_ignore_ascii_case(name))
}

/// The `X-Forwarded-For` values, in order, as `ingress::client_address` reads them from an
/// actix request (visible ASCII only).
pub(crate) fn forwarded_for(headers: &[httparse::Header<'_>]) -> Vec<String> {
    headers
        .iter()
        .filter(|header| header.name.eq_ignore_ascii_case("x-forwarded-for"))
        .filter_map(|header| visible_ascii(header.value))
        .collect()
}

/// As actix-http's `RequestHead::upgrade`: some `Connection` token is `upgrade` and none
/// before it `close`.
fn connection_upgrade(headers: &[httparse::Header<'_>]) -> bool {
    let mut upgrade = false;
    let values = headers
        .iter()
        .filter(|header| header.name.eq_ignore_ascii_case("connection"))
        .filter_map(|header| visible_ascii(header.value));
    for value in values {
        for option in value.split(',').map(str::trim) {
            if option.eq_ignore_ascii_case("close") {
                return false;
            } else if option.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
    }
    upgrade
}

/// A header value as `http::HeaderValue::to_str` reads it: visible ASCII (and tabs), else
/// `None`.
pub(crate) fn visible_ascii(value: &[u8]) -> Option<String> {
    let visible = value
        .iter()
        .all(|&byte| byte == b'\t' || (0x20..0x7f).contains(&byte));
    visible.then(|| String::from_utf8_lossy(value).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn request(target: &str, extra: &str) -> String {
        format!(
            "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
        )
    }

    fn upgrade(text: &str) -> Upgrade {
        match recognise(text.as_bytes()) {
            Peeked::Upgrade(upgrade) => *upgrade,
            other => panic!("not an upgrade: {other:?}"),
        }
    }

    #[test]
    fn a_handshake_to_an_app_path_is_taken_with_its_key_query_and_accept() {
        let text = request(
            "/app/key-1?protocol=7&client=js",
            "Origin: https://a.example\r\n",
        );
        let taken = upgrade(&text);
        assert_eq!(taken.head_bytes, text.len());
        assert_eq!(taken.key, "key-1");
        assert_eq!(taken.query, "protocol=7&client=js");
        assert_eq!(taken.origin.as_deref(), Some("https://a.example"));
        // RFC 6455's example.
        assert_eq!(&taken.accept, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let response = String::from_utf8(taken.switching_protocols()).unwrap();
        assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(response.ends_with("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"));
    }

    #[test]
    fn prefixed_paths_match_as_the_actix_routes_did() {
        assert_eq!(upgrade(&request("/ws/app/k", "")).key, "k");
        assert_eq!(upgrade(&request("/a/b/app/k", "")).key, "k");
        for target in ["/app/", "/app", "//app/k", "/apps/k", "/app/k/x", "/xapp/k"] {
            let verdict = recognise(request(target, "").as_bytes());
            assert_eq!(verdict, Peeked::NotOurs, "{target}");
        }
    }

    #[test]
    fn what_actix_would_refuse_or_route_elsewhere_is_left_to_it() {
        let cases = [
            request("/app/k", "").replace("GET", "POST"),
            request("/app/k", "").replace("Upgrade: websocket", "Upgrade: h2c"),
            request("/app/k", "").replace("keep-alive, Upgrade", "keep-alive"),
            request("/app/k", "").replace("keep-alive, Upgrade", "close, Upgrade"),
            request("/app/k", "").replace("Version: 13", "Version: 8"),
            request("/app/k", "").replace(KEY, "short"),
            request("/app/k", "Content-Length: 3\r\n"),
            request("/app/k", "").replace("HTTP/1.1", "HTTP/1.0"),
            "garbage\r\n\r\n".to_owned(),
        ];
        for case in cases {
            assert_eq!(recognise(case.as_bytes()), Peeked::NotOurs, "{case}");
        }
    }

    #[test]
    fn the_path_is_percent_decoded_as_actix_router_decodes_it() {
        assert_eq!(upgrade(&request("/app/a%0Ab", "")).key, "a\nb");
        assert_eq!(upgrade(&request("/%61pp/k%2Fx%25", "")).key, "k%2Fx%25");
        assert_eq!(
            recognise(request("/app%2Fk", "").as_bytes()),
            Peeked::NotOurs
        );
    }

    #[test]
    fn an_incomplete_head_waits_for_more_but_not_past_the_limit() {
        let text = request("/app/k", "");
        for end in [1, 4, 10, text.len() - 1] {
            assert_eq!(
                recognise(&text.as_bytes()[..end]),
                Peeked::NeedMore,
                "{end}"
            );
        }
        assert_eq!(recognise(b"PUT"), Peeked::NotOurs);
        let long = format!("GET /app/k HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(recognise(long.as_bytes()), Peeked::NotOurs);
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let taken = upgrade(&request(
            "/app/k",
            "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: 10.0.0.2\r\nOrigin: caf\u{e9}\r\n",
        ));
        assert_eq!(
            taken.origin.as_deref(),
            Some(""),
            "non-ASCII origin reads as empty"
        );
        let peer = Some("10.0.0.1".parse().unwrap());
        let nobody = ingress::TrustedProxies::none();
        assert_eq!(taken.client_address(peer, &nobody), peer);
        let proxies = ingress::TrustedProxies::parse("10.0.0.0/8").unwrap();
        let client = taken.client_address(peer, &proxies);
        assert_eq!(client, Some("203.0.113.7".parse().unwrap()));
    }
}
