//! The server's TCP listener: `actix-server` workers whose service peeks at each new
//! connection's first request. A WebSocket upgrade to `/app/{key}` (`websocket::handshake`)
//! goes to `websocket::direct`, never touching actix's HTTP/1 dispatcher, whose buffers
//! would otherwise stay allocated under every upgraded connection; everything else is handed,
//! untouched (only peeked at), to actix-http's `HttpService` for the same actix-web `App`,
//! configured as `actix_web::HttpServer` configures it.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use actix_http::{HttpService, KeepAlive, Protocol, Request, Response, body::MessageBody};
use actix_service::{IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt, fn_factory};
use actix_service::{fn_service, map_config};
use actix_web::dev::{AppConfig, Server};
use tokio::io::{Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::EdgeState;
use crate::carriers::stream_head::{self, StreamHead};
use crate::websocket::handshake::{self, MAX_HEAD_BYTES, Peeked, Upgrade};

/// How the listener runs; what `HttpServer` offered that the server used.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    /// Connections one worker holds at most.
    pub max_connections_per_worker: usize,
    /// Seconds a graceful stop waits for connections to end.
    pub shutdown_timeout_seconds: u64,
}

/// A listening socket on `host:port` (the first of its addresses that binds) whose accept
/// queue holds `backlog` connections (the kernel caps it at `net.core.somaxconn`).
/// `std::net::TcpListener::bind` asks for 128: a burst of a few hundred clients overflows
/// it, and every connection dropped there waits out TCP's 1 s SYN retransmission.
pub fn bind(host: &str, port: u16, backlog: u32) -> io::Result<std::net::TcpListener> {
    use std::net::ToSocketAddrs;
    let mut last_error = None;
    for address in (host, port).to_socket_addrs()? {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(address),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        // As std's `bind` does on Unix: a restarted server binds while old connections linger.
        socket.set_reuse_address(true)?;
        match socket.bind(&address.into()) {
            Ok(()) => {
                socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
                return Ok(socket.into());
            }
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address")))
}

/// How long a request head may take to arrive whole before the connection is left to
/// actix-web (whose own client request timeout, the same 5 s, then applies).
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

thread_local! {
    /// Where request heads are peeked into, one per worker thread.
    static PEEK_BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; MAX_HEAD_BYTES]);
}

/// Serves `app` (built once per worker, as `HttpServer::new` builds it) on `listener`, with
/// `edge`'s WebSockets taken before the HTTP dispatcher (with no edge, everything is HTTP).
pub fn serve<F, I, S, B>(
    listener: std::net::TcpListener,
    edge: Option<Arc<EdgeState>>,
    settings: ListenerSettings,
    app: F,
) -> io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let address = listener.local_addr()?;
    let builder = Server::build();
    let shutdown = builder.graceful_shutdown_signal();
    let server = builder
        .max_concurrent_connections(settings.max_connections_per_worker)
        .disable_signals()
        .shutdown_timeout(settings.shutdown_timeout_seconds)
        .listen("switchboard", listener, move || {
            let shutdown = shutdown.clone();
            // `HttpServer`'s defaults, which the server ran on before.
            let http = HttpService::build()
                .graceful_shutdown_signal(move || {
                    let signal = shutdown.clone();
                    async move { signal.notified().await }
                })
                .keep_alive(KeepAlive::default())
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                .h1_allow_half_closed(true)
                .local_addr(address)
                .finish(map_config(
                    app()
                        .into_factory()
                        .map_err(|error| error.into().error_response()),
                    // As `HttpServer::listen` configures the app: not TLS, host = address.
                    move |()| AppConfig::__priv_test_new(false, address.to_string(), address),
                ));
            let edge = edge.clone();
            fn_factory(move || {
                let http = http.new_service(());
                let edge = edge.clone();
                async move {
                    // Built on each worker's thread, once: the worker's lag probe starts here.
                    crate::worker_lag::spawn_on_this_worker(
                        edge.as_ref().map(|edge| edge.hub.clone()),
                    );
                    let http = Rc::new(http.await?);
                    // Boxed: actix-server's task keeps the service's future twice (captured,
                    // then awaited), and a connection's task lives as long as it does.
                    Ok::<_, ()>(fn_service(move |stream: TcpStream| {
                        Box::pin(route(stream, http.clone(), edge.clone()))
                    }))
                }
            })
        })?
        .run();
    Ok(server)
}

/// One accepted connection: a WebSocket of the edge's, or HTTP.
async fn route<H>(
    stream: TcpStream,
    http: Rc<H>,
    edge: Option<Arc<EdgeState>>,
) -> Result<(), H::Error>
where
    H: Service<(TcpStream, Protocol, Option<SocketAddr>), Response = ()>,
{
    // A push server's frames are small and must go at once: without this, Nagle holds a
    // frame written while the previous one is unacknowledged (the 101 and then
    // `connection_established`, or two deliveries) until the client's ACK, which a delayed
    // ACK can put off for up to 40 ms.
    let _ = stream.set_nodelay(true);
    if let Some(state) = edge {
        match peek(&stream).await {
            First::WebSocket(upgrade) => {
                crate::websocket::direct::serve(stream, upgrade, state).await;
                return Ok(());
            }
            First::Stream(head) => {
                crate::carriers::direct_stream::serve(stream, head, state).await;
                return Ok(());
            }
            First::Http => {}
        }
    }
    let peer = stream.peer_addr().ok();
    // Boxed: the dispatcher's future is large, and a WebSocket task would carry its size.
    Box::pin(http.call((stream, Protocol::Http1, peer))).await
}

/// What a connection's first request is.
enum First {
    /// A WebSocket upgrade of ours (`websocket::direct`).
    WebSocket(Box<Upgrade>),
    /// A streaming downstream of our HTTP carriers (`carriers::direct_stream`).
    Stream(Box<StreamHead>),
    /// Anything else: actix-web's.
    Http,
}

/// What the connection's first bytes are, without taking them from the socket. A client
/// that sends no whole head within `HEAD_TIMEOUT` is left to actix-web's own timeout.
async fn peek(stream: &TcpStream) -> First {
    let whole_head = async {
        loop {
            if let Some(first) = peek_once(stream).await {
                return first;
            }
            // Only new bytes can complete the head: forget the readiness already seen, so the
            // next peek waits for them instead of spinning.
            let _ = stream.try_io(Interest::READABLE, || {
                Err::<(), _>(io::ErrorKind::WouldBlock.into())
            });
        }
    };
    tokio::time::timeout(HEAD_TIMEOUT, whole_head)
        .await
        .unwrap_or(First::Http)
}

/// One look at the bytes there are; `None` while the head is incomplete.
async fn peek_once(stream: &TcpStream) -> Option<First> {
    std::future::poll_fn(|context| {
        PEEK_BUFFER.with_borrow_mut(|buffer| {
            let mut peeked = ReadBuf::new(buffer);
            match stream.poll_peek(context, &mut peeked) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(Some(First::Http)),
                Poll::Ready(Ok(_)) => Poll::Ready(classify(peeked.filled())),
                Poll::Pending => Poll::Pending,
            }
        })
    })
    .await
}

/// A WebSocket upgrade of ours, else (the head being whole) a stream of ours, else HTTP;
/// `None` while the head is incomplete.
fn classify(bytes: &[u8]) -> Option<First> {
    match handshake::recognise(bytes) {
        Peeked::NeedMore => None,
        Peeked::Upgrade(upgrade) => Some(First::WebSocket(upgrade)),
        Peeked::NotOurs => Some(stream_head::recognise(bytes).map_or(First::Http, First::Stream)),
    }
}
