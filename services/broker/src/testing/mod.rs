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
}

impl DeliverySink for RecordingSink {
    fn deliver(&self, publication: &Publication) {
        self.received
            .lock()
            .expect("sink lock poisoned")
            .push(publication.clone());
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

/// Runs every conformance check against brokers made by `make`, which must deliver to the
/// given sink, age history by the given clock (a manual one, moved by the checks) and keep
/// the node's history within the given limits. Run it on a multi-threaded runtime so
/// concurrent publishers really are concurrent.
pub async fn conformance<B: Broker>(make: impl Fn(Arc<RecordingSink>, Clock, HistoryLimits) -> B) {
    let make_limited = |limits| make(Arc::new(RecordingSink::default()), Clock::manual(), limits);
    memory::conformance(&make_limited).await;
    let make = |sink, clock| make(sink, clock, HistoryLimits::default());
    let make_now = |sink| make(sink, Clock::manual());
    publications_reach_the_sink_intact(&make_now).await;
    presence_refuses_new_users_beyond_the_maximum(&make_now).await;
    presence_is_per_user_not_per_connection(&make_now).await;
    presence_is_scoped_by_app_and_channel(&make_now).await;
    serials_increase_per_channel_independently_across_channels_and_apps(&make_now).await;
    protocol_frames_get_no_serial_and_are_not_kept(&make_now).await;
    a_replay_after_resume_equals_the_missed_suffix(&make_now).await;
    concurrent_publishers_get_one_order_for_serials_and_delivery(&make_now).await;
    another_epoch_is_a_gap(&make_now).await;
    the_window_holds_by_count_and_by_age(&make).await;
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

async fn presence_is_per_user_not_per_connection<B: Broker>(
    make: &impl Fn(Arc<RecordingSink>) -> B,
) {
    let broker = make(Arc::new(RecordingSink::default()));
    let (a, room) = (app("a"), channel("presence-room"));
    let first = broker
        .presence_join(&a, &room, &socket("1.1"), member("ann"), 100)
        .await
        .unwrap();
    assert!(first.first_for_user);
    assert_eq!(first.members, [member("ann")]);

    let second_tab = broker
        .presence_join(&a, &room, &socket("1.2"), member("ann"), 100)
        .await
        .unwrap();
    assert!(
        !second_tab.first_for_user,
        "a second connection of one user is not a new member"
    );
    assert_eq!(second_tab.members.len(), 1);

    let again = broker
        .presence_join(&a, &room, &socket("1.2"), member("ann"), 100)
        .await
        .unwrap();
    assert!(
        !again.first_for_user,
        "joining twice with one socket is a no-op"
    );

    let bob = broker
        .presence_join(&a, &room, &socket("1.3"), member("bob"), 100)
        .await
        .unwrap();
    assert!(bob.first_for_user);
    assert_eq!(bob.members, [member("ann"), member("bob")]);

    assert_eq!(
        broker
            .presence_leave(&a, &room, &socket("1.1"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        broker
            .presence_leave(&a, &room, &socket("1.2"))
            .await
            .unwrap(),
        Some(UserId::parse("ann").unwrap()),
        "the user leaves with their last connection"
    );
    assert_eq!(
        broker
            .presence_leave(&a, &room, &socket("1.2"))
            .await
            .unwrap(),
        None,
        "leaving twice is a no-op"
    );
    assert_eq!(
        broker.presence_members(&a, &room).await.unwrap(),
        [member("bob")]
    );
}

async fn presence_is_scoped_by_app_and_channel<B: Broker>(make: &impl Fn(Arc<RecordingSink>) -> B) {
    let broker = make(Arc::new(RecordingSink::default()));
    let room = channel("presence-room");
    broker
        .presence_join(&app("a"), &room, &socket("1.1"), member("ann"), 100)
        .await
        .unwrap();
    assert!(
        broker
            .presence_members(&app("b"), &room)
            .await
            .unwrap()
            .is_empty(),
        "apps never share presence"
    );
    assert!(
        broker
            .presence_members(&app("a"), &channel("presence-other"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        broker
            .presence_leave(&app("b"), &room, &socket("1.1"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        broker
            .presence_members(&app("a"), &room)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn presence_refuses_new_users_beyond_the_maximum<B: Broker>(
    make: &impl Fn(Arc<RecordingSink>) -> B,
) {
    let broker = make(Arc::new(RecordingSink::default()));
    let (a, room) = (app("a"), channel("presence-small"));
    broker
        .presence_join(&a, &room, &socket("1.1"), member("ann"), 2)
        .await
        .unwrap();
    broker
        .presence_join(&a, &room, &socket("1.2"), member("bob"), 2)
        .await
        .unwrap();
    let refused = broker
        .presence_join(&a, &room, &socket("1.3"), member("cat"), 2)
        .await;
    assert!(
        matches!(refused, Err(crate::BrokerError::PresenceFull { max: 2 })),
        "{refused:?}"
    );
    let second_tab = broker
        .presence_join(&a, &room, &socket("1.4"), member("ann"), 2)
        .await;
    assert!(
        second_tab.is_ok(),
        "an existing member's second connection is not a new member"
    );
    assert_eq!(broker.presence_members(&a, &room).await.unwrap().len(), 2);
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
    for (n, (app_id, channel_name)) in order.into_iter().enumerate() {
        broker
            .publish(event(app_id, channel_name, n))
            .await
            .expect("publish");
    }
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
    broker.publish(event("a", "c", 1)).await.unwrap();
    let member_added = Publication {
        history: None,
        ..event("a", "c", 2)
    };
    broker.publish(member_added).await.unwrap();
    broker.publish(event("a", "c", 3)).await.unwrap();
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
    for n in 0..5 {
        broker.publish(event("a", "c", n)).await.unwrap();
    }
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
    let before = broker.position(&a, &c).await.unwrap();
    assert_eq!(
        before.serial, 0,
        "a channel with no publication yet is at 0"
    );
    broker.publish(event("a", "c", 1)).await.unwrap();
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
