//! The edge's listener (`edge::listener`): WebSocket upgrades taken before actix's HTTP/1
//! dispatcher, everything else still actix-web's, on one port. Spoken over raw TCP so the
//! bytes on the wire are what is checked.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{APP, spawn_app};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn upgrade_head(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
    )
}

/// Reads until `needle` has arrived (the test's own timeout bounds a server that never
/// sends it); returns everything read.
async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let read = stream.read(&mut chunk).await.unwrap();
        assert!(
            read > 0,
            "closed before {needle:?}: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&chunk[..read]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn an_upgrade_whose_head_arrives_in_pieces_is_answered_with_the_rfc_accept() {
    let app = spawn_app().await;
    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let head = upgrade_head(&format!("/app/{}?protocol=7", APP.1));
    let (first, rest) = head.split_at(20);
    stream.write_all(first.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    tokio::task::yield_now().await;
    stream.write_all(rest.as_bytes()).await.unwrap();
    let seen = read_until(&mut stream, "pusher:connection_established").await;
    assert!(
        seen.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{seen}"
    );
    // RFC 6455's example key and answer.
    assert!(
        seen.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{seen}"
    );
}

#[tokio::test]
async fn http_on_the_same_port_is_untouched_and_an_upgrade_after_it_is_still_served() {
    let app = spawn_app().await;
    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let seen = read_until(&mut stream, "\r\n\r\n").await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    // The same kept-alive connection, now upgraded: actix-web's route serves it.
    let head = upgrade_head(&format!("/app/{}?protocol=7", APP.1));
    stream.write_all(head.as_bytes()).await.unwrap();
    let seen = read_until(&mut stream, "pusher:connection_established").await;
    assert!(
        seen.contains("HTTP/1.1 101 Switching Protocols\r\n"),
        "{seen}"
    );
}

#[tokio::test]
async fn an_app_path_without_a_valid_handshake_is_refused_by_actix_web_as_before() {
    let app = spawn_app().await;
    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let head = upgrade_head(&format!("/app/{}", APP.1)).replace("Version: 13", "Version: 99");
    stream.write_all(head.as_bytes()).await.unwrap();
    let seen = read_until(&mut stream, "\r\n\r\n").await;
    assert!(seen.starts_with("HTTP/1.1 400"), "{seen}");
}

#[tokio::test]
async fn a_close_from_the_client_is_answered_and_the_socket_then_closed() {
    let app = spawn_app().await;
    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let head = upgrade_head(&format!("/app/{}?protocol=7", APP.1));
    stream.write_all(head.as_bytes()).await.unwrap();
    read_until(&mut stream, "pusher:connection_established").await;
    // A masked close frame, code 1000, mask key 0.
    stream
        .write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8])
        .await
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    assert_eq!(
        &answer[..4],
        &[0x88, 0x02, 0x03, 0xe8],
        "close 1000 echoed, then EOF"
    );
}
