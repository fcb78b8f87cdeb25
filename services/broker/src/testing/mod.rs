//! The conformance suite every `Broker` implementation must pass.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::names::{AppId, ChannelName, SocketId, UserId};
use protocol::wire::Member;

use crate::{Broker, Clock, DeliverySink, History, HistoryLimits, HistoryWindow, Publication};

mod broadcast;
mod cache;
mod counters;
mod memory;
mod occupancy;
mod presence;

pub use broadcast::{RecordingNodeSink, broadcast_conformance};
pub use cache::cache_conformance;
pub use counters::{
    connection_counter_conformance, message_counter_conformance, publish_rate_conformance,
};
pub use occupancy::occupancy_conformance;

/// A sink that remembers every publication it was handed.
#[derive(Default)]
pub struct RecordingSink {
    pub received: Mutex<Vec<Publication>>,
    /// How many times the broker said deliveries may have been missed.
    pub interruptions: std::sync::atomic::AtomicUsize,
    arrived: tokio::sync::Notify,
}

impl DeliverySink for RecordingSink {
    fn deliver(&self, publication: &Publication) {
        self.received
            .lock()
            .expect("sink lock poisoned")
            .push(publication.clone());
        self.arrived.notify_waiters();
    }

    fn deliveries_interrupted(&self) {
        self.interruptions
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.arrived.notify_waiters();
    }
}

/// How long a check waits for deliveries before it fails rather than hangs (a guard, not a
/// measurement: deliveries take milliseconds).
const DELIVERY_GUARD: Duration = Duration::from_secs(30);

