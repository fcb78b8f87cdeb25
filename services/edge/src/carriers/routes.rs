//! The endpoints of our SDK's HTTP carriers under `/sb/app/{key}` (see ARCHITECTURE.md,
//! "Carriers"): CORS on every answer, the four downstream carriers and the upstream `send`.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use protocol::carrier_cursor;
use protocol::carrier_subs::parse_subs;
use protocol::names::SocketId;
use serde_json::{Value, json};

use super::creation_limit::retry_after_secs;
use super::detached::DetachedSession;
use super::iframe::Iframe;
use super::open::{self, Downstream, Opened};
use super::session::{Attachment, Delivery, Sent};
use super::sse::Sse;
use super::stream::{Feed, Format, Ndjson, StreamingBody, quoted};
use crate::EdgeState;

/// The longest a long poll is held.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// How long a poll of a session it has just created waits for the session's first frame.
const FIRST_FRAME_WAIT: Duration = Duration::from_secs(5);

/// Mounted before the routes of any other `httpPath` (their pattern's regex reads the whole
/// path), so this scope also answers what they did below `/sb/app/{key}`: a WebSocket at
/// its root and pusher-js's xhr endpoints.
pub(crate) fn configure(config: &mut web::ServiceConfig) {
    let [xhr_streaming, xhr, xhr_send] = super::xhr::resources("");
    config.service(
        web::scope("/sb/app/{key}")
            .route("/sse", web::get().to(sse))
            .route("/poll", web::get().to(poll))
            .route("/stream", web::get().to(stream))
            .route("/iframe", web::get().to(iframe))
            .route("/send", web::post().to(send))
            .route("/{carrier}", web::method(Method::OPTIONS).to(preflight))
            .route("", web::get().to(crate::websocket::websocket))
            .service(xhr_streaming)
            .service(xhr)
            .service(xhr_send),
    );
}

/// The CORS headers every answer carries beside `Access-Control-Allow-Origin` (the
/// request's `Origin` echoed, or `*`). No credentials: the session travels in the URL,
/// never in cookies. `direct_stream` writes the same.
pub(crate) const CORS_HEADERS: [(&str, &str); 4] = [
    ("vary", "Origin"),
    (
        "access-control-allow-headers",
        "Content-Type, Last-Event-ID",
    ),
    ("access-control-expose-headers", "Content-Type"),
    ("cache-control", "no-cache, no-store"),
];

/// The headers of a streaming answer beside its content type: no proxy buffering, no
/// compression, as each frame must leave at once.
pub(crate) const STREAMING_HEADERS: [(&str, &str); 2] = [
    ("x-accel-buffering", "no"),
    ("content-encoding", "identity"),
];

/// CORS for pages on any origin (`CORS_HEADERS`).
fn cors(request: &HttpRequest, status: StatusCode) -> HttpResponseBuilder {
    let mut response = HttpResponse::build(status);
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .cloned()
        .unwrap_or(HeaderValue::from_static("*"));
    response.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin));
    for header in CORS_HEADERS {
        response.insert_header(header);
    }
    response
}

async fn preflight(request: HttpRequest) -> HttpResponse {
    cors(&request, StatusCode::NO_CONTENT)
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
        .finish()
}

fn error(request: &HttpRequest, status: StatusCode, message: &str) -> HttpResponse {
    cors(request, status).json(json!({ "error": message }))
}

fn key(request: &HttpRequest) -> String {
    request
        .match_info()
        .get("key")
        .unwrap_or_default()
        .to_owned()
}

fn query(request: &HttpRequest) -> Vec<(String, String)> {
    serde_urlencoded::from_str(request.query_string()).unwrap_or_default()
}

pub(crate) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .filter(|value| !value.is_empty())
}

/// `session`, `subs` and the cursor (EventSource's `Last-Event-ID` first: on its own
/// reconnect it is newer than the URL's `cursor`), and the client's address.
fn downstream(
    request: &HttpRequest,
    state: &EdgeState,
    params: &[(String, String)],
) -> Result<Downstream, String> {
    let last_event_id = request
        .headers()
        .get("last-event-id")
        .and_then(|value| value.to_str().ok());
    downstream_from(
        params,
        last_event_id,
        // Behind a trusted proxy, the client's own address (`--trusted-proxies`).
        ingress::client_address(request, &state.settings.trusted_proxies),
        crate::link::origin_header(request).map(str::to_owned),
    )
}

