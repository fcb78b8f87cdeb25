//! The fan-out with a storm paced (`fanout_pace`): its deliveries go through the thread at
//! its rate, the other apps' as before.

use super::tests::{app, bounds_when_contended, deliver, outboxes, queued, targets_app};
use super::*;
use crate::fanout_pace::{CHUNK, WINDOW};

const LATE: Duration = Duration::from_millis(40);

/// A state whose storm (the app with the most waiting) is paced: it was the largest for
/// `STORM_WINDOWS` late windows, and pushed `got` deliveries in the last, which ends at the
/// time returned.
fn paced(state: &mut State, got: usize, start: Instant) -> Instant {
    state.pace = StormPace::new(Duration::from_millis(10), start);
    let mut now = start;
    for window in 1..=STORM_WINDOWS {
        assert!(!state.pace.is_pacing(), "not a storm yet");
        if window == STORM_WINDOWS {
            state.pace.pushed(got);
        }
        let lag = LagSignal::default();
        lag.record(LATE);
        now += WINDOW;
        state.adjust_pace(Duration::ZERO, now, &lag, 1000);
    }
    assert!(
        state.pace.is_pacing(),
        "the workers were late while contended"
    );
    now
}

#[test]
fn a_paced_storm_waits_for_its_tokens_while_another_app_takes_its_turns() {
    let fanout = Fanout::default();
    let (storm, quiet) = (fanout.new_flow(), fanout.new_flow());
    let mut state = queued(&[("storm", &storm, 2000), ("quiet", &quiet, 300)]);
    // 1,000 in 100 ms (the storm has more than 1,000 waiting): 10,000 a second, paced at half of it.
    let now = paced(&mut state, 1000, Instant::now());
    assert_eq!(state.pace.rate(), Some(5_000.0));
    let mut pushed = HashMap::new();
    while let Some(mut turn) = state.next_turn(usize::MAX, Duration::ZERO, now) {
        push(&mut turn);
        *pushed.entry(turn.app.to_string()).or_insert(0) += turn.count;
        state.end_turn(turn);
    }
    assert_eq!(pushed.get("storm"), None, "no tokens yet");
    assert_eq!(pushed["quiet"], 300, "the other app is not paced");
    // Once its tokens come, the storm goes by chunks, and no faster than its rate.
    let later = now + state.pace.wait().expect("paced");
    let turn = state.next_turn(usize::MAX, Duration::ZERO, later);
    let turn = turn.expect("the storm's chunk");
    assert_eq!(
        (turn.app.to_string(), turn.count),
        ("storm".to_string(), CHUNK)
    );
    state.end_turn(turn);
    assert!(state.next_turn(usize::MAX, Duration::ZERO, later).is_none());
}

#[test]
fn a_paced_storms_publication_is_queued_even_when_it_would_be_pushed_whole() {
    let fanout = Fanout::default();
    fanout.set_bounds(FanoutBounds {
        whole_when_idle: 4096,
        ..bounds_when_contended(512, 100_000)
    });
    // No fan-out thread: what is queued stays queued, for the test to see.
    fanout.thread.call_once(|| {});
    let (storm, quiet) = (fanout.new_flow(), fanout.new_flow());
    let (storm_targets, quiet_targets) = (outboxes(&storm, 100), outboxes(&quiet, 1));
    deliver(&fanout, &quiet, &quiet_targets, 1);
    // Its writer ran, and waits again.
    assert_eq!(quiet_targets[0].drain().len(), 1);
    assert!(quiet_targets[0].drain().is_empty());
    // Unpaced, 100 deliveries with nothing in flight go at once, contended or not.
    assert!(deliver(&fanout, &storm, &storm_targets, 1));
    assert_eq!(
        (fanout.backlog(&targets_app(&storm)), storm.in_flight()),
        (0, 100)
    );
    for outbox in &storm_targets {
        assert_eq!(outbox.drain().len(), 1);
    }
    {
        let mut state = fanout.shared.lock();
        state.pace = StormPace::new(Duration::from_millis(10), Instant::now());
        state.pace.pushed(1000);
        let lag = LagSignal::default();
        lag.record(LATE);
        state
            .pace
            .adjust(Instant::now() + WINDOW, true, || lag.take());
        state.paced = Some(targets_app(&storm));
    }
    assert!(deliver(&fanout, &storm, &storm_targets, 2));
    assert_eq!(storm.in_flight(), 0, "not pushed in the caller");
    assert_eq!(
        fanout.backlog(&targets_app(&storm)),
        100,
        "queued for the thread"
    );
    // The quiet app still goes now.
    deliver(&fanout, &quiet, &quiet_targets, 2);
    assert_eq!(quiet.in_flight(), 1);
    assert_eq!(fanout.backlog(&targets_app(&quiet)), 0);
}

