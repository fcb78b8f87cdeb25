//! A connection's bounded outbound queue. Fan-out and the connection's own task push frames
//! without awaiting; the HTTP response body (`websocket::OutboundBody`) takes them straight
//! to the socket.
//!
//! A `VecDeque` behind a std mutex rather than a channel: it allocates nothing until the first
//! frame, so idle connections stay small, and a push wakes only the socket writer, not the
//! connection's task. A full queue marks the connection for closing with 4100 instead of
//! growing memory. The bound is in frames and in bytes (`OutboxBounds`): a client that stops
//! reading holds at most that much of this node's memory, whatever the frames' sizes.
//! `OutboxStats` sums every outbox of the node for `/metrics`.
//!
//! While the connection subscribes, its channel's fan-out frames are held (`hold`) and then
//! released after the subscriber's position: the frames at or below the serial it was told
//! (or was replayed) are dropped, so it receives each serial once, in order.
//!
//! A channel subscribed with delta updates (`enable_delta`) remembers the serial of the last
//! frame of that channel queued here; a publication's precomputed delta is queued instead of
//! its full frame only when that serial is the delta's base (`protocol::delta::pick`). A
//! subscribe (`hold`) forgets it, so the first event after a subscribe or resume is full.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use bytestring::ByteString;
use futures_util::task::AtomicWaker;
use protocol::codes::CloseReason;
use protocol::delta::{self, Delta, Pick};
use protocol::names::{ChannelName, SocketId};
use tokio::sync::Notify;

use crate::fanout::AppFlow;

const OPEN: u8 = 0;
const OVERFLOWED: u8 = 1;
const TERMINATED: u8 = 2;
const SHUTTING_DOWN: u8 = 3;
const CLOSED: u8 = 4;
const INTERRUPTED: u8 = 5;
/// A queue's buffer larger than this once taken is given back (after a burst).
const KEEP_QUEUE: usize = 8;

/// One thing to write to the socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Text(ByteString),
    Pong(Bytes),
    /// The close frame; nothing is written after it.
    Close {
        code: u16,
        reason: String,
    },
}

impl Outgoing {
    /// The bytes the item holds (its payload; the close frame's reason).
    fn bytes(&self) -> usize {
        match self {
            Outgoing::Text(text) => text.len(),
            Outgoing::Pong(bytes) => bytes.len(),
            Outgoing::Close { reason, .. } => reason.len(),
        }
    }
}

/// How much one outbox may hold of fan-out frames before its connection is a slow consumer
/// (4100). The connection's own replies may take as much again: a client that sends without
/// reading is bounded too.
#[derive(Debug, Clone)]
pub struct OutboxBounds {
    pub frames: usize,
    pub bytes: usize,
    /// The node's totals, which every outbox adds to.
    pub stats: Arc<OutboxStats>,
}

#[cfg(test)]
impl OutboxBounds {
    /// `frames` frames of any size, for unit tests that do not count bytes.
    pub(crate) fn frames_for_test(frames: usize) -> Self {
        Self {
            frames,
            bytes: usize::MAX / 4,
            stats: Arc::default(),
        }
    }
}

/// What the node's outboxes hold, for `/metrics` and for tests that check memory stays
/// bounded without timing anything.
#[derive(Debug, Default)]
pub struct OutboxStats {
    queued_bytes: AtomicU64,
    peak_bytes: AtomicU64,
    overflows: AtomicU64,
}

impl OutboxStats {
    /// Bytes queued in every outbox of the node now (frames being written excluded).
    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes.load(Ordering::Relaxed)
    }

    /// The most bytes any one outbox of the node has held.
    pub fn peak_bytes(&self) -> u64 {
        self.peak_bytes.load(Ordering::Relaxed)
    }

    /// Connections of this node closed because their outbox was full.
    pub fn overflows(&self) -> u64 {
        self.overflows.load(Ordering::Relaxed)
    }

    fn added(&self, bytes: usize, outbox_now: usize) {
        self.queued_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        let outbox_now = outbox_now as u64;
        if outbox_now > self.peak_bytes.load(Ordering::Relaxed) {
            self.peak_bytes.fetch_max(outbox_now, Ordering::Relaxed);
        }
    }

    fn removed(&self, bytes: usize) {
        self.queued_bytes.fetch_sub(bytes as u64, Ordering::Relaxed);
    }
}

