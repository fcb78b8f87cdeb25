//! Streaming downstreams (SSE, HTTP streaming) taken before actix's HTTP/1 dispatcher
//! (`edge::carriers::direct_stream`): the same answer as the actix route gave, delimited by
//! the connection's close. Spoken over raw TCP so the bytes on the wire are what is checked.

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{APP, spawn_app};

fn sse_head(query: &str, extra: &str) -> String {
    format!(
        "GET /sb/app/{}/sse?{query} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{extra}\r\n",
        APP.1
    )
}

fn subs(channel: &str) -> String {
    let subs = json!([{ "channel": channel }]).to_string();
    serde_urlencoded::to_string([("subs", subs)]).unwrap()
}

/// Reads until `needle` has arrived after `from` bytes of `seen` (the test's own timeout
/// bounds a server that never sends it).
async fn read_until(stream: &mut TcpStream, seen: &mut Vec<u8>, from: usize, needle: &str) {
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&seen[from..]).contains(needle) {
        let read = stream.read(&mut chunk).await.unwrap();
        assert!(
            read > 0,
            "closed before {needle:?}: {:?}",
            String::from_utf8_lossy(seen)
        );
        seen.extend_from_slice(&chunk[..read]);
    }
}

/// The `data:` frames of an SSE body, parsed.
fn frames(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

#[tokio::test]
async fn an_sse_stream_is_answered_close_delimited_with_cors_and_carries_events() {
    let app = spawn_app().await;
    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let head = sse_head(&subs("news"), "Origin: https://page.example\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, 0, "subscription_succeeded").await;
    let text = String::from_utf8_lossy(&seen).into_owned();
    let (response_head, body) = text.split_once("\r\n\r\n").unwrap();
    let response_head = response_head.to_ascii_lowercase();
    assert!(response_head.starts_with("http/1.1 200 ok\r\n"), "{text}");
    for expected in [
        "access-control-allow-origin: https://page.example",
        "content-type: text/event-stream",
        "connection: close",
        "x-accel-buffering: no",
    ] {
        assert!(response_head.contains(expected), "{expected}: {text}");
    }
    assert!(!response_head.contains("transfer-encoding"), "{text}");
    assert!(body.starts_with("retry: 2000\n: open\n\n"), "{body}");
    let events: Vec<String> = frames(body)
        .iter()
        .map(|frame| frame["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        events,
        [
            "pusher:connection_established",
            "pusher_internal:subscription_succeeded"
        ]
    );
    let from = seen.len();
    let published = app.trigger("news", "flash", "{\"n\":1}", None).await;
    assert_eq!(published.status(), 200);
    read_until(&mut stream, &mut seen, from, "flash").await;
    let more = String::from_utf8_lossy(&seen[from..]).into_owned();
    let flash = frames(&more).pop().unwrap();
    assert_eq!(
        (flash["event"].as_str(), flash["channel"].as_str()),
        (Some("flash"), Some("news"))
    );
    assert!(
        more.contains("id: "),
        "each event carries its cursor: {more}"
    );
}

#[tokio::test]
async fn a_bad_request_gets_a_json_400_with_cors_and_then_the_close() {
    let app = spawn_app().await;
    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let head = sse_head("subs=not-json", "Origin: https://page.example\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    let (response_head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        response_head.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{text}"
    );
    assert!(
        response_head.contains("access-control-allow-origin: https://page.example"),
        "{text}"
    );
    let error: Value = serde_json::from_str(body).unwrap();
    assert!(error["error"].is_string(), "{body}");
}

#[tokio::test]
async fn a_stream_taken_over_by_a_newer_request_ends_and_closes_the_older_connection() {
    let app = spawn_app().await;
    let mut first = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    first
        .write_all(sse_head(&subs("news"), "").as_bytes())
        .await
        .unwrap();
    let mut seen = Vec::new();
    read_until(&mut first, &mut seen, 0, "subscription_succeeded").await;
    let text = String::from_utf8_lossy(&seen).into_owned();
    let established = frames(&text).remove(0);
    let data: Value = serde_json::from_str(established["data"].as_str().unwrap()).unwrap();
    let session = data["socket_id"].as_str().unwrap().to_owned();
    let cursor = text
        .lines()
        .filter_map(|line| line.strip_prefix("id: "))
        .next_back()
        .unwrap()
        .to_owned();
    let query = serde_urlencoded::to_string([("session", session), ("cursor", cursor)]).unwrap();
    let mut second = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    second
        .write_all(sse_head(&query, "").as_bytes())
        .await
        .unwrap();
    let mut seen_second = Vec::new();
    read_until(&mut second, &mut seen_second, 0, ": open").await;
    // The older stream ends: the rest of its body, then EOF (not a hang, not a reset).
    let mut rest = Vec::new();
    first.read_to_end(&mut rest).await.unwrap();
    // The session, now on the newer stream, still gets the channel's events.
    let from = seen_second.len();
    let published = app.trigger("news", "after", "{}", None).await;
    assert_eq!(published.status(), 200);
    read_until(&mut second, &mut seen_second, from, "\"after\"").await;
}

#[tokio::test]
async fn what_is_not_a_streaming_get_of_http_1_1_is_still_answered_by_actix_web() {
    let app = spawn_app().await;
    // HTTP/1.0: actix's route serves the stream as before.
    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let head = sse_head(&subs("news"), "").replace("HTTP/1.1", "HTTP/1.0");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, 0, "subscription_succeeded").await;
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains(" 200 OK\r\n"), "{text}");
    // A POST to the same path: actix's routing answers it, as before.
    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let head = sse_head("", "Content-Length: 0\r\n").replace("GET", "POST");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, 0, "\r\n\r\n").await;
    let text = String::from_utf8_lossy(&seen);
    assert!(
        text.starts_with("HTTP/1.1 404") || text.starts_with("HTTP/1.1 405"),
        "{text}"
    );
}
