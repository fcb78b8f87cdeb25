//! A session of our SDK's HTTP carriers: a Pusher connection (`Connection::run`) whose
//! client messages come from POSTs and whose frames go out through whichever downstream
//! request is attached, numbered, with a cursor after each: a signed full cursor now and
//! then (the first frame, a channel or epoch the last one lacks, a third of its lifetime
//! gone) and, after every other frame, that full cursor's few-byte delta.
//!
//! A session keeps the frames it handed to downstream requests (up to the outbox's capacity)
//! until a later request's cursor shows the client has them, so a frame lost with a dropped
//! response is sent again by this edge; on another edge, channel history fills the gap
//! instead (see `open`, which decides between attaching, rebuilding and a new session).
//!
//! Attachment, grace, probation (a connection slot only once in use: a second downstream
//! request, a `send`, or a downstream still attached when the first-poll grace ends) and
//! close delivery are the machine every detached session runs (`carriers::detached`), shared
//! with pusher-js's xhr sessions; this file is the cursor framing's part: the numbered buffer
//! of handed-out frames, the signed cursors, and what a rebuild needs.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytestring::ByteString;
use protocol::carrier_cursor::{self, Cursor};
use protocol::names::{AppId, ChannelName, SocketId};
use serde_json::Value;
use tenancy::PlanLimits;
use tokio::sync::watch;
use tokio::time::Instant;

use super::detached::{Core, Detached, DetachedSession, Timing};
use crate::limits::{ConnectionSlot, Limits, unix_now};
use crate::link::Inbound;
use crate::outbox::{Outbox, Outgoing};

mod frames;
mod inbound;
mod source;

pub(crate) use inbound::queue as inbound_queue;
use inbound::{InboundReceiver, InboundSender};
#[cfg(test)]
mod tests;

pub(crate) use frames::closing_events;
use frames::{closed_event, frame_channel, note_position};
pub(crate) use source::Source;

/// The event a carrier sends in place of a WebSocket close frame (its data: `code`, `reason`).
pub(crate) const CLOSED_EVENT: &str = "switchboard:closed";

/// What an idle attached session sends so that the client's cursor stays fresh: the frame
/// our SDK (and pusher-js) ignore, carrying a new cursor like every frame.
const CURSOR_REFRESH_FRAME: &str = r#"{"event":"pusher:pong","data":{}}"#;

/// Everything a session is made from (see `open::create`).
pub(crate) struct Spec {
    pub socket_id: SocketId,
    pub key: String,
    pub secret: String,
    pub app_id: AppId,
    pub limits: PlanLimits,
    pub incarnation: String,
    pub rebuilt_from: Option<String>,
    /// Taken at once for a rebuilt session (its client has come back); `None`: on probation.
    pub slot: Option<ConnectionSlot>,
    pub slots: Arc<Limits>,
    pub outbox: Arc<Outbox>,
    pub inbound: InboundSender,
    pub grace: Duration,
    pub first_poll_grace: Duration,
    pub keepalive: Duration,
    pub cursor_lifetime: Duration,
    pub buffer_capacity: usize,
    /// Bytes the handed-out frames may hold (the outbox's byte bound).
    pub buffer_max_bytes: usize,
}

pub(crate) struct CarrierSession {
    pub socket_id: SocketId,
    pub(super) key: String,
    /// The key's secret, which signs this session's cursors.
    secret: String,
    /// The connection's outbox, the wake-up for the source, the plan as of the start.
    core: Core,
    pub(super) incarnation: String,
    /// The incarnation this one was rebuilt from: a request with one of its cursors (one
    /// whose answer was lost, or a concurrent one) attaches here from the first frame.
    pub(super) rebuilt_from: Option<String>,
    inbound: InboundSender,
    inner: Mutex<Inner>,
    keepalive: Duration,
    cursor_lifetime: Duration,
    /// Whether the connection task has finished its clean-up.
    finished: watch::Sender<bool>,
    buffer_capacity: usize,
    buffer_max_bytes: usize,
}