/// `downstream` from the request's parts (`direct_stream` reads them from the raw head).
pub(crate) fn downstream_from(
    params: &[(String, String)],
    last_event_id: Option<&str>,
    peer: Option<std::net::IpAddr>,
    origin: Option<String>,
) -> Result<Downstream, String> {
    let subs = match param(params, "subs") {
        None => Vec::new(),
        Some(subs) => parse_subs(subs).map_err(|error| error.to_string())?,
    };
    let last_event_id = last_event_id
        // A bare delta (`ids=delta`) names nothing by itself: the URL's cursor then.
        .filter(|value| !value.is_empty() && !value.starts_with(carrier_cursor::DELTA_MARK))
        .map(str::to_owned);
    let session = param(params, "session")
        .map(SocketId::parse)
        .transpose()
        .map_err(|_| "session must be a socket id (digits.digits)".to_owned())?;
    Ok(Downstream {
        session,
        subs,
        cursor: last_event_id.or_else(|| param(params, "cursor").map(str::to_owned)),
        peer,
        origin,
    })
}

/// Opens the request's session; `Err` is the answer when there is none to stream (a bad
/// request, or too many sessions created lately: 429 with `Retry-After`).
async fn open(request: &HttpRequest, state: &web::Data<EdgeState>) -> Result<Opened, HttpResponse> {
    let params = query(request);
    let downstream = downstream(request, state, &params)
        .map_err(|message| error(request, StatusCode::BAD_REQUEST, &message))?;
    let state: Arc<EdgeState> = state.clone().into_inner();
    match open::open(&state, &key(request), downstream).await {
        Opened::Limited(wait) => Err(too_many_sessions(request, wait)),
        opened => Ok(opened),
    }
}

/// 429: sessions are created too fast from this address or for this app.
pub(crate) fn too_many_sessions(request: &HttpRequest, wait: Duration) -> HttpResponse {
    cors(request, StatusCode::TOO_MANY_REQUESTS)
        .insert_header((header::RETRY_AFTER, retry_after_secs(wait).to_string()))
        .json(json!({ "error": "too many new sessions: retry later" }))
}

pub(crate) fn feed(opened: Opened) -> Feed {
    match opened {
        Opened::Attached(attachment) => Feed::Session(attachment),
        Opened::Refused(frames) => Feed::Fixed(frames),
        // `open` answers these itself.
        Opened::Limited(_) => Feed::Fixed(Vec::new()),
    }
}

fn streaming<F: Format + 'static>(
    request: &HttpRequest,
    state: &EdgeState,
    format: F,
    opened: Opened,
) -> HttpResponse {
    // A client that keeps the last full cursor and appends deltas itself (our SDK).
    let short_ids = param(&query(request), "ids") == Some("delta");
    // Refusals are 200 too: EventSource hides any other answer's body from the page.
    let mut response = cors(request, StatusCode::OK);
    response.insert_header((header::CONTENT_TYPE, format.content_type()));
    for header in STREAMING_HEADERS {
        response.insert_header(header);
    }
    response.streaming(StreamingBody::new(
        format,
        feed(opened),
        state.settings.sb_heartbeat_interval,
        short_ids,
    ))
}

async fn sse(request: HttpRequest, state: web::Data<EdgeState>) -> HttpResponse {
    match open(&request, &state).await {
        Ok(opened) => streaming(&request, &state, Sse, opened),
        Err(response) => response,
    }
}

async fn stream(request: HttpRequest, state: web::Data<EdgeState>) -> HttpResponse {
    match open(&request, &state).await {
        Ok(opened) => streaming(&request, &state, Ndjson, opened),
        Err(response) => response,
    }
}

async fn iframe(request: HttpRequest, state: web::Data<EdgeState>) -> HttpResponse {
    let params = query(&request);
    let callback = param(&params, "callback").unwrap_or_default();
    let origin = param(&params, "origin").unwrap_or_default();
    let Some(format) = Iframe::new(callback, origin) else {
        let message = "callback must match ^[A-Za-z_$][A-Za-z0-9_$.]{0,63}$ and origin be \
                       the page's origin, http(s)://host[:port]";
        return error(&request, StatusCode::BAD_REQUEST, message);
    };
    match open(&request, &state).await {
        Ok(opened) => streaming(&request, &state, format, opened),
        Err(response) => response,
    }
}