impl RecordingSink {
    /// Waits until at least `count` publications arrived. Brokers for many nodes deliver
    /// over the network, after `publish` returned; `Local` has delivered already.
    pub async fn wait_for(&self, count: usize) {
        let arrived = async {
            loop {
                let notified = self.arrived.notified();
                if self.received.lock().expect("sink lock poisoned").len() >= count {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(DELIVERY_GUARD, arrived).await.is_err() {
            let got = self.received.lock().expect("sink lock poisoned").len();
            panic!("expected {count} deliveries, got {got}");
        }
    }
}

impl RecordingSink {
    /// Waits until the broker reported at least `count` interruptions.
    pub async fn wait_for_interruptions(&self, count: usize) {
        let reported = async {
            loop {
                let notified = self.arrived.notified();
                if self.interruptions.load(std::sync::atomic::Ordering::SeqCst) >= count {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(DELIVERY_GUARD, reported)
            .await
            .is_err()
        {
            panic!("expected {count} interruption reports");
        }
    }
}

/// Subscribes this node to the channels a check publishes to (a no-op for `Local`).
async fn subscribe_to<B: Broker>(broker: &B, channels: &[(&str, &str)]) {
    for (app_id, channel_name) in channels {
        broker
            .subscribe(&app(app_id), &channel(channel_name))
            .await
            .expect("subscribe");
    }
}

fn app(id: &str) -> AppId {
    AppId::parse(id).expect("valid app id")
}

fn channel(name: &str) -> ChannelName {
    ChannelName::parse(name).expect("valid channel")
}

fn socket(id: &str) -> SocketId {
    SocketId::parse(id).expect("valid socket id")
}

fn member(user: &str) -> Member {
    Member {
        user_id: UserId::parse(user).expect("valid user"),
        user_info: serde_json::json!({ "name": user }),
    }
}

/// Runs the checks of the node's history memory bounds (the node's byte budget, the channel
/// cap, no state for quiet channels) against brokers made by `make`. Those bounds are `Local`'s: a
/// Redis broker keeps history in Redis, bounded by each channel's window (and Redis's own
/// `maxmemory`), not by one node's budget.
pub async fn memory_conformance<B: Broker>(
    make: impl Fn(Arc<RecordingSink>, Clock, HistoryLimits) -> B,
) {
    let make_limited = |limits| make(Arc::new(RecordingSink::default()), Clock::manual(), limits);
    memory::conformance(&make_limited).await;
}

/// Runs every conformance check against brokers made by `make`, which must deliver to the
/// given sink, age history by the given clock (a manual one, moved by the checks) and keep
/// the node's history within the given limits. Every broker made must start empty. Run it
/// on a multi-threaded runtime so concurrent publishers really are concurrent.
pub async fn conformance<B: Broker>(make: impl Fn(Arc<RecordingSink>, Clock, HistoryLimits) -> B) {
    let make_limited = |limits| make(Arc::new(RecordingSink::default()), Clock::manual(), limits);
    memory::the_app_budget_evicts_its_oldest_events_and_a_resume_past_them_is_a_gap(&make_limited)
        .await;
    let make = |sink, clock| make(sink, clock, HistoryLimits::default());
    let make_now = |sink| make(sink, Clock::manual());
    publications_reach_the_sink_intact(&make_now).await;
    presence::presence_refuses_new_users_beyond_the_maximum(&make_now).await;
    presence::presence_is_per_user_not_per_connection(&make_now).await;
    presence::presence_is_scoped_by_app_and_channel(&make_now).await;
    presence::a_sweep_for_dead_nodes_takes_nothing_from_a_live_node(&make_now).await;
    serials_increase_per_channel_independently_across_channels_and_apps(&make_now).await;
    protocol_frames_get_no_serial_and_are_not_kept(&make_now).await;
    a_replay_after_resume_equals_the_missed_suffix(&make_now).await;
    concurrent_publishers_get_one_order_for_serials_and_delivery(&make_now).await;
    another_epoch_is_a_gap(&make_now).await;
    a_quiet_channels_position_is_stable_and_its_first_event_carries_it(&make_now).await;
    the_window_holds_by_count_and_by_age(&make).await;
}

async fn a_quiet_channels_position_is_stable_and_its_first_event_carries_it<B: Broker>(
    make: &impl Fn(Arc<RecordingSink>) -> B,
) {
    let sink = Arc::new(RecordingSink::default());
    let broker = make(sink.clone());
    let (a, quiet) = (app("a"), channel("quiet"));
    subscribe_to(&broker, &[("a", "quiet")]).await;
    let told = broker.position(&a, &quiet).await.unwrap();
    assert_eq!(told.serial, 0);
    let read = broker
        .history(&a, &quiet, Some(0), Some(&told.epoch))
        .await
        .unwrap();
    assert_eq!(
        read,
        History::Replay {
            epoch: told.epoch.clone(),
            latest: 0,
            frames: vec![]
        }
    );
    assert_eq!(broker.position(&a, &quiet).await.unwrap(), told, "stable");
    broker.publish(event("a", "quiet", 1)).await.unwrap();
    sink.wait_for(1).await;
    let after = broker.position(&a, &quiet).await.unwrap();
    assert_eq!(
        (after.epoch.as_str(), after.serial),
        (told.epoch.as_str(), 1)
    );
    let stamped: serde_json::Value =
        serde_json::from_str(&sink.received.lock().unwrap()[0].frame).unwrap();
    assert_eq!(stamped["epoch"], told.epoch.as_str());
}

/// A plain frame, as the edge builds it before the broker stamps it.
fn event_frame(n: usize) -> String {
    format!(r#"{{"event":"e","channel":"c","data":"{n}"}}"#)
}

fn window(max_events: usize, seconds: u64) -> Option<HistoryWindow> {
    Some(HistoryWindow {
        max_events,
        max_age: Duration::from_secs(seconds),
        app_max_bytes: usize::MAX,
    })
}

fn event(app_id: &str, channel_name: &str, n: usize) -> Publication {
    Publication {
        app: app(app_id),
        channel: channel(channel_name),
        frame: event_frame(n).into(),
        except: None,
        history: window(100, 120),
        serial: None,
    }
}

/// The serials the sink saw for one channel, in delivery order.
fn delivered_serials(sink: &RecordingSink, app_id: &str, channel_name: &str) -> Vec<u64> {
    sink.received
        .lock()
        .expect("sink lock poisoned")
        .iter()
        .filter(|p| p.app == app(app_id) && p.channel == channel(channel_name))
        .map(|p| p.serial.expect("a serial"))
        .collect()
}

fn replayed(history: History) -> Vec<(u64, bytestring::ByteString)> {
    match history {
        History::Replay { frames, .. } => frames,
        History::Gap { .. } => panic!("expected a replay, got {history:?}"),
    }
}

async fn publications_reach_the_sink_intact<B: Broker>(make: &impl Fn(Arc<RecordingSink>) -> B) {
    let sink = Arc::new(RecordingSink::default());
    let broker = make(sink.clone());
    subscribe_to(&broker, &[("a", "c")]).await;
    for n in 0..3 {
        let publication = Publication {
            app: app("a"),
            channel: channel("c"),
            frame: format!("frame-{n}").into(),
            except: (n == 1).then(|| socket("1.1")),
            history: None,
            serial: None,
        };
        broker.publish(publication).await.expect("publish");
    }
    sink.wait_for(3).await;
    let received = sink.received.lock().expect("sink lock poisoned");
    let frames: Vec<&str> = received.iter().map(|p| &*p.frame).collect();
    assert_eq!(
        frames,
        ["frame-0", "frame-1", "frame-2"],
        "publications arrive in order, once each"
    );
    assert_eq!(
        received[1].except,
        Some(socket("1.1")),
        "exclusion travels with the publication"
    );
}

async fn serials_increase_per_channel_independently_across_channels_and_apps<B: Broker>(
    make: &impl Fn(Arc<RecordingSink>) -> B,
) {
    let sink = Arc::new(RecordingSink::default());
    let broker = make(sink.clone());
    let order = [
        ("a", "c"),
        ("a", "d"),
        ("a", "c"),
        ("b", "c"),
        ("a", "c"),
        ("a", "d"),
    ];
    subscribe_to(&broker, &[("a", "c"), ("a", "d"), ("b", "c")]).await;
    for (n, (app_id, channel_name)) in order.into_iter().enumerate() {
        broker
            .publish(event(app_id, channel_name, n))
            .await
            .expect("publish");
    }
    sink.wait_for(order.len()).await;
    assert_eq!(delivered_serials(&sink, "a", "c"), [1, 2, 3]);
    assert_eq!(
        delivered_serials(&sink, "a", "d"),
        [1, 2],
        "channels count apart"
    );
    assert_eq!(delivered_serials(&sink, "b", "c"), [1], "apps count apart");

    let received = sink.received.lock().expect("sink lock poisoned").clone();
    let position = broker.position(&app("a"), &channel("c")).await.unwrap();
    assert_eq!(position.serial, 3);
    for publication in received {
        let frame: serde_json::Value =
            serde_json::from_str(&publication.frame).expect("a stamped frame is still JSON");
        assert_eq!(frame["serial"], publication.serial.unwrap(), "{frame}");
        assert_eq!(frame["event"], "e", "the rest of the frame is intact");
        if publication.app == app("a") && publication.channel == channel("c") {
            assert_eq!(frame["epoch"], position.epoch.as_str());
        }
    }
}

async fn protocol_frames_get_no_serial_and_are_not_kept<B: Broker>(
    make: &impl Fn(Arc<RecordingSink>) -> B,
) {
    let sink = Arc::new(RecordingSink::default());
    let broker = make(sink.clone());
    subscribe_to(&broker, &[("a", "c")]).await;
    broker.publish(event("a", "c", 1)).await.unwrap();
    let member_added = Publication {
        history: None,
        ..event("a", "c", 2)
    };
    broker.publish(member_added).await.unwrap();
    broker.publish(event("a", "c", 3)).await.unwrap();
    sink.wait_for(3).await;
    let received = sink.received.lock().expect("sink lock poisoned").clone();
    assert_eq!(received[1].serial, None);
    assert_eq!(&*received[1].frame, event_frame(2), "delivered as given");
    assert_eq!(received[2].serial, Some(2), "and no serial is spent on it");
    let stored = replayed(
        broker
            .history(&app("a"), &channel("c"), None, None)
            .await
            .unwrap(),
    );
    assert_eq!(
        stored.iter().map(|(serial, _)| *serial).collect::<Vec<_>>(),
        [1, 2]
    );
}

async fn a_replay_after_resume_equals_the_missed_suffix<B: Broker>(
    make: &impl Fn(Arc<RecordingSink>) -> B,
) {
    let sink = Arc::new(RecordingSink::default());
    let broker = make(sink.clone());
    let (a, c) = (app("a"), channel("c"));
    subscribe_to(&broker, &[("a", "c")]).await;
    for n in 0..5 {
        broker.publish(event("a", "c", n)).await.unwrap();
    }
    sink.wait_for(5).await;
    let delivered: Vec<(u64, bytestring::ByteString)> = sink
        .received
        .lock()
        .expect("sink lock poisoned")
        .iter()
        .map(|p| (p.serial.unwrap(), p.frame.clone()))
        .collect();
    let epoch = broker.position(&a, &c).await.unwrap().epoch;
    for seen in 0..=5 {
        let replay = broker
            .history(&a, &c, Some(seen), Some(&epoch))
            .await
            .unwrap();
        assert_eq!(
            replayed(replay),
            delivered[seen as usize..],
            "after serial {seen}: exactly the frames delivered since, byte for byte"
        );
    }
    assert_eq!(
        replayed(broker.history(&a, &c, None, None).await.unwrap()),
        delivered
    );
    let beyond = broker.history(&a, &c, Some(6), Some(&epoch)).await.unwrap();
    assert!(
        matches!(beyond, History::Gap { latest: 5, .. }),
        "a serial never reached is a gap: {beyond:?}"
    );
}

async fn concurrent_publishers_get_one_order_for_serials_and_delivery<B: Broker>(
    make: &impl Fn(Arc<RecordingSink>) -> B,
) {
    let sink = Arc::new(RecordingSink::default());
    let broker = Arc::new(make(sink.clone()));
    subscribe_to(&*broker, &[("a", "c")]).await;
    let publishers: Vec<_> = (0..4)
        .map(|_| {
            let broker = broker.clone();
            tokio::spawn(async move {
                for n in 0..100 {
                    broker.publish(event("a", "c", n)).await.unwrap();
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.expect("publisher finished");
    }
    sink.wait_for(400).await;
    let delivered = delivered_serials(&sink, "a", "c");
    assert_eq!(
        delivered,
        (1..=400).collect::<Vec<u64>>(),
        "delivery order is serial order"
    );
    let stored = replayed(
        broker
            .history(&app("a"), &channel("c"), Some(300), None)
            .await
            .unwrap(),
    );
    assert_eq!(
        stored.iter().map(|(serial, _)| *serial).collect::<Vec<_>>(),
        (301..=400).collect::<Vec<u64>>(),
        "history order is serial order"
    );
}

async fn another_epoch_is_a_gap<B: Broker>(make: &impl Fn(Arc<RecordingSink>) -> B) {
    let sink = Arc::new(RecordingSink::default());
    let broker = make(sink.clone());
    let (a, c) = (app("a"), channel("c"));
    subscribe_to(&broker, &[("a", "c")]).await;
    let before = broker.position(&a, &c).await.unwrap();
    assert_eq!(
        before.serial, 0,
        "a channel with no publication yet is at 0"
    );
    broker.publish(event("a", "c", 1)).await.unwrap();
    sink.wait_for(1).await;
    let stamped: serde_json::Value =
        serde_json::from_str(&sink.received.lock().unwrap()[0].frame).unwrap();
    assert_eq!(
        stamped["epoch"],
        before.epoch.as_str(),
        "the epoch a subscriber was told is the one its events carry"
    );
    let gap = broker
        .history(&a, &c, Some(0), Some("other"))
        .await
        .unwrap();
    assert_eq!(
        gap,
        History::Gap {
            epoch: before.epoch.clone(),
            latest: 1,
            oldest_available: 1
        }
    );
    let other_app = broker.position(&app("b"), &c).await.unwrap();
    assert_eq!(
        other_app.serial, 0,
        "another app's channel of that name is its own"
    );
}

async fn the_window_holds_by_count_and_by_age<B: Broker>(
    make: &impl Fn(Arc<RecordingSink>, Clock) -> B,
) {
    let clock = Clock::manual();
    let broker = make(Arc::new(RecordingSink::default()), clock.clone());
    let (a, c) = (app("a"), channel("c"));
    let in_window = |n| Publication {
        history: window(3, 60),
        ..event("a", "c", n)
    };
    for n in 1..=5 {
        broker.publish(in_window(n)).await.unwrap();
    }
    let serials = |history: History| -> Vec<u64> {
        replayed(history)
            .into_iter()
            .map(|(serial, _)| serial)
            .collect()
    };
    assert_eq!(
        serials(broker.history(&a, &c, None, None).await.unwrap()),
        [3, 4, 5],
        "the newest 3 by count"
    );
    assert!(matches!(
        broker.history(&a, &c, Some(1), None).await.unwrap(),
        History::Gap {
            oldest_available: 3,
            latest: 5,
            ..
        }
    ));
    assert_eq!(
        serials(broker.history(&a, &c, Some(2), None).await.unwrap()),
        [3, 4, 5]
    );

    clock.advance(Duration::from_secs(30));
    broker.publish(in_window(6)).await.unwrap();
    clock.advance(Duration::from_secs(30));
    assert_eq!(
        serials(broker.history(&a, &c, None, None).await.unwrap()),
        [6],
        "events 60 s old have left the window"
    );
    assert_eq!(
        serials(broker.history(&a, &c, Some(5), None).await.unwrap()),
        [6]
    );
    assert!(matches!(
        broker.history(&a, &c, Some(4), None).await.unwrap(),
        History::Gap {
            oldest_available: 6,
            ..
        }
    ));
    clock.advance(Duration::from_secs(30));
    assert!(matches!(
        broker.history(&a, &c, Some(5), None).await.unwrap(),
        History::Gap {
            oldest_available: 7,
            latest: 6,
            ..
        }
    ));
    assert_eq!(
        serials(broker.history(&a, &c, Some(6), None).await.unwrap()),
        [] as [u64; 0],
        "nothing missed, nothing to replay: still a resume"
    );
}