impl Inner {
    fn pop_sent(&mut self) {
        if let Some(sent) = self.sent.pop_front() {
            self.sent_bytes -= sent.bytes();
        }
    }
}

struct Inner {
    /// The number the next frame taken from the outbox gets (1-based).
    next_frame: u64,
    /// Frames handed out and not yet acknowledged by a later cursor, oldest first.
    sent: VecDeque<Sent>,
    /// Bytes of `sent` (frames and cursors).
    sent_bytes: usize,
    /// Channel positions as of the last frame taken.
    channels: BTreeMap<String, (String, u64)>,
    /// The last full cursor made, which later frames' deltas are relative to.
    base: Option<Base>,
    /// Channels the client asked for (downstream `subs` and upstream subscribes): names
    /// that parse, at most the plan's channels per connection.
    requested: HashSet<ChannelName>,
    /// Which downstream is current, grace, probation (a refusal), stopping (expiry,
    /// replacement) and close delivery.
    machine: Detached,
    /// The current downstream's waker, woken when a newer request supersedes it.
    writer: Option<Waker>,
    /// When the last full cursor was made.
    last_cursor_at: Instant,
    /// The close has been taken: nothing follows it.
    ended: bool,
    scratch: VecDeque<Outgoing>,
}

/// A full cursor and what it says, for the deltas after it.
struct Base {
    cursor: Cursor,
    text: Arc<str>,
}

/// A frame as delivered: the frame (a JSON object) and the cursor after it, `base` followed
/// by `delta` (empty when the frame's cursor is `base` itself).
#[derive(Clone)]
pub(crate) struct Sent {
    number: u64,
    pub frame: ByteString,
    pub base: Arc<str>,
    pub delta: Option<Arc<str>>,
}

impl Sent {
    /// The delta after the base (`~…`), or `""`.
    pub(crate) fn delta(&self) -> &str {
        self.delta.as_deref().unwrap_or_default()
    }

    /// The whole cursor after this frame, as any edge reads it.
    pub(crate) fn cursor(&self) -> String {
        format!("{}{}", self.base, self.delta())
    }

    /// What the frame holds of the session's buffer (the base is shared).
    fn bytes(&self) -> usize {
        self.frame.len() + self.delta().len()
    }
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
        let mut inner = session.lock();
        if !inner.machine.is_current(self.generation) {
            return Poll::Ready(Delivery::Finished);
        }
        inner.writer = Some(context.waker().clone());
        session.take_from_outbox(&mut inner, context);
        let first = out.len();
        for sent in inner.sent.iter().filter(|sent| sent.number >= self.next) {
            out.push(sent.clone());
        }
        // Frames the client has certainly not seen stay; the rest is bounded.
        while (inner.sent.len() > session.buffer_capacity
            || inner.sent_bytes > session.buffer_max_bytes)
            && inner
                .sent
                .front()
                .is_some_and(|sent| sent.number < self.next)
        {
            inner.pop_sent();
        }
        if let Some(last) = out[first..].last() {
            self.next = last.number + 1;
            self.cursor = last.cursor().into();
            if inner.ended && self.next == inner.next_frame {
                inner.machine.deliver_close();
                session.core.changed.notify_one();
            }
            return Poll::Ready(Delivery::Frames);
        }
        if inner.ended {
            return Poll::Ready(Delivery::Finished);
        }
        Poll::Pending
    }
}

impl DetachedSession for CarrierSession {
    fn core(&self) -> &Core {
        &self.core
    }

    fn with_machine<R>(&self, step: impl FnOnce(&mut Detached) -> R) -> R {
        step(&mut self.lock().machine)
    }
}