/// The queue between everything that sends to a connection and its socket.
#[derive(Debug)]
pub struct Outbox {
    socket_id: SocketId,
    bounds: OutboxBounds,
    queue: Mutex<Queue>,
    /// The response body writing to the socket.
    writer: AtomicWaker,
    /// The connection's own task, told about close requests and app changes.
    task: Notify,
    state: AtomicU8,
    /// Set when the app's record changed: the connection re-reads it (plan, key, enabled).
    app_changed: AtomicBool,
    /// The app's deliveries in flight: this WebSocket writer, woken by a frame while it
    /// waited for one, counts until it runs (see `fanout`). Set when the hub registers it.
    flow: OnceLock<Arc<AppFlow>>,
    /// Only WebSocket writers count: an HTTP carrier's frames wait for the client's next
    /// request, which is not work on this node.
    counts_wakes: bool,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Outgoing>,
    /// Bytes of `items` and of every held frame.
    bytes: usize,
    /// Channels being subscribed, whose fan-out frames wait; empty nearly always, and then
    /// it costs a length check per push.
    held: Vec<Held>,
    /// Channels subscribed with delta updates; empty for pusher-js clients.
    deltas: Vec<DeltaChannel>,
    /// The writer's last look found nothing: it waits for a frame.
    writer_idle: bool,
    /// A frame woke the idle writer and it has not looked since (counted in the flow).
    writer_woken: bool,
}

#[derive(Debug)]
struct DeltaChannel {
    channel: ChannelName,
    /// The serial of the last frame of the channel queued for the client since it
    /// subscribed: the only base a delta may name.
    last_queued: Option<u64>,
}

#[derive(Debug)]
struct Held {
    channel: ChannelName,
    frames: Vec<(Option<u64>, ByteString)>,
}

impl Queue {
    fn len(&self) -> usize {
        let held: usize = self.held.iter().map(|held| held.frames.len()).sum();
        self.items.len() + held
    }

    /// Whether one more item of `bytes` fits under these bounds. An empty queue takes any one
    /// frame, so a bound smaller than a frame slows that connection down rather than closing it.
    fn fits(&self, bytes: usize, frames: usize, max_bytes: usize) -> bool {
        let len = self.len();
        len == 0 || (len < frames && self.bytes.saturating_add(bytes) <= max_bytes)
    }

    /// The frame this connection gets of a publication, full or delta, noting its serial as
    /// the channel's last queued one.
    fn choose(
        &mut self,
        channel: &ChannelName,
        serial: Option<u64>,
        frame: ByteString,
        delta: Option<&Delta<ByteString>>,
    ) -> ByteString {
        let Some(state) = self.deltas.iter_mut().find(|d| d.channel == *channel) else {
            return frame;
        };
        let Some(serial) = serial else {
            return frame;
        };
        let base = delta.map(|delta| delta.base);
        let last = state.last_queued.replace(serial);
        match (delta::pick(true, last, base), delta) {
            (Pick::Delta, Some(delta)) => delta.frame.clone(),
            _ => frame,
        }
    }

    /// Notes a full frame queued for a delta channel outside fan-out (released after a hold).
    fn queued_full(&mut self, channel: &ChannelName, serial: Option<u64>) {
        if let (Some(state), Some(_)) = (
            self.deltas.iter_mut().find(|d| d.channel == *channel),
            serial,
        ) {
            state.last_queued = serial;
        }
    }
}

impl Outbox {
    pub fn new(socket_id: SocketId, bounds: OutboxBounds) -> Self {
        Self {
            socket_id,
            bounds,
            queue: Mutex::new(Queue::default()),
            writer: AtomicWaker::new(),
            task: Notify::new(),
            state: AtomicU8::new(OPEN),
            app_changed: AtomicBool::new(false),
            flow: OnceLock::new(),
            counts_wakes: false,
        }
    }

    /// An outbox whose writer is a WebSocket's: its wake-ups count toward the app's
    /// deliveries in flight.
    pub fn for_websocket(socket_id: SocketId, bounds: OutboxBounds) -> Self {
        let mut outbox = Self::new(socket_id, bounds);
        outbox.counts_wakes = true;
        outbox
    }

