//! A session of our SDK's HTTP carriers: a Pusher connection (`Connection::run`) whose
//! client messages come from POSTs and whose frames go out through whichever downstream
//! request is attached, numbered, with a cursor after each.
//!
//! The registry is a cache: a request for a session this edge does not hold rebuilds it
//! with the same socket id from the request's `subs` and cursor (see `open`). A session
//! keeps the frames it handed to downstream requests (up to the outbox's capacity) until a
//! later request's cursor shows the client has them, so a frame lost with a dropped response
//! is sent again by this edge; on another edge, channel history fills the gap instead.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytestring::ByteString;
use protocol::codes::CloseReason;
use protocol::names::SocketId;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument;

use super::cursor::Cursor;
use crate::EdgeState;
use crate::connection::{Connection, MessageSource, admit, closing_frames};
use crate::outbox::{Outbox, Outgoing};
use crate::websocket::{Inbound, InboundError};

/// The event a carrier sends in place of a WebSocket close frame (its data: `code`, `reason`).
pub(crate) const CLOSED_EVENT: &str = "switchboard:closed";

/// Every HTTP-carrier session this edge holds, by socket id.
#[derive(Default)]
pub(crate) struct Registry {
    sessions: Mutex<HashMap<SocketId, Arc<CarrierSession>>>,
}

impl Registry {
    fn get(&self, id: &SocketId) -> Option<Arc<CarrierSession>> {
        self.sessions
            .lock()
            .expect("registry lock")
            .get(id)
            .cloned()
    }

    fn insert(&self, session: Arc<CarrierSession>) {
        let mut sessions = self.sessions.lock().expect("registry lock");
        sessions.insert(session.socket_id.clone(), session);
    }

    fn remove(&self, session: &Arc<CarrierSession>) {
        let mut sessions = self.sessions.lock().expect("registry lock");
        if sessions
            .get(&session.socket_id)
            .is_some_and(|held| Arc::ptr_eq(held, session))
        {
            sessions.remove(&session.socket_id);
        }
    }

    /// The live session with this id of the app with `key`, if this edge holds it.
    pub(crate) fn find(&self, key: &str, id: &str) -> Option<Arc<CarrierSession>> {
        let id = SocketId::parse(id).ok()?;
        self.get(&id)
            .filter(|session| session.key == key && !session.is_stopping())
    }
}

/// One subscription a downstream request asks for (`subs`).
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct Sub {
    pub channel: String,
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub channel_data: Option<String>,
}

/// What a downstream request names.
#[derive(Debug, Default)]
pub(crate) struct Downstream {
    pub session: Option<String>,
    pub subs: Vec<Sub>,
    pub cursor: Option<String>,
}

pub(crate) struct CarrierSession {
    pub socket_id: SocketId,
    key: String,
    /// The key's secret, which signs this session's cursors.
    secret: String,
    incarnation: String,
    outbox: Arc<Outbox>,
    inbound: mpsc::Sender<Inbound>,
    inner: Mutex<Inner>,
    /// Wakes the message source: a downstream attached or detached, or the session stops.
    changed: Notify,
    grace: Duration,
    keepalive: Duration,
    /// Whether the connection task has finished its clean-up.
    finished: watch::Sender<bool>,
    buffer_capacity: usize,
}

struct Inner {
    /// The number the next frame taken from the outbox gets (1-based).
    next_frame: u64,
    /// Frames handed out and not yet acknowledged by a later cursor, oldest first.
    sent: VecDeque<Sent>,
    /// Channel positions as of the last frame taken.
    channels: BTreeMap<String, (String, u64)>,
    /// Channels the client asked for (downstream `subs` and upstream subscribes).
    requested: HashSet<String>,
    /// The current downstream attachment and whether it is still open.
    attachment: u64,
    attached: bool,
    detached_at: Instant,
    /// The current downstream's waker, woken when a newer request supersedes it.
    writer: Option<Waker>,
    /// Asked to end (expiry, replacement): the source reports the client gone.
    stopping: bool,
    /// The close has been taken: nothing follows it.
    ended: bool,
    /// A downstream request has been handed the close.
    close_delivered: bool,
    scratch: VecDeque<Outgoing>,
}

