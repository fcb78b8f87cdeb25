//! The session's queue of client frames, from `send` to its connection: bounded (a `send`
//! waits for room), and holding no allocation while empty. tokio's `mpsc` allocated a block
//! of 32 slots up front (1.8 KiB with its channel), which every idle session carried.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::link::Inbound;

/// A queue of at most `capacity` frames.
pub(crate) fn queue(capacity: usize) -> (InboundSender, InboundReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::default(),
        readable: Notify::new(),
        room: Notify::new(),
        capacity: capacity.max(1),
    });
    (InboundSender(shared.clone()), InboundReceiver(shared))
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// A frame was queued, or the sender is gone.
    readable: Notify,
    /// A frame was taken, or the receiver is gone.
    room: Notify,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Inbound>,
    sender_gone: bool,
    receiver_gone: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("inbound lock poisoned")
    }
}

/// The sending end (the session's `send`).
#[derive(Debug)]
pub(crate) struct InboundSender(Arc<Shared>);

/// The receiving end (the session's `MessageSource`).
#[derive(Debug)]
pub(crate) struct InboundReceiver(Arc<Shared>);

impl InboundSender {
    /// Queues `item`, waiting for room; `Err(item)` once the receiver is gone.
    pub(crate) async fn send(&self, item: Inbound) -> Result<(), Inbound> {
        loop {
            // Registered before the look, so room made in between is not missed.
            let mut room = pin!(self.0.room.notified());
            room.as_mut().enable();
            {
                let mut state = self.0.lock();
                if state.receiver_gone {
                    return Err(item);
                }
                if state.items.len() < self.0.capacity {
                    state.items.push_back(item);
                    drop(state);
                    self.0.readable.notify_one();
                    return Ok(());
                }
            }
            room.await;
        }
    }
}

impl Drop for InboundSender {
    fn drop(&mut self) {
        self.0.lock().sender_gone = true;
        self.0.readable.notify_one();
    }
}

impl InboundReceiver {
    /// The next frame; `None` once the queue is empty and the sender gone. Cancel-safe: a
    /// frame is taken only by a call that returns it.
    pub(crate) async fn recv(&mut self) -> Option<Inbound> {
        loop {
            let mut readable = pin!(self.0.readable.notified());
            readable.as_mut().enable();
            {
                let mut state = self.0.lock();
                if let Some(item) = state.items.pop_front() {
                    if state.items.is_empty() {
                        // An idle session keeps no buffer from a burst of frames.
                        state.items = VecDeque::new();
                    }
                    drop(state);
                    self.0.room.notify_one();
                    return Some(item);
                }
                if state.sender_gone {
                    return None;
                }
            }
            readable.await;
        }
    }
}

impl Drop for InboundReceiver {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.receiver_gone = true;
        state.items = VecDeque::new();
        drop(state);
        self.0.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Inbound {
        Inbound::Text(n.to_string().into())
    }

    fn number(item: Option<Inbound>) -> usize {
        match item {
            Some(Inbound::Text(text)) => text.parse().unwrap(),
            other => panic!("not a text frame: {other:?}"),
        }
    }

    #[tokio::test]
    async fn frames_arrive_in_order_and_a_full_queue_makes_the_sender_wait_for_room() {
        let (sender, mut receiver) = queue(2);
        sender.send(text(1)).await.unwrap();
        sender.send(text(2)).await.unwrap();
        let mut third = Box::pin(sender.send(text(3)));
        assert!(
            futures_util::poll!(third.as_mut()).is_pending(),
            "full: the third waits"
        );
        assert_eq!(number(receiver.recv().await), 1);
        third.await.unwrap();
        assert_eq!(number(receiver.recv().await), 2);
        assert_eq!(number(receiver.recv().await), 3);
    }

    #[tokio::test]
    async fn a_receiver_waiting_is_woken_by_a_frame_and_ends_when_the_sender_is_gone() {
        let (sender, mut receiver) = queue(4);
        let mut next = Box::pin(receiver.recv());
        assert!(futures_util::poll!(next.as_mut()).is_pending());
        sender.send(text(7)).await.unwrap();
        assert_eq!(number(next.await), 7);
        sender.send(text(8)).await.unwrap();
        drop(sender);
        assert_eq!(number(receiver.recv().await), 8, "queued frames still come");
        assert!(receiver.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_sender_is_refused_once_the_receiver_is_gone_even_while_waiting_for_room() {
        let (sender, receiver) = queue(1);
        sender.send(text(1)).await.unwrap();
        let mut waiting = Box::pin(sender.send(text(2)));
        assert!(futures_util::poll!(waiting.as_mut()).is_pending());
        drop(receiver);
        assert!(waiting.await.is_err());
        assert!(sender.send(text(3)).await.is_err());
    }

    #[tokio::test]
    async fn a_cancelled_receive_takes_nothing() {
        let (sender, mut receiver) = queue(4);
        {
            let mut next = Box::pin(receiver.recv());
            assert!(futures_util::poll!(next.as_mut()).is_pending());
        }
        sender.send(text(5)).await.unwrap();
        assert_eq!(number(receiver.recv().await), 5);
    }
}