    /// Counts this writer's wake-ups in the app's deliveries in flight from now on; once.
    pub(crate) fn attach_flow(&self, flow: &Arc<AppFlow>) {
        if self.counts_wakes {
            let _ = self.flow.set(flow.clone());
        }
    }

    /// Something was queued: a writer that was waiting for it is now work in flight (under
    /// the queue's lock).
    fn woke_writer(&self, queue: &mut Queue) {
        if queue.writer_idle && !queue.writer_woken {
            queue.writer_idle = false;
            if let Some(flow) = self.flow.get() {
                queue.writer_woken = true;
                flow.queued(1);
            }
        }
    }

    pub fn socket_id(&self) -> &SocketId {
        &self.socket_id
    }

    /// Queues a fan-out frame. A full queue closes the connection as a slow consumer; the
    /// frame is dropped for this connection only.
    pub fn push(&self, frame: ByteString) {
        self.enqueue(Outgoing::Text(frame), 1);
    }

    /// Queues a fan-out frame of `channel` (with the serial the broker gave it, if any), or
    /// holds it while the connection is subscribing to that channel.
    pub fn push_from(&self, channel: &ChannelName, serial: Option<u64>, frame: ByteString) {
        self.push_publication(channel, serial, frame, None);
    }

    /// `push_from`, with the publication's delta against the channel's previous event when
    /// fan-out computed one: queued instead of `frame` if this connection subscribed with
    /// deltas and its last frame of the channel was the delta's base. Held frames stay full.
    pub fn push_publication(
        &self,
        channel: &ChannelName,
        serial: Option<u64>,
        frame: ByteString,
        delta: Option<&Delta<ByteString>>,
    ) {
        if self.state.load(Ordering::Relaxed) != OPEN {
            return;
        }
        let mut queue = self.queue.lock().expect("outbox lock poisoned");
        let holding = queue.held.iter().any(|held| held.channel == *channel);
        let frame = match holding {
            true => frame,
            false => queue.choose(channel, serial, frame, delta),
        };
        let bytes = frame.len();
        if !queue.fits(bytes, self.bounds.frames, self.bounds.bytes) {
            drop(queue);
            return self.overflowed();
        }
        queue.bytes += bytes;
        self.bounds.stats.added(bytes, queue.bytes);
        if let Some(held) = queue.held.iter_mut().find(|held| held.channel == *channel) {
            held.frames.push((serial, frame));
            return;
        }
        queue.items.push_back(Outgoing::Text(frame));
        self.woke_writer(&mut queue);
        drop(queue);
        self.writer.wake();
    }

    /// Holds the channel's fan-out frames from now on, until `release` or `discard_held`.
    pub fn hold(&self, channel: &ChannelName) {
        let mut queue = self.queue.lock().expect("outbox lock poisoned");
        if let Some(state) = queue.deltas.iter_mut().find(|d| d.channel == *channel) {
            state.last_queued = None;
        }
        if !queue.held.iter().any(|held| held.channel == *channel) {
            queue.held.reserve_exact(1);
            queue.held.push(Held {
                channel: channel.clone(),
                frames: Vec::new(),
            });
        }
    }

    /// Ends the hold: queues the held frames in order, except those with a serial at or below
    /// `after` (the subscriber has them, or starts after them). `None` queues them all.
    /// Returns how many frames were dropped and their bytes (fan-out had counted them).
    pub fn release(&self, channel: &ChannelName, after: Option<u64>) -> (u64, u64) {
        let mut queue = self.queue.lock().expect("outbox lock poisoned");
        let Some(index) = queue.held.iter().position(|held| held.channel == *channel) else {
            return (0, 0);
        };
        let held = queue.held.swap_remove(index);
        if queue.held.is_empty() {
            // Holds last one subscribe each: an idle connection keeps no buffer for them.
            queue.held = Vec::new();
        }
        let (mut dropped, mut dropped_bytes) = (0, 0);
        for (serial, frame) in held.frames {
            let seen = after.is_some_and(|after| serial.is_some_and(|serial| serial <= after));
            if seen {
                dropped += 1;
                dropped_bytes += frame.len() as u64;
            } else {
                queue.queued_full(channel, serial);
                queue.items.push_back(Outgoing::Text(frame));
            }
        }
        let dropped_len = dropped_bytes as usize;
        queue.bytes -= dropped_len;
        if !queue.items.is_empty() {
            self.woke_writer(&mut queue);
        }
        drop(queue);
        self.bounds.stats.removed(dropped_len);
        self.writer.wake();
        (dropped, dropped_bytes)
    }

