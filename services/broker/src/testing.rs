//! The conformance suite every `Broker` implementation must pass.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::names::{AppId, ChannelName, SocketId, UserId};
use protocol::wire::Member;

use crate::{Broker, Clock, DeliverySink, History, HistoryLimits, HistoryWindow, Publication};

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
    quiet_channels_hold_no_state_and_their_first_event_carries_the_told_epoch(&make_limited).await;
    the_app_budget_evicts_its_oldest_events_and_a_resume_past_them_is_a_gap(&make_limited).await;
    past_the_node_budget_the_largest_app_gives_way(&make_limited).await;
    an_app_past_its_channel_cap_loses_its_oldest_channel(&make_limited).await;
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

/// An event under an app budget of `app_max_bytes`, with a window that never trims.
fn budgeted(app_id: &str, channel_name: &str, n: usize, app_max_bytes: usize) -> Publication {
    Publication {
        history: Some(HistoryWindow {
            max_events: 10_000,
            max_age: Duration::from_secs(3600),
            app_max_bytes,
        }),
        ..event(app_id, channel_name, n)
    }
}

/// The data (`n`) of every frame the channel keeps, oldest first.
async fn kept<B: Broker>(broker: &B, app_id: &str, channel_name: &str) -> Vec<usize> {
    let history = broker
        .history(&app(app_id), &channel(channel_name), None, None)
        .await
        .unwrap();
    replayed(history)
        .iter()
        .map(|(_, frame)| {
            let frame: serde_json::Value = serde_json::from_str(frame).unwrap();
            frame["data"].as_str().unwrap().parse().unwrap()
        })
        .collect()
}

async fn quiet_channels_hold_no_state_and_their_first_event_carries_the_told_epoch<B: Broker>(
    make: &impl Fn(HistoryLimits) -> B,
) {
    let broker = make(HistoryLimits::default());
    let (a, quiet) = (app("a"), channel("quiet"));
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
    for n in 0..100 {
        let name = format!("never-published-{n}");
        broker.position(&a, &channel(&name)).await.unwrap();
        broker
            .history(&a, &channel(&name), Some(3), None)
            .await
            .unwrap();
    }
    assert_eq!(
        broker.history_usage().channels,
        0,
        "subscribers alone create no state"
    );
    assert_eq!(
        broker.position(&a, &quiet).await.unwrap(),
        told,
        "and a quiet channel's position is stable"
    );
    broker.publish(event("a", "quiet", 1)).await.unwrap();
    let after = broker.position(&a, &quiet).await.unwrap();
    assert_eq!(
        (after.epoch.as_str(), after.serial),
        (told.epoch.as_str(), 1)
    );
    assert_eq!(broker.history_usage().channels, 1);
}

async fn the_app_budget_evicts_its_oldest_events_and_a_resume_past_them_is_a_gap<B: Broker>(
    make: &impl Fn(HistoryLimits) -> B,
) {
    let broker = make(HistoryLimits::default());
    let budget = 2_000;
    broker
        .publish(budgeted("other", "c", 0, budget))
        .await
        .unwrap();
    let epoch = broker
        .position(&app("a"), &channel("one"))
        .await
        .unwrap()
        .epoch;
    for n in 0..200 {
        let name = if n % 2 == 0 { "one" } else { "two" };
        broker
            .publish(budgeted("a", name, n, budget))
            .await
            .unwrap();
    }
    let usage = broker.history_usage();
    assert!(usage.evictions > 0, "{usage:?}");
    let (one, two) = (
        kept(&broker, "a", "one").await,
        kept(&broker, "a", "two").await,
    );
    let mut all: Vec<usize> = one.iter().chain(&two).copied().collect();
    all.sort_unstable();
    assert!(!all.is_empty() && all.len() < 200, "{all:?}");
    assert_eq!(
        all,
        (200 - all.len()..200).collect::<Vec<_>>(),
        "what is kept is the newest events, across the app's channels"
    );
    let frame_bytes = event_frame(199).len() + 40;
    assert!(
        all.len() * frame_bytes <= budget,
        "{} events kept under a budget of {budget} bytes",
        all.len()
    );
    let resume = broker
        .history(&app("a"), &channel("one"), Some(0), Some(&epoch))
        .await
        .unwrap();
    assert!(
        matches!(resume, History::Gap { latest: 100, .. }),
        "a resume that needs an evicted event is a gap, never a shorter replay: {resume:?}"
    );
    assert_eq!(
        kept(&broker, "other", "c").await,
        [0],
        "other apps keep theirs"
    );
}

async fn past_the_node_budget_the_largest_app_gives_way<B: Broker>(
    make: &impl Fn(HistoryLimits) -> B,
) {
    let node_bytes = 4_000;
    let broker = make(HistoryLimits {
        max_bytes: node_bytes,
        ..HistoryLimits::default()
    });
    broker
        .publish(budgeted("quiet", "c", 0, usize::MAX))
        .await
        .unwrap();
    for n in 0..500 {
        broker
            .publish(budgeted("noisy", "c", n, usize::MAX))
            .await
            .unwrap();
    }
    let usage = broker.history_usage();
    assert!(usage.bytes <= node_bytes as u64, "{usage:?}");
    assert!(usage.evictions > 0, "{usage:?}");
    assert_eq!(
        kept(&broker, "quiet", "c").await,
        [0],
        "the quiet app keeps its event"
    );
    let noisy = kept(&broker, "noisy", "c").await;
    assert_eq!(noisy.last(), Some(&499), "the newest is kept: {noisy:?}");
}

async fn an_app_past_its_channel_cap_loses_its_oldest_channel<B: Broker>(
    make: &impl Fn(HistoryLimits) -> B,
) {
    let broker = make(HistoryLimits {
        max_channels_per_app: 2,
        ..HistoryLimits::default()
    });
    broker.publish(event("b", "kept", 0)).await.unwrap();
    let first = broker.position(&app("a"), &channel("c1")).await.unwrap();
    for (n, name) in ["c1", "c2", "c3"].into_iter().enumerate() {
        broker.publish(event("a", name, n)).await.unwrap();
    }
    assert_eq!(broker.history_usage().channels, 3, "two for a, one for b");
    assert_eq!(kept(&broker, "a", "c3").await, [2]);
    assert_eq!(kept(&broker, "b", "kept").await, [0], "the cap is per app");
    let resume = broker
        .history(&app("a"), &channel("c1"), Some(1), Some(&first.epoch))
        .await
        .unwrap();
    assert!(
        matches!(resume, History::Gap { .. }),
        "the evicted channel's events are gone, and said to be: {resume:?}"
    );
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
