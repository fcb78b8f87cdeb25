//! A connection's bounded outbound queue. Fan-out and the connection's own task push frames
//! without awaiting; the HTTP response body (`websocket::OutboundBody`) takes them straight
//! to the socket.
//!
//! A `VecDeque` behind a std mutex rather than a channel: it allocates nothing until the first
//! frame, so idle connections stay small, and a push wakes only the socket writer, not the
//! connection's task. A full queue marks the connection for closing with 4100 instead of
//! growing memory.
//!
//! While the connection subscribes, its channel's fan-out frames are held (`hold`) and then
//! released after the subscriber's position: the frames at or below the serial it was told
//! (or was replayed) are dropped, so it receives each serial once, in order.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
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

/// The queue between everything that sends to a connection and its socket.
#[derive(Debug)]
pub struct Outbox {
    socket_id: SocketId,
    capacity: usize,
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
}

impl Outbox {
    pub fn new(socket_id: SocketId, capacity: usize) -> Self {
        Self {
            socket_id,
            capacity,
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
        self.enqueue(Outgoing::Text(frame), self.capacity);
    }

    /// Queues a fan-out frame of `channel` (with the serial the broker gave it, if any), or
    /// holds it while the connection is subscribing to that channel.
    pub fn push_from(&self, channel: &ChannelName, serial: Option<u64>, frame: ByteString) {
        if self.state.load(Ordering::Relaxed) != OPEN {
            return;
        }
        let mut queue = self.queue.lock().expect("outbox lock poisoned");
        if queue.len() >= self.capacity {
            drop(queue);
            return self.overflowed();
        }
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
        drop(queue);
        self.writer.wake();
        (dropped, dropped_bytes)
    }

    /// Ends the hold and drops what it held (the subscription failed).
    pub fn discard_held(&self, channel: &ChannelName) {
        let mut queue = self.queue.lock().expect("outbox lock poisoned");
        queue.held.retain(|held| held.channel != *channel);
    }

    /// How many more fan-out frames fit before the connection is a slow consumer.
    pub fn room(&self) -> usize {
        let queue = self.queue.lock().expect("outbox lock poisoned");
        self.capacity.saturating_sub(queue.len())
    }

    /// Queues a frame of the connection's own (a reply, a ping). Replies come only in answer
    /// to the client, but a client that sends without reading is still bounded (at twice the
    /// fan-out bound).
    pub fn send(&self, item: Outgoing) {
        self.enqueue(item, self.capacity.saturating_mul(2));
    }

    fn enqueue(&self, item: Outgoing, bound: usize) {
        if self.state.load(Ordering::Relaxed) != OPEN {
            return;
        }
        let mut queue = self.queue.lock().expect("outbox lock poisoned");
        if queue.len() >= bound {
            drop(queue);
            return self.overflowed();
        }
        queue.items.push_back(item);
        drop(queue);
        self.writer.wake();
    }

    fn overflowed(&self) {
        crate::metrics::metrics().outbox_drops.increment(1);
        self.end(OVERFLOWED);
    }

    /// Replaces whatever is queued with these last frames and closes the queue: nothing
    /// pushed later is written. Used for every close, so a slow consumer's backlog is dropped
    /// rather than delivered.
    pub fn close_with(&self, last: impl IntoIterator<Item = Outgoing>) {
        self.state.store(CLOSED, Ordering::Release);
        let mut queue = self.queue.lock().expect("outbox lock poisoned");
        queue.items.clear();
        queue.held.clear();
        queue.items.extend(last);
        drop(queue);
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

    fn end(&self, state: u8) {
        if self
            .state
            .compare_exchange(OPEN, state, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.task.notify_one();
        }
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
        Poll::Ready(())
    }

    /// Takes every queued item, oldest first (tests and diagnostics).
    pub fn drain(&self) -> VecDeque<Outgoing> {
        let mut items = VecDeque::new();
        let waker = Waker::noop();
        let _ = self.poll_take(&mut Context::from_waker(waker), &mut items);
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(capacity: usize) -> Outbox {
        Outbox::new(SocketId::parse("1.1").unwrap(), capacity)
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
        assert_eq!(outbox.room(), 5, "held frames count toward the bound");
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
