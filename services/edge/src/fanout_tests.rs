use std::collections::VecDeque;
use std::future::poll_fn;

use protocol::codes::CloseReason;
use protocol::names::{ChannelName, SocketId};

use super::*;
use crate::outbox::{OutboxBounds, Outgoing};

pub(super) fn app(name: &str) -> AppId {
    AppId::parse(name).unwrap()
}

/// WebSocket outboxes of the flow's app whose writers have looked once and now wait for a
/// frame, as a connected client's do.
pub(super) fn outboxes(flow: &Arc<AppFlow>, count: usize) -> Vec<Arc<Outbox>> {
    (0..count)
        .map(|n| {
            let outbox = Arc::new(Outbox::for_websocket(
                SocketId::parse(&format!("1.{n}")).unwrap(),
                OutboxBounds::frames_for_test(64),
            ));
            outbox.attach_flow(flow);
            assert!(outbox.drain().is_empty());
            outbox
        })
        .collect()
}

pub(super) fn publication(app: &AppId, serial: u64) -> Publication {
    Publication {
        app: app.clone(),
        channel: ChannelName::parse("ticker").unwrap(),
        frame: format!("{{\"n\":{serial}}}").into(),
        except: None,
        history: None,
        serial: Some(serial),
    }
}

/// Routes one publication to `targets` the way the hub does; pushes it now when told to.
pub(super) fn deliver(
    fanout: &Fanout,
    flow: &Arc<AppFlow>,
    targets: &[Arc<Outbox>],
    serial: u64,
) -> bool {
    let app = targets_app(flow);
    let publication = publication(&app, serial);
    let job = || Job::new(publication.clone(), None, targets.to_vec());
    match fanout.route(&app, flow, targets.len(), job) {
        Route::Now => {
            for outbox in targets {
                outbox.push_from(
                    &publication.channel,
                    Some(serial),
                    publication.frame.clone(),
                );
            }
            true
        }
        Route::Queued => true,
        Route::Refused => {
            targets
                .iter()
                .for_each(|outbox| outbox.refuse_over_capacity());
            false
        }
    }
}

/// Tests name each flow's app by its address (one app per flow here).
pub(super) fn targets_app(flow: &Arc<AppFlow>) -> AppId {
    app(&format!("app-{}", Arc::as_ptr(flow) as usize))
}

/// Waits until the fan-out gives the outbox something, and takes it.
async fn next_frames(outbox: &Outbox) -> VecDeque<Outgoing> {
    let mut frames = VecDeque::new();
    poll_fn(|context| outbox.poll_take(context, &mut frames)).await;
    frames
}

/// A fan-out state with one publication waiting per app, to that many subscribers.
pub(super) fn queued(apps: &[(&str, &Arc<AppFlow>, usize)]) -> State {
    let mut state = State::default();
    for &(name, flow, waiting) in apps {
        let app = app(name);
        let mut jobs = VecDeque::new();
        jobs.push_back(Job::new(
            publication(&app, 1),
            None,
            outboxes(flow, waiting),
        ));
        let queue = AppQueue {
            jobs,
            waiting,
            flow: flow.clone(),
        };
        state.apps.insert(app.clone(), queue);
        state.turns.push_back(app);
    }
    state
}

pub(super) fn bounds(in_flight: usize, backlog: usize) -> FanoutBounds {
    FanoutBounds {
        in_flight_per_app: in_flight,
        // Strict: these tests hold every publication to the bound, contended or not.
        whole_when_idle: 0,
        backlog_per_app: backlog,
        contention_window: Duration::ZERO,
        headroom_lag: Duration::ZERO,
    }
}

/// Bounds that hold an app only while another app published within the hour.
pub(super) fn bounds_when_contended(in_flight: usize, backlog: usize) -> FanoutBounds {
    FanoutBounds {
        contention_window: Duration::from_secs(3600),
        ..bounds(in_flight, backlog)
    }
}

#[test]
fn an_app_alone_on_the_node_is_never_held_to_its_bound() {
    let fanout = Fanout::default();
    fanout.set_bounds(bounds_when_contended(10, 1000));
    let flow = fanout.new_flow();
    let targets = outboxes(&flow, 30);
    // 30 deliveries against a bound of 10, five times, and no writer runs: all pushed now.
    for serial in 1..=5 {
        deliver(&fanout, &flow, &targets, serial);
    }
    assert_eq!(fanout.backlog(&targets_app(&flow)), 0);
    assert_eq!(flow.in_flight(), 30, "every writer woken once");
    for outbox in &targets {
        assert_eq!(outbox.drain().len(), 5, "each frame pushed in the caller");
    }
}

