//! Conformance of `Occupancy`. Each check uses app ids of its own.

use std::sync::Arc;

use protocol::names::{AppId, ChannelName};

use crate::occupancy::Occupancy;

fn app(id: &str) -> AppId {
    AppId::parse(id).expect("valid app id")
}

fn channel(name: &str) -> ChannelName {
    ChannelName::parse(name).expect("valid channel")
}

/// Runs every check against occupancies made by `make`, on a multi-threaded runtime.
pub async fn occupancy_conformance<O: Occupancy>(make: impl Fn() -> O) {
    first_and_last_subscriptions_are_told(make()).await;
    channels_are_listed_per_app_by_prefix(make()).await;
    exactly_one_of_concurrent_subscribers_is_first(Arc::new(make())).await;
}

async fn first_and_last_subscriptions_are_told(occupancy: impl Occupancy) {
    let (a, c) = (app("occupancy-first"), channel("c"));
    assert_eq!(occupancy.subscription_count(&a, &c).await.unwrap(), 0);
    assert_eq!(occupancy.subscribed(&a, &c).await.unwrap(), 1, "occupied");
    assert_eq!(occupancy.subscribed(&a, &c).await.unwrap(), 2);
    assert_eq!(occupancy.subscription_count(&a, &c).await.unwrap(), 2);
    assert_eq!(occupancy.unsubscribed(&a, &c).await.unwrap(), 1);
    assert_eq!(occupancy.unsubscribed(&a, &c).await.unwrap(), 0, "vacant");
    assert_eq!(
        occupancy.unsubscribed(&a, &c).await.unwrap(),
        0,
        "an empty channel stays at zero"
    );
    assert_eq!(occupancy.subscribed(&a, &c).await.unwrap(), 1, "again");
    assert_eq!(occupancy.unsubscribed(&a, &c).await.unwrap(), 0);
    assert!(
        occupancy
            .occupied_channels(&a, "")
            .await
            .unwrap()
            .is_empty()
    );
}

async fn channels_are_listed_per_app_by_prefix(occupancy: impl Occupancy) {
    let (a, b) = (app("occupancy-list-a"), app("occupancy-list-b"));
    for name in ["presence-z", "b", "presence-a", "b"] {
        occupancy.subscribed(&a, &channel(name)).await.unwrap();
    }
    occupancy.subscribed(&b, &channel("other")).await.unwrap();
    assert_eq!(
        occupancy.occupied_channels(&a, "").await.unwrap(),
        vec![
            (channel("b"), 2),
            (channel("presence-a"), 1),
            (channel("presence-z"), 1)
        ],
        "sorted by name, with counts, this app's only"
    );
    assert_eq!(
        occupancy.occupied_channels(&a, "presence-").await.unwrap(),
        vec![(channel("presence-a"), 1), (channel("presence-z"), 1)]
    );
    assert_eq!(
        occupancy
            .subscription_count(&b, &channel("b"))
            .await
            .unwrap(),
        0,
        "apps never see each other's channels"
    );
    for name in ["presence-z", "b", "presence-a", "b"] {
        occupancy.unsubscribed(&a, &channel(name)).await.unwrap();
    }
    occupancy.unsubscribed(&b, &channel("other")).await.unwrap();
    assert!(
        occupancy
            .occupied_channels(&a, "")
            .await
            .unwrap()
            .is_empty()
    );
}

async fn exactly_one_of_concurrent_subscribers_is_first<O: Occupancy>(occupancy: Arc<O>) {
    let (a, c) = (app("occupancy-concurrent"), channel("c"));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (occupancy, a, c) = (occupancy.clone(), a.clone(), c.clone());
            tokio::spawn(async move { occupancy.subscribed(&a, &c).await.unwrap() })
        })
        .collect();
    let mut counts = Vec::new();
    for task in tasks {
        counts.push(task.await.unwrap());
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=32).collect::<Vec<u64>>());
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (occupancy, a, c) = (occupancy.clone(), a.clone(), c.clone());
            tokio::spawn(async move { occupancy.unsubscribed(&a, &c).await.unwrap() })
        })
        .collect();
    let mut left = Vec::new();
    for task in tasks {
        left.push(task.await.unwrap());
    }
    left.sort_unstable();
    assert_eq!(left, (0..32).collect::<Vec<u64>>(), "exactly one is last");
}