    /// Lets fan-out queue deltas for this channel from the next `hold` on; false if it already
    /// did.
    pub fn enable_delta(&self, channel: &ChannelName) -> bool {
        let mut queue = self.queue.lock().expect("outbox lock poisoned");
        if queue.deltas.iter().any(|d| d.channel == *channel) {
            return false;
        }
        queue.deltas.push(DeltaChannel {
            channel: channel.clone(),
            last_queued: None,
        });
        true
    }

    /// Full frames only from now on for this channel; true if it had deltas.
    pub fn disable_delta(&self, channel: &ChannelName) -> bool {
        let mut queue = self.queue.lock().expect("outbox lock poisoned");
        let before = queue.deltas.len();
        queue.deltas.retain(|d| d.channel != *channel);
        queue.deltas.len() != before
    }

    /// Ends the hold and drops what it held (the subscription failed).
    pub fn discard_held(&self, channel: &ChannelName) {
        let mut queue = self.queue.lock().expect("outbox lock poisoned");
        let mut freed = 0;
        queue.held.retain(|held| {
            let keep = held.channel != *channel;
            if !keep {
                freed += held.frames.iter().map(|(_, f)| f.len()).sum::<usize>();
            }
            keep
        });
        if queue.held.is_empty() {
            queue.held = Vec::new();
        }
        queue.bytes -= freed;
        drop(queue);
        self.bounds.stats.removed(freed);
    }

    /// How many more fan-out frames, and bytes, fit before the connection is a slow consumer.
    pub fn room(&self) -> Room {
        let queue = self.queue.lock().expect("outbox lock poisoned");
        Room {
            frames: self.bounds.frames.saturating_sub(queue.len()),
            bytes: self.bounds.bytes.saturating_sub(queue.bytes),
        }
    }

    /// Queues a frame of the connection's own (a reply, a ping). Replies come only in answer
    /// to the client, but a client that sends without reading is still bounded (at twice the
    /// fan-out bound, in frames and in bytes).
    pub fn send(&self, item: Outgoing) {
        self.enqueue(item, 2);
    }

    fn enqueue(&self, item: Outgoing, bound_multiple: usize) {
        if self.state.load(Ordering::Relaxed) != OPEN {
            return;
        }
        let bytes = item.bytes();
        let mut queue = self.queue.lock().expect("outbox lock poisoned");
        let frames = self.bounds.frames.saturating_mul(bound_multiple);
        let max_bytes = self.bounds.bytes.saturating_mul(bound_multiple);
        if !queue.fits(bytes, frames, max_bytes) {
            drop(queue);
            return self.overflowed();
        }
        queue.bytes += bytes;
        self.bounds.stats.added(bytes, queue.bytes);
        if queue.items.capacity() == 0 {
            // Most connections hold one frame at a time: a buffer of one to start with.
            queue.items.reserve_exact(1);
        }
        queue.items.push_back(item);
        self.woke_writer(&mut queue);
        drop(queue);
        self.writer.wake();
    }

    /// Closes the connection with 4100 because its app's fan-out backlog is full: the
    /// client backs off, reconnects and resumes by serial.
    pub(crate) fn refuse_over_capacity(&self) {
        self.overflowed();
    }

