//! Conformance checks of the history's memory bounds: no state for channels never published
//! to, the app's and the node's byte budgets (oldest first), the channel cap per app. All but
//! the app's budget are one node's bounds (`memory_conformance`, for `Local`).

use std::time::Duration;

use super::{app, channel, event, event_frame, replayed};
use crate::{Broker, History, HistoryLimits, HistoryWindow, Publication};

/// Runs the checks against brokers made by `make` with the given node limits.
pub(super) async fn conformance<B: Broker>(make: &impl Fn(HistoryLimits) -> B) {
    quiet_channels_hold_no_state_and_their_first_event_carries_the_told_epoch(make).await;
    past_the_node_budget_the_largest_app_gives_way(make).await;
    an_app_past_its_channel_cap_loses_its_oldest_channel(make).await;
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

/// In the shared suite: the app's budget holds cluster-wide on Redis too.
pub(super) async fn the_app_budget_evicts_its_oldest_events_and_a_resume_past_them_is_a_gap<
    B: Broker,
>(
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
