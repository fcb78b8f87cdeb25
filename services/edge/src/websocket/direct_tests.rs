use std::sync::Arc;

use broker::counters::{LocalMessages, MessageCounter};
use broker::{Cluster, LocalSpec};
use protocol::names::AppKey;
use tenancy::{AppCatalog, AppSpec, StaticCatalog};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::{EdgeSettings, Hub};

fn edge() -> Arc<EdgeState> {
    let messages: Arc<dyn MessageCounter> = Arc::new(LocalMessages::default());
    let hub = Arc::new(Hub::new(messages.clone()));
    let cluster = Cluster::local(LocalSpec {
        node: hub.clone(),
        messages,
        clock: broker::Clock::system(),
        history: broker::HistoryLimits::default(),
    });
    let apps = [AppSpec::parse("1:key:secret").unwrap()];
    let catalog: Arc<dyn AppCatalog> = Arc::new(StaticCatalog::new(&apps));
    EdgeState::new(catalog, cluster, hub, EdgeSettings::default(), None, None)
}

async fn socket_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap());
    let (client, accepted) = tokio::join!(client, listener.accept());
    (client.unwrap(), accepted.unwrap().0)
}

/// The futures an idle connection keeps: the task's (`serve`, holding the boxed protocol
/// loop) and the protocol loop's. Their sizes are most of what a connection costs beside
/// its outbox and session, so a change that grows them shows here, not only in a benchmark.
#[tokio::test]
async fn an_idle_connection_is_small() {
    let state = edge();
    let (_client, server) = socket_pair().await;
    let keyed = state
        .catalog
        .find_by_key(&AppKey::parse("key").unwrap())
        .await
        .unwrap()
        .unwrap();
    let limits = keyed.app.limits.clone();
    let slot = state.limits.admit_connection(&keyed.app.id, &limits).await;
    let slot = slot.unwrap().unwrap();
    let outbox = Arc::new(Outbox::new(state.socket_ids.next(), state.outbox_bounds()));
    let origin = ClientOrigin {
        transport: "websocket",
        address: None,
    };
    let reader = SocketReader::new(&server, 1024);
    let reader_size = std::mem::size_of_val(&reader);
    let connection = Connection::run(state.clone(), keyed, Some(slot), outbox, origin, reader);
    let connection_size = std::mem::size_of_val(&connection);
    drop(connection);
    let upgrade = match crate::websocket::handshake::recognise(
        b"GET /app/key HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    ) {
        crate::websocket::handshake::Peeked::Upgrade(upgrade) => upgrade,
        other => panic!("{other:?}"),
    };
    {
        let outbox = Outbox::new(state.socket_ids.next(), state.outbox_bounds());
        let writer = write_outbox(&server, &outbox);
        let beside = beside_writer(&server, &outbox, std::future::ready(()));
        let lingering = linger(&server);
        let consuming = consume(&server, 3);
        let admitting = admit(&state, "key", "", None);
        eprintln!(
            "writer {} B, beside {} B, linger {} B, consume {} B, admit {} B",
            std::mem::size_of_val(&writer),
            std::mem::size_of_val(&beside),
            std::mem::size_of_val(&lingering),
            std::mem::size_of_val(&consuming),
            std::mem::size_of_val(&admitting),
        );
    }
    let task = serve(server, upgrade, state);
    let task_size = std::mem::size_of_val(&task);
    eprintln!("reader {reader_size} B, protocol loop {connection_size} B, task {task_size} B");
    assert!(reader_size <= 96, "reader {reader_size} B");
    assert!(task_size <= 768, "task future {task_size} B");
    assert!(connection_size <= 1280, "protocol loop {connection_size} B");
}

/// Several frames in one read, and a frame split across reads, come out as whole
/// messages; between them the connection keeps no buffer.
#[tokio::test]
async fn frames_are_read_whole_and_nothing_is_kept_between_them() {
    use tokio::io::AsyncWriteExt;
    let (mut client, server) = socket_pair().await;
    let mut reader = SocketReader::new(&server, 1024);
    let frame = |text: &str| {
        let mut bytes = BytesMut::new();
        Parser::write_message(&mut bytes, text, actix_http::ws::OpCode::Text, true, true);
        bytes
    };
    let mut two = frame("one");
    two.extend_from_slice(&frame("two"));
    client.write_all(&two).await.unwrap();
    for expected in ["one", "two"] {
        match reader.next().await {
            Some(Ok(Inbound::Text(text))) => assert_eq!(text, expected),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(reader.unparsed.capacity(), 0);
    let three = frame("three");
    client.write_all(&three[..3]).await.unwrap();
    client.flush().await.unwrap();
    let rest = async {
        tokio::task::yield_now().await;
        client.write_all(&three[3..]).await.unwrap();
        client
    };
    let (message, client) = tokio::join!(reader.next(), rest);
    assert!(matches!(message, Some(Ok(Inbound::Text(text))) if text == "three"));
    assert_eq!(reader.unparsed.capacity(), 0);
    drop(client);
    assert!(reader.next().await.is_none(), "the client left");
}

#[tokio::test]
async fn an_unmasked_client_frame_is_a_protocol_error() {
    use tokio::io::AsyncWriteExt;
    let (mut client, server) = socket_pair().await;
    let mut reader = SocketReader::new(&server, 1024);
    let unmasked = {
        let mut bytes = BytesMut::new();
        Parser::write_message(&mut bytes, "x", actix_http::ws::OpCode::Text, true, false);
        bytes
    };
    client.write_all(&unmasked).await.unwrap();
    assert!(matches!(
        reader.next().await,
        Some(Err(InboundError::Protocol(_)))
    ));
}

#[tokio::test]
async fn a_frame_over_the_limit_is_too_big() {
    use tokio::io::AsyncWriteExt;
    let (mut client, server) = socket_pair().await;
    let mut reader = SocketReader::new(&server, 16);
    let mut bytes = BytesMut::new();
    let text = "x".repeat(17);
    Parser::write_message(&mut bytes, text, actix_http::ws::OpCode::Text, true, true);
    client.write_all(&bytes).await.unwrap();
    assert!(matches!(
        reader.next().await,
        Some(Err(InboundError::TooBig))
    ));
}
