//! Redis goes away and comes back empty (it keeps nothing on disk) while events are published
//! through two edges: publishes during the outage get a clear error status, never a hang, and
//! every resuming subscriber on either edge ends with every accepted event, in order, once,
//! or with an explicit `switchboard:resume_failed` where its gap is.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use testkit::RedisServer;
use tokio::sync::watch;

use crate::helpers::{APP, TestApp, WsClient, data_of, spawn_app_on_broker, ws_connect};

const CHANNEL: &str = "ticker";
/// Bounds every wait on a condition: only a real bug (a hang, an event that never comes)
/// reaches it, however loaded the machine.
const CONDITION_GUARD: Duration = Duration::from_secs(30);
/// A publish that takes longer than this is a hang, not an error status.
const PUBLISH_GUARD: Duration = Duration::from_secs(15);
/// Paces the publisher and reconnecting subscribers (load, not synchronisation).
const PACE: Duration = Duration::from_millis(20);

/// What one subscriber saw, in order, across all its connections.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Event(u64),
    ResumeFailed(String),
}

/// The shared record every task writes and the test reads.
#[derive(Default)]
struct Record {
    /// Per subscriber, what it saw.
    seen: Vec<Vec<Seen>>,
    /// Per subscriber, how many times its connection was closed by the server.
    closes: Vec<Vec<u16>>,
    /// Events the API answered 200 for, in publication order.
    accepted: Vec<u64>,
    /// Status of every publish that was not accepted.
    refused: Vec<u16>,
}

type Shared = (Arc<Mutex<Record>>, watch::Sender<u64>);