#[test]
fn another_apps_publication_holds_an_app_to_its_bound_for_the_window() {
    let fanout = Fanout::default();
    fanout.set_bounds(bounds_when_contended(10, 1000));
    let (storm, quiet) = (fanout.new_flow(), fanout.new_flow());
    let storm_targets = outboxes(&storm, 30);
    deliver(&fanout, &storm, &storm_targets, 1);
    assert_eq!(storm.in_flight(), 30, "alone: pushed whole");
    // The quiet app publishes once (to one subscriber: under its own bound, pushed now).
    let quiet_targets = outboxes(&quiet, 1);
    deliver(&fanout, &quiet, &quiet_targets, 1);
    assert_eq!(quiet.in_flight(), 1);
    // From now on, for the window, the storm waits behind its bound.
    deliver(&fanout, &storm, &storm_targets, 2);
    assert_eq!(fanout.backlog(&targets_app(&storm)), 30);
    assert_eq!(storm.in_flight(), 30, "nothing more pushed past the bound");
}

#[test]
fn an_app_whose_writers_are_mostly_done_has_a_publication_pushed_whole() {
    let fanout = Fanout::default();
    fanout.set_bounds(FanoutBounds {
        whole_when_idle: 300,
        ..bounds(50, 10_000)
    });
    let flow = fanout.new_flow();
    let targets = outboxes(&flow, 200);
    deliver(&fanout, &flow, &targets[..25], 1);
    assert_eq!(flow.in_flight(), 25, "half the bound still in flight");
    deliver(&fanout, &flow, &targets, 2);
    assert_eq!(fanout.backlog(&targets_app(&flow)), 0, "pushed whole");
    assert_eq!(flow.in_flight(), 200);
}

#[test]
fn the_app_with_the_largest_backlog_is_held_to_a_quarter_of_the_bound() {
    let fanout = Fanout::default();
    let (storm, quiet) = (fanout.new_flow(), fanout.new_flow());
    let mut state = queued(&[("storm", &storm, 2000), ("quiet", &quiet, 600)]);
    let contended = Duration::ZERO;
    let mut pushed = HashMap::new();
    while let Some(mut turn) = state.next_turn(400, contended, Instant::now()) {
        push(&mut turn);
        *pushed.entry(turn.app.to_string()).or_insert(0) += turn.count;
        state.end_turn(turn);
    }
    // No writer runs: each app stops at its bound.
    assert_eq!(pushed["storm"], 100, "a quarter of 400");
    assert_eq!(pushed["quiet"], 400);
    assert_eq!((storm.in_flight(), quiet.in_flight()), (100, 400));
}

#[test]
fn an_app_behind_its_bound_is_not_queued_while_another_has_more_waiting() {
    let fanout = Fanout::default();
    fanout.set_bounds(FanoutBounds {
        whole_when_idle: 50,
        ..bounds(10, 10_000)
    });
    let (storm, quiet) = (fanout.new_flow(), fanout.new_flow());
    let storm_targets = outboxes(&storm, 40);
    deliver(&fanout, &storm, &storm_targets, 1);
    deliver(&fanout, &storm, &storm_targets, 2);
    assert_eq!(fanout.backlog(&targets_app(&storm)), 40, "the storm waits");
    // The quiet app's writers lag its publications, past its bound of 10 ...
    let quiet_targets = outboxes(&quiet, 25);
    deliver(&fanout, &quiet, &quiet_targets, 1);
    deliver(&fanout, &quiet, &quiet_targets, 2);
    assert_eq!(quiet.in_flight(), 25);
    // ... yet it is not queued with the storm, whose 40 waiting are more than its 25.
    assert_eq!(fanout.backlog(&targets_app(&quiet)), 0);
    // Not past `whole_when_idle` in flight, though: 25 + 30 more would be 55 of 50.
    let more = outboxes(&quiet, 30);
    deliver(&fanout, &quiet, &more, 3);
    assert_eq!(fanout.backlog(&targets_app(&quiet)), 30, "queued");
    assert_eq!(
        fanout.backlog(&targets_app(&storm)),
        40,
        "the storm is still held"
    );
    for outbox in &quiet_targets {
        assert_eq!(outbox.drain().len(), 2, "both pushed in the caller");
    }
}