impl CarrierSession {
    pub(crate) fn new(spec: Spec) -> Arc<Self> {
        let now = Instant::now();
        let in_use = spec.slot.is_some();
        let timing = Timing {
            grace: spec.grace,
            first_poll_grace: spec.first_poll_grace,
        };
        Arc::new(Self {
            socket_id: spec.socket_id,
            key: spec.key,
            secret: spec.secret,
            core: Core::new(spec.outbox, spec.app_id, spec.limits, spec.slots, spec.slot),
            incarnation: spec.incarnation,
            rebuilt_from: spec.rebuilt_from,
            inbound: spec.inbound,
            inner: Mutex::new(Inner {
                next_frame: 1,
                sent: VecDeque::new(),
                sent_bytes: 0,
                channels: BTreeMap::new(),
                base: None,
                requested: HashSet::new(),
                machine: Detached::new(timing, now, in_use),
                writer: None,
                last_cursor_at: now,
                ended: false,
                scratch: VecDeque::new(),
            }),
            keepalive: spec.keepalive,
            // At least a second: cursors expire in whole seconds, and are refreshed every third.
            cursor_lifetime: spec.cursor_lifetime.max(Duration::from_secs(1)),
            finished: watch::Sender::new(false),
            buffer_capacity: spec.buffer_capacity,
            buffer_max_bytes: spec.buffer_max_bytes,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("session lock poisoned")
    }

    pub(super) fn is_stopping(&self) -> bool {
        self.lock().machine.is_stopping()
    }

    /// Moves the outbox's frames into the numbered buffer, with the cursor after each.
    fn take_from_outbox(&self, inner: &mut Inner, context: &mut Context<'_>) {
        if inner.ended {
            return;
        }
        let mut taken = std::mem::take(&mut inner.scratch);
        if self.core.outbox.poll_take(context, &mut taken).is_pending() {
            inner.scratch = taken;
            return;
        }
        let mut frames = Vec::new();
        for item in taken.drain(..) {
            match item {
                Outgoing::Text(frame) => frames.push(frame),
                Outgoing::Pong(_) => {}
                Outgoing::Close { code, reason } => {
                    inner.ended = true;
                    let closing = match inner.machine.refusal() {
                        // Ended by the edge over the quota: the client hears why.
                        Some(reason) => closing_events(reason),
                        None => vec![closed_event(code, &reason)],
                    };
                    frames.extend(closing);
                    break;
                }
            }
        }
        let now = Instant::now();
        for frame in frames {
            note_position(&mut inner.channels, &frame, self.max_remembered());
            let number = inner.next_frame;
            inner.next_frame += 1;
            let (base, delta) = self.cursor_after(inner, number, now);
            let sent = Sent {
                number,
                frame,
                base,
                delta,
            };
            inner.sent_bytes += sent.bytes();
            inner.sent.push_back(sent);
        }
        inner.scratch = taken;
    }

    /// The cursor after frame `number`: a delta of the last full cursor when one can say it
    /// and that cursor is less than a third of its lifetime old (so every cursor handed out
    /// has two thirds left), else a new full cursor, signed.
    fn cursor_after(
        &self,
        inner: &mut Inner,
        number: u64,
        now: Instant,
    ) -> (Arc<str>, Option<Arc<str>>) {
        let fresh = now < inner.last_cursor_at + self.cursor_lifetime / 3;
        if let Some(base) = &inner.base
            && fresh
            && let Some(delta) = carrier_cursor::delta(&base.cursor, number, &inner.channels)
        {
            return (base.text.clone(), Some(delta.into()));
        }
        let cursor = Cursor {
            socket_id: self.socket_id.to_string(),
            incarnation: self.incarnation.clone(),
            frame: number,
            expires: unix_now() + self.cursor_lifetime.as_secs(),
            channels: inner.channels.clone(),
        };
        let text: Arc<str> = cursor.encode(&self.key, &self.secret).into();
        inner.base = Some(Base {
            cursor,
            text: text.clone(),
        });
        inner.last_cursor_at = now;
        (text, None)
    }

    /// How many channels' positions and requests the session remembers: the plan's channels
    /// per connection (a few more positions, for frames in flight after an unsubscribe).
    fn max_remembered(&self) -> usize {
        self.core
            .limits
            .max_channels_per_connection
            .saturating_mul(2)
    }

    /// Attaches a downstream request that has every frame up to `acknowledged`; `None` when
    /// this incarnation can no longer serve it from there (the session must be rebuilt).
    pub(super) fn attach(
        self: &Arc<Self>,
        acknowledged: u64,
        cursor: Arc<str>,
    ) -> Option<Attachment> {
        let mut inner = self.lock();
        let oldest_kept = inner
            .sent
            .front()
            .map_or(inner.next_frame, |sent| sent.number);
        if acknowledged >= inner.next_frame
            || acknowledged + 1 < oldest_kept
            || inner.machine.is_stopping()
        {
            return None;
        }
        while inner
            .sent
            .front()
            .is_some_and(|sent| sent.number <= acknowledged)
        {
            inner.pop_sent();
        }
        Some(self.attach_locked(&mut inner, acknowledged, cursor))
    }

    /// The first request of a session just made: it serves from the first frame. Done before
    /// the session is findable, so no other request can have stopped it meanwhile.
    pub(super) fn attach_first(self: &Arc<Self>) -> Attachment {
        let mut inner = self.lock();
        self.attach_locked(&mut inner, 0, Arc::from(""))
    }

    fn attach_locked(
        self: &Arc<Self>,
        inner: &mut Inner,
        acknowledged: u64,
        cursor: Arc<str>,
    ) -> Attachment {
        let generation = inner.machine.attach();
        if let Some(previous) = inner.writer.take() {
            previous.wake();
        }
        self.core.changed.notify_one();
        Attachment {
            session: self.clone(),
            generation,
            next: acknowledged + 1,
            cursor,
        }
    }

    fn detach(&self, generation: u64) {
        let mut inner = self.lock();
        if inner.machine.detach(generation, Instant::now()) {
            inner.writer = None;
            drop(inner);
            self.core.changed.notify_one();
        }
    }

    /// Ends the session (its clean-up runs: presence leave, unsubscribe).
    pub(super) fn stop(&self) {
        self.lock().machine.stop();
        self.core.changed.notify_one();
    }

    pub(super) async fn finished(&self) {
        let mut finished = self.finished.subscribe();
        let _ = finished.wait_for(|done| *done).await;
    }

    pub(super) fn mark_finished(&self) {
        self.finished.send_replace(true);
    }

    /// Feeds a client frame to the session, noting subscriptions. `false` if it has ended.
    pub(crate) async fn send(&self, frame: &Value) -> bool {
        self.note_request(frame);
        self.inbound
            .send(Inbound::Text(frame.to_string().into()))
            .await
            .is_ok()
    }

    /// Remembers the channels the client asks for (so a later `subs` does not subscribe
    /// them again), bounded: names that parse, at most the plan's channels per connection.
    fn note_request(&self, frame: &Value) {
        let Some(channel) = frame_channel(frame) else {
            return;
        };
        let mut inner = self.lock();
        match frame["event"].as_str() {
            Some("pusher:subscribe")
                if inner.requested.len() < self.core.limits.max_channels_per_connection =>
            {
                inner.requested.insert(channel);
            }
            Some("pusher:unsubscribe") => {
                inner.channels.remove(channel.as_ref());
                inner.requested.remove(&channel);
            }
            _ => {}
        }
    }

    /// The plan's channels per connection, as of the session's start.
    pub(super) fn max_channels(&self) -> usize {
        self.core.limits.max_channels_per_connection
    }

    pub(super) fn has_requested(&self, channel: &ChannelName) -> bool {
        self.lock().requested.contains(channel)
    }

    /// The cursor, verified: signed for this session's key, unexpired, naming this session.
    pub(super) fn verify(&self, cursor: Option<&str>) -> Option<Cursor> {
        let cursor = carrier_cursor::verify(cursor?, &self.key, &self.secret, unix_now()).ok()?;
        (cursor.socket_id == self.socket_id.as_str()).then_some(cursor)
    }

    /// Whether `cursor` proves the client owns this incarnation of the session (`send`).
    pub(crate) fn owns(&self, cursor: Option<&str>) -> bool {
        self.verify(cursor)
            .is_some_and(|cursor| cursor.incarnation == self.incarnation)
    }

    pub(super) fn source(self: &Arc<Self>, inbound: InboundReceiver) -> Source {
        Source {
            session: self.clone(),
            inbound,
            next_keepalive: Instant::now() + self.keepalive,
        }
    }
}
