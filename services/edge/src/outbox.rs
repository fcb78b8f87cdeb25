//! A connection's bounded outbound queue, filled by fan-out without awaiting and drained by the
//! connection's own task.
//!
//! A `VecDeque` behind a std mutex rather than a channel: it allocates nothing until the first
//! frame (idle connections cost a few dozen bytes), and fan-out never blocks on a slow client.
//! A full queue marks the connection for closing with 4100 instead of growing memory.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use bytestring::ByteString;
use protocol::codes::CloseReason;
use protocol::names::SocketId;
use tokio::sync::Notify;

const OPEN: u8 = 0;
const OVERFLOWED: u8 = 1;
const TERMINATED: u8 = 2;
const SHUTTING_DOWN: u8 = 3;

/// The sending half every channel a connection is on holds.
#[derive(Debug)]
pub struct Outbox {
    socket_id: SocketId,
    capacity: usize,
    queue: Mutex<VecDeque<ByteString>>,
    wake: Notify,
    state: AtomicU8,
    /// Set when the app's record changed: the connection re-reads it (plan, key, enabled).
    app_changed: AtomicBool,
}

impl Outbox {
    pub fn new(socket_id: SocketId, capacity: usize) -> Self {
        Self {
            socket_id,
            capacity,
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            state: AtomicU8::new(OPEN),
            app_changed: AtomicBool::new(false),
        }
    }

    pub fn socket_id(&self) -> &SocketId {
        &self.socket_id
    }

    /// Queues a frame. A full queue closes the connection as a slow consumer; the frame is
    /// dropped for this connection only.
    pub fn push(&self, frame: ByteString) {
        if self.state.load(Ordering::Relaxed) != OPEN {
            return;
        }
        let mut queue = self.queue.lock().expect("outbox lock poisoned");
        if queue.len() >= self.capacity {
            drop(queue);
            self.end(OVERFLOWED);
            return;
        }
        queue.push_back(frame);
        drop(queue);
        self.wake.notify_one();
    }

    /// Asks the connection to close because the app terminated it or lost its key.
    pub fn terminate(&self) {
        self.end(TERMINATED);
    }

    /// Asks the connection to re-read its app from the catalog.
    pub fn app_changed(&self) {
        self.app_changed.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Whether the app changed since the last call.
    pub fn take_app_changed(&self) -> bool {
        self.app_changed.swap(false, Ordering::AcqRel)
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
            self.wake.notify_one();
        }
    }

    /// Resolves when there may be frames to drain or the connection must close.
    pub async fn ready(&self) {
        self.wake.notified().await;
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

    /// Takes every queued frame, oldest first.
    pub fn drain(&self) -> VecDeque<ByteString> {
        let mut frames = VecDeque::new();
        self.swap_into(&mut frames);
        frames
    }

    /// Swaps the queue with `spare` (which must be empty), so the connection and the queue
    /// keep reusing two buffers instead of allocating one per wake-up.
    pub fn swap_into(&self, spare: &mut VecDeque<ByteString>) {
        debug_assert!(spare.is_empty());
        std::mem::swap(
            &mut *self.queue.lock().expect("outbox lock poisoned"),
            spare,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(capacity: usize) -> Outbox {
        Outbox::new(SocketId::parse("1.1").unwrap(), capacity)
    }

    #[test]
    fn frames_drain_in_order() {
        let outbox = outbox(4);
        outbox.push("a".into());
        outbox.push("b".into());
        assert_eq!(outbox.drain(), ["a", "b"]);
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

    #[tokio::test]
    async fn push_wakes_the_waiting_connection() {
        let outbox = std::sync::Arc::new(outbox(2));
        let waiter = tokio::spawn({
            let outbox = outbox.clone();
            async move {
                outbox.ready().await;
                outbox.drain()
            }
        });
        outbox.push("x".into());
        assert_eq!(waiter.await.unwrap(), ["x"]);
    }
}