/// A frame as delivered: the frame (a JSON object) and the cursor after it.
#[derive(Clone)]
pub(crate) struct Sent {
    number: u64,
    pub frame: ByteString,
    pub cursor: Arc<str>,
}

/// One downstream request's hold on its session.
pub(crate) struct Attachment {
    pub session: Arc<CarrierSession>,
    generation: u64,
    /// The number of the next frame to send it.
    next: u64,
    /// The cursor after the last frame sent (the request's own cursor before any).
    pub cursor: Arc<str>,
}

/// What polling an attachment gave.
pub(crate) enum Delivery {
    /// Frames were added to the output.
    Frames,
    /// A newer request took the session over, or the session ended: this response ends.
    Finished,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.session.detach(self.generation);
    }
}

impl Attachment {
    /// Takes what the session has for this request into `out`.
    pub(crate) fn poll_frames(
        &mut self,
        context: &mut Context<'_>,
        out: &mut Vec<Sent>,
    ) -> Poll<Delivery> {
        let session = self.session.clone();
        let mut inner = session.inner.lock().expect("session lock");
        if inner.attachment != self.generation {
            return Poll::Ready(Delivery::Finished);
        }
        inner.writer = Some(context.waker().clone());
        session.take_from_outbox(&mut inner, context);
        let first = out.len();
        for sent in inner.sent.iter().filter(|sent| sent.number >= self.next) {
            out.push(sent.clone());
        }
        // Frames the client has certainly not seen stay; the rest is bounded.
        while inner.sent.len() > session.buffer_capacity
            && inner
                .sent
                .front()
                .is_some_and(|sent| sent.number < self.next)
        {
            inner.sent.pop_front();
        }
        if let Some(last) = out[first..].last() {
            self.next = last.number + 1;
            self.cursor = last.cursor.clone();
            if inner.ended && self.next == inner.next_frame {
                inner.close_delivered = true;
                session.changed.notify_one();
            }
            return Poll::Ready(Delivery::Frames);
        }
        if inner.ended {
            return Poll::Ready(Delivery::Finished);
        }
        Poll::Pending
    }
}

impl CarrierSession {
    fn is_stopping(&self) -> bool {
        self.inner.lock().expect("session lock").stopping
    }

    /// Moves the outbox's frames into the numbered buffer, with the cursor after each.
    fn take_from_outbox(&self, inner: &mut Inner, context: &mut Context<'_>) {
        if inner.ended {
            return;
        }
        let mut taken = std::mem::take(&mut inner.scratch);
        if self.outbox.poll_take(context, &mut taken).is_pending() {
            inner.scratch = taken;
            return;
        }
        for item in taken.drain(..) {
            let frame: ByteString = match item {
                Outgoing::Text(frame) => {
                    note_position(&mut inner.channels, &frame);
                    frame
                }
                Outgoing::Pong(_) => continue,
                Outgoing::Close { code, reason } => {
                    inner.ended = true;
                    json!({"event": CLOSED_EVENT, "data": {"code": code, "reason": reason}})
                        .to_string()
                        .into()
                }
            };
            let number = inner.next_frame;
            inner.next_frame += 1;
            let cursor = Cursor {
                socket_id: self.socket_id.to_string(),
                incarnation: self.incarnation.clone(),
                frame: number,
                channels: inner.channels.clone(),
            };
            inner.sent.push_back(Sent {
                number,
                frame,
                cursor: cursor.encode(&self.secret).into(),
            });
            if inner.ended {
                break;
            }
        }
        inner.scratch = taken;
    }