#[test]
fn the_most_recent_other_app_is_always_remembered() {
    let start = Instant::now();
    let at = |ms| start + Duration::from_millis(ms);
    let window = Duration::from_millis(100);
    let mut recent = Recent::default();
    assert!(!recent.other_than(1, at(0), window), "nobody yet");
    recent.note(1, at(0));
    assert!(!recent.other_than(1, at(1), window), "only itself");
    recent.note(2, at(10));
    for ms in 20..30 {
        recent.note(1, at(ms));
    }
    assert!(recent.other_than(1, at(30), window), "2 routed 20 ms ago");
    assert!(recent.other_than(2, at(30), window), "1 routed just now");
    assert!(
        !recent.other_than(1, at(110), window),
        "2's last publication is past the window"
    );
    recent.note(3, at(120));
    assert!(recent.other_than(1, at(121), window));
    assert!(
        recent.other_than(3, at(121), window),
        "1 at 29 ms is within"
    );
    assert!(!recent.other_than(3, at(200), window));
}

#[test]
fn an_app_under_its_bound_is_pushed_at_once() {
    let fanout = Fanout::default();
    fanout.set_bounds(bounds(100, 1000));
    let flow = fanout.new_flow();
    let targets = outboxes(&flow, 100);
    deliver(&fanout, &flow, &targets, 1);
    assert_eq!(
        flow.in_flight(),
        100,
        "pushed in the caller: 100 writers woken"
    );
    assert!(targets.iter().all(|outbox| outbox.queued_bytes() > 0));
    // Its writers ran: nothing in flight any more.
    targets.iter().for_each(|outbox| drop(outbox.drain()));
    assert_eq!(flow.in_flight(), 0);
}

#[tokio::test]
async fn a_storm_waits_at_its_bound_while_another_app_is_served() {
    let fanout = Fanout::default();
    fanout.set_bounds(bounds(50, 10_000));
    let (storm, quiet) = (fanout.new_flow(), fanout.new_flow());
    let storm_targets = outboxes(&storm, 200);
    // The storm's writers never run: once 50 of them are woken, the rest waits.
    for serial in 1..=5 {
        deliver(&fanout, &storm, &storm_targets, serial);
    }
    // The quiet app's fan-out is larger than its bound too, so it goes through the queue,
    // and is served in full while the storm stays stuck at its bound.
    let quiet_targets = outboxes(&quiet, 120);
    deliver(&fanout, &quiet, &quiet_targets, 1);
    for outbox in &quiet_targets {
        let frames = next_frames(outbox).await;
        assert_eq!(frames.len(), 1);
        assert!(storm.in_flight() <= 50, "the storm never passes its bound");
    }
    assert!(fanout.backlog(&targets_app(&storm)) > 0);
    assert_eq!(fanout.backlog(&targets_app(&quiet)), 0);
}

#[test]
fn an_app_with_nothing_in_flight_has_a_publication_past_its_bound_pushed_whole() {
    let fanout = Fanout::default();
    fanout.set_bounds(FanoutBounds {
        whole_when_idle: 300,
        ..bounds(50, 10_000)
    });
    let (occasional, busy) = (fanout.new_flow(), fanout.new_flow());
    // 200 subscribers, bound 50: pushed whole, in the caller, because nothing was in flight.
    let targets = outboxes(&occasional, 200);
    deliver(&fanout, &occasional, &targets, 1);
    assert_eq!(occasional.in_flight(), 200, "pushed whole at once");
    assert_eq!(fanout.backlog(&targets_app(&occasional)), 0);
    // The same app again before its writers ran: now it is held to its bound.
    deliver(&fanout, &occasional, &targets, 2);
    assert_eq!(fanout.backlog(&targets_app(&occasional)), 200);
    // Past `whole_when_idle`, even an idle app waits its turns.
    let many = outboxes(&busy, 301);
    deliver(&fanout, &busy, &many, 1);
    assert!(busy.in_flight() <= 50, "{}", busy.in_flight());
}

