//! Conformance of `Broadcast`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::names::{AppId, ChannelName, UserId};
use tokio::sync::Notify;

use crate::broadcast::{Broadcast, NodeMessage, NodeSink};

/// A node sink that remembers every message it was handed.
#[derive(Default)]
pub struct RecordingNodeSink {
    pub received: Mutex<Vec<NodeMessage>>,
    arrived: Notify,
}

impl NodeSink for RecordingNodeSink {
    fn on_message(&self, message: &NodeMessage) {
        self.received
            .lock()
            .expect("sink lock poisoned")
            .push(message.clone());
        // A stored permit: a waiter that is between its check and its wait still wakes.
        self.arrived.notify_one();
    }
}

impl RecordingNodeSink {
    /// Waits until `count` messages arrived (a broadcast may come back asynchronously).
    pub async fn wait_for(&self, count: usize) -> Vec<NodeMessage> {
        let wait = async {
            loop {
                let received = self.received.lock().expect("sink lock poisoned").clone();
                if received.len() >= count {
                    return received;
                }
                self.arrived.notified().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("broadcasts never arrived")
    }
}

/// Runs every check against broadcasts made by `make`, which must hand messages to the given
/// sink (the node's own).
pub async fn broadcast_conformance<B: Broadcast>(make: impl Fn(Arc<RecordingNodeSink>) -> B) {
    let sink = Arc::new(RecordingNodeSink::default());
    let broadcast = make(sink.clone());
    let app = AppId::parse("broadcast-a").expect("valid app id");
    let messages = vec![
        NodeMessage::TerminateUser {
            app: app.clone(),
            user: UserId::parse("u1").expect("valid user"),
        },
        NodeMessage::SubscriptionCount {
            app: app.clone(),
            channel: ChannelName::parse("c").expect("valid channel"),
            count: 3,
        },
    ];
    for message in &messages {
        broadcast.broadcast(message.clone()).await.unwrap();
    }
    assert_eq!(
        sink.wait_for(2).await,
        messages,
        "every message reaches this node, intact and in order"
    );
}