    fn overflowed(&self) {
        crate::metrics::metrics().outbox_drops.increment(1);
        if self.end(OVERFLOWED) {
            self.bounds.stats.overflows.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Replaces whatever is queued with these last frames and closes the queue: nothing
    /// pushed later is written. Used for every close, so a slow consumer's backlog is dropped
    /// rather than delivered.
    pub fn close_with(&self, last: impl IntoIterator<Item = Outgoing>) {
        self.state.store(CLOSED, Ordering::Release);
        let mut queue = self.queue.lock().expect("outbox lock poisoned");
        let freed = queue.bytes;
        queue.items.clear();
        queue.held.clear();
        queue.items.extend(last);
        queue.bytes = queue.items.iter().map(Outgoing::bytes).sum();
        let kept = queue.bytes;
        self.woke_writer(&mut queue);
        drop(queue);
        self.bounds.stats.removed(freed);
        self.bounds.stats.added(kept, kept);
        self.writer.wake();
    }

    /// Asks the connection to close because the app terminated it or lost its key.
    pub fn terminate(&self) {
        self.end(TERMINATED);
    }

    /// Asks the connection to close because this node is stopping.
    pub fn shut_down(&self) {
        self.end(SHUTTING_DOWN);
    }

    /// Asks the connection to close because live deliveries to this node may have been
    /// missed: the client resumes, so a gap is replayed or reported, never silent.
    pub fn interrupt(&self) {
        self.end(INTERRUPTED);
    }

    /// Moves an open outbox to `state` and wakes the connection's task; false if it was not
    /// open.
    fn end(&self, state: u8) -> bool {
        let ended = self
            .state
            .compare_exchange(OPEN, state, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if ended {
            self.task.notify_one();
        }
        ended
    }

    /// Asks the connection to re-read its app from the catalog.
    pub fn app_changed(&self) {
        self.app_changed.store(true, Ordering::Release);
        self.task.notify_one();
    }

    /// Whether the app changed since the last call.
    pub fn take_app_changed(&self) -> bool {
        self.app_changed.swap(false, Ordering::AcqRel)
    }

    /// Resolves when the connection's task has something to look at: a close request or an
    /// app change.
    pub async fn task_wakeup(&self) {
        self.task.notified().await;
    }

    /// Why the connection must close, if it must.
    pub fn close_reason(&self) -> Option<CloseReason> {
        match self.state.load(Ordering::Acquire) {
            OVERFLOWED => Some(CloseReason::SlowConsumer),
            TERMINATED => Some(CloseReason::Unauthorized),
            SHUTTING_DOWN => Some(CloseReason::ServerShuttingDown),
            INTERRUPTED => Some(CloseReason::DeliveriesInterrupted),
            _ => None,
        }
    }

    /// For the socket writer: moves the queue into `into`, or registers to be woken when
    /// something is queued. The outbox keeps at most a small buffer of its own.
    pub fn poll_take(&self, context: &mut Context<'_>, into: &mut VecDeque<Outgoing>) -> Poll<()> {
        self.writer.register(context.waker());
        let mut queue = self.queue.lock().expect("outbox lock poisoned");
        if std::mem::take(&mut queue.writer_woken)
            && let Some(flow) = self.flow.get()
        {
            flow.released(1);
        }
        queue.writer_idle = queue.items.is_empty();
        if queue.items.is_empty() {
            return Poll::Pending;
        }
        let taken: usize = queue.items.iter().map(Outgoing::bytes).sum();
        if into.is_empty() && into.capacity() <= queue.items.capacity() {
            // The cheaper way, and the larger buffer leaves the outbox.
            std::mem::swap(&mut queue.items, into);
        } else {
            // A caller's larger buffer (a thread's, shared by its connections) stays its own.
            into.extend(queue.items.drain(..));
        }
        if queue.items.capacity() > KEEP_QUEUE {
            queue.items = VecDeque::new();
        }
        queue.bytes -= taken;
        drop(queue);
        self.bounds.stats.removed(taken);
        Poll::Ready(())
    }

    /// Bytes queued now, held frames included (tests and diagnostics).
    pub fn queued_bytes(&self) -> usize {
        self.queue.lock().expect("outbox lock poisoned").bytes
    }

    /// Takes every queued item, oldest first (tests and diagnostics).
    pub fn drain(&self) -> VecDeque<Outgoing> {
        let mut items = VecDeque::new();
        let waker = Waker::noop();
        let _ = self.poll_take(&mut Context::from_waker(waker), &mut items);
        items
    }
}

/// What a connection may still be sent at once (a replay must fit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    pub frames: usize,
    pub bytes: usize,
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let (left, woken) = self
            .queue
            .get_mut()
            .map_or((0, false), |queue| (queue.bytes, queue.writer_woken));
        self.bounds.stats.removed(left);
        if let (true, Some(flow)) = (woken, self.flow.get()) {
            flow.released(1);
        }
    }
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
