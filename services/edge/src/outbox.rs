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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use bytestring::ByteString;
use futures_util::task::AtomicWaker;
use protocol::codes::CloseReason;
use protocol::names::{ChannelName, SocketId};
use tokio::sync::Notify;

const OPEN: u8 = 0;
const OVERFLOWED: u8 = 1;
const TERMINATED: u8 = 2;
const SHUTTING_DOWN: u8 = 3;
const CLOSED: u8 = 4;

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
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Outgoing>,
    /// Bytes of `items` and of every held frame.
    bytes: usize,
    /// Channels being subscribed, whose fan-out frames wait; empty nearly always, and then
    /// it costs a length check per push.
    held: Vec<Held>,
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
        if self.state.load(Ordering::Relaxed) != OPEN {
            return;
        }
        let bytes = frame.len();
        let mut queue = self.queue.lock().expect("outbox lock poisoned");
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
        drop(queue);
        self.writer.wake();
    }

    /// Holds the channel's fan-out frames from now on, until `release` or `discard_held`.
    pub fn hold(&self, channel: &ChannelName) {
        let mut queue = self.queue.lock().expect("outbox lock poisoned");
        if !queue.held.iter().any(|held| held.channel == *channel) {
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
        let (mut dropped, mut dropped_bytes) = (0, 0);
        for (serial, frame) in held.frames {
            let seen = after.is_some_and(|after| serial.is_some_and(|serial| serial <= after));
            if seen {
                dropped += 1;
                dropped_bytes += frame.len() as u64;
            } else {
                queue.items.push_back(Outgoing::Text(frame));
            }
        }
        let dropped_len = dropped_bytes as usize;
        queue.bytes -= dropped_len;
        drop(queue);
        self.bounds.stats.removed(dropped_len);
        self.writer.wake();
        (dropped, dropped_bytes)
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
        queue.items.push_back(item);
        drop(queue);
        self.writer.wake();
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
            _ => None,
        }
    }

    /// For the socket writer: swaps the queue into `into` (which must be empty), or registers
    /// to be woken when something is queued.
    pub fn poll_take(&self, context: &mut Context<'_>, into: &mut VecDeque<Outgoing>) -> Poll<()> {
        self.writer.register(context.waker());
        let mut queue = self.queue.lock().expect("outbox lock poisoned");
        if queue.items.is_empty() {
            return Poll::Pending;
        }
        std::mem::swap(&mut queue.items, into);
        let taken: usize = into.iter().map(Outgoing::bytes).sum();
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
        let left = self.queue.get_mut().map_or(0, |queue| queue.bytes);
        self.bounds.stats.removed(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(capacity: usize) -> Outbox {
        bounded(capacity, usize::MAX / 4, Arc::default())
    }

    fn bounded(frames: usize, bytes: usize, stats: Arc<OutboxStats>) -> Outbox {
        let bounds = OutboxBounds {
            frames,
            bytes,
            stats,
        };
        Outbox::new(SocketId::parse("1.1").unwrap(), bounds)
    }

    #[test]
    fn the_byte_bound_closes_a_slow_consumer_and_the_node_totals_follow() {
        let stats = Arc::new(OutboxStats::default());
        let outbox = bounded(100, 10, stats.clone());
        outbox.push("12345".into());
        outbox.push("1234".into());
        assert_eq!((outbox.queued_bytes(), stats.queued_bytes()), (9, 9));
        assert_eq!(
            outbox.room(),
            Room {
                frames: 98,
                bytes: 1
            }
        );
        outbox.push("12".into());
        assert_eq!(outbox.close_reason(), Some(CloseReason::SlowConsumer));
        assert_eq!(stats.overflows(), 1);
        assert_eq!(
            outbox.drain().len(),
            2,
            "the frame past the bound is dropped"
        );
        assert_eq!(stats.queued_bytes(), 0);
        assert_eq!(stats.peak_bytes(), 9);

        let replies = bounded(100, 10, stats.clone());
        for _ in 0..4 {
            replies.send(text("12345"));
        }
        assert_eq!(
            replies.close_reason(),
            None,
            "replies may take twice the bound"
        );
        replies.send(text("1"));
        assert_eq!(replies.close_reason(), Some(CloseReason::SlowConsumer));
        assert_eq!(stats.peak_bytes(), 20);

        let one_big = bounded(100, 10, stats.clone());
        one_big.push("a frame larger than the bound".into());
        assert_eq!(
            one_big.close_reason(),
            None,
            "an empty queue takes any one frame"
        );
        one_big.close_with([text("bye")]);
        assert_eq!(one_big.queued_bytes(), 3, "closing drops the backlog");
        drop((outbox, replies, one_big));
        assert_eq!(
            stats.queued_bytes(),
            0,
            "a dropped outbox gives its bytes back"
        );
    }

    fn text(frame: &str) -> Outgoing {
        Outgoing::Text(frame.into())
    }

    #[test]
    fn frames_drain_in_order() {
        let outbox = outbox(4);
        outbox.push("a".into());
        outbox.send(text("b"));
        assert_eq!(outbox.drain(), [text("a"), text("b")]);
        assert!(outbox.drain().is_empty());
        assert_eq!(outbox.close_reason(), None);
    }

    #[test]
    fn a_full_queue_closes_as_slow_consumer_and_stops_growing() {
        let outbox = outbox(2);
        for frame in ["a", "b", "c", "d"] {
            outbox.push(frame.into());
        }
        assert_eq!(outbox.close_reason(), Some(CloseReason::SlowConsumer));
        assert_eq!(outbox.drain().len(), 2);
        outbox.terminate();
        assert_eq!(
            outbox.close_reason(),
            Some(CloseReason::SlowConsumer),
            "the first reason stays"
        );
    }

    #[test]
    fn closing_replaces_the_backlog_and_ignores_later_pushes() {
        let outbox = outbox(8);
        outbox.push("backlog".into());
        let close = Outgoing::Close {
            code: 4100,
            reason: "slow".into(),
        };
        outbox.close_with([text("error"), close.clone()]);
        outbox.push("late".into());
        assert_eq!(outbox.drain(), [text("error"), close]);
    }

    #[test]
    fn a_held_channel_waits_and_is_released_after_the_subscribers_position() {
        let outbox = outbox(8);
        let (news, other) = (
            ChannelName::parse("news").unwrap(),
            ChannelName::parse("other").unwrap(),
        );
        outbox.hold(&news);
        outbox.push_from(&news, Some(4), "4".into());
        outbox.push_from(&other, Some(9), "other".into());
        outbox.push_from(&news, None, "member_added".into());
        outbox.push_from(&news, Some(5), "5".into());
        assert_eq!(
            outbox.drain(),
            [text("other")],
            "only the held channel waits"
        );
        assert_eq!(
            outbox.room().frames,
            5,
            "held frames count toward the bound"
        );
        outbox.send(text("subscription_succeeded"));
        outbox.push("replayed 4".into());
        assert_eq!(
            outbox.release(&news, Some(4)),
            (1, 1),
            "the duplicate 4 is dropped"
        );
        outbox.push_from(&news, Some(6), "6".into());
        assert_eq!(
            outbox.drain(),
            [
                text("subscription_succeeded"),
                text("replayed 4"),
                text("member_added"),
                text("5"),
                text("6")
            ]
        );

        outbox.hold(&news);
        outbox.push_from(&news, Some(7), "7".into());
        outbox.discard_held(&news);
        outbox.release(&news, None);
        assert!(
            outbox.drain().is_empty(),
            "a failed subscription drops what it held"
        );
    }

    #[tokio::test]
    async fn a_push_wakes_the_waiting_task_only_for_close_requests() {
        let outbox = std::sync::Arc::new(outbox(2));
        let waiter = tokio::spawn({
            let outbox = outbox.clone();
            async move {
                outbox.task_wakeup().await;
                outbox.close_reason()
            }
        });
        outbox.push("x".into());
        outbox.terminate();
        assert_eq!(waiter.await.unwrap(), Some(CloseReason::Unauthorized));
    }
}