#[test]
fn lateness_with_no_app_waiting_paces_nobody() {
    let mut state = State {
        pace: StormPace::new(Duration::from_millis(10), Instant::now()),
        ..State::default()
    };
    state.pace.pushed(1000);
    let lag = LagSignal::default();
    lag.record(LATE);
    state.adjust_pace(Duration::ZERO, Instant::now() + WINDOW, &lag, 0);
    assert!(!state.pace.is_pacing());
}

#[test]
fn an_app_with_no_more_than_a_storms_size_waiting_is_never_paced() {
    let fanout = Fanout::default();
    let (one, two) = (fanout.new_flow(), fanout.new_flow());
    let mut state = queued(&[("one", &one, 900), ("two", &two, 300)]);
    let start = Instant::now();
    state.pace = StormPace::new(Duration::from_millis(10), start);
    state.pace.pushed(1000);
    let lag = LagSignal::default();
    lag.record(LATE);
    state.adjust_pace(Duration::ZERO, start + WINDOW, &lag, 1000);
    assert!(!state.pace.is_pacing() && state.paced.is_none());
}

#[test]
fn the_paced_app_is_the_only_one_paced_until_pacing_ends() {
    let fanout = Fanout::default();
    let (storm, quiet) = (fanout.new_flow(), fanout.new_flow());
    let mut state = queued(&[("storm", &storm, 2000), ("quiet", &quiet, 300)]);
    let mut now = paced(&mut state, 1000, Instant::now());
    assert_eq!(state.paced, Some(app("storm")));
    state.apps.get_mut(&app("quiet")).unwrap().waiting = 5000;
    let late_window = |state: &mut State, now: &mut Instant| {
        let lag = LagSignal::default();
        lag.record(LATE);
        *now += WINDOW;
        state.adjust_pace(Duration::ZERO, *now, &lag, 1000);
    };
    late_window(&mut state, &mut now);
    assert_eq!(
        state.paced,
        Some(app("storm")),
        "still waiting: still paced"
    );
    // Its queue drained, it waits out a 429, while the other app's grows: still the storm.
    state.apps.remove(&app("storm"));
    state.paced_routed = Some(now);
    for _ in 0..=STORM_WINDOWS {
        late_window(&mut state, &mut now);
        assert_eq!(
            state.paced,
            Some(app("storm")),
            "never another in its place"
        );
    }
    // Once it has not published for a while and no app is a storm, pacing ends.
    state.apps.clear();
    now += PACE_HOLD;
    late_window(&mut state, &mut now);
    assert_eq!((state.paced.clone(), state.pace.is_pacing()), (None, false));
}

#[test]
fn a_paced_storm_is_refused_past_what_its_pace_drains_in_a_retry_after() {
    let fanout = Fanout::default();
    let (storm, quiet) = (fanout.new_flow(), fanout.new_flow());
    let mut state = queued(&[("storm", &storm, 7000), ("quiet", &quiet, 6000)]);
    paced(&mut state, 1000, Instant::now());
    assert_eq!(state.pace.rate(), Some(5_000.0));
    *fanout.shared.lock() = state;
    // 7,000 waiting take 1.4 s at 5,000 a second: past a Retry-After.
    assert!(fanout.congested(&app("storm")));
    // The other app is refused only past half its backlog, as ever.
    assert!(!fanout.congested(&app("quiet")));
    fanout
        .shared
        .lock()
        .apps
        .get_mut(&app("storm"))
        .unwrap()
        .waiting = 4000;
    assert!(!fanout.congested(&app("storm")), "drained within a second");
}