    /// Attaches a downstream request that has every frame up to `acknowledged`; `None` when
    /// this incarnation can no longer serve it from there (the session must be rebuilt).
    fn attach(self: &Arc<Self>, acknowledged: u64, cursor: Arc<str>) -> Option<Attachment> {
        let mut inner = self.inner.lock().expect("session lock");
        let oldest_kept = inner
            .sent
            .front()
            .map_or(inner.next_frame, |sent| sent.number);
        if acknowledged >= inner.next_frame || acknowledged + 1 < oldest_kept || inner.stopping {
            return None;
        }
        while inner
            .sent
            .front()
            .is_some_and(|sent| sent.number <= acknowledged)
        {
            inner.sent.pop_front();
        }
        inner.attachment += 1;
        inner.attached = true;
        if let Some(previous) = inner.writer.take() {
            previous.wake();
        }
        let generation = inner.attachment;
        drop(inner);
        self.changed.notify_one();
        Some(Attachment {
            session: self.clone(),
            generation,
            next: acknowledged + 1,
            cursor,
        })
    }

    fn detach(&self, generation: u64) {
        let mut inner = self.inner.lock().expect("session lock");
        if inner.attachment == generation && inner.attached {
            inner.attached = false;
            inner.detached_at = Instant::now();
            inner.writer = None;
            drop(inner);
            self.changed.notify_one();
        }
    }

    /// Ends the session (its clean-up runs: presence leave, unsubscribe).
    fn stop(&self) {
        self.inner.lock().expect("session lock").stopping = true;
        self.changed.notify_one();
    }