/// Long polling (`wait` seconds, at most 30) and polling (`wait=0`): one JSON answer with
/// the frames after the cursor, held until there is at least one or the wait is over.
async fn poll(request: HttpRequest, state: web::Data<EdgeState>) -> HttpResponse {
    let params = query(&request);
    let wait = match param(&params, "wait").map(str::parse::<u64>) {
        None => Duration::ZERO,
        Some(Ok(seconds)) => Duration::from_secs(seconds).min(MAX_WAIT),
        Some(Err(_)) => {
            return error(
                &request,
                StatusCode::BAD_REQUEST,
                "wait must be whole seconds",
            );
        }
    };
    let answer = match open(&request, &state).await {
        Err(response) => return response,
        Ok(Opened::Limited(wait)) => return too_many_sessions(&request, wait),
        Ok(Opened::Refused(frames)) => {
            let frames: Vec<Value> = frames
                .iter()
                .filter_map(|frame| serde_json::from_str(frame).ok())
                .collect();
            json!({ "session": null, "cursor": null, "frames": frames })
        }
        Ok(Opened::Attached(mut attachment)) => {
            // A session created by this request always answers with its first frame.
            let wait = if attachment.cursor.is_empty() {
                wait.max(FIRST_FRAME_WAIT)
            } else {
                wait
            };
            let frames = collect(&mut attachment, wait).await;
            let answer = poll_answer(
                attachment.session.socket_id.as_str(),
                &attachment.cursor,
                &frames,
            );
            return cors(&request, StatusCode::OK)
                .content_type("application/json")
                .body(answer);
        }
    };
    cors(&request, StatusCode::OK).json(answer)
}

/// `{"session","cursor","frames"}` written around the frames as they are (compact JSON
/// objects the edge built): no parse and re-serialisation per frame.
fn poll_answer(session: &str, cursor: &str, frames: &[Sent]) -> String {
    let length: usize = frames.iter().map(|sent| sent.frame.len() + 1).sum();
    let mut answer = String::with_capacity(length + cursor.len() + 64);
    answer.push_str("{\"session\":");
    answer.push_str(&quoted(session));
    answer.push_str(",\"cursor\":");
    answer.push_str(&quoted(cursor));
    answer.push_str(",\"frames\":[");
    for (index, sent) in frames.iter().enumerate() {
        if index > 0 {
            answer.push(',');
        }
        answer.push_str(&sent.frame);
    }
    answer.push_str("]}");
    answer
}

/// The frames the attachment gets within `wait` (what is there at once if it is zero).
async fn collect(attachment: &mut Attachment, wait: Duration) -> Vec<Sent> {
    let mut taken = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let _ = tokio::time::timeout_at(
        deadline,
        std::future::poll_fn(
            |context| match attachment.poll_frames(context, &mut taken) {
                std::task::Poll::Ready(Delivery::Frames | Delivery::Finished) => {
                    std::task::Poll::Ready(())
                }
                std::task::Poll::Pending => std::task::Poll::Pending,
            },
        ),
    )
    .await;
    taken
}

/// `POST /sb/app/{key}/send?session=…&cursor=…`: a JSON array of client frames for the
/// session; the cursor (one of this incarnation's, unexpired) proves ownership. A first
/// `send` ends the session's probation (404 if the app is then over its quota: the client
/// reopens downstream and is told 4004).
async fn send(request: HttpRequest, body: web::Bytes, state: web::Data<EdgeState>) -> HttpResponse {
    let params = query(&request);
    let session = param(&params, "session")
        .and_then(|id| state.sb_sessions.find(&key(&request), id))
        .filter(|session| session.owns(param(&params, "cursor")));
    let Some(session) = session else {
        return error(
            &request,
            StatusCode::NOT_FOUND,
            "unknown session: open a downstream request with subs and cursor",
        );
    };
    let frames: Vec<Value> = match serde_json::from_slice(&body) {
        Ok(Value::Array(frames)) => frames,
        _ => {
            let message = "the body must be a JSON array of frames";
            return error(&request, StatusCode::BAD_REQUEST, message);
        }
    };
    if frames.len() > 100 || frames.iter().any(|frame| !frame.is_object()) {
        let message = "at most 100 frames, each a JSON object";
        return error(&request, StatusCode::BAD_REQUEST, message);
    }
    if !session.put_in_use().await {
        session.stop();
        return error(&request, StatusCode::NOT_FOUND, "the session has ended");
    }
    for frame in &frames {
        if !session.send(frame).await {
            return error(&request, StatusCode::NOT_FOUND, "the session has ended");
        }
    }
    cors(&request, StatusCode::NO_CONTENT).finish()
}