#[tokio::test]
async fn a_waiting_app_gets_every_frame_in_order_once_its_writers_drain() {
    let fanout = Fanout::default();
    fanout.set_bounds(bounds(8, 10_000));
    let flow = fanout.new_flow();
    let targets = outboxes(&flow, 20);
    for serial in 1..=30 {
        deliver(&fanout, &flow, &targets, serial);
    }
    let mut tasks = Vec::new();
    for outbox in targets {
        let flow = flow.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while seen.len() < 30 {
                for frame in next_frames(&outbox).await {
                    assert!(flow.in_flight() <= 8, "never past the bound");
                    let Outgoing::Text(text) = frame else {
                        panic!("a text frame")
                    };
                    seen.push(text.to_string());
                }
            }
            seen
        }));
    }
    let expected: Vec<String> = (1..=30).map(|n| format!("{{\"n\":{n}}}")).collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), expected);
    }
    assert_eq!(flow.in_flight(), 0);
}

#[test]
fn half_the_backlog_is_congestion_and_past_it_subscribers_are_closed_with_4100() {
    let fanout = Fanout::default();
    fanout.set_bounds(bounds(10, 100));
    let flow = fanout.new_flow();
    let targets = outboxes(&flow, 30);
    let app = targets_app(&flow);
    // 30 deliveries are past the bound of 10: each publication waits, and no writer runs, so
    // the thread pushes at most 10 of them.
    for serial in 1..=3 {
        assert!(deliver(&fanout, &flow, &targets, serial));
    }
    assert!(fanout.backlog(&app) >= 80, "{}", fanout.backlog(&app));
    assert!(fanout.congested(&app));
    // 80 waiting + 30 is past 100: refused, and the subscribers here are told 4100.
    assert!(!deliver(&fanout, &flow, &targets, 4));
    let reasons: Vec<_> = targets.iter().map(|outbox| outbox.close_reason()).collect();
    assert!(
        reasons
            .iter()
            .all(|r| *r == Some(CloseReason::SlowConsumer))
    );
}

#[test]
fn an_outbox_dropped_with_frames_queued_gives_them_back() {
    let fanout = Fanout::default();
    let flow = fanout.new_flow();
    let targets = outboxes(&flow, 3);
    deliver(&fanout, &flow, &targets, 1);
    assert_eq!(flow.in_flight(), 3);
    targets[0].close_with([Outgoing::Close {
        code: 4100,
        reason: String::new(),
    }]);
    assert_eq!(
        flow.in_flight(),
        3,
        "the close frame replaced the queued frame"
    );
    drop(targets);
    assert_eq!(flow.in_flight(), 0);
}

#[test]
fn turns_alternate_between_apps_a_turn_at_a_time() {
    let fanout = Fanout::default();
    let (one, two) = (fanout.new_flow(), fanout.new_flow());
    let each = 2 * TURN + 10;
    let mut state = queued(&[("one", &one, each), ("two", &two, each)]);
    let mut order = Vec::new();
    while let Some(mut turn) = state.next_turn(usize::MAX, Duration::ZERO, Instant::now()) {
        order.push((turn.app.to_string(), turn.count));
        push(&mut turn);
        state.end_turn(turn);
    }
    let expected = [
        ("one", TURN),
        ("two", TURN),
        ("one", TURN),
        ("two", TURN),
        ("one", 10),
        ("two", 10),
    ];
    let expected: Vec<_> = expected.iter().map(|(a, n)| (a.to_string(), *n)).collect();
    assert_eq!(order, expected);
    assert!(state.apps.is_empty() && state.turns.is_empty());
}

#[test]
fn a_writer_blocked_on_its_socket_or_a_carrier_waiting_for_its_client_counts_nothing() {
    let fanout = Fanout::default();
    let flow = fanout.new_flow();
    let targets = outboxes(&flow, 2);
    deliver(&fanout, &flow, &targets, 1);
    assert_eq!(flow.in_flight(), 2);
    // The writers took their frame and are now stuck writing it (they look again only once
    // the socket drains): more frames for them are no work on this node.
    targets
        .iter()
        .for_each(|outbox| assert_eq!(outbox.drain().len(), 1));
    for serial in 2..=20 {
        deliver(&fanout, &flow, &targets, serial);
    }
    assert_eq!(flow.in_flight(), 0);
    // An HTTP carrier's outbox never counts.
    let carrier = Arc::new(Outbox::new(
        SocketId::parse("2.1").unwrap(),
        OutboxBounds::frames_for_test(64),
    ));
    carrier.attach_flow(&flow);
    assert!(carrier.drain().is_empty());
    deliver(&fanout, &flow, std::slice::from_ref(&carrier), 1);
    assert_eq!(flow.in_flight(), 0);
}
