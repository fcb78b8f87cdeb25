//! Conformance of `ConnectionCounter`, `MessageCounter` and `PublishRate`. Each check uses
//! app ids of its own, so implementations sharing a store (Redis) can run them one by one.

use std::sync::Arc;

use protocol::names::AppId;

use crate::counters::{ConnectionCounter, MessageCounter, PublishRate, SECONDS_PER_DAY};

fn app(id: &str) -> AppId {
    AppId::parse(id).expect("valid app id")
}

/// Runs every check against counters made by `make` (a fresh counter each call). Run it on
/// a multi-threaded runtime so concurrent acquires really are concurrent.
pub async fn connection_counter_conformance<C: ConnectionCounter>(make: impl Fn() -> C) {
    slots_stop_at_the_ceiling_and_come_back(make()).await;
    concurrent_acquires_never_overshoot(Arc::new(make())).await;
    each_acquire_answers_the_count_it_leaves(Arc::new(make())).await;
}

/// The count an acquire answers is the one its own atomic step left, so concurrent acquires
/// answer distinct counts, 1 to N (usage metering takes the largest as the app's peak).
async fn each_acquire_answers_the_count_it_leaves<C: ConnectionCounter>(counter: Arc<C>) {
    let (a, b) = (app("conn-counted-a"), app("conn-counted-b"));
    assert_eq!(counter.acquire_counted(&a, Some(2)).await.unwrap(), Some(1));
    assert_eq!(counter.acquire_counted(&a, Some(2)).await.unwrap(), Some(2));
    assert_eq!(counter.acquire_counted(&a, Some(2)).await.unwrap(), None);
    assert_eq!(counter.acquire_counted(&b, None).await.unwrap(), Some(1));
    counter.release(&a);
    wait_for_count(counter.as_ref(), &a, 1).await;
    assert_eq!(counter.acquire_counted(&a, Some(2)).await.unwrap(), Some(2));

    let c = app("conn-counted-concurrent");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (counter, c) = (counter.clone(), c.clone());
            tokio::spawn(async move {
                let mut answered = Vec::new();
                for _ in 0..5 {
                    answered.push(counter.acquire_counted(&c, None).await.unwrap().unwrap());
                }
                answered
            })
        })
        .collect();
    let mut answered = Vec::new();
    for task in tasks {
        answered.extend(task.await.unwrap());
    }
    answered.sort_unstable();
    assert_eq!(
        answered,
        (1..=40).collect::<Vec<u64>>(),
        "one count per acquire"
    );
}

async fn slots_stop_at_the_ceiling_and_come_back(counter: impl ConnectionCounter) {
    let (a, b) = (app("conn-ceiling-a"), app("conn-ceiling-b"));
    assert!(counter.acquire(&a, Some(2)).await.unwrap());
    assert!(counter.acquire(&a, Some(2)).await.unwrap());
    assert!(
        !counter.acquire(&a, Some(2)).await.unwrap(),
        "the third is over the ceiling"
    );
    assert!(
        counter.acquire(&b, Some(2)).await.unwrap(),
        "another app has its own count"
    );
    assert_eq!(counter.count(&a).await.unwrap(), 2);
    counter.release(&a);
    wait_for_count(&counter, &a, 1).await;
    assert!(
        counter.acquire(&a, Some(2)).await.unwrap(),
        "a released slot can be taken again"
    );
    assert!(
        counter.acquire(&a, None).await.unwrap(),
        "no ceiling, no refusal"
    );
    assert_eq!(counter.count(&a).await.unwrap(), 3);
    for _ in 0..3 {
        counter.release(&a);
    }
    counter.release(&b);
    wait_for_count(&counter, &a, 0).await;
    counter.release(&a);
    wait_for_count(&counter, &a, 0).await;
    assert!(
        counter.acquire(&a, Some(1)).await.unwrap(),
        "releasing more than was taken does not go below zero"
    );
    counter.release(&a);
}

/// `release` may run in the background: wait (bounded) until the count shows it.
async fn wait_for_count(counter: &impl ConnectionCounter, app: &AppId, expected: u64) {
    for _ in 0..5_000 {
        if counter.count(app).await.unwrap() == expected {
            return;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    panic!("the count never became {expected}");
}

async fn concurrent_acquires_never_overshoot<C: ConnectionCounter>(counter: Arc<C>) {
    let a = app("conn-concurrent");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (counter, a) = (counter.clone(), a.clone());
            tokio::spawn(async move {
                let mut taken = 0;
                for _ in 0..20 {
                    if counter.acquire(&a, Some(50)).await.unwrap() {
                        taken += 1;
                    }
                }
                taken
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    assert_eq!(admitted, 50);
    assert_eq!(counter.count(&a).await.unwrap(), 50);
    for _ in 0..50 {
        counter.release(&a);
    }
}

/// Runs every check against message counters made by `make`.
pub async fn message_counter_conformance<C: MessageCounter>(make: impl Fn() -> C) {
    let counter = make();
    let (a, b) = (app("messages-a"), app("messages-b"));
    let last_second_of_day = 20_000 * SECONDS_PER_DAY - 1;
    counter.add(&a, 4, last_second_of_day);
    counter.add(&a, 2, last_second_of_day);
    counter.add(&b, 1, last_second_of_day);
    let mut today = 0;
    for _ in 0..5_000 {
        today = counter.today(&a, last_second_of_day).await.unwrap();
        if today == 6 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert_eq!(today, 6, "additions are summed per app");
    assert_eq!(
        counter.today(&a, last_second_of_day + 1).await.unwrap(),
        0,
        "a new UTC day starts at zero"
    );
    counter.add(&a, 1, last_second_of_day + 1);
    let mut next_day = 0;
    for _ in 0..5_000 {
        next_day = counter.today(&a, last_second_of_day + 1).await.unwrap();
        if next_day == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert_eq!(next_day, 1);
    assert_eq!(counter.today(&b, last_second_of_day).await.unwrap(), 1);
}

/// Runs every check against publish rates made by `make`.
pub async fn publish_rate_conformance<R: PublishRate>(make: impl Fn() -> R) {
    let rates = make();
    let (a, b) = (app("rate-a"), app("rate-b"));
    let mut allowed = 0;
    for _ in 0..5 {
        if rates.take(&a, 2).await.unwrap() {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 2, "a burst of the per-second rate, then refusals");
    assert!(rates.take(&b, 2).await.unwrap(), "apps do not share a rate");
    assert!(
        rates.take(&a, 100).await.unwrap(),
        "a new rate applies at once"
    );
}