/// Where a subscriber resumes from: the last event it saw, or what a failed resume announced.
#[derive(Debug, Clone)]
struct Position {
    epoch: String,
    serial: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_restart_every_resuming_subscriber_has_every_event_or_a_resume_failed() {
    let mut redis = RedisServer::start();
    let edges = Arc::new([
        spawn_app_on_broker(&redis.url()).await,
        spawn_app_on_broker(&redis.url()).await,
    ]);
    let record = Arc::new(Mutex::new(Record {
        seen: vec![Vec::new(); 4],
        closes: vec![Vec::new(); 4],
        ..Record::default()
    }));
    let (progress, _) = watch::channel(0u64);
    let shared: Shared = (record.clone(), progress);
    let (stop_publishing, publishing_stopped) = watch::channel(false);
    let (stop_subscribers, subscribers_stopped) = watch::channel(false);

    // Two resuming subscribers on each edge, in before anything is published.
    let mut subscribers = Vec::new();
    for index in 0..4 {
        let port = edges[index % 2].port;
        let (client, position) = admitted_and_subscribed(port, None)
            .await
            .expect("admitted while Redis is up");
        subscribers.push(tokio::spawn(resuming_subscriber(
            index,
            port,
            (client, position),
            shared.clone(),
            subscribers_stopped.clone(),
        )));
    }
    let publisher = tokio::spawn(publish_continuously(
        edges.clone(),
        shared.clone(),
        publishing_stopped,
    ));

    wait_until(&shared, "every subscriber has live events", |record| {
        record.seen.iter().all(|seen| seen.len() >= 5)
    })
    .await;
    redis.stop();
    wait_until(&shared, "publishes fail while Redis is away", |record| {
        record.refused.len() >= 5
    })
    .await;
    let accepted_before_restart = shared.0.lock().unwrap().accepted.len();
    tokio::task::block_in_place(|| redis.restart());
    wait_until(&shared, "publishes are accepted again", |record| {
        record.accepted.len() >= accepted_before_restart + 20
    })
    .await;
    stop_publishing.send_replace(true);
    publisher.await.expect("the publisher ends cleanly");
    wait_until(&shared, "every subscriber caught up", |record| {
        let last = *record.accepted.last().expect("events were accepted");
        record
            .seen
            .iter()
            .all(|seen| seen.contains(&Seen::Event(last)))
    })
    .await;
    stop_subscribers.send_replace(true);
    for subscriber in subscribers {
        subscriber.await.expect("a subscriber ends cleanly");
    }

    let record = record.lock().unwrap();
    assert!(
        record.refused.iter().all(|&status| status == 503),
        "publishes during the outage answer 503: {:?}",
        record.refused
    );
    let published = record.accepted.len() + record.refused.len();

    for (index, seen) in record.seen.iter().enumerate() {
        check_every_event_or_a_resume_failed(index, seen, &record.accepted, published as u64);
        assert!(
            record.closes[index].contains(&4202),
            "subscriber {index} was told to resume when deliveries stopped: {:?}",
            record.closes[index]
        );
    }
}

/// Events strictly increasing (in order, no duplicate), and every accepted event missing
/// between two seen ones is covered by a `resume_failed` seen between them. (An event whose
/// publish answered 503 may still have been stored if Redis died after the step: the API's
/// client cannot tell, so it may be seen, but never one that was not published.)
fn check_every_event_or_a_resume_failed(
    index: usize,
    seen: &[Seen],
    accepted: &[u64],
    published: u64,
) {
    let mut last_event = 0;
    let mut failed_since_last = false;
    for entry in seen {
        match entry {
            Seen::ResumeFailed(_) => failed_since_last = true,
            Seen::Event(event) => {
                assert!(
                    *event > last_event,
                    "subscriber {index}: {event} after {last_event} (order, duplicates): {seen:?}"
                );
                assert!(*event <= published, "{event} was never published");
                let missed: Vec<u64> = accepted
                    .iter()
                    .copied()
                    .filter(|accepted| (last_event + 1..*event).contains(accepted))
                    .collect();
                assert!(
                    missed.is_empty() || failed_since_last,
                    "subscriber {index} silently missed {missed:?} before {event}: {seen:?}"
                );
                last_event = *event;
                failed_since_last = false;
            }
        }
    }
}

/// Waits (bounded) until `condition` holds; every task signals `progress` after recording.
async fn wait_until(shared: &Shared, what: &str, condition: impl Fn(&Record) -> bool) {
    let (record, progress) = shared;
    let mut changes = progress.subscribe();
    let reached = tokio::time::timeout(
        CONDITION_GUARD,
        changes.wait_for(|_| condition(&record.lock().unwrap())),
    )
    .await;
    if reached.is_err() {
        let record = record.lock().unwrap();
        panic!(
            "timed out waiting until {what}: {} accepted, refused {:?}, closes {:?}, seen {:?}",
            record.accepted.len(),
            record.refused,
            record.closes,
            record
                .seen
                .iter()
                .map(|seen| seen.last())
                .collect::<Vec<_>>()
        );
    }
}

fn record_and_signal(shared: &Shared, change: impl FnOnce(&mut Record)) {
    change(&mut shared.0.lock().unwrap());
    shared.1.send_modify(|generation| *generation += 1);
}

/// Publishes `1, 2, …` through both edges in turn until stopped, recording the answers.
async fn publish_continuously(
    edges: Arc<[TestApp; 2]>,
    shared: Shared,
    mut stopped: watch::Receiver<bool>,
) {
    let mut pace = tokio::time::interval(PACE);
    for event in 1u64.. {
        tokio::select! {
            _ = pace.tick() => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        let edge = &edges[event as usize % 2];
        let answer = tokio::time::timeout(
            PUBLISH_GUARD,
            edge.trigger(CHANNEL, "tick", &event.to_string(), None),
        )
        .await
        .unwrap_or_else(|_| panic!("publish {event} hung instead of answering"));
        let status = answer.status().as_u16();
        record_and_signal(&shared, |record| match status {
            200 => record.accepted.push(event),
            _ => record.refused.push(status),
        });
    }
}

/// Reads its subscription's events; when the server closes the connection, reconnects to the
/// same edge (refusals while Redis is away are retried) and resumes from its position.
async fn resuming_subscriber(
    index: usize,
    port: u16,
    subscribed: (WsClient, Position),
    shared: Shared,
    mut stopped: watch::Receiver<bool>,
) {
    let (mut client, mut announced) = subscribed;
    let mut position = announced.clone();
    loop {
        loop {
            let next = tokio::select! {
                next = client.next_json_or_close() => next,
                _ = stopped.wait_for(|stop| *stop) => return,
            };
            let frame = match next {
                Ok(frame) => frame,
                Err(closed) => {
                    record_and_signal(&shared, |record| record.closes[index].push(closed.code));
                    break;
                }
            };
            match frame["event"].as_str() {
                Some("tick") => {
                    let event: u64 = frame["data"].as_str().unwrap().parse().unwrap();
                    position = Position {
                        epoch: frame["epoch"].as_str().expect("an epoch").to_owned(),
                        serial: frame["serial"].as_u64().expect("a serial"),
                    };
                    record_and_signal(&shared, |record| {
                        record.seen[index].push(Seen::Event(event));
                    });
                }
                Some("switchboard:resume_failed") => {
                    // The gap is reported: carry on from what the subscribe announced.
                    position = announced.clone();
                    let reason = data_of(&frame)["reason"].as_str().unwrap_or("").to_owned();
                    record_and_signal(&shared, |record| {
                        record.seen[index].push(Seen::ResumeFailed(reason));
                    });
                }
                _ => {}
            }
        }
        loop {
            if *stopped.borrow() {
                return;
            }
            if let Some((again, told)) = admitted_and_subscribed(port, Some(&position)).await {
                client = again;
                announced = told;
                break;
            }
            tokio::time::sleep(PACE).await;
        }
    }
}

/// A connection subscribed to the channel (resuming from `resume`), with the position the
/// subscribe announced; `None` if the edge refused the connection or the subscription.
async fn admitted_and_subscribed(
    port: u16,
    resume: Option<&Position>,
) -> Option<(WsClient, Position)> {
    let url = format!(
        "ws://127.0.0.1:{port}/app/{}?protocol=7&client=test&version=1",
        APP.1
    );
    let mut client = ws_connect(&url).await;
    let established = client.next_json_or_close().await.ok()?;
    if established["event"] != "pusher:connection_established" {
        return None;
    }
    let mut data = json!({ "channel": CHANNEL });
    if let Some(Position { epoch, serial }) = resume {
        data["resume"] = json!({ "epoch": epoch, "serial": serial });
    }
    client
        .send(json!({ "event": "pusher:subscribe", "data": data }))
        .await;
    loop {
        let frame: Value = client.next_json_or_close().await.ok()?;
        match frame["event"].as_str() {
            Some("pusher_internal:subscription_succeeded") => {
                let told = data_of(&frame);
                let position = Position {
                    epoch: told["epoch"].as_str().expect("an epoch").to_owned(),
                    serial: told["serial"].as_u64().expect("a serial"),
                };
                return Some((client, position));
            }
            Some("pusher:subscription_error") => return None,
            _ => {}
        }
    }
}