    /// After a close by the server (terminate, slow consumer, shutdown): keeps the session
    /// findable until a downstream request has taken its last frames (the client learns why
    /// it was closed) or the grace period ends.
    async fn linger(&self) {
        let deadline = Instant::now() + self.grace;
        loop {
            {
                let inner = self.inner.lock().expect("session lock");
                if inner.close_delivered || inner.stopping {
                    return;
                }
            }
            tokio::select! {
                () = self.changed.notified() => {}
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    async fn finished(&self) {
        let mut finished = self.finished.subscribe();
        let _ = finished.wait_for(|done| *done).await;
    }

    /// Feeds a client frame to the session, noting subscriptions. `false` if it has ended.
    pub(crate) async fn send(&self, frame: &Value) -> bool {
        self.note_request(frame);
        self.inbound
            .send(Inbound::Text(frame.to_string().into()))
            .await
            .is_ok()
    }

    fn note_request(&self, frame: &Value) {
        let channel = frame_channel(frame);
        let mut inner = self.inner.lock().expect("session lock");
        match (frame["event"].as_str(), channel) {
            (Some("pusher:subscribe"), Some(channel)) => {
                inner.requested.insert(channel);
            }
            (Some("pusher:unsubscribe"), Some(channel)) => {
                inner.requested.remove(&channel);
                inner.channels.remove(&channel);
            }
            _ => {}
        }
    }

    /// Whether `cursor` proves the client owns this session.
    pub(crate) fn owns(&self, cursor: Option<&str>) -> bool {
        cursor
            .and_then(|cursor| Cursor::decode(cursor, &self.secret))
            .is_some_and(|cursor| cursor.socket_id == self.socket_id.as_str())
    }
}

/// The channel of a subscribe or unsubscribe frame (`data` an object or a JSON string).
pub(crate) fn frame_channel(frame: &Value) -> Option<String> {
    let data = match &frame["data"] {
        Value::String(text) => serde_json::from_str(text).ok()?,
        other => other.clone(),
    };
    data["channel"].as_str().map(str::to_owned)
}

/// Updates the channel positions from a frame: a channel event's serial and epoch, or the
/// position `subscription_succeeded` announces.
fn note_position(channels: &mut BTreeMap<String, (String, u64)>, frame: &str) {
    #[derive(serde::Deserialize)]
    struct Peek {
        event: String,
        channel: Option<String>,
        serial: Option<u64>,
        epoch: Option<String>,
        data: Option<Value>,
    }
    let Ok(peek) = serde_json::from_str::<Peek>(frame) else {
        return;
    };
    let Some(channel) = peek.channel else {
        return;
    };
    if let (Some(serial), Some(epoch)) = (peek.serial, peek.epoch) {
        channels.insert(channel, (epoch, serial));
        return;
    }
    if peek.event == "pusher_internal:subscription_succeeded" {
        let data = match peek.data {
            Some(Value::String(text)) => serde_json::from_str(&text).unwrap_or(Value::Null),
            Some(other) => other,
            None => Value::Null,
        };
        if let (Some(serial), Some(epoch)) = (data["serial"].as_u64(), data["epoch"].as_str()) {
            channels.insert(channel, (epoch.to_owned(), serial));
        }
    }
}

/// The connection's client messages: the POSTs, a keep-alive while a downstream is attached
/// (a carrier's client cannot answer `pusher:ping` by itself), and the end of the session
/// when no downstream has been attached for the grace period.
struct Source {
    session: Arc<CarrierSession>,
    inbound: mpsc::Receiver<Inbound>,
    next_keepalive: Instant,
}

impl MessageSource for Source {
    async fn next(&mut self) -> Option<Result<Inbound, InboundError>> {
        loop {
            let (attached, deadline) = {
                let inner = self.session.inner.lock().expect("session lock");
                if inner.stopping {
                    return None;
                }
                (inner.attached, inner.detached_at + self.session.grace)
            };
            let wake_at = if attached {
                self.next_keepalive
            } else {
                deadline
            };
            tokio::select! {
                message = self.inbound.recv() => return message.map(Ok),
                () = self.session.changed.notified() => {}
                () = tokio::time::sleep_until(wake_at) => {
                    if attached {
                        self.next_keepalive = Instant::now() + self.session.keepalive;
                        return Some(Ok(Inbound::Pong));
                    }
                    let mut inner = self.session.inner.lock().expect("session lock");
                    if !inner.attached && inner.detached_at + self.session.grace <= Instant::now() {
                        inner.stopping = true;
                        tracing::debug!("carrier session expired");
                        return None;
                    }
                }
            }
        }
    }
}

/// What `open` gives a downstream request.
pub(crate) enum Opened {
    Attached(Attachment),
    /// Refused: these frames (`pusher:error` and the close), then the end.
    Refused(Vec<ByteString>),
}

/// Serves a downstream request: attaches it to the session it names if this edge holds that
/// incarnation and the cursor proves ownership, otherwise (re)creates the session (with the
/// same socket id when one is named) and resumes each of `subs` from the cursor's position.
pub(crate) async fn open(state: &Arc<EdgeState>, key: &str, request: Downstream) -> Opened {
    let unverified = request
        .cursor
        .as_deref()
        .and_then(Cursor::decode_unverified)
        .map(|(cursor, _, _)| cursor);
    let named = request
        .session
        .clone()
        .or_else(|| unverified.as_ref().map(|cursor| cursor.socket_id.clone()))
        .and_then(|id| SocketId::parse(&id).ok());
    let registry = &state.sb_sessions;
    if let Some(id) = &named
        && let Some(session) = registry.get(id)
    {
        let verified = request
            .cursor
            .as_deref()
            .and_then(|text| Cursor::decode(text, &session.secret))
            .filter(|cursor| cursor.socket_id == id.as_str());
        match verified {
            Some(cursor) if session.key == key => {
                if cursor.incarnation == session.incarnation {
                    let text: Arc<str> = request.cursor.clone().unwrap_or_default().into();
                    if let Some(attachment) = session.attach(cursor.frame, text) {
                        subscribe_missing(&attachment.session, &request.subs, &cursor).await;
                        return Opened::Attached(attachment);
                    }
                }
                // Another incarnation's cursor (the client was served elsewhere), or one
                // this incarnation can no longer serve: rebuild from the cursor.
                session.stop();
                session.finished().await;
                return create(state, key, Some(id.clone()), &request.subs, Some(cursor)).await;
            }
            // Without proof of ownership, a live session is not someone else's to take.
            _ => return create(state, key, None, &request.subs, None).await,
        }
    }
    let resume_from = unverified
        .filter(|cursor| Some(cursor.socket_id.as_str()) == named.as_ref().map(SocketId::as_str));
    create(state, key, named, &request.subs, resume_from).await
}

/// Subscribes the session to each of `subs` it was not asked for yet.
async fn subscribe_missing(session: &Arc<CarrierSession>, subs: &[Sub], cursor: &Cursor) {
    for sub in subs {
        let known = session
            .inner
            .lock()
            .expect("session lock")
            .requested
            .contains(&sub.channel);
        if !known {
            session.send(&subscribe_frame(sub, cursor)).await;
        }
    }
}

pub(crate) fn subscribe_frame(sub: &Sub, cursor: &Cursor) -> Value {
    let mut data = json!({ "channel": sub.channel });
    if let Some(auth) = &sub.auth {
        data["auth"] = json!(auth);
    }
    if let Some(channel_data) = &sub.channel_data {
        data["channel_data"] = json!(channel_data);
    }
    if let Some((epoch, serial)) = cursor.channels.get(&sub.channel) {
        data["resume"] = json!({ "serial": serial, "epoch": epoch });
    }
    json!({ "event": "pusher:subscribe", "data": data })
}

/// Starts a session (a new socket id, or `id` when rebuilding one) and attaches the request.
async fn create(
    state: &Arc<EdgeState>,
    key: &str,
    id: Option<SocketId>,
    subs: &[Sub],
    cursor: Option<Cursor>,
) -> Opened {
    let (keyed, slot) = match admit(state, key, "").await {
        Ok(admitted) => admitted,
        Err(reason) => return refused(key, reason),
    };
    let socket_id = id.unwrap_or_else(|| state.socket_ids.next());
    let outbox = Arc::new(Outbox::new(
        socket_id.clone(),
        state.settings.outbox_capacity,
    ));
    let (sender, receiver) = mpsc::channel(64);
    let session = Arc::new(CarrierSession {
        socket_id: socket_id.clone(),
        key: key.to_owned(),
        secret: keyed.secret.expose().to_owned(),
        incarnation: format!("{:016x}", rand::random::<u64>()),
        outbox: outbox.clone(),
        inbound: sender,
        inner: Mutex::new(Inner {
            next_frame: 1,
            sent: VecDeque::new(),
            channels: BTreeMap::new(),
            requested: HashSet::new(),
            attachment: 0,
            attached: false,
            detached_at: Instant::now(),
            writer: None,
            stopping: false,
            ended: false,
            close_delivered: false,
            scratch: VecDeque::new(),
        }),
        changed: Notify::new(),
        grace: state.settings.sb_session_grace,
        keepalive: state.settings.activity_timeout / 2,
        finished: watch::Sender::new(false),
        buffer_capacity: state.settings.outbox_capacity,
    });
    let source = Source {
        session: session.clone(),
        inbound: receiver,
        next_keepalive: Instant::now() + session.keepalive,
    };
    state.sb_sessions.insert(session.clone());
    let span =
        tracing::info_span!("carrier_session", app_id = %keyed.app.id, socket_id = %socket_id);
    let task_state = state.clone();
    let task_session = session.clone();
    actix_web::rt::spawn(
        async move {
            Connection::run(task_state.clone(), keyed, slot, outbox, source).await;
            task_session.linger().await;
            task_state.sb_sessions.remove(&task_session);
            task_session.finished.send_replace(true);
        }
        .instrument(span),
    );
    // After the task has started: more subscriptions than the channel holds wait for it.
    let cursor = cursor.unwrap_or_default();
    for sub in subs {
        session.send(&subscribe_frame(sub, &cursor)).await;
    }
    let attachment = session
        .attach(0, Arc::from(""))
        .expect("a new session serves from its first frame");
    Opened::Attached(attachment)
}

fn refused(key: &str, reason: CloseReason) -> Opened {
    tracing::info!(key = %key, code = reason.disconnect().code, "carrier session refused");
    crate::metrics::connection_closed(reason.disconnect().code);
    let frames = closing_frames(reason)
        .into_iter()
        .filter_map(|item| match item {
            Outgoing::Text(frame) => Some(frame),
            Outgoing::Close { code, reason } => Some(
                json!({"event": CLOSED_EVENT, "data": {"code": code, "reason": reason}})
                    .to_string()
                    .into(),
            ),
            Outgoing::Pong(_) => None,
        })
        .collect();
    Opened::Refused(frames)
}
